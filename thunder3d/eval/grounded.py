"""Ground-truth-free checks: does the lip aperture do what the speech it animates demands?

Every check takes the aperture trajectory ``a [T]`` of one animation (inner-lip opening in mm at
25 fps, :func:`thunder3d.eval.metrics.aperture_of`) and the speech: its timed phones
(:class:`thunder3d.audio.phones.Phone`, from the corpus, forced alignment or recognition) or its
wav. They need no ground-truth motion, so they score the ground truth itself, rule-based
baselines and models alike. Thresholds are relative to the trajectory's own opening range,
``A = P95(a)`` (its 95th percentile: how wide this face opens when it speaks), with absolute floors
in mm so that a face that never moves cannot pass by scaling alone.

Phone segments are read over the frames they overlap: frame ``t`` covers ``[t, t + 1) / fps``
seconds, so a phone ``[s, e)`` overlaps frames ``floor(s fps) .. ceil(e fps) − 1``, widened by
:data:`WIDEN_FRAMES` on each side (the frame grid is coarse next to a 60 ms /p/, and lips close a
little ahead of the acoustic closure) and clipped to the sequence; a phone beyond the last frame
is read at the last frame.

================  ======================================================================================
closure rate      fraction of bilabial segments (P B M) whose minimum aperture is at most
                  ``max(CLOSURE_FLOOR_MM, CLOSURE_FRACTION · A) = max(1 mm, 0.1 A)``: the lips meet for
                  /p b m/. A still face at rest (aperture 0) scores 1, a constantly open one 0.
                  ``None`` when the speech has no bilabial.
open-vowel rate   fraction of open-vowel segments (:data:`~thunder3d.audio.phones.OPEN_VOWELS`: AA AE
                  AO AW AY) whose maximum aperture is at least ``max(OPEN_FLOOR_MM, OPEN_FRACTION · A)
                  = max(3 mm, 0.5 A)``: the mouth opens for open vowels. A still face scores 0.
                  ``None`` when the speech has no open vowel.
sync lag          the lag ``k`` (frames, ±:data:`MAX_LAG_FRAMES`) that maximises the Pearson correlation
                  between the aperture and the audio envelope ``E`` delayed by ``k``:
                  ``r(k) = corr(a[t], E[t − k])`` over the frames where both exist; reported in ms
                  (``40 k``), positive when the lips lag the audio, with the peak correlation.
                  ``E_t`` is the RMS of the ``t``-th 640-sample (40 ms) block of the wav, linear (on
                  the synthetic corpus the log envelope lifted the noise of pauses and gave less
                  stable lags). ``None`` when either series is constant (a still face, silence).
================  ======================================================================================

Lip closure after a bilabial and opening on open vowels are physical necessities of speech, and the
envelope rises with the mouth opening, so the ground truth of a good corpus scores high on both rates
and peaks near lag 0; an animation that is smooth but mumbled does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from thunder3d.audio.phones import BILABIAL, OPEN_VOWELS, Phone
from thunder3d.constants import FPS, SAMPLES_PER_FRAME
from thunder3d.eval.metrics import pearson

REFERENCE_PERCENTILE = 95.0
CLOSURE_FLOOR_MM = 1.0
CLOSURE_FRACTION = 0.1
OPEN_FLOOR_MM = 3.0
OPEN_FRACTION = 0.5
WIDEN_FRAMES = 1
MAX_LAG_FRAMES = 10


def _trajectory(aperture: Any) -> np.ndarray:
    a = np.asarray(aperture, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"aperture must be a non-empty finite series, got {a.size} values")
    return a


# --------------------------------------------------------------------------- thresholds
def reference_opening(aperture: Any) -> float:
    """``A``: the 95th percentile of the aperture ``[T]`` (mm)."""
    return float(np.percentile(_trajectory(aperture), REFERENCE_PERCENTILE))


def closure_threshold(aperture: Any) -> float:
    """``max(1 mm, 0.1 A)``: an aperture at or below it counts as closed lips."""
    return max(CLOSURE_FLOOR_MM, CLOSURE_FRACTION * reference_opening(aperture))


def open_threshold(aperture: Any) -> float:
    """``max(3 mm, 0.5 A)``: an aperture at or above it counts as an open mouth."""
    return max(OPEN_FLOOR_MM, OPEN_FRACTION * reference_opening(aperture))


# --------------------------------------------------------------------------- phone segments
def segment_frames(phone: Phone, num_frames: int, fps: float = FPS, widen: int = WIDEN_FRAMES) -> slice:
    """Frames ``[lo, hi)`` that a phone overlaps, ``widen`` more on each side, clipped to
    ``[0, num_frames)``; never empty (a phone past the end gets the last frame)."""
    eps = 1e-9  # a boundary exactly on a frame edge does not reach into the next frame
    first = math.floor(phone.start * fps + eps) - widen
    last = math.ceil(phone.end * fps - eps) - 1 + widen
    lo = min(max(first, 0), num_frames - 1)
    hi = min(max(last, lo), num_frames - 1)
    return slice(lo, hi + 1)


def _rate(aperture: Any, phones: Sequence[Phone], labels: frozenset[str], threshold: float,
          passes, fps: float, widen: int) -> dict[str, Any]:
    a = _trajectory(aperture)
    segments = [segment_frames(p, a.size, fps, widen) for p in phones if p.label in labels]
    hits = sum(bool(passes(a[s], threshold)) for s in segments)
    return {"rate": hits / len(segments) if segments else None, "hits": hits,
            "segments": len(segments), "threshold_mm": threshold}


def closure_rate(aperture: Any, phones: Sequence[Phone], *, fps: float = FPS,
                 widen: int = WIDEN_FRAMES) -> dict[str, Any]:
    """Bilabial closure rate (module docstring).

    Args:
        aperture: ``[T]`` lip aperture in mm.
        phones: timed phones of the speech (seconds).
    Returns:
        ``{"rate": hits / segments or None, "hits", "segments", "threshold_mm"}``.
    """
    return _rate(aperture, phones, BILABIAL, closure_threshold(aperture),
                 lambda seg, th: seg.min() <= th, fps, widen)


def open_vowel_rate(aperture: Any, phones: Sequence[Phone], *, fps: float = FPS,
                    widen: int = WIDEN_FRAMES) -> dict[str, Any]:
    """Open-vowel rate (module docstring); same arguments and result as :func:`closure_rate`."""
    return _rate(aperture, phones, OPEN_VOWELS, open_threshold(aperture),
                 lambda seg, th: seg.max() >= th, fps, widen)


# --------------------------------------------------------------------------- audio-visual lag
def audio_envelope(wav: Any, num_frames: int) -> np.ndarray:
    """RMS ``[T]`` of each 640-sample block of ``wav [N]`` (16 kHz), cut or zero-padded to ``T`` blocks."""
    x = np.asarray(wav, dtype=np.float64).reshape(-1)[: num_frames * SAMPLES_PER_FRAME]
    x = np.pad(x, (0, num_frames * SAMPLES_PER_FRAME - x.size))
    return np.sqrt(np.square(x.reshape(num_frames, SAMPLES_PER_FRAME)).mean(axis=1))


def lag_correlations(aperture: Any, envelope: Any, max_lag: int = MAX_LAG_FRAMES) -> np.ndarray:
    """``r(k) = corr(a[t], E[t − k])`` for ``k = −max_lag .. max_lag`` -> ``[2 max_lag + 1]``; NaN where
    undefined (a constant overlap, or fewer than 3 shared frames)."""
    a, e = _trajectory(aperture), np.asarray(envelope, dtype=np.float64).reshape(-1)
    if a.size != e.size:
        raise ValueError(f"aperture ({a.size} frames) and envelope ({e.size}) differ in length")
    T = a.size
    out = np.full(2 * max_lag + 1, np.nan)
    for i, k in enumerate(range(-max_lag, max_lag + 1)):
        if T - abs(k) < 3:
            continue
        x, y = (a[k:], e[: T - k]) if k >= 0 else (a[: T + k], e[-k:])
        out[i] = pearson(x, y)
    return out


def peak_lag(curve: Any, fps: float = FPS) -> dict[str, Any]:
    """The peak of a correlation curve over lags ``−L .. L`` (``[2L + 1]``, NaN ignored):
    ``{"lag_frames", "lag_ms", "peak_corr"}``, all None when the curve is undefined everywhere."""
    r = np.asarray(curve, dtype=np.float64)
    if not np.isfinite(r).any():
        return {"lag_frames": None, "lag_ms": None, "peak_corr": None}
    i = int(np.nanargmax(r))
    lag = i - (r.size - 1) // 2
    return {"lag_frames": lag, "lag_ms": lag * 1000.0 / fps, "peak_corr": float(r[i])}


def sync_lag(aperture: Any, wav: Any, *, max_lag: int = MAX_LAG_FRAMES, smooth: int = 1) -> dict[str, Any]:
    """Audio-visual lag (module docstring).

    Args:
        aperture: ``[T]`` lip aperture (any unit: the correlation ignores scale).
        wav: ``[N]`` 16 kHz speech (about ``T * 640`` samples).
        max_lag: largest lag tried, frames.
        smooth: width (frames, odd) of a moving average applied to the envelope; 1 = none.
    Returns:
        :func:`peak_lag`'s keys plus ``"curve"``: ``r(k)`` for ``k = −max_lag .. max_lag`` as a list
        (None where undefined), so curves can be averaged over clips.
    """
    if smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth must be an odd number of frames >= 1, got {smooth}")
    a = _trajectory(aperture)
    env = audio_envelope(wav, a.size)
    if smooth > 1:
        env = np.convolve(np.pad(env, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")
    curve = lag_correlations(a, env, max_lag)
    return {**peak_lag(curve), "curve": [None if math.isnan(v) else float(v) for v in curve]}


__all__ = [
    "CLOSURE_FLOOR_MM", "CLOSURE_FRACTION", "MAX_LAG_FRAMES", "OPEN_FLOOR_MM", "OPEN_FRACTION",
    "REFERENCE_PERCENTILE", "WIDEN_FRAMES", "audio_envelope", "closure_rate", "closure_threshold",
    "lag_correlations", "open_threshold", "open_vowel_rate", "peak_lag", "reference_opening",
    "segment_frames", "sync_lag",
]
