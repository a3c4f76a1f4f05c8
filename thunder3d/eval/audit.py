"""A reference-free lip-sync audit of any face track, given its speech (``thunder3d audit``).

No ground-truth motion is needed: the track is judged by what speech physically demands of the lips
and by a frozen mesh-to-speech listener. Inputs: the track's coefficients in a rig's layout
``[T, C]`` at 25 fps, the 16 kHz speech, the speech's timed phones (forced alignment of a transcript,
or recognition) and optionally a listener (an M2S of the same rig).

================  =================================================================================
closure           bilabial segments (P B M) whose lips meet (:func:`~thunder3d.eval.grounded.closure_rate`)
open              open-vowel segments whose mouth opens (:func:`~thunder3d.eval.grounded.open_vowel_rate`)
rounding          rounded segments (UW UH OW OY AO AW W) whose mouth corners come in: minimum lip width
                  at most ``median(w) − max(ROUND_FLOOR_MM, ROUND_FRACTION · (P95(w) − P5(w)))``
sync              the lag of the aperture behind the audio envelope
                  (:func:`~thunder3d.eval.grounded.sync_lag`); its term is ``1 − min(|lag| / 200 ms, 1)``,
                  0 when the correlation at the peak is not positive
listener          the listener's loss on the track, ``L``, relative to its loss on a still face at rest
                  for the same speech, ``L0``: agreement ``clip((1 − L / L0) / LISTENER_REFERENCE, 0, 1)``;
                  :data:`LISTENER_REFERENCE` is the median ``1 − L / L0`` of held-out ground truth, so a
                  track as audible as real motion scores about 1 and a still face 0
================  =================================================================================

``score`` is the mean of the terms that exist for this speech (a check with no segment is left out),
higher is better, in ``[0, 1]``. The report also lists each phone class's failed segments and the worst
moments: the one-second windows whose listener loss is highest relative to a still face (or, without
a listener, the failed segments themselves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from thunder3d.audio.features import log_mel
from thunder3d.audio.phones import BILABIAL, OPEN_VOWELS, ROUNDED, Phone
from thunder3d.constants import FPS, MELS_PER_FRAME, SAMPLES_PER_FRAME
from thunder3d.eval.grounded import (
    closure_threshold,
    open_threshold,
    segment_frames,
    sync_lag,
)
from thunder3d.models.m2s import M2S, rig_features
from thunder3d.rigs import Rig

ROUND_FLOOR_MM = 1.0
ROUND_FRACTION = 0.25
LAG_SCALE_MS = 200.0
LISTENER_REFERENCE = 0.45
"""Median ``1 − L / L0`` of the ground truth of 60 held-out clips of the corpus the shipped listener was
trained on (0.445; a 240 ms late copy of the same motion: 0.285), measured with the shipped listener."""
WORST_WINDOW_S = 1.0
WORST_COUNT = 5


def lip_tracks(rig: Rig, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(aperture [T], width [T])`` in mm of raw coefficients ``[T, C]``."""
    lm = rig.lip_landmarks
    idx = [lm["upper_inner"], lm["lower_inner"], lm["left_corner"], lm["right_corner"]]
    with torch.no_grad():
        x = torch.as_tensor(coeffs, dtype=torch.float32)
        if hasattr(rig, "deltas"):
            d = rig.deltas[:, idx].reshape(rig.num_coeffs, -1)
            v = (rig.neutral[idx] + (x @ d).unflatten(-1, (4, 3))).numpy()
        else:
            v = rig(x)[:, idx].numpy()
    mm = rig.mm_per_unit
    return (np.linalg.norm(v[:, 0] - v[:, 1], axis=-1) * mm, np.linalg.norm(v[:, 2] - v[:, 3], axis=-1) * mm)


def _segments(values: np.ndarray, phones: Sequence[Phone], labels: frozenset[str], passes) -> dict[str, Any]:
    T = values.size
    segs, failures = 0, []
    for p in phones:
        if p.label not in labels:
            continue
        s = segment_frames(p, T)
        segs += 1
        if not passes(values[s]):
            failures.append({"time": round(p.start, 3), "end": round(p.end, 3), "phone": p.label})
    hits = segs - len(failures)
    return {"rate": hits / segs if segs else None, "segments": segs, "hits": hits, "failures": failures}


