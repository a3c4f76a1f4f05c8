"""Score a talking-head system on corpus clips: lip accuracy, dynamics, diversity, grounded checks.

A *system* is a mapping from clip id to its animations of that clip's audio: ``[N, T, C]`` rig
coefficients or ``[N, T, V, 3]`` vertices (``N`` samples; a single ``[T, C]`` / ``[T, V, 3]`` is
one sample). Predictions come from :mod:`thunder3d.scoring` (a checkpoint, a folder of
npz files, the rule-based baseline) or :func:`ground_truth_predictions`; this module only measures.
The predicted length may differ from the clip's by one frame (the audio/motion tolerance of a
clip); both are then cut to the shorter.

Per clip (metrics in :mod:`thunder3d.eval.metrics` and :mod:`thunder3d.eval.grounded`; mm):

=============  ==========================================================================================
lve            LVE against the clip's motion, the mean over the ``N`` samples
lpcc, lccc     L-PCC and L-CCC of the apertures, mean over samples (undefined ones skipped)
dtw            DTW of the apertures, mean over samples
fdd            FDD over ``upper_face``, mean over samples
sdiv_u/sdiv_l  S-DIV-U over ``upper_face`` and S-DIV-L over :func:`~thunder3d.eval.metrics.lower_face_region`
               across the samples (None for ``N = 1``)
closure        bilabial closure rate of all samples' segments together (``closure_hits`` of
               ``closure_segments``); None without phones or bilabials
open_vowel     open-vowel rate, likewise
lag_ms         audio-visual lag of the sample-mean correlation curve (``sync_curve``, lags −10..10
sync_corr      frames) and its peak correlation
m2s_mel_l1     M2S audio consistency, mean over samples (only with an M2S)
=============  ==========================================================================================

The ``mean`` over clips averages each figure over the clips that have it (clips count equally);
``closure`` and ``open_vowel`` pool the segments of all clips (hits / segments); ``lag_ms`` and
``sync_corr`` are the peak of the clip-mean correlation curve. Undefined values are None (JSON
``null``), never NaN.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thunder3d.constants import FPS
from thunder3d.data.clip import Clip
from thunder3d.data.dataset import select_coeffs
from thunder3d.errors import EvalError
from thunder3d.eval.grounded import MAX_LAG_FRAMES, closure_rate, open_vowel_rate, peak_lag, sync_lag
from thunder3d.eval.metrics import (
    aperture_indices,
    aperture_of,
    fdd,
    lip_ccc,
    lip_dtw,
    lip_pcc,
    lower_face_region,
    lve,
    m2s_consistency,
    rig_vertices,
    sdiv_lower,
    sdiv_upper,
)
from thunder3d.models.m2s import INPUT_REGION, M2S
from thunder3d.rigs import Rig

GT_METRICS = ("lve", "lpcc", "lccc", "dtw", "fdd")
"""Figures that need the ground-truth motion."""
MEAN_KEYS = GT_METRICS + ("sdiv_u", "sdiv_l", "m2s_mel_l1")
"""Figures averaged over clips as they are (the rates and the lag are pooled, module docstring)."""
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("lve", "LVE mm ↓", "{:.3f}"), ("lpcc", "L-PCC ↑", "{:.3f}"), ("lccc", "L-CCC ↑", "{:.3f}"),
    ("dtw", "DTW mm ↓", "{:.3f}"), ("sdiv_u", "S-DIV-U mm", "{:.3f}"), ("sdiv_l", "S-DIV-L mm", "{:.3f}"),
    ("fdd", "FDD mm ↓", "{:.3f}"), ("closure", "closure ↑", "{:.3f}"), ("open_vowel", "open-vowel ↑", "{:.3f}"),
    ("lag_ms", "lag ms", "{:+.0f}"),
)
"""Columns of :func:`format_markdown`: result key, header, format."""




# --------------------------------------------------------------------------- predictions
def as_samples(prediction: Any, rig: Rig, num_frames: int, name: str) -> tuple[str, np.ndarray]:
    """Check one clip's prediction and give it a sample axis.

    Args:
        prediction: ``[N, T, C]`` / ``[T, C]`` coefficients of ``rig`` or ``[N, T, V, 3]`` /
            ``[T, V, 3]`` vertices in rig units.
        num_frames: the clip's ``T``; the prediction may have one frame more or less.
        name: what to call the prediction in errors (a clip id or a file).
    Returns:
        ``("coeffs", [N, T', C])`` or ``("vertices", [N, T', V, 3])`` float32.
    """
    x = np.asarray(prediction.detach().cpu() if isinstance(prediction, torch.Tensor) else prediction)
    C, V = rig.num_coeffs, rig.num_vertices
    if x.ndim in (3, 4) and x.shape[-2:] == (V, 3):
        kind, x = "vertices", (x[None] if x.ndim == 3 else x)
    elif x.ndim in (2, 3) and x.shape[-1] == C:
        kind, x = "coeffs", (x[None] if x.ndim == 2 else x)
    else:
        raise EvalError(f"{name}: expected [N, T, {C}] coefficients or [N, T, {V}, 3] vertices of rig "
                        f"{rig.spec!r} (or one sample without N), got shape {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise EvalError(f"{name}: predictions must be finite numbers")
    if x.shape[0] == 0 or abs(x.shape[1] - num_frames) > 1:
        raise EvalError(f"{name}: {x.shape[0]} sample(s) of {x.shape[1]} frames for a clip of "
                        f"{num_frames} frames (at most one frame apart)")
    return kind, x.astype(np.float32, copy=False)


def ground_truth_predictions(clips: Sequence[Clip], rig: Rig) -> dict[str, np.ndarray]:
    """The clips' own motion as a system: ``{id: [1, T, C]}`` in ``rig``'s coefficient layout."""
    return {c.id: select_coeffs(c.coeffs, c.coeff_names, rig.coeff_names, c.id)[None] for c in clips}


# --------------------------------------------------------------------------- one clip
def _finite_mean(values: Sequence[float | None]) -> float | None:
    good = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(good)) if good else None


def _mean_curve(curves: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Element-wise mean of correlation curves, None where no curve is defined."""
    return [_finite_mean(column) for column in zip(*curves)]


