"""ARKit coefficients as a Live Link Face CSV (the layout of :mod:`thunder3d.data.import_livelink`).

The 52 blendshape columns, ``Timecode`` ``HH:MM:SS:FF.000`` at the (whole-number) fps, values with
9 significant digits, so :func:`~thunder3d.data.import_livelink.read_livelink_csv` gives back the
float32 coefficients exactly. Coefficient names are matched to ARKit in any spelling
(:func:`thunder3d.export.retarget.retarget`); ARKit shapes the layout lacks are written as zeros
(with a warning), and a layout with fewer than 10 ARKit names is refused. Live Link Face values
lie in [0, 1]: values outside are clamped in the CSV, with a warning saying how many (the npz
export, :mod:`thunder3d.export.npz`, keeps the raw values).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from thunder3d.errors import ExportError
from thunder3d.export.common import check_coeffs, check_fps, check_names, ensure_folder
from thunder3d.export.retarget import retarget_matrix
from thunder3d.rigs.arkit import ARKIT_NAMES, arkit_name
from thunder3d.rigs.blendshapes import MIN_ARKIT_MATCHES


def check_arkit_names(names: Sequence[str]) -> np.ndarray:
    """The ``[C, 52]`` matrix taking a layout to :data:`ARKIT_NAMES` order; ExportError if the
    layout is not an ARKit one (fewer than 10 ARKit names)."""
    shapes = {arkit_name(n) for n in names} - {None}
    if len(shapes) < MIN_ARKIT_MATCHES:
        raise ExportError(f"a Live Link (ARKit) CSV needs ARKit blendshape coefficients; only {len(shapes)} "
                          f"of the {len(names)} names ({', '.join(list(names)[:4])}, ...) are ARKit names")
    return retarget_matrix(names, ARKIT_NAMES)


def check_csv_fps(fps) -> int:
    """Live Link timecodes count whole frames: the fps must be a whole number."""
    fps = check_fps(fps)
    if not fps.is_integer():
        raise ExportError(f"a Live Link CSV needs a whole-number fps (its timecodes count frames), got {fps:g}")
    return int(fps)


def write_arkit_csv(path: str | os.PathLike, coeffs, *, names: Sequence[str], fps: float) -> Path:
    """Write ``coeffs [T, C]`` (ARKit-named layout ``names``) as a Live Link Face CSV, atomically.

    Values outside [0, 1] are clamped to it, with a warning saying how many (:func:`clamp_livelink`).

    Raises:
        ExportError: not an ARKit layout, non-integer fps, bad or non-finite coefficients,
            unwritable folder (nothing is written then).
    """
    path = Path(path)
    values = check_coeffs(coeffs, ndims=(2,))
    names = check_names(names, values.shape[-1])
    matrix = check_arkit_names(names)
    fps = check_csv_fps(fps)
    absent = [n for n, column in zip(ARKIT_NAMES, matrix.T) if not column.any()]
    if absent:
        warnings.warn(f"{path.name}: the layout lacks {len(absent)} ARKit shapes, written as zeros: {absent}",
                      stacklevel=2)
    arkit = clamp_livelink(values @ matrix, path.name)
    ensure_folder(path.parent)
    from thunder3d.data.import_livelink import write_livelink_csv  # here: thunder3d.data is slow to import

    return write_livelink_csv(path, arkit, fps=fps)


CLAMP_QUIET = 0.05  # excursions up to this far outside [0, 1] are clamped without a warning


def clamp_livelink(values: np.ndarray, name: str = "Live Link CSV") -> np.ndarray:
    """``values`` clamped to the Live Link Face range [0, 1], warning how many were outside when some lie
    more than :data:`CLAMP_QUIET` beyond it (``name`` starts the warning). Values inside are returned bit
    for bit."""
    outside = int(np.count_nonzero((values < 0.0) | (values > 1.0)))
    if not outside:
        return values
    if float(values.min()) >= -CLAMP_QUIET and float(values.max()) <= 1.0 + CLAMP_QUIET:
        return np.clip(values, 0.0, 1.0)  # small excursions of a model's output: clamped without a word
    warnings.warn(f"{name}: clamped {outside} of {values.size} values to the Live Link range [0, 1] "
                  f"(they ranged {float(values.min()):.4g} .. {float(values.max()):.4g}; the npz export "
                  "keeps the raw values)", stacklevel=3)
    return np.clip(values, 0.0, 1.0)
