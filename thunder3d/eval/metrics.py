"""Talking-head metrics: lip accuracy against ground truth and diversity across samples.

Every function takes numpy arrays or torch tensors (any device), computes in float64 and returns a
Python ``float``. Vertex metrics take ``mm_per_unit`` (``rig.mm_per_unit``) and report millimetres.

Notation: ``x̂_{t,v}`` predicted and ``x_{t,v}`` ground-truth position of vertex ``v`` at frame
``t`` (``T`` frames), ``L`` the lip vertices, ``U`` the upper-face vertices, ``a_t`` the lip
aperture (inner-lip opening, :meth:`thunder3d.rigs.Rig.lip_aperture`).

==========  ========================================================================================
LVE         lip vertex error (Richard et al., MeshTalk; FaceFormer):
            ``1/T Σ_t max_{v∈L} ||x̂_{t,v} − x_{t,v}||₂`` — the worst lip vertex per frame, averaged
            over frames. mm; lower is better.
L-PCC       Pearson correlation of the aperture trajectories ``â`` and ``a``:
            ``Σ_t (â_t − mean â)(a_t − mean a) / sqrt(Σ_t (â_t − mean â)² · Σ_t (a_t − mean a)²)``.
            Unitless in [−1, 1]; higher is better; NaN when either trajectory is constant.
S-DIV-U     sample diversity of the upper face over ``N`` samples ``x^n`` for the same audio:
            ``1/(T |U|) Σ_t Σ_{v∈U} sqrt(1/N Σ_n ||x^n_{t,v} − x̄_{t,v}||²)`` with
            ``x̄_{t,v} = 1/N Σ_n x^n_{t,v}``: the root-mean-square distance of the samples to their
            mean (a population standard deviation of 3D points, ddof 0), averaged over frames and
            vertices. mm; 0 for a deterministic model. Two samples at distance ``d`` give ``d / 2``.
==========  ========================================================================================

:func:`rig_vertices` evaluates only the vertices a metric needs (cheap for blendshape rigs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from thunder3d.rigs import LinearBlendshapeRig, Rig

ArrayLike = Any  # np.ndarray | Tensor | nested sequences


def _np(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _index(idx: ArrayLike | None, num: int, name: str) -> np.ndarray | slice:
    if idx is None:
        return slice(None)
    if isinstance(idx, Tensor):
        idx = idx.detach().cpu().numpy()
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < -num or idx.max() >= num:
        raise ValueError(f"{name}: {idx.size} indices, some out of range for {num} vertices")
    return idx


def _check_verts(x: np.ndarray, name: str, lead: int) -> None:
    if x.ndim != lead + 2 or x.shape[-1] != 3:
        shape = "[N, T, V, 3]" if lead == 2 else "[T, V, 3]"
        raise ValueError(f"{name} must be {shape}, got {tuple(x.shape)}")


# --------------------------------------------------------------------------- lip accuracy
def lve(pred_verts: ArrayLike, gt_verts: ArrayLike, lip_idx: ArrayLike | None = None,
        mm_per_unit: float = 1.0) -> float:
    """Lip vertex error in mm (module docstring).

    Args:
        pred_verts, gt_verts: ``[T, V, 3]`` vertices in rig units (the same ``T`` and ``V``).
        lip_idx: ``[L]`` lip vertex indices (``rig.region("lips")``); None = every given vertex
            (when ``pred_verts`` already holds only the lips).
        mm_per_unit: millimetres per rig unit.
    Returns:
        mean over frames of the per-frame maximum lip-vertex L2 error, mm.
    """
    pred, gt = _np(pred_verts, "pred_verts"), _np(gt_verts, "gt_verts")
    _check_verts(pred, "pred_verts", 1)
    if pred.shape != gt.shape:
        raise ValueError(f"pred_verts {tuple(pred.shape)} and gt_verts {tuple(gt.shape)} differ")
    if pred.shape[0] == 0:
        raise ValueError("LVE of an empty sequence")
    idx = _index(lip_idx, pred.shape[1], "lip_idx")
    err = np.linalg.norm(pred[:, idx] - gt[:, idx], axis=-1)  # [T, L]
    return float(err.max(axis=1).mean() * mm_per_unit)


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation of two ``[T]`` series; NaN when either is constant."""
    a, b = _np(x, "x").reshape(-1), _np(y, "y").reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two series of the same length >= 2, got {a.size} and {b.size}")
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if denom <= 1e-24:
        return float("nan")
    return float((a * b).sum() / denom)


