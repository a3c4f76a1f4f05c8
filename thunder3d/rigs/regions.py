"""Vertex regions and lip landmarks for arbitrary meshes: from a sidecar JSON or from ARKit shapes.

Every :class:`~thunder3d.rigs.base.Rig` names the regions ``lips``, ``mouth``, ``face``,
``upper_face``, ``eyes`` and four inner-lip landmarks. Rigs with a fixed topology (built-in, ICT,
FLAME) list them by hand; for a user's own mesh they come from

1. a sidecar JSON (:func:`read_regions_json`), whose entries always win, or
2. :func:`derive_regions`, which reads them off what the ARKit blendshapes move.

Sidecar format (indices are 0-based vertex indices of the neutral mesh; extra region names are
kept as additional regions; either key may be absent or partial)::

    {"regions": {"lips": [...], "mouth": [...], "face": [...], "upper_face": [...], "eyes": [...]},
     "lip_landmarks": {"upper_inner": 12, "lower_inner": 40, "left_corner": 7, "right_corner": 3}}

Heuristics work on per-vertex *activity*: a shape's displacement length divided by its largest
displacement, so 1 marks the vertices a shape moves most and 0 those it leaves alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from thunder3d.errors import RigError
from thunder3d.rigs.base import LIP_LANDMARKS, REQUIRED_REGIONS

SIDECAR_HELP = (
    'a sidecar JSON {"regions": {"lips": [...], "mouth": [...], "face": [...], '
    '"upper_face": [...], "eyes": [...]}, "lip_landmarks": {"upper_inner": i, "lower_inner": i, '
    '"left_corner": i, "right_corner": i}} with 0-based vertex indices (regions.json beside the '
    "shapes, or regions=PATH)"
)

LIP_SHAPES = ("mouthPucker", "mouthFunnel", "mouthRollUpper", "mouthRollLower")
"""Shapes that move the lips (vermilion and inner lip surface) most and the skin around less."""

CORNER_SHAPES = ("mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight")
"""Shapes that pull the mouth corners."""

LIPS_MIN_ACTIVITY = 0.6
MOUTH_MIN_ACTIVITY = 0.3
EYES_MIN_ACTIVITY = 0.3
FACE_MIN_ACTIVITY = 0.01
UPPER_FACE_MAX_JAW = 0.05


# --------------------------------------------------------------------------- sidecar JSON
def read_regions_json(
    path: str | os.PathLike, num_vertices: int
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Read a sidecar file (format in the module docstring).

    Returns:
        ``(regions, lip_landmarks)``: name -> int64 indices ``[R]``, name -> vertex index. Either
        may be partial; :func:`merge_regions` fills the rest.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RigError(f"regions file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise RigError(f"cannot read regions file {path}: {exc}") from None
    return parse_regions(data, num_vertices, source=str(path))


def parse_regions(
    data: Mapping, num_vertices: int, source: str = "regions"
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Validate a sidecar mapping (see module docstring) against a mesh of ``num_vertices``."""
    if not isinstance(data, Mapping) or not set(data) <= {"regions", "lip_landmarks"}:
        raise RigError(f"{source}: expected {SIDECAR_HELP}")
    for key in ("regions", "lip_landmarks"):
        if not isinstance(data.get(key, {}), Mapping):
            raise RigError(f"{source}: {key!r} must map names to vertex indices; expected {SIDECAR_HELP}")
    regions: dict[str, np.ndarray] = {}
    for name, idx in data.get("regions", {}).items():
        arr = _indices(idx, num_vertices, f"{source}: region {name!r}")
        if arr.size == 0:
            raise RigError(f"{source}: region {name!r} is empty")
        regions[str(name)] = np.unique(arr)
    landmarks: dict[str, int] = {}
    for name, idx in data.get("lip_landmarks", {}).items():
        if name not in LIP_LANDMARKS:
            raise RigError(f"{source}: unknown lip landmark {name!r}; valid: {list(LIP_LANDMARKS)}")
        landmarks[name] = int(_indices([idx], num_vertices, f"{source}: lip landmark {name!r}")[0])
    return regions, landmarks


