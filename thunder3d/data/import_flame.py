"""Import FLAME-parameter clips: ``<name>.wav`` + ``<name>.npz`` or ``<name>.pkl``, any frame rate.

Output clips have rig ``flame`` and the coefficient layout of :func:`thunder3d.rigs.flame.coeff_layout`:
``exp000 .. exp{E-1}``, ``jaw_rx, jaw_ry, jaw_rz``, then ``neck_r*`` and ``leye_r* reye_r*`` when
the file has neck or eye pose. The global (head) rotation becomes ``head_rotation``; identity
parameters become ``shape`` (averaged over frames when stored per frame). Expression is
resampled to 25 fps linearly, every rotation (axis-angle, radians) by slerp.

Files are read safely: ``.npz`` with ``allow_pickle=False``, ``.pkl`` only through the restricted
unpickler of :mod:`thunder3d.utils.safe_pickle` (plain dicts, lists and numpy arrays; a pickle
that names anything else, torch tensors included, is refused).

**Accepted layouts.** A dict of arrays; a dict whose values are dicts (e.g. ``{"flame": {...}}``:
nested keys are used by their own name); or a list with one dict per frame (EMOCA/DECA-style
``[{"expcode": [1, 50], "posecode": [1, 6], ...}, ...]``), stacked over frames. Per-frame arrays
are ``[T, D]``; ``[T, 1, D]`` and a leading batch of one ``[1, T, D]`` are accepted.

**Accepted key names** (case-insensitive; two names for one field in a file is an error):

================  ================================================================================
expression        ``exp``, ``expression``, ``expr``, ``expression_params``, ``exp_params``,
                  ``expcode``, ``expressions``: ``[T, E]`` (E is typically 50 or 100)
jaw               ``jaw``, ``jaw_pose``, ``jaw_params``: ``[T, 3]`` axis-angle
full pose         ``pose``, ``poses``, ``full_pose``, ``posecode``, ``pose_params``:
                  ``[T, 15]`` FLAME full pose (global 0:3, neck 3:6, jaw 6:9, left eye 9:12,
                  right eye 12:15, as in VOCASET-style fits) or ``[T, 6]`` DECA/EMOCA/EMOTE
                  pose code (global 0:3, jaw 3:6). Separate keys below take precedence.
global rotation   ``global_pose``, ``global_orient``, ``global_rot``, ``global_rotation``,
                  ``root_orient``, ``rot``: ``[T, 3]``
neck              ``neck_pose``, ``neck``: ``[T, 3]``
eyes              ``eye_pose``, ``eyes_pose``, ``eye_poses``: ``[T, 6]`` (left, right), or
                  ``leye_pose`` / ``left_eye_pose`` and ``reye_pose`` / ``right_eye_pose``: ``[T, 3]``
identity          ``shape``, ``betas``, ``shape_params``, ``shapecode``: ``[S]`` or ``[T, S]``
frame rate        ``fps``, ``frame_rate``, ``framerate``, ``mocap_framerate``,
                  ``mocap_frame_rate`` (else the ``fps`` option, default 25)
labels            ``emotion`` / ``emotion_label``; ``intensity`` / ``level`` /
                  ``emotion_intensity``; ``speaker`` / ``subject`` / ``speaker_id`` /
                  ``subject_id`` / ``style``; ``text`` / ``sentence`` / ``transcript``; ``split``
ignored           ``trans``, ``transl``, ``translation``, ``cam``, ``camera``, ``tex``,
                  ``texcode``, ``texture``, ``light``, ``lightcode``, ``detail``, ``detailcode``,
                  ``static_offset``, ``gender``, ``frame_ids``, ``frame_id``, ``num_frames``,
                  ``n_frames``, ``file``, ``filename``, ``name``, and the ``ignore_keys`` option
================  ================================================================================

Any other key is an error naming the clip and the key (pass it in ``ignore_keys`` to drop it).
Expression and a jaw pose (explicit or in the full pose) are required.

Options: ``fps`` (frame rate of files that store none, default 25), ``num_expression`` (keep the
first N expression coefficients, zero-padding files with fewer, so a corpus has one layout),
``pose_groups`` (which extra pose groups to keep: a subset of ``("neck", "eyes")``; default: those
the file has), ``ignore_keys`` (more keys to drop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thunder3d.constants import FPS
from thunder3d.data.clip import Clip, normalize_emotion
from thunder3d.data.importers import (
    SPLIT_FOLDERS,
    SourcePair,
    check_finite,
    check_fps,
    folder_metadata,
    make_clip,
    pair_files,
    uniform_times,
)
from thunder3d.errors import DataError, ThunderError
from thunder3d.rigs.flame import coeff_layout
from thunder3d.utils.safe_pickle import safe_load_pickle, to_numpy

MOTION_EXTENSIONS = (".npz", ".pkl")
OPTIONS = ("fps", "num_expression", "pose_groups", "ignore_keys")
EXTRA_POSE_GROUPS = ("neck", "eyes")

KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "expression": ("exp", "expression", "expr", "expression_params", "exp_params", "expcode",
                   "expressions"),
    "jaw": ("jaw", "jaw_pose", "jaw_params"),
    "pose": ("pose", "poses", "full_pose", "posecode", "pose_params"),
    "global": ("global_pose", "global_orient", "global_rot", "global_rotation", "root_orient", "rot"),
    "neck": ("neck_pose", "neck"),
    "eyes": ("eye_pose", "eyes_pose", "eye_poses"),
    "leye": ("leye_pose", "left_eye_pose"),
    "reye": ("reye_pose", "right_eye_pose"),
    "shape": ("shape", "betas", "shape_params", "shapecode"),
    "fps": ("fps", "frame_rate", "framerate", "mocap_framerate", "mocap_frame_rate"),
    "emotion": ("emotion", "emotion_label"),
    "intensity": ("intensity", "level", "emotion_intensity"),
    "style": ("speaker", "subject", "speaker_id", "subject_id", "style"),
    "text": ("text", "sentence", "transcript"),
    "split": ("split",),
}
"""Field -> accepted key names (see the module docstring)."""

IGNORED_KEYS = ("trans", "transl", "translation", "cam", "camera", "tex", "texcode", "texture",
                "light", "lightcode", "detail", "detailcode", "static_offset", "gender", "frame_ids",
                "frame_id", "num_frames", "n_frames", "file", "filename", "name")

FULL_POSE_LAYOUTS: dict[int, dict[str, slice]] = {
    15: {"global": slice(0, 3), "neck": slice(3, 6), "jaw": slice(6, 9), "eyes": slice(9, 15)},
    6: {"global": slice(0, 3), "jaw": slice(3, 6)},
}
"""Width of a ``pose`` array -> where each group sits in it."""

_FIELD_OF = {alias: fld for fld, aliases in KEY_ALIASES.items() for alias in aliases}
_PER_FRAME = ("expression", "jaw", "pose", "global", "neck", "eyes", "leye", "reye")


def find_pairs(src: Path) -> tuple[list[SourcePair], list[tuple[str, str]]]:
    """``<name>.wav`` + ``<name>.npz`` (preferred) or ``<name>.pkl`` under ``src``."""
    return pair_files(src, MOTION_EXTENSIONS)


# --------------------------------------------------------------------------- reading files
def load_motion_file(path: Path, clip_id: str) -> dict[str, Any]:
    """The file's content as a flat ``{lower-case key: value}`` dict (nested dicts and per-frame
    lists of dicts flattened, see the module docstring)."""
    try:
        if path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as npz:
                    raw: Any = {key: npz[key] for key in npz.files}
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise DataError(f"clip {clip_id!r} ({path}): the npz holds Python objects, "
                                    "which are not loaded; store plain numeric arrays") from exc
                raise
        else:
            raw = to_numpy(safe_load_pickle(path))
    except DataError:
        raise
    except ThunderError as exc:  # unsafe or corrupt pickle
        raise DataError(f"clip {clip_id!r} ({path}): {exc}") from exc
    except Exception as exc:  # a truncated or foreign npz
        raise DataError(f"clip {clip_id!r} ({path}): cannot read ({type(exc).__name__}: {exc})") from exc
    return _flatten(raw, clip_id, path)


def _flatten(raw: Any, clip_id: str, path: Path) -> dict[str, Any]:
    if isinstance(raw, (list, tuple)) and raw and all(isinstance(f, dict) for f in raw):
        frames = [_flatten(f, clip_id, path) for f in raw]  # one dict per frame: stack each key
        keys = list(frames[0])
        if any(list(f) != keys for f in frames):
            raise DataError(f"clip {clip_id!r} ({path}): per-frame dicts have different keys")
        return {k: np.stack([np.asarray(f[k]).reshape(-1) for f in frames]) for k in keys}
    if not isinstance(raw, dict):
        raise DataError(f"clip {clip_id!r} ({path}): expected a dict of arrays (or a list of per-frame "
                        f"dicts), got {type(raw).__name__}")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        items = _flatten(value, clip_id, path).items() if isinstance(value, dict) \
            else [(str(key).lower(), value)]
        for name, item in items:
            if name in flat:
                raise DataError(f"clip {clip_id!r} ({path}): key {name!r} appears twice (nested dicts)")
            flat[name] = item
    return flat


def _per_frame(value: Any, key: str, clip_id: str, path: Path) -> np.ndarray:
    """``[T, D]`` float64 from ``[T, D]``, ``[T, 1, D]`` or ``[1, T, D]``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"clip {clip_id!r} ({path}): {key} is not numeric ({exc})") from exc
    if arr.ndim >= 3 and arr.shape[0] == 1:
        arr = arr[0]  # leading batch of one
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise DataError(f"clip {clip_id!r} ({path}): {key} must be [T, D] per-frame values, "
                        f"got shape {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[1] == 0:
        raise DataError(f"clip {clip_id!r} ({path}): {key} is empty (shape {arr.shape})")
    check_finite(key, arr, clip_id, str(path))
    return arr


def _text(value: Any) -> str | None:
    if value is None:
        return None
    value = np.asarray(value)
    if value.size != 1:
        return None
    item = value.reshape(-1)[0]
    return item.decode() if isinstance(item, bytes) else str(item)


def gather_fields(data: dict[str, Any], clip_id: str, path: Path,
                  ignore_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Map a flat file dict onto fields (:data:`KEY_ALIASES`); unknown or duplicate keys raise."""
    ignored = set(IGNORED_KEYS) | {k.lower() for k in ignore_keys}
    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    unknown = []
    for key, value in data.items():
        if key in ignored:
            continue
        fld = _FIELD_OF.get(key)
        if fld is None:
            unknown.append(key)
            continue
        if fld in fields:
            raise DataError(f"clip {clip_id!r} ({path}): both {sources[fld]!r} and {key!r} give the "
                            f"{fld}; keep one")
        fields[fld], sources[fld] = value, key
    if unknown:
        raise DataError(f"clip {clip_id!r} ({path}): unknown keys {sorted(unknown)}; accepted: "
                        f"{sorted(_FIELD_OF)}, ignored: {sorted(ignored)} (add to ignore_keys to drop)")
    return fields


def read_pair(pair: SourcePair, *, fps: float = FPS, num_expression: int | None = None,
              pose_groups: Sequence[str] | None = None, ignore_keys: Sequence[str] = ()) -> Clip:
    """Read one FLAME clip and resample it to 25 fps (module docstring). Raises DataError."""
    cid, path = pair.id, pair.motion
    fields = gather_fields(load_motion_file(path, cid), cid, path, ignore_keys)
    if pose_groups is not None:
        bad = [g for g in pose_groups if g not in EXTRA_POSE_GROUPS]
        if bad:
            raise DataError(f"unknown pose group(s) {bad}; valid: {', '.join(EXTRA_POSE_GROUPS)}")

    arrays = {f: _per_frame(fields[f], f, cid, path) for f in _PER_FRAME if f in fields}
    if "expression" not in arrays:
        raise DataError(f"clip {cid!r} ({path}): no expression parameters; accepted keys: "
                        f"{', '.join(KEY_ALIASES['expression'])}")
    lengths = {f: a.shape[0] for f, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"clip {cid!r} ({path}): per-frame arrays differ in length: {lengths}")

    # split the full pose into groups; separate keys win
    if "pose" in arrays:
        pose = arrays.pop("pose")
        layout = FULL_POSE_LAYOUTS.get(pose.shape[1])
        if layout is None:
            raise DataError(f"clip {cid!r} ({path}): pose has {pose.shape[1]} values per frame; "
                            f"expected {sorted(FULL_POSE_LAYOUTS)} (see FULL_POSE_LAYOUTS)")
        for group, cols in layout.items():
            arrays.setdefault(group, pose[:, cols])
    if "leye" in arrays or "reye" in arrays:
        if "eyes" in arrays or not ("leye" in arrays and "reye" in arrays):
            raise DataError(f"clip {cid!r} ({path}): give both left and right eye pose, or eye_pose")
        arrays["eyes"] = np.concatenate([arrays.pop("leye"), arrays.pop("reye")], axis=1)
    if "jaw" not in arrays:
        raise DataError(f"clip {cid!r} ({path}): no jaw pose; accepted keys: "
                        f"{', '.join(KEY_ALIASES['jaw'])} or a full pose")
    for group, width in (("jaw", 3), ("global", 3), ("neck", 3), ("eyes", 6)):
        if group in arrays and arrays[group].shape[1] != width:
            raise DataError(f"clip {cid!r} ({path}): {group} pose must have {width} values per "
                            f"frame, got {arrays[group].shape[1]}")

    expression = arrays["expression"]
    if num_expression is not None:
        n = int(num_expression)
        if n < 1:
            raise DataError(f"num_expression must be >= 1, got {num_expression}")
        expression = np.pad(expression[:, :n], ((0, 0), (0, max(0, n - expression.shape[1]))))
    groups = [g for g in EXTRA_POSE_GROUPS
              if g in arrays and (pose_groups is None or g in pose_groups)]
    names, _ = coeff_layout(expression.shape[1], ["jaw", *groups])
    rotations = [arrays["jaw"]]
    for group in groups:  # eyes: left then right, 3 values each
        rotations += [arrays[group][:, i:i + 3] for i in range(0, arrays[group].shape[1], 3)]

    source_fps = check_fps(fields["fps"], cid, str(path)) if "fps" in fields else \
        check_fps(fps, cid, "the fps option")
    num_src = expression.shape[0]
    labels = folder_metadata(pair)
    for key in ("style", "text", "split"):
        value = _text(fields.get(key))
        if value is not None:
            labels[key] = value
    if fields.get("emotion") is not None:
        labels["emotion"] = _text(fields["emotion"])
    if fields.get("intensity") is not None:
        raw = (_text(fields["intensity"]) or "").strip().lower().removeprefix("level_")
        try:
            level = float(raw)
        except ValueError:
            level = -1.0
        if not (level.is_integer() and level >= 0):
            raise DataError(f"clip {cid!r} ({path}): intensity must be a whole number or 'level_N', "
                            f"got {fields['intensity']!r}")
        labels["intensity"] = int(level)
    if labels.get("emotion") is not None:
        labels["emotion"] = normalize_emotion(labels["emotion"], name=f"clip {cid!r} ({path})")
    if labels.get("split") is not None:
        split = SPLIT_FOLDERS.get(str(labels["split"]).lower())
        if split is None:
            raise DataError(f"clip {cid!r} ({path}): unknown split {labels['split']!r}; valid: "
                            f"{', '.join(sorted(SPLIT_FOLDERS))}")
        labels["split"] = split

    shape = None
    if "shape" in fields:
        shape = np.asarray(fields["shape"], dtype=np.float64)
        shape = shape.reshape(-1, shape.shape[-1]).mean(axis=0) if shape.ndim >= 2 else shape.reshape(-1)
        check_finite("shape", shape[None], cid, str(path))

    return make_clip(
        pair,
        times=uniform_times(num_src, source_fps),
        duration=num_src / source_fps,
        linear=expression,
        rotations=rotations,
        head_rotation=arrays.get("global"),
        coeff_names=names,
        rig="flame",
        shape=shape,
        meta={"source_motion": pair.motion.name, "source_audio": pair.wav.name,
              "source_fps": source_fps},
        **labels,
    )