def listener_losses(listener: M2S, rig: Rig, coeffs: np.ndarray, wav: np.ndarray,
                    window: float = WORST_WINDOW_S) -> tuple[float, float, list[dict]]:
    """``(L, L0, per window)``: the listener's mean loss of the track and of a still face over
    ``window``-second windows, and each window's ``{"time", "ratio"}`` (``L_w / L0_w``)."""
    T = coeffs.shape[0]
    W = max(2, round(window * FPS))
    x = torch.as_tensor(coeffs, dtype=torch.float32)
    still = torch.zeros_like(x)
    audio = torch.as_tensor(np.pad(wav, (0, max(0, T * SAMPLES_PER_FRAME - wav.size)))[: T * SAMPLES_PER_FRAME],
                            dtype=torch.float32)
    total = total0 = 0.0
    weight = 0
    windows = []
    with torch.no_grad():
        feats = rig_features(rig, torch.stack([x, still]), listener.cfg.input)  # [2, T, F]
        # the listener hears 8 s at a time (its training windows are 4 s); losses are read per window
        mel_pred = torch.cat([listener(feats[:, a:a + 200]).mel for a in range(0, T, 200)], dim=1)
        target = log_mel(audio[None])[:, : T * MELS_PER_FRAME]
        for a in range(0, T, W):
            b = min(T, a + W)
            if b - a < 2:
                continue
            sl = slice(a * MELS_PER_FRAME, b * MELS_PER_FRAME)
            tgt = target[:, sl]
            loss = float(listener.mel_loss(mel_pred[0:1, sl], tgt))
            loss0 = float(listener.mel_loss(mel_pred[1:2, sl], tgt))
            total += loss * (b - a)
            total0 += loss0 * (b - a)
            weight += b - a
            windows.append({"time": round(a / FPS, 2), "end": round(b / FPS, 2),
                            "ratio": loss / loss0 if loss0 > 0 else None})
    return total / max(weight, 1), total0 / max(weight, 1), windows


def audit_track(rig: Rig, coeffs: np.ndarray, wav: np.ndarray, phones: Sequence[Phone], *,
                listener: M2S | None = None) -> dict[str, Any]:
    """Audit one track (module docstring).

    Args:
        rig: the rig whose layout ``coeffs`` are in.
        coeffs: ``[T, C]`` raw coefficients at 25 fps.
        wav: ``[N]`` 16 kHz speech (cut or padded to ``T * 640`` samples).
        phones: timed phones of the speech (seconds).
        listener: an M2S of ``rig`` (None: the grounded checks only).
    Returns:
        The report: ``score``, ``terms``, ``checks`` (per phone class, with failures), ``sync``,
        ``listener`` and ``worst_moments``.
    """
    coeffs = np.asarray(coeffs, dtype=np.float32)
    if coeffs.ndim != 2 or coeffs.shape[1] != rig.num_coeffs:
        raise ValueError(f"coeffs must be [T, {rig.num_coeffs}], got {coeffs.shape}")
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    aperture, width = lip_tracks(rig, coeffs)
    close_th, open_th = closure_threshold(aperture), open_threshold(aperture)
    lo, hi = np.percentile(width, [5, 95])
    round_th = float(np.median(width) - max(ROUND_FLOOR_MM, ROUND_FRACTION * (hi - lo)))
    checks = {
        "bilabial": {**_segments(aperture, phones, BILABIAL, lambda s: s.min() <= close_th), "threshold_mm": close_th},
        "open": {**_segments(aperture, phones, OPEN_VOWELS, lambda s: s.max() >= open_th), "threshold_mm": open_th},
        "rounded": {**_segments(width, phones, ROUNDED, lambda s: s.min() <= round_th), "threshold_mm": round_th},
    }
    sync = sync_lag(aperture, wav)
    sync.pop("curve", None)
    terms: dict[str, float | None] = {"closure": checks["bilabial"]["rate"], "open": checks["open"]["rate"],
                                      "rounding": checks["rounded"]["rate"]}
    if sync["lag_ms"] is None or not sync["peak_corr"] or sync["peak_corr"] <= 0:
        terms["sync"] = 0.0
    else:
        terms["sync"] = 1.0 - min(abs(sync["lag_ms"]) / LAG_SCALE_MS, 1.0)
    heard = None
    worst: list[dict] = []
    if listener is not None:
        listener.check_rig(rig)
        loss, loss0, windows = listener_losses(listener, rig, coeffs, wav)
        agreement = 1.0 - loss / loss0 if loss0 > 0 else 0.0
        terms["listener"] = float(np.clip(agreement / LISTENER_REFERENCE, 0.0, 1.0))
        heard = {"loss": loss, "still_loss": loss0, "agreement": agreement, "reference": LISTENER_REFERENCE}
        ranked = sorted((w for w in windows if w["ratio"] is not None), key=lambda w: -w["ratio"])[:WORST_COUNT]
        for w in ranked:
            inside = [dict(f, check=name) for name, c in checks.items() for f in c["failures"]
                      if f["time"] < w["end"] and f["end"] > w["time"]]
            worst.append({**w, "failed": inside})
    else:
        worst = [dict(f, check=name) for name, c in checks.items() for f in c["failures"]][:WORST_COUNT]
    present = [v for v in terms.values() if v is not None and math.isfinite(v)]
    score = float(np.mean(present)) if present else 0.0
    return {"score": score, "terms": terms, "checks": checks, "sync": sync, "listener": heard,
            "worst_moments": worst, "frames": int(coeffs.shape[0]), "fps": FPS}


__all__ = ["LISTENER_REFERENCE", "audit_track", "lip_tracks", "listener_losses"]
