"""Live Link Face CSV (iPhone ARKit captures): reading, writing, and importing with a wav.

The CSV that the Live Link Face app records next to each take::

    Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,...,TongueOut[,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll]
    00:00:05:12.500,61,0.0213,...

- ``Timecode`` is ``HH:MM:SS:FF.fff``: hours, minutes, seconds, then the frame within the second
  *as a decimal number* at the timecode rate (the fraction is a sub-frame: ``27.500`` is half way
  between frames 27 and 28; ``;`` as drop-frame separator is accepted). The timecode rate is
  ``max(FF) + 1`` once the seconds roll over, else the smallest common rate above ``max(FF)``.
  Row times are ``HH*3600 + MM*60 + SS + FF.fff / rate``; the capture fps is
  ``1 / median(row interval)``, snapped to a common rate (24, 25, 30, 48, 50, 60, 72, 90, 100,
  120, 240) within 2 %. Rows that repeat a time are dropped; dropped frames (gaps) are filled by
  interpolation so that the returned frames are evenly spaced at the capture fps. A CSV without
  usable timecodes needs the ``fps`` argument (which, when given, overrides the timecodes: rows
  are then taken as evenly spaced).
- The 52 blendshape columns are matched to ARKit names with :func:`thunder3d.rigs.arkit.arkit_name`
  (any order, any capitalisation); all 52 must be present.
- The 9 rotation columns (61-column files) are Euler angles in radians. The head's
  (``HeadYaw`` about +y, ``HeadPitch`` about +x, ``HeadRoll`` about +z, applied yaw, then pitch,
  then roll: intrinsic ``YXZ``) become ``head_rotation`` as an axis-angle vector in the rig frame
  (+y up, +z towards the viewer, +x the subject's left); signs are taken as stored. The eye angles
  are not kept (gaze is in the ``eyeLook*`` blendshapes) and are written as zeros.

:func:`write_livelink_csv` writes the same layout (52 columns, or 61 with a head rotation), so
``read_livelink_csv(write_livelink_csv(...))`` gives the coefficients back exactly (values are
written with 9 significant digits, enough for float32) and the head rotation to float precision.

Importing (``--format livelink``): ``<name>.csv`` + ``<name>.wav`` (the audio of the take,
extracted from the ``.mov`` beforehand), resampled to 25 fps (blendshapes linearly, head rotation
by slerp), rig ``arkit`` with :data:`thunder3d.rigs.arkit.ARKIT_NAMES`. Option ``fps``: the capture
rate, for CSVs without timecodes (it overrides them when given).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from thunder3d.errors import DataError
from thunder3d.constants import FPS
from thunder3d.data.clip import Clip
from thunder3d.data.importers import (
    MAX_FPS,
    MIN_FPS,
    SourcePair,
    check_fps,
    folder_metadata,
    make_clip,
    pair_files,
    resample_linear,
    resample_rotations,
    uniform_times,
)
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES, arkit_name
from thunder3d.utils.io import atomic_path

MOTION_EXTENSIONS = (".csv",)
OPTIONS = ("fps",)

HEAD_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll")
EYE_COLUMNS = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch",
               "RightEyeRoll")
ROTATION_COLUMNS = HEAD_COLUMNS + EYE_COLUMNS
LIVELINK_NAMES = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
"""The blendshape column names as Live Link Face writes them (``EyeBlinkLeft``...)."""
COMMON_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 72.0, 90.0, 100.0, 120.0, 240.0)
EULER_ORDER = "YXZ"  # intrinsic yaw (y), pitch (x), roll (z)

_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;.](\d+(?:\.\d*)?)\s*$")


class LiveLinkTake(NamedTuple):
    """A Live Link Face CSV at its own frame rate (unpacks as ``coeffs, fps, head_rotation``)."""

    coeffs: np.ndarray  # [T, 52] float32, ARKIT_NAMES order, evenly spaced at fps
    fps: float
    head_rotation: np.ndarray | None  # [T, 3] float32 axis-angle radians, or None (52 columns)


# --------------------------------------------------------------------------- rotations
def euler_to_rotvec(ypr: np.ndarray) -> np.ndarray:
    """``[T, 3]`` (yaw, pitch, roll) radians -> ``[T, 3]`` axis-angle (see module docstring)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(EULER_ORDER, np.asarray(ypr, dtype=np.float64)).as_rotvec()