def lip_pcc(pred_aperture: ArrayLike, gt_aperture: ArrayLike) -> float:
    """L-PCC: Pearson correlation of predicted and ground-truth lip aperture ``[T]`` (module docstring).

    Units cancel, so apertures in rig units or mm give the same value.
    """
    return pearson(pred_aperture, gt_aperture)


# --------------------------------------------------------------------------- diversity
def sample_diversity(samples_verts: ArrayLike, idx: ArrayLike | None = None,
                     mm_per_unit: float = 1.0) -> float:
    """Mean over frames and vertices ``idx`` of the RMS distance of ``N`` samples to their mean, mm.

    Args:
        samples_verts: ``[N, T, V, 3]`` vertices of ``N >= 2`` samples for the same audio.
        idx: vertex indices (None = all).
        mm_per_unit: millimetres per rig unit.
    """
    x = _np(samples_verts, "samples_verts")
    _check_verts(x, "samples_verts", 2)
    if x.shape[0] < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {x.shape[0]}")
    x = x[:, :, _index(idx, x.shape[2], "idx")]
    dev = x - x.mean(axis=0, keepdims=True)  # [N, T, R, 3]
    spread = np.sqrt((dev ** 2).sum(-1).mean(0))  # [T, R]: RMS distance to the sample mean
    return float(spread.mean() * mm_per_unit)


def sdiv_upper(samples_verts: ArrayLike, upper_idx: ArrayLike | None = None,
               mm_per_unit: float = 1.0) -> float:
    """S-DIV-U: :func:`sample_diversity` over the upper-face vertices (``rig.region("upper_face")``), mm."""
    return sample_diversity(samples_verts, upper_idx, mm_per_unit)


# --------------------------------------------------------------------------- vertices for metrics
def rig_vertices(rig: Rig, coeffs: Tensor, idx: Tensor | Sequence[int] | None = None) -> Tensor:
    """Vertices ``[..., T, R, 3]`` (rig units) of coefficients ``[..., T, C]``, only those in ``idx``.

    For blendshape rigs only the selected deltas are blended (a few hundred lip vertices instead
    of the whole head); other rigs evaluate every vertex and select.
    """
    rig.check_coeffs(coeffs)
    if idx is None:
        return rig(coeffs)
    idx = torch.as_tensor(idx, dtype=torch.long, device=rig.neutral.device)
    if isinstance(rig, LinearBlendshapeRig):
        deltas = rig.deltas[:, idx].reshape(rig.num_coeffs, -1)  # [C, 3R]
        offsets = coeffs.to(deltas.dtype) @ deltas  # [..., T, 3R]
        return rig.neutral[idx] + offsets.unflatten(-1, (idx.numel(), 3))
    return rig(coeffs)[..., idx, :]


def aperture_indices(rig: Rig) -> list[int]:
    """``[upper_inner, lower_inner]`` vertex indices; their distance is the lip aperture."""
    return [rig.lip_landmarks["upper_inner"], rig.lip_landmarks["lower_inner"]]


def aperture_of(pair_verts: Tensor) -> Tensor:
    """Aperture ``[..., T]`` from the two landmark vertices ``[..., T, 2, 3]`` of :func:`aperture_indices`."""
    return (pair_verts[..., 0, :] - pair_verts[..., 1, :]).norm(dim=-1)


__all__ = [
    "aperture_indices", "aperture_of", "lip_pcc", "lve", "pearson", "rig_vertices", "sample_diversity",
    "sdiv_upper",
]