@torch.no_grad()
def region_vertices(rig: Rig, animation: np.ndarray, kind: str) -> dict[str, torch.Tensor]:
    """The vertices the metrics read, on the CPU, rig units: ``lips``, ``upper`` (upper face),
    ``lower`` (:func:`~thunder3d.eval.metrics.lower_face_region`) ``[..., T, R, 3]`` and ``pair``
    (the two aperture landmarks) ``[..., T, 2, 3]``.

    Args:
        animation: ``[..., T, C]`` coefficients (``kind="coeffs"``; only these vertices are blended)
            or ``[..., T, V, 3]`` vertices (``kind="vertices"``).
    """
    device = rig.neutral.device
    regions = {"lips": rig.region("lips"), "upper": rig.region("upper_face"),
               "lower": rig.region(lower_face_region(rig)), "pair": torch.tensor(aperture_indices(rig))}
    idx = torch.cat([r.to(device) for r in regions.values()])  # [R_all]
    x = torch.from_numpy(np.ascontiguousarray(animation, dtype=np.float32)).to(device)
    verts = (rig_vertices(rig, x, idx) if kind == "coeffs" else x[..., idx, :]).cpu()  # [..., T, R_all, 3]
    out, start = {}, 0
    for name, r in regions.items():
        out[name] = verts[..., start: start + r.numel(), :]
        start += r.numel()
    return out