def rotvec_to_euler(rotvec: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_rotvec`: ``[T, 3]`` axis-angle -> (yaw, pitch, roll) radians."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64)).as_euler(EULER_ORDER)


# --------------------------------------------------------------------------- timecodes
def parse_timecode(text: str) -> tuple[int, float]:
    """``HH:MM:SS:FF.fff`` -> (whole seconds, frame number as a decimal); ValueError if malformed."""
    m = _TIMECODE.match(text)
    if m is None:
        raise ValueError(f"malformed timecode {text!r} (expected HH:MM:SS:FF.fff)")
    h, mi, s, ff = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s), float(ff)


def timecode_times(timecodes: list[str], name: str) -> np.ndarray:
    """Row times in seconds from the first row: ``[T]`` float64 (rate rule in the module docstring)."""
    try:
        parsed = [parse_timecode(tc) for tc in timecodes]
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from None
    seconds = np.array([p[0] for p in parsed], dtype=np.float64)
    frames = np.array([p[1] for p in parsed], dtype=np.float64)
    max_frame = int(np.floor(frames.max()))
    if np.unique(seconds).size > 1:
        rate = float(max_frame + 1)
    else:
        rate = next((r for r in COMMON_RATES if r > max_frame), float(max_frame + 1))
    times = seconds + frames / rate
    return times - times[0]


def _capture_fps(times: np.ndarray, name: str) -> float:
    steps = np.diff(times)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise DataError(f"{name}: cannot tell the frame rate from the timecodes (one distinct time); "
                        "pass fps")
    fps = 1.0 / float(np.median(steps))
    nearest = min(COMMON_RATES, key=lambda r: abs(r - fps))
    return nearest if abs(nearest - fps) <= 0.02 * nearest else fps


# --------------------------------------------------------------------------- read / write
def read_livelink_csv(path: str | os.PathLike, fps: float | None = None) -> LiveLinkTake:
    """Read a Live Link Face CSV (module docstring).

    Args:
        path: the CSV.
        fps: the capture rate; needed when the file has no timecodes, and when given it
            overrides them (rows taken as evenly spaced).

    Returns:
        ``(coeffs [T, 52] float32 in ARKIT_NAMES order, fps, head_rotation [T, 3] or None)``,
        evenly spaced at ``fps`` (dropped frames interpolated, repeated rows removed).

    Raises:
        DataError naming the file: missing/empty file, unknown or missing columns, ragged rows,
        non-numbers or NaN/inf, bad timecodes, an unsupported frame rate.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise DataError(f"Live Link CSV not found: {name}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{name}: empty CSV")
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        raise DataError(f"{name}: no frames after the header")

    shape_cols: dict[int, int] = {}  # csv column -> ARKit index
    rot_cols: dict[int, int] = {}  # csv column -> index in ROTATION_COLUMNS
    time_col, unknown = None, []
    rotation_lower = [c.lower() for c in ROTATION_COLUMNS]
    for col, title in enumerate(header):
        low = title.lower()
        if low == "timecode":
            time_col = col
        elif low == "blendshapecount":
            continue
        elif low in rotation_lower:
            rot_cols[col] = rotation_lower.index(low)
        elif (arkit := arkit_name(title)) is not None:
            if ARKIT_INDEX[arkit] in shape_cols.values():
                raise DataError(f"{name}: column {title!r} repeats the blendshape {arkit}")
            shape_cols[col] = ARKIT_INDEX[arkit]
        else:
            unknown.append(title)
    if unknown:
        raise DataError(f"{name}: unknown columns {unknown}; expected Timecode, BlendShapeCount, the "
                        f"52 ARKit blendshapes and optionally {', '.join(ROTATION_COLUMNS)}")
    missing = sorted(set(ARKIT_NAMES) - {ARKIT_NAMES[i] for i in shape_cols.values()})
    if missing:
        raise DataError(f"{name}: missing blendshape columns {missing}")

    values = np.zeros((len(rows) - 1, len(header)), dtype=np.float64)
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{name}:{r}: {len(row)} values for {len(header)} columns")
        for col in list(shape_cols) + list(rot_cols):
            try:
                values[r - 2, col] = float(row[col])
            except ValueError:
                raise DataError(f"{name}:{r}: column {header[col]!r} holds {row[col]!r}, "
                                "not a number") from None
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0]) + 2
        raise DataError(f"{name}:{row}: NaN or inf values")

    coeffs = np.zeros((len(values), len(ARKIT_NAMES)), dtype=np.float64)
    for col, idx in shape_cols.items():
        coeffs[:, idx] = values[:, col]
    head = None
    head_idx = [col for col, i in rot_cols.items() if i < 3]
    if head_idx:
        if len(head_idx) != 3:
            raise DataError(f"{name}: head rotation needs all of {', '.join(HEAD_COLUMNS)}")
        ypr = np.zeros((len(values), 3))
        for col in head_idx:
            ypr[:, rot_cols[col]] = values[:, col]
        head = euler_to_rotvec(ypr)

    if time_col is not None and fps is None:
        times = timecode_times([row[time_col] for row in rows[1:]], name)
        if np.any(np.diff(times) < 0):
            row = int(np.argmax(np.diff(times) < 0)) + 3
            raise DataError(f"{name}:{row}: timecode goes backwards")
        keep = np.concatenate([[True], np.diff(times) > 1e-9])  # drop rows repeating a time
        times, coeffs = times[keep], coeffs[keep]
        head = head[keep] if head is not None else None
        rate = check_fps(_capture_fps(times, name) if len(times) > 1 else FPS, path.stem, name)
        uniform = uniform_times(int(round(times[-1] * rate)) + 1, rate)
        if len(uniform) != len(times) or np.abs(uniform - times).max() > 0.25 / rate:
            coeffs = resample_linear(coeffs, times, uniform)  # fill dropped frames
            head = resample_rotations(head, times, uniform) if head is not None else None
    elif fps is not None:
        rate = check_fps(fps, path.stem, "the fps argument")
    else:
        raise DataError(f"{name}: no Timecode column; pass the capture fps")
    return LiveLinkTake(coeffs.astype(np.float32),
                        float(rate),
                        None if head is None else np.asarray(head, dtype=np.float32))


def format_timecode(frame: int, fps: int) -> str:
    """Timecode of frame ``frame`` at an integer ``fps``: ``HH:MM:SS:FF.000``."""
    seconds, ff = divmod(frame, fps)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.000"


def write_livelink_csv(path: str | os.PathLike, coeffs: np.ndarray, fps: float = FPS,
                       head_rotation: np.ndarray | None = None) -> Path:
    """Write ``coeffs`` ``[T, 52]`` (ARKIT_NAMES order) as a Live Link Face CSV, atomically.

    Args:
        fps: frame rate of the rows; a whole number (timecodes count whole frames).
        head_rotation: ``[T, 3]`` axis-angle radians; when given the file has the 61-column layout
            (head yaw/pitch/roll, eye angles zero), else 52 blendshape columns.
    """
    coeffs = np.asarray(coeffs, dtype=np.float32)
    if coeffs.ndim != 2 or coeffs.shape[1] != len(ARKIT_NAMES) or coeffs.shape[0] == 0:
        raise DataError(f"Live Link CSV needs [T, 52] coefficients, got {coeffs.shape}")
    if not (float(fps).is_integer() and MIN_FPS <= fps <= MAX_FPS):
        raise DataError(f"Live Link CSV fps must be a whole number of frames per second in "
                        f"[{MIN_FPS:g}, {MAX_FPS:g}], got {fps!r}")
    columns = [coeffs]
    if head_rotation is not None:
        head_rotation = np.asarray(head_rotation, dtype=np.float64)
        if head_rotation.shape != (coeffs.shape[0], 3):
            raise DataError(f"head_rotation must be [T, 3] = [{coeffs.shape[0]}, 3], "
                            f"got {head_rotation.shape}")
        columns += [rotvec_to_euler(head_rotation), np.zeros((coeffs.shape[0], len(EYE_COLUMNS)))]
    table = np.concatenate([c.astype(np.float64) for c in columns], axis=1)
    if not np.isfinite(table).all():
        raise DataError("Live Link CSV: values contain NaN or inf")
    names = list(LIVELINK_NAMES) + (list(ROTATION_COLUMNS) if head_rotation is not None else [])
    lines = [",".join(["Timecode", "BlendShapeCount", *names])]
    for i, row in enumerate(table):
        cells = [format(float(np.float32(v)), ".9g") for v in row]
        lines.append(",".join([format_timecode(i, int(fps)), str(len(names)), *cells]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


# --------------------------------------------------------------------------- import
def find_pairs(src: Path) -> tuple[list[SourcePair], list[tuple[str, str]]]:
    """``<name>.wav`` + ``<name>.csv`` under ``src``."""
    return pair_files(src, MOTION_EXTENSIONS)


def read_pair(pair: SourcePair, *, fps: float | None = None) -> Clip:
    """Read one Live Link take and resample it to 25 fps. Raises DataError naming the clip."""
    try:
        take = read_livelink_csv(pair.motion, fps=fps)
    except DataError as exc:
        raise DataError(f"clip {pair.id!r}: {exc}") from exc
    num_src = take.coeffs.shape[0]
    return make_clip(
        pair,
        times=uniform_times(num_src, take.fps),
        duration=num_src / take.fps,
        linear=take.coeffs,
        head_rotation=take.head_rotation,
        coeff_names=ARKIT_NAMES,
        rig="arkit",
        meta={"source_motion": pair.motion.name, "source_audio": pair.wav.name,
              "source_fps": take.fps},
        **folder_metadata(pair),
    )


__all__ = [
    "LIVELINK_NAMES", "LiveLinkTake", "ROTATION_COLUMNS", "euler_to_rotvec", "read_livelink_csv",
    "rotvec_to_euler", "write_livelink_csv",
]