def _indices(values, num_vertices: int, what: str) -> np.ndarray:
    """Integer vertex indices ``[R]`` in ``0..num_vertices-1``, or a RigError naming ``what``."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise RigError(f"{what} must be a list of integer vertex indices")
    if arr.size and (arr.min() < 0 or arr.max() >= num_vertices):
        raise RigError(f"{what} has indices outside 0..{num_vertices - 1}")
    return arr.astype(np.int64)


def missing_entries(regions: Mapping, landmarks: Mapping) -> list[str]:
    """Required region and landmark names absent from ``regions`` / ``landmarks``."""
    return ([r for r in REQUIRED_REGIONS if r not in regions]
            + [k for k in LIP_LANDMARKS if k not in landmarks])


# --------------------------------------------------------------------------- activity and masks
def activity(shapes: Mapping[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """Per-vertex activity ``[V]`` in 0..1: the largest normalised displacement over ``names``.

    Args:
        shapes: ARKit name -> deltas ``[V, 3]``; names absent here are skipped.
        names: the shapes to combine.
    """
    num_vertices = len(next(iter(shapes.values())))
    out = np.zeros(num_vertices)
    for name in names:
        if name in shapes:
            length = np.linalg.norm(shapes[name], axis=1)  # [V]
            if length.max() > 0:
                out = np.maximum(out, length / length.max())
    return out


def dilate(mask: np.ndarray, faces: np.ndarray, rings: int = 1) -> np.ndarray:
    """Grow a vertex mask ``[V]`` by ``rings`` triangle neighbourhoods (``faces [F, 3]``)."""
    mask = mask.copy()
    for _ in range(rings):
        touched = mask[faces].any(axis=1)  # [F]: triangles with a vertex in the mask
        mask[faces[touched].ravel()] = True
    return mask


def lips_mask(shapes: Mapping[str, np.ndarray]) -> np.ndarray:
    """Lips ``[V]`` bool: vertices that pucker/funnel/roll shapes move at least 60 % of their most."""
    return activity(shapes, LIP_SHAPES) >= LIPS_MIN_ACTIVITY


def mouth_mask(shapes: Mapping[str, np.ndarray], lips: np.ndarray) -> np.ndarray:
    """Mouth ``[V]`` bool: the lips plus skin that any ``mouth*`` shape moves noticeably.

    ``jawOpen`` is left out on purpose: it moves the whole chin, teeth and tongue.
    """
    mouth_shapes = tuple(n for n in shapes if n.startswith("mouth"))
    return lips | (activity(shapes, mouth_shapes) >= MOUTH_MIN_ACTIVITY)


def eyes_mask(shapes: Mapping[str, np.ndarray]) -> np.ndarray:
    """Eyes ``[V]`` bool: the eyelids, i.e. what ``eyeBlink*`` moves strongly."""
    return activity(shapes, ("eyeBlinkLeft", "eyeBlinkRight")) >= EYES_MIN_ACTIVITY


def face_mask(shapes: Mapping[str, np.ndarray], faces: np.ndarray) -> np.ndarray:
    """Face ``[V]`` bool: vertices any shape moves (1 % of its most), grown by one triangle ring."""
    return dilate(activity(shapes, tuple(shapes)) >= FACE_MIN_ACTIVITY, faces)


def upper_face_mask(neutral: np.ndarray, shapes: Mapping[str, np.ndarray], face: np.ndarray) -> np.ndarray:
    """Upper face ``[V]`` bool: face vertices above the nose tip that ``jawOpen`` leaves alone.

    The nose tip is the front-most (largest z) face vertex.
    """
    if not face.any():
        return face
    nose_tip_y = neutral[face][np.argmax(neutral[face, 2]), 1]
    still = activity(shapes, ("jawOpen",)) < UPPER_FACE_MAX_JAW
    return face & still & (neutral[:, 1] > nose_tip_y)


# --------------------------------------------------------------------------- lip landmarks
def inner_lip_pair(neutral: np.ndarray, jaw: np.ndarray, lips: np.ndarray) -> tuple[int, int]:
    """The inner-lip midpoints ``(upper, lower)`` as vertex indices.

    Among lip vertices near the mid-sagittal plane (within 10 % of the lip width of the lips'
    centre x), take the pairs whose distance grows under ``jawOpen`` by at least half the most any
    pair grows; of those, the pair closest together at rest (plus its distance from the plane).
    The vertex ``jawOpen`` moves less is the upper one.

    Args:
        neutral: ``[V, 3]`` rest vertices.
        jaw: ``[V, 3]`` ``jawOpen`` deltas.
        lips: ``[V]`` bool lip mask.
    """
    idx = np.flatnonzero(lips)
    x = neutral[idx, 0]
    centre, width = (x.max() + x.min()) / 2, x.max() - x.min()
    idx = idx[np.abs(x - centre) <= 0.1 * width]
    rest = np.linalg.norm(neutral[idx, None] - neutral[None, idx], axis=-1)  # [N, N]
    posed = neutral + jaw
    grown = np.linalg.norm(posed[idx, None] - posed[None, idx], axis=-1) - rest  # [N, N]
    if idx.size < 2 or grown.max() <= 0:
        raise RigError("cannot find the inner lip midpoints: jawOpen does not part the lips "
                       f"near the middle of the mouth; give lip_landmarks in {SIDECAR_HELP}")
    off_plane = np.abs(neutral[idx, 0] - centre)
    cost = rest + off_plane[:, None] + off_plane[None, :]
    cost[grown < 0.5 * grown.max()] = np.inf
    i, j = np.unravel_index(np.argmin(cost), cost.shape)
    a, b = int(idx[i]), int(idx[j])
    moves = np.linalg.norm(jaw, axis=1)
    return (a, b) if moves[a] < moves[b] else (b, a)


def mouth_corners(neutral: np.ndarray, shapes: Mapping[str, np.ndarray], lips: np.ndarray,
                  upper: int, lower: int) -> tuple[int, int]:
    """The mouth corners ``(left, right)`` (subject's left = +x) as vertex indices.

    Candidates are lip vertices at the height of the mouth slit (within a quarter of the lips'
    height of the inner midpoints) in the outer 15 % of their x range on each side; of those, the
    one the smile/stretch shapes move most (the most lateral one if the set has none of them).
    """
    idx = np.flatnonzero(lips)
    y = neutral[idx, 1]
    slit_y = (neutral[upper, 1] + neutral[lower, 1]) / 2
    idx = idx[np.abs(y - slit_y) <= 0.25 * (y.max() - y.min())]
    x = neutral[idx, 0]
    pull = activity(shapes, CORNER_SHAPES)[idx] + 1e-6 * np.abs(x - x.mean())  # ties: most lateral
    margin = 0.15 * (x.max() - x.min())
    left, right = x >= x.max() - margin, x <= x.min() + margin
    return int(idx[left][np.argmax(pull[left])]), int(idx[right][np.argmax(pull[right])])


def trim_lips(neutral: np.ndarray, lips: np.ndarray, left: int, right: int) -> np.ndarray:
    """Drop lip-mask vertices ``[V]`` more than 10 % of the mouth width beyond the corners."""
    x = neutral[:, 0]
    margin = 0.1 * (x[left] - x[right])
    return lips & (x <= x[left] + margin) & (x >= x[right] - margin)


# --------------------------------------------------------------------------- all together
AUTO_REQUIRES = (("jawOpen",), ("eyeBlinkLeft", "eyeBlinkRight"), ("mouthPucker", "mouthFunnel"))
"""Shapes :func:`derive_regions` needs: one of each group."""


def derive_regions(
    neutral: np.ndarray, faces: np.ndarray, shapes: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Required regions and lip landmarks read off what the ARKit shapes move.

    Args:
        neutral: ``[V, 3]`` rest vertices (+y up, +z out of the face, +x subject's left).
        faces: ``[F, 3]`` triangles (for dilation).
        shapes: ARKit name -> deltas ``[V, 3]``.
    Returns:
        ``(regions, lip_landmarks)`` with every name of ``REQUIRED_REGIONS`` / ``LIP_LANDMARKS``.
    """
    absent = [" or ".join(group) for group in AUTO_REQUIRES if not any(n in shapes for n in group)]
    if absent:
        raise RigError(f"cannot derive face regions automatically without the shapes {absent}; "
                       f"provide {SIDECAR_HELP}")
    lips = lips_mask(shapes)
    face = face_mask(shapes, faces)
    masks = {
        "lips": lips,
        "mouth": mouth_mask(shapes, lips),
        "face": face,
        "upper_face": upper_face_mask(neutral, shapes, face),
        "eyes": eyes_mask(shapes),
    }
    empty = [name for name, mask in masks.items() if not mask.any()]
    if empty:
        raise RigError(f"automatic regions {empty} came out empty; provide {SIDECAR_HELP}")
    upper, lower = inner_lip_pair(neutral, shapes["jawOpen"], lips)
    left, right = mouth_corners(neutral, shapes, lips, upper, lower)
    masks["lips"] = trim_lips(neutral, lips, left, right)
    regions = {name: np.flatnonzero(mask) for name, mask in masks.items()}
    landmarks = {"upper_inner": upper, "lower_inner": lower, "left_corner": left, "right_corner": right}
    return regions, landmarks