def score_clip(rig: Rig, clip: Clip, prediction: Any, *, m2s: M2S | None = None,
               m2s_rig: Rig | None = None) -> dict[str, Any]:
    """Every per-clip figure of the module docstring for one clip's prediction."""
    kind, pred = as_samples(prediction, rig, clip.num_frames, f"clip {clip.id!r}")
    if m2s is not None and kind == "vertices":
        if INPUT_REGION[m2s.cfg.input] is None:
            raise EvalError(f"clip {clip.id!r}: an {m2s.cfg.input} M2S hears coefficients; vertex "
                            "predictions need a mouth2s or face2s M2S (or none)")
        if (m2s_rig or rig).num_vertices != rig.num_vertices:
            raise EvalError(f"clip {clip.id!r}: vertex predictions of rig {rig.spec!r} cannot be heard "
                            f"through the M2S's rig {(m2s_rig or rig).spec!r} (another mesh)")
    N, T = pred.shape[0], min(pred.shape[1], clip.num_frames)
    gt = select_coeffs(clip.coeffs, clip.coeff_names, rig.coeff_names, clip.id)[:T]
    gt_v = region_vertices(rig, gt, "coeffs")  # {region: [T, R, 3]}
    pred_v = region_vertices(rig, pred[:, :T], kind)  # {region: [N, T, R, 3]}
    mm = rig.mm_per_unit
    gt_ap = (aperture_of(gt_v["pair"]) * mm).numpy()  # [T]
    pred_ap = (aperture_of(pred_v["pair"]) * mm).numpy()  # [N, T]
    template = rig.neutral[rig.region("upper_face")].cpu()
    out: dict[str, Any] = {"id": clip.id, "frames": T, "samples": N}
    per_sample = {key: [] for key in GT_METRICS}
    for n in range(N):
        per_sample["lve"].append(lve(pred_v["lips"][n], gt_v["lips"], None, mm))
        if T >= 2:
            per_sample["lpcc"].append(lip_pcc(pred_ap[n], gt_ap))
            per_sample["lccc"].append(lip_ccc(pred_ap[n], gt_ap))
        per_sample["dtw"].append(lip_dtw(pred_ap[n], gt_ap))
        per_sample["fdd"].append(fdd(pred_v["upper"][n], gt_v["upper"], template, None, mm))
    out.update({key: _finite_mean(values) for key, values in per_sample.items()})
    out["sdiv_u"] = sdiv_upper(pred_v["upper"], None, mm) if N > 1 else None
    out["sdiv_l"] = sdiv_lower(pred_v["lower"], None, mm) if N > 1 else None
    for key, check in (("closure", closure_rate), ("open_vowel", open_vowel_rate)):
        checks = [check(pred_ap[n], clip.phones) for n in range(N)] if clip.phones else []
        hits, segments = sum(c["hits"] for c in checks), sum(c["segments"] for c in checks)
        out.update({key: hits / segments if segments else None, f"{key}_hits": hits,
                    f"{key}_segments": segments})
    curve = _mean_curve([sync_lag(pred_ap[n], clip.audio)["curve"] for n in range(N)])
    peak = peak_lag([np.nan if v is None else v for v in curve])
    out.update(lag_ms=peak["lag_ms"], sync_corr=peak["peak_corr"], sync_curve=curve)
    if m2s is not None:
        out["m2s_mel_l1"] = _finite_mean([m2s_consistency(m2s, m2s_rig or rig, pred[n], clip.audio)
                                          for n in range(N)])
    return out


