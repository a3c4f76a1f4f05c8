"""Does the M2S model hear lip-sync? Mel accuracy and the sync-sensitivity curve on held-out clips.

For each clip the frozen model listens to

- the ground-truth animation (shift 0),
- the same animation shifted in time by ±1, ±2, ±4, ±8 frames (edges repeat the first/last frame),
- the animation of another clip (*mismatched*: the next clip in the list, looped or cut to length),
- a frozen neutral face (all coefficients zero),

and the model's own mel loss (:meth:`~thunder3d.models.m2s.M2S.mel_loss`: L1 after utterance-mean
normalisation for the default ``cmn`` target) between its prediction and the clip's real log-mel
is recorded. A model that carries a
sharp lip-sync signal gives ``loss(0) < loss(±2) < loss(±4) < loss(mismatched)`` and a neutral face
far worse than the truth (the issue asks for at least 1.5 x loss(0)). ``±k`` is the mean of the
``+k`` and ``-k`` losses; every figure is the mean over clips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from thunder3d.audio.features import log_mel
from thunder3d.audio.phones import to_frame_labels
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.data.clip import Clip
from thunder3d.errors import EvalError
from thunder3d.models.m2s import M2S, rig_features
from thunder3d.rigs.base import Rig

SHIFTS = (1, 2, 4, 8)


def shift_frames(coeffs: np.ndarray, k: int) -> np.ndarray:
    """``coeffs [T, C]`` delayed by ``k`` frames (advanced if negative), edges repeated."""
    T = len(coeffs)
    idx = np.clip(np.arange(T) - k, 0, T - 1)
    return coeffs[idx]


def fit_length(coeffs: np.ndarray, T: int) -> np.ndarray:
    """``coeffs [T', C]`` cut or looped to ``T`` frames."""
    reps = -(-T // len(coeffs))
    return np.concatenate([coeffs] * reps)[:T]


@dataclass
class ClipScore:
    """Per-clip results: mel L1 per condition, cosine similarity, phone accuracy."""

    id: str
    losses: dict[str, float]
    cosine: float
    phone_accuracy: float | None


@torch.no_grad()
def _listen(model: M2S, rig: Rig, coeffs: np.ndarray, device: torch.device) -> torch.Tensor:
    """The model's output for one animation ``[T, C]`` -> (mel ``[4T, 80]``, phone logits or None)."""
    x = torch.from_numpy(np.ascontiguousarray(coeffs, dtype=np.float32)).to(device)[None]
    out = model(rig_features(rig, x, model.cfg.input))
    return out.mel[0], (None if out.phone_logits is None else out.phone_logits[0])


@torch.no_grad()
def score_clip(model: M2S, rig: Rig, clip: Clip, other: Clip, device: torch.device) -> ClipScore:
    """Run every condition of the sync-sensitivity curve on one clip."""
    T = clip.num_frames
    audio = torch.from_numpy(clip.audio[: T * SAMPLES_PER_FRAME]).to(device)
    target = log_mel(audio)  # [4T, 80]
    conditions = {"0": clip.coeffs}
    for k in SHIFTS:
        conditions[f"+{k}"] = shift_frames(clip.coeffs, k)
        conditions[f"-{k}"] = shift_frames(clip.coeffs, -k)
    conditions["mismatched"] = fit_length(other.coeffs, T)
    conditions["neutral"] = np.zeros_like(clip.coeffs)
    losses, cosine, accuracy = {}, 0.0, None
    for name, coeffs in conditions.items():
        mel, logits = _listen(model, rig, coeffs, device)
        losses[name] = float(model.mel_loss(mel[None], target[None]))
        if name == "0":
            cosine = float(torch.nn.functional.cosine_similarity(mel, target, dim=-1).mean())
            if logits is not None and clip.phones:
                labels = torch.from_numpy(to_frame_labels(clip.phones, T)).to(device)
                accuracy = float((logits.argmax(-1) == labels).float().mean())
    return ClipScore(clip.id, losses, cosine, accuracy)


def summarize(scores: Sequence[ClipScore]) -> dict:
    """Mean figures over clips, the ``±k`` curve and the acceptance criterion."""
    mean = {name: float(np.mean([s.losses[name] for s in scores])) for name in scores[0].losses}
    curve = {"0": mean["0"]}
    for k in SHIFTS:
        curve[f"±{k}"] = (mean[f"+{k}"] + mean[f"-{k}"]) / 2
    curve["mismatched"] = mean["mismatched"]
    curve["neutral"] = mean["neutral"]
    accuracies = [s.phone_accuracy for s in scores if s.phone_accuracy is not None]
    criterion = {
        "0 < ±2": curve["0"] < curve["±2"],
        "±2 < ±4": curve["±2"] < curve["±4"],
        "±4 < mismatched": curve["±4"] < curve["mismatched"],
        "neutral >= 1.5 x 0": curve["neutral"] >= 1.5 * curve["0"],
    }
    return {
        "clips": len(scores),
        "mel_l1": mean["0"],
        "cosine": float(np.mean([s.cosine for s in scores])),
        "phone_accuracy": float(np.mean(accuracies)) if accuracies else None,
        "sync_curve": curve,
        "per_shift": mean,
        "criterion": criterion,
        "criterion_met": all(criterion.values()),
    }


def evaluate_m2s(model: M2S, rig: Rig, clips: Sequence[Clip], device: str | torch.device = "cpu") -> dict:
    """Evaluate ``model`` (driven through ``rig``) on ``clips``; see :func:`summarize` for the keys."""
    if len(clips) < 2:
        raise EvalError(f"the sync-sensitivity curve needs at least 2 clips (one is the mismatch), got {len(clips)}; "
                        "evaluate a larger split or --split all")
    device = torch.device(device)
    model = model.to(device).eval()
    rig = rig.to(device)
    scores = [score_clip(model, rig, clip, clips[(i + 1) % len(clips)], device)
              for i, clip in enumerate(clips)]
    return summarize(scores)


def hear(model: M2S, rig: Rig, coeffs: np.ndarray | str | os.PathLike, *, iterations: int = 60, seed: int = 0,
         device: str | torch.device = "cpu") -> np.ndarray:
    """What the listener hears in an animation: coefficients ``[T, C]`` (or ``[N, T, C]``: the first
    sample; or an npz file with ``coeffs``) -> 16 kHz speech ``[T * 640]``, Griffin-Lim from the
    predicted log-mel."""
    from thunder3d.audio.vocoder import vocode

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise EvalError(f"Griffin-Lim iterations must be an integer >= 1, got {iterations!r}")
    if isinstance(coeffs, (str, os.PathLike)):
        try:
            with np.load(coeffs, allow_pickle=False) as data:
                coeffs = data["coeffs"]
        except (OSError, ValueError, KeyError):
            raise EvalError(f"{coeffs}: not an animation npz with 'coeffs' (an npz written by thunder3d animate "
                            "or a corpus clip)") from None
    coeffs = np.asarray(coeffs, dtype=np.float32)
    if coeffs.ndim == 3 and coeffs.shape[0] >= 1:
        coeffs = coeffs[0]
    if coeffs.ndim != 2 or coeffs.shape[1] != rig.num_coeffs or not np.isfinite(coeffs).all():
        raise EvalError(f"coeffs must be finite [T, {rig.num_coeffs}] for rig {rig.spec!r}, got {coeffs.shape}")
    with torch.no_grad():
        x = torch.from_numpy(coeffs).to(device)[None]
        mel = model.audible(model(rig_features(rig, x, model.cfg.input)).mel[0]).cpu()
    return vocode(mel, n_iter=iterations, seed=seed)


def format_report(result: dict) -> str:
    """A small text table of :func:`evaluate_m2s`'s result."""
    lines = [f"clips {result['clips']}   mel L1 {result['mel_l1']:.4f}   cosine {result['cosine']:.4f}"
             + (f"   phone acc {result['phone_accuracy']:.3f}" if result["phone_accuracy"] is not None else "")]
    lines.append("sync-sensitivity (mel L1, mean over clips):")
    for name, value in result["sync_curve"].items():
        lines.append(f"  {name:<11} {value:.4f}")
    for name, ok in result["criterion"].items():
        lines.append(f"  [{'x' if ok else ' '}] {name}")
    return "\n".join(lines)
