"""Talking-head metrics: lip accuracy and dynamics against ground truth, diversity across samples.

Every function takes numpy arrays or torch tensors (any device), computes in float64 and returns a
Python ``float``. Vertex metrics take ``mm_per_unit`` (``rig.mm_per_unit``) and report millimetres;
aperture metrics report the unit of the apertures given (the evaluation passes mm).

Notation: ``x̂_{t,v}`` predicted and ``x_{t,v}`` ground-truth position of vertex ``v`` at frame
``t`` (``T`` frames), ``x⁰_v`` the template (the rig's neutral), ``L`` the lip vertices, ``U`` the
upper-face vertices, ``D`` the lower-face vertices (:func:`lower_face_region`), ``a_t`` the lip
aperture (inner-lip opening, :meth:`thunder3d.rigs.Rig.lip_aperture`); means and variances over
frames are population moments (ddof 0): ``m_a = 1/T Σ_t a_t``, ``s²_a = 1/T Σ_t (a_t − m_a)²``,
``s_{âa} = 1/T Σ_t (â_t − m_â)(a_t − m_a)``.

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
S-DIV-L     the same over the lower-face vertices ``D``. mm.
L-CCC       Lin's concordance correlation of the aperture trajectories:
            ``2 s_{âa} / (s²_â + s²_a + (m_â − m_a)²)``. In [−1, 1], 1 only for ``â = a``; unlike
            L-PCC it drops for an offset or a wrong amplitude (``â = a + 1`` or ``2a`` is not 1).
            Higher is better; NaN when both trajectories are the same constant (0 / 0).
DTW         dynamic time warping distance of the aperture trajectories ``â`` (length ``T̂``) and
            ``a`` (``T``) with cost ``|â_i − a_j|``: ``D(i, j) = |â_i − a_j| + min(D(i−1, j),
            D(i, j−1), D(i−1, j−1))``, ``D(0, 0) = |â_0 − a_0|``, reported as
            ``D(T̂−1, T−1) / max(T̂, T)``: the cost of the best monotonic alignment (no band),
            normalised by the longer length. At most the plain mean absolute error
            ``1/T Σ_t |â_t − a_t|`` when ``T̂ = T`` (the diagonal is one path); 0 for a time-warped
            copy (a held or repeated frame costs nothing). mm; lower is better.
FDD         upper-face dynamics deviation. Per vertex the displacement ``d_{t,v} = ||x_{t,v} − x⁰_v||₂``
            and its standard deviation over time ``σ_v = sqrt(1/T Σ_t (d_{t,v} − m_{d_v})²)``;
            ``FDD = 1/|U| Σ_{v∈U} |σ̂_v − σ_v|``. mm; lower is better; 0 when every upper-face vertex
            moves as much as in the ground truth. (CodeTalker's FDD takes squared displacements and
            the signed gap of the vertex means, ``mean σ − mean σ̂``, in m²; here the norm keeps
            millimetres and the absolute value per vertex stops over- and under-animated vertices
            from cancelling.)
M2S         audio consistency: the frozen M2S's own mel loss
            (:meth:`~thunder3d.models.m2s.M2S.mel_loss`: L1, utterance-normalised as the model was
            trained) between the log-mel it hears in the animation and the log-mel of the input
            audio. Log-mel units; lower is better.
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

from thunder3d.audio.features import log_mel
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.models.m2s import INPUT_REGION, M2S, rig_features
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


def concordance(x: ArrayLike, y: ArrayLike) -> float:
    """Lin's concordance correlation of two ``[T]`` series (population moments); NaN when both are
    the same constant."""
    a, b = _np(x, "x").reshape(-1), _np(y, "y").reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two series of the same length >= 2, got {a.size} and {b.size}")
    da, db = a - a.mean(), b - b.mean()
    denom = float((da * da).mean() + (db * db).mean() + (a.mean() - b.mean()) ** 2)
    if denom <= 1e-24:
        return float("nan")
    return float(2.0 * (da * db).mean() / denom)


def lip_ccc(pred_aperture: ArrayLike, gt_aperture: ArrayLike) -> float:
    """L-CCC: :func:`concordance` of predicted and ground-truth lip aperture ``[T]`` (module docstring)."""
    return concordance(pred_aperture, gt_aperture)


def dtw_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Dynamic time warping distance of two series ``[T1]`` and ``[T2]`` with ``|x_i − y_j|`` cost,
    divided by ``max(T1, T2)`` (module docstring, DTW).

    Exact O(T1·T2) time and O(T2) memory, one row at a time without a Python loop over columns:
    within row ``i`` the recurrence ``D(i, j) = min(D(i, j−1) + c_j, m_j)`` with
    ``c_j = |x_i − y_j|`` and ``m_j = c_j + min(D(i−1, j), D(i−1, j−1))`` unrolls to
    ``D(i, j) = S_j + min_{k≤j} (m_k − S_k)``, ``S_j = Σ_{l≤j} c_l``: a cumulative sum and a running
    minimum (``np.minimum.accumulate``). T = 2000 takes about 0.05 s.
    """
    a, b = _np(x, "x").reshape(-1), _np(y, "y").reshape(-1)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"DTW of an empty series ({a.size} and {b.size} values)")
    prev = np.cumsum(np.abs(a[0] - b))  # row 0: only horizontal steps
    for value in a[1:]:
        cost = np.abs(value - b)  # [T2]
        m = cost.copy()
        m[0] += prev[0]
        m[1:] += np.minimum(prev[1:], prev[:-1])  # from above or from the diagonal
        run = np.cumsum(cost)
        prev = run + np.minimum.accumulate(m - run)  # or from the left, any number of steps
    return float(prev[-1] / max(a.size, b.size))


