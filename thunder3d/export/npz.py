"""Coefficients (+ audio and rig) as one ``.npz``, with FLAME-style keys for FLAME layouts.

Keys (every array plain numpy, readable with ``np.load(path)`` and ``allow_pickle=False``):

==================  =============================================================================
``coeffs``          ``[T, C]`` or ``[N, T, C]`` float32, as given
``fps``             float64 scalar
``names``           ``[C]`` unicode, the coefficient layout
``audio``           ``[T * 16000 / fps]`` float32 16 kHz mono, trimmed/padded to the animation (if given)
``sample_rate``     int scalar, 16000 (with ``audio``)
``rig``             JSON string ``{"spec", "options"}``: ``load_rig(json.loads(...))`` rebuilds it (if given)
``units``           the rig's length unit (if a rig is given)
==================  =============================================================================

For a FLAME layout (``exp000..``, ``jaw_rx, jaw_ry, jaw_rz``, optional pose groups) the same values
are also stored under the argument names of the FLAME model in ``smplx``: ``expression``
``[.., T, E]``, ``jaw_pose`` ``[.., T, 3]`` and, when the layout has them, ``global_orient``,
``neck_pose``, ``leye_pose``, ``reye_pose`` (axis-angle radians, ``[.., T, 3]`` each).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from thunder3d.errors import ExportError
from thunder3d.constants import SAMPLE_RATE
from thunder3d.export.common import (check_coeffs, check_fps, check_names, ensure_folder,
                                     fit_duration, load_wav)
from thunder3d.utils.io import atomic_path

FLAME_POSE_KEYS = {"global": "global_orient", "neck": "neck_pose", "jaw": "jaw_pose",
                   "leye": "leye_pose", "reye": "reye_pose"}
"""FLAME joint prefix of the coefficient names -> the ``smplx.FLAME`` argument name."""

_EXPRESSION = re.compile(r"^exp(\d+)$")


def flame_arrays(coeffs: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """FLAME-style arrays of ``coeffs [..., T, C]`` (module docstring), or ``{}`` for other layouts."""
    index = {n: i for i, n in enumerate(names)}
    expression = sorted((int(m[1]), i) for i, n in enumerate(names) if (m := _EXPRESSION.match(n)))
    if not expression or not all(f"jaw_r{a}" in index for a in "xyz"):
        return {}
    out = {"expression": coeffs[..., [i for _, i in expression]]}
    for prefix, key in FLAME_POSE_KEYS.items():
        axes = [index.get(f"{prefix}_r{a}") for a in "xyz"]
        if None not in axes:
            out[key] = coeffs[..., axes]
    return out


def write_npz(path: str | os.PathLike, coeffs, *, fps: float, names: Sequence[str], rig=None,
              audio=None) -> Path:
    """Write an animation as ``.npz`` (keys in the module docstring), atomically.

    Args:
        path: the output file (written as given, no ``.npz`` appended).
        coeffs: ``[T, C]`` or ``[N, T, C]`` (numpy or torch).
        fps: frame rate of the coefficients.
        names: the C coefficient names.
        rig: optional :class:`thunder3d.rigs.Rig` whose config and units are recorded.
        audio: optional ``[N]`` 16 kHz float array or audio file; trimmed or padded with silence
            to ``T / fps`` seconds.
    Raises:
        ExportError: bad shapes or names, NaN/inf, unwritable folder (nothing is written then).
    """
    path = Path(path)
    values = check_coeffs(coeffs)
    names = check_names(names, values.shape[-1])
    fps = check_fps(fps)
    if rig is not None and tuple(rig.coeff_names) != names:
        raise ExportError(f"the names given are not the coefficient layout of rig {rig.spec!r}; retarget "
                          "the coefficients to the rig first (thunder3d.export.retarget)")
    wav = load_wav(audio)
    ensure_folder(path.parent)
    arrays: dict[str, np.ndarray] = {"coeffs": values, "fps": np.float64(fps), "names": np.asarray(names)}
    if wav is not None:
        arrays["audio"] = fit_duration(wav, values.shape[-2], fps).astype(np.float32)
        arrays["sample_rate"] = np.int64(SAMPLE_RATE)
    if rig is not None:
        arrays["rig"] = np.asarray(json.dumps(rig.config(), default=str))
        arrays["units"] = np.asarray(rig.units)
    arrays.update(flame_arrays(values, names))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path
