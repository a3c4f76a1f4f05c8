"""Coefficients of one layout driving a rig of another, by name (ARKit models onto any ARKit rig).

Names are compared after the spelling normalisation of :func:`thunder3d.rigs.arkit.arkit_name`
(case, ``_``/spaces, ``_L``/``.L``/``_Left`` sides), in two steps per destination name:

1. the same name (side included): copied — ``mouthSmile_L`` <- ``mouthSmileLeft``, and any
   non-ARKit name such as FLAME's ``exp007`` <- ``exp007``;
2. else the same ARKit shape: the mean of the source values for it — a whole ``browInnerUp`` gets
   the mean of split ``browInnerUp_L``/``_R`` sources, and each half gets the whole shape's value.

Destination names matched by neither get zero; source names nobody asks for are dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


from thunder3d.errors import ExportError
from thunder3d.rigs.arkit import arkit_name

SIDE_SUFFIXES = (("_L", "Left"), ("_R", "Right"), (".L", "Left"), (".R", "Right"), ("-L", "Left"),
                 ("-R", "Right"), ("_Left", "Left"), ("_Right", "Right"))
"""Side spellings, as :func:`thunder3d.rigs.arkit.arkit_name` reads them."""


def name_key(name: str) -> str:
    """A spelling-independent key that keeps the side: ``mouthSmile_L`` -> ``mouthsmileleft``."""
    raw = name.strip()
    for suffix, side in SIDE_SUFFIXES:
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)] + side
            break
    return raw.replace("_", "").replace(" ", "").lower()


def retarget_matrix(src_names: Sequence[str], dst_names: Sequence[str]) -> np.ndarray:
    """``[S, D]`` float32 matrix ``M`` with ``dst = src @ M`` (rules in the module docstring).

    Raises:
        ExportError: no destination name matches any source name.
    """
    src_names, dst_names = list(src_names), list(dst_names)
    by_key: dict[str, int] = {}
    by_shape: dict[str, list[int]] = {}
    for s, name in enumerate(src_names):
        by_key.setdefault(name_key(name), s)
        shape = arkit_name(name)
        if shape is not None:
            by_shape.setdefault(shape, []).append(s)
    matrix = np.zeros((len(src_names), len(dst_names)), dtype=np.float32)
    for d, name in enumerate(dst_names):
        if (s := by_key.get(name_key(name))) is not None:
            matrix[s, d] = 1.0
        elif (sources := by_shape.get(arkit_name(name) or "")):
            matrix[sources, d] = 1.0 / len(sources)
    if not matrix.any():
        raise ExportError(f"no coefficient name matches between the source ({_show(src_names)}) and the "
                          f"rig ({_show(dst_names)}): retargeting maps ARKit (or identical) names only")
    return matrix


def _show(names: list[str], limit: int = 6) -> str:
    more = f", ... {len(names)} names" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def retarget(coeffs, src_names: Sequence[str], rig) -> np.ndarray | torch.Tensor:
    """Map coefficients ``[..., T, S]`` in the layout ``src_names`` onto ``[..., T, rig.num_coeffs]``.

    Args:
        coeffs: numpy array or torch tensor (the result has the same type, dtype and device;
            torch keeps gradients).
        src_names: the S names of the coefficients' layout (e.g. a model's ``coeff_names``).
        rig: the destination :class:`thunder3d.rigs.Rig`, or its coefficient names.
    """
    dst_names = rig.coeff_names if hasattr(rig, "coeff_names") else list(rig)
    src_names = list(src_names)
    if coeffs.shape[-1] != len(src_names):
        raise ExportError(f"coefficients have {coeffs.shape[-1]} values per frame but {len(src_names)} "
                          "source names were given")
    matrix = retarget_matrix(src_names, dst_names)
    if isinstance(coeffs, torch.Tensor):
        return coeffs @ torch.from_numpy(matrix).to(device=coeffs.device, dtype=coeffs.dtype)
    coeffs = np.asarray(coeffs)
    dtype = coeffs.dtype if coeffs.dtype.kind == "f" else np.float32
    return (coeffs @ matrix.astype(dtype)).astype(dtype, copy=False)