def lip_dtw(pred_aperture: ArrayLike, gt_aperture: ArrayLike) -> float:
    """DTW of predicted and ground-truth lip aperture (:func:`dtw_distance`; the apertures' unit)."""
    return dtw_distance(pred_aperture, gt_aperture)


# --------------------------------------------------------------------------- dynamics
def fdd(pred_verts: ArrayLike, gt_verts: ArrayLike, template: ArrayLike,
        upper_idx: ArrayLike | None = None, mm_per_unit: float = 1.0) -> float:
    """Upper-face dynamics deviation in mm (module docstring, FDD).

    Args:
        pred_verts, gt_verts: ``[T, V, 3]`` vertices in rig units (the same ``V``; ``T`` may differ).
        template: ``[V, 3]`` the rest mesh the displacements are measured from (``rig.neutral``).
        upper_idx: ``[U]`` upper-face vertex indices (``rig.region("upper_face")``); None = all given.
        mm_per_unit: millimetres per rig unit.
    Returns:
        mean over the vertices of ``|σ̂_v − σ_v|``, the gap between the temporal standard deviations
        of their displacement norms, mm.
    """
    pred, gt, rest = _np(pred_verts, "pred_verts"), _np(gt_verts, "gt_verts"), _np(template, "template")
    _check_verts(pred, "pred_verts", 1)
    _check_verts(gt, "gt_verts", 1)
    if pred.shape[1] != gt.shape[1] or rest.shape != (pred.shape[1], 3):
        raise ValueError(f"pred_verts {tuple(pred.shape)}, gt_verts {tuple(gt.shape)} and template "
                         f"{tuple(rest.shape)} must share the vertex count")
    if min(pred.shape[0], gt.shape[0]) == 0:
        raise ValueError("FDD of an empty sequence")
    idx = _index(upper_idx, pred.shape[1], "upper_idx")

    def spread(x: np.ndarray) -> np.ndarray:  # [T, V, 3] -> [U] temporal std of the displacement norm
        return np.linalg.norm(x[:, idx] - rest[idx], axis=-1).std(axis=0)

    return float(np.abs(spread(pred) - spread(gt)).mean() * mm_per_unit)


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


def sdiv_lower(samples_verts: ArrayLike, lower_idx: ArrayLike | None = None,
               mm_per_unit: float = 1.0) -> float:
    """S-DIV-L: :func:`sample_diversity` over the lower-face vertices (:func:`lower_face_region`), mm."""
    return sample_diversity(samples_verts, lower_idx, mm_per_unit)


def lower_face_region(rig: Rig) -> str:
    """The region S-DIV-L measures: ``lower_face`` (the face below the nose: lips, chin, cheeks;
    builtin and ICT) where the rig names one, else ``mouth`` (lips and surrounding skin, a region
    every rig has)."""
    return "lower_face" if "lower_face" in rig.region_names else "mouth"


# --------------------------------------------------------------------------- audio consistency
@torch.no_grad()
def m2s_consistency(model: M2S, rig: Rig, animation: ArrayLike, wav: ArrayLike) -> float:
    """M2S audio consistency (module docstring): the frozen ``model``'s mel loss between what it
    hears in ``animation`` and the log-mel of ``wav``.

    Args:
        model: a trained :class:`~thunder3d.models.m2s.M2S` (runs on its own device).
        rig: the rig the animation belongs to (the model's input is computed through it).
        animation: ``[T, C]`` coefficients of ``rig``, or ``[T, V, 3]`` vertices in rig units
            (only for vertex inputs, ``mouth2s``/``face2s``: the region's offsets from
            ``rig.neutral``).
        wav: ``[N]`` 16 kHz speech; cut or zero-padded to ``T * 640`` samples.
    """
    model.check_rig(rig)
    device = next(model.parameters()).device
    x = torch.as_tensor(_np(animation, "animation"), dtype=torch.float32, device=device)
    if x.ndim == 2:
        features = rig_features(rig.to(device), x, model.cfg.input)  # [T, F]
    elif x.ndim == 3 and x.shape[1:] == (rig.num_vertices, 3):
        region = INPUT_REGION[model.cfg.input]
        if region is None:
            raise ValueError(f"an {model.cfg.input} M2S hears coefficients, not vertices")
        idx = rig.region(region).to(device)
        features = ((x[:, idx] - rig.neutral.to(device)[idx]) * rig.mm_per_unit).flatten(-2)  # [T, 3R]
    else:
        raise ValueError(f"animation must be [T, {rig.num_coeffs}] coefficients or "
                         f"[T, {rig.num_vertices}, 3] vertices, got {tuple(x.shape)}")
    T = x.shape[0]
    audio = torch.zeros(T * SAMPLES_PER_FRAME, device=device)
    samples = torch.as_tensor(_np(wav, "wav"), dtype=torch.float32).reshape(-1)[: T * SAMPLES_PER_FRAME]
    audio[: samples.numel()] = samples.to(device)
    target = log_mel(audio)  # [4T, 80]
    mel = model(features[None]).mel  # [1, 4T, 80]
    return float(model.mel_loss(mel, target[None]))


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
    "aperture_indices", "aperture_of", "concordance", "dtw_distance", "fdd", "lip_ccc", "lip_dtw",
    "lip_pcc", "lower_face_region", "lve", "m2s_consistency", "pearson", "rig_vertices",
    "sample_diversity", "sdiv_lower", "sdiv_upper",
]