# --------------------------------------------------------------------------- a corpus
def summarize(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``mean`` entry over per-clip scores (module docstring)."""
    mean: dict[str, Any] = {"clips": len(scores), "frames": int(sum(s["frames"] for s in scores)),
                            "samples": max(s["samples"] for s in scores)}
    for key in MEAN_KEYS:
        mean[key] = _finite_mean([s.get(key) for s in scores])
    for key in ("closure", "open_vowel"):
        hits, segments = sum(s[f"{key}_hits"] for s in scores), sum(s[f"{key}_segments"] for s in scores)
        mean.update({key: hits / segments if segments else None, f"{key}_segments": segments})
    curve = _mean_curve([s["sync_curve"] for s in scores])
    peak = peak_lag([np.nan if v is None else v for v in curve])
    mean.update(lag_ms=peak["lag_ms"], sync_corr=peak["peak_corr"], sync_curve=curve,
                sync_lags_ms=[k * 1000.0 / FPS for k in range(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1)])
    return mean


def evaluate_animations(rig: Rig, clips: Sequence[Clip], predictions: Mapping[str, Any], *,
                        m2s: M2S | None = None, m2s_rig: Rig | None = None,
                        progress: bool = False) -> dict[str, Any]:
    """Score one system's predictions of ``clips`` (module docstring).

    Args:
        rig: the rig the predictions (and, through their ``coeff_names``, the clips) belong to.
        clips: corpus clips (with audio; phones for the closure and open-vowel rates).
        predictions: clip id -> ``[N, T, C]`` coefficients or ``[N, T, V, 3]`` vertices (read once
            per clip, so a lazy mapping keeps only one clip in memory).
        m2s, m2s_rig: a frozen M2S (and its rig, default ``rig``) for the audio-consistency figure.
        progress: show a progress bar over the clips.
    Returns:
        ``{"rig", "lower_region", "m2s_input", "clips": [per-clip dicts], "mean": {...}}``.
    """
    if not clips:
        raise EvalError("no clips to evaluate")
    missing = [c.id for c in clips if c.id not in predictions]
    if missing:
        raise EvalError(f"no predictions for {len(missing)} of {len(clips)} clips: {missing[:5]}"
                        f"{' ...' if len(missing) > 5 else ''}")
    if m2s is not None:
        m2s.check_rig(m2s_rig or rig)
        if tuple((m2s_rig or rig).coeff_names) != tuple(rig.coeff_names):
            raise EvalError(f"the M2S's rig {(m2s_rig or rig).spec!r} takes other coefficients than "
                            f"rig {rig.spec!r}")
    items: Sequence[Clip] = clips
    if progress:
        from tqdm import tqdm

        items = tqdm(clips, desc="eval", unit="clip")
    scores = []
    for clip in items:
        scores.append(score_clip(rig, clip, predictions[clip.id], m2s=m2s, m2s_rig=m2s_rig))
    return {"rig": rig.spec, "lower_region": lower_face_region(rig),
            "m2s_input": None if m2s is None else m2s.cfg.input,
            "clips": scores, "mean": summarize(scores)}


# --------------------------------------------------------------------------- results files
def read_results(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The systems of a results file (``{"systems": {name: result}}``, as ``thunder3d eval talker``
    writes it); ``{}`` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        systems = json.loads(path.read_text(encoding="utf-8"))["systems"]
        if not isinstance(systems, dict) or not all("clips" in r and "mean" in r for r in systems.values()):
            raise ValueError("systems must map names to results")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"{path}: not a results file of `thunder3d eval talker` ({exc}); "
                        "choose another output") from None
    return systems


def check_clips(systems: Mapping[str, dict[str, Any]], name: str, ids: Sequence[str]) -> None:
    """Refuse to put a system scored on clips ``ids`` beside systems scored on other clips (their
    figures could not be compared); a system called ``name`` is about to be replaced and not checked."""
    for other, previous in systems.items():
        if other != name and [c["id"] for c in previous["clips"]] != list(ids):
            raise EvalError(f"system {other!r} was evaluated on other clips ({len(previous['clips'])}) "
                            f"than {name!r} ({len(ids)}); write to another results file")


def add_system(systems: Mapping[str, dict[str, Any]], name: str,
               result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``systems`` with ``name`` set to ``result`` (replacing a system of that name), after
    :func:`check_clips`."""
    check_clips(systems, name, [c["id"] for c in result["clips"]])
    return {**systems, name: result}


# --------------------------------------------------------------------------- tables
def format_markdown(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table, one row per system (``{name: evaluate_animations result}``), the columns of
    :data:`COLUMNS` (plus ``M2S L1 ↓`` when any system has it) and the clip count; ``–`` where a
    figure is undefined."""
    columns = list(COLUMNS)
    if any(r["mean"].get("m2s_mel_l1") is not None for r in results.values()):
        columns.append(("m2s_mel_l1", "M2S L1 ↓", "{:.4f}"))
    header = ["system"] + [title for _, title, _ in columns] + ["clips"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for name, result in results.items():
        mean = result["mean"]
        cells = [str(name)]
        for key, _, fmt in columns:
            value = mean.get(key)
            cells.append("–" if value is None else fmt.format(value))
        cells.append(str(mean["clips"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "COLUMNS", "EvalError", "add_system", "as_samples", "check_clips", "evaluate_animations", "format_markdown",
    "ground_truth_predictions", "read_results", "region_vertices", "score_clip", "summarize",
]
