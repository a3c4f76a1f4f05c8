"""A user's own blendshape set as a rig: a folder of OBJs or a glTF/GLB with morph targets.

``load_rig("blendshapes:PATH")`` calls :func:`load_blendshapes`. With the default
``names="arkit"`` the shapes are matched to the 52 ARKit names (any common spelling, see
:func:`~thunder3d.rigs.arkit.arkit_name`), so coefficients made for one ARKit rig drive any other.

Sources:

- **folder of OBJs**: a neutral mesh (``neutral.obj``, ``base.obj``, ``generic_neutral_mesh.obj``
  or one ``*neutral*.obj``) and one OBJ per shape with the same vertices; shape names are the
  file names. Faces come from the neutral.
- **.glb / .gltf**: the mesh with morph targets (see :func:`thunder3d.rigs.gltf.read_gltf_morphs`);
  shape names from ``extras.targetNames``.

Regions and lip landmarks come from a sidecar JSON (``regions.json`` in the folder, or
``NAME.regions.json`` / ``regions.json`` beside the glTF file, or ``regions=``; format in
:mod:`thunder3d.rigs.regions`) and, for whatever it does not give, from the ARKit shapes.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from thunder3d.errors import RigError
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES, arkit_name
from thunder3d.rigs.base import MM_PER_UNIT, LinearBlendshapeRig
from thunder3d.rigs.meshio import read_obj
from thunder3d.rigs.regions import derive_regions, missing_entries, parse_regions, read_regions_json

NAME_SCHEMES = ("arkit", "native")
NEUTRAL_NAMES = ("neutral.obj", "base.obj", "generic_neutral_mesh.obj")
GLTF_SUFFIXES = (".glb", ".gltf")
MIN_ARKIT_MATCHES = 10
HEAD_SIZE_MM = 250.0
"""Typical largest extent of a head mesh; the unit guess picks the unit closest to it."""
SPLIT_SHAPES = ("browInnerUp", "cheekPuff")
"""ARKit shapes without a side that some sets split into left and right halves (summed here)."""


@dataclass
class BlendshapeSet:
    """Shapes as read from disk, before any renaming.

    Attributes:
        neutral: ``[V, 3]`` float64 rest vertices.
        faces: ``[F, 3]`` int64 triangles.
        names: the S shape names in file/target order.
        deltas: ``[S, V, 3]`` float64 offsets from the neutral.
        sidecars: where a regions JSON is looked for, in order.
    """

    neutral: np.ndarray
    faces: np.ndarray
    names: list[str]
    deltas: np.ndarray
    sidecars: tuple[Path, ...]


def load_blendshapes(
    path: str | os.PathLike,
    names: str = "arkit",
    regions: str | os.PathLike | Mapping | None = None,
    units: str | None = None,
    mesh: str | int | None = None,
) -> LinearBlendshapeRig:
    """Build a rig from a folder of OBJs or a ``.glb``/``.gltf`` with morph targets.

    Args:
        path: the folder or file.
        names: ``"arkit"``: coefficients are the 52 :data:`ARKIT_NAMES` (absent shapes get zero
            deltas, split halves such as ``browInnerUp_L``/``_R`` are summed, other shapes are
            dropped); ``"native"``: the set's own names, in file/target order.
        regions: a sidecar JSON path or an already parsed mapping of the same format; default:
            the sidecar beside the shapes if there is one. Missing entries are derived.
        units: ``"m"``, ``"cm"`` or ``"mm"``; default: guessed from the neutral's size.
        mesh: glTF only: the mesh to read, by name or index (default: most morph targets).
    Returns:
        A :class:`LinearBlendshapeRig` named ``blendshapes`` with spec ``blendshapes:PATH``.
    """
    if names not in NAME_SCHEMES:
        raise RigError(f"unknown names={names!r}; valid: {list(NAME_SCHEMES)}")
    if units is not None and units not in MM_PER_UNIT:
        raise RigError(f"unknown units {units!r}; valid: {sorted(MM_PER_UNIT)}")
    shapes = read_blendshape_set(path, mesh=mesh)
    arkit = arkit_shapes(shapes.names, shapes.deltas)
    if names == "arkit":
        coeff_names, deltas = ARKIT_NAMES, arkit_layout(shapes.names, arkit)
    else:
        coeff_names, deltas = native_layout(shapes.names, shapes.deltas)
    region_map, landmarks = resolve_regions(shapes, arkit, regions)
    return LinearBlendshapeRig(
        name="blendshapes",
        spec=f"blendshapes:{path}",
        coeff_names=coeff_names,
        neutral=shapes.neutral,
        faces=shapes.faces,
        regions=region_map,
        lip_landmarks=landmarks,
        units=units or guess_units(shapes.neutral),
        deltas=deltas,
    )


# --------------------------------------------------------------------------- reading
def read_blendshape_set(path: str | os.PathLike, mesh: str | int | None = None) -> BlendshapeSet:
    """Read a folder of OBJs or a glTF file (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        if mesh is not None:
            raise RigError("mesh= selects a mesh inside a glTF file; it does not apply to OBJ folders")
        return read_obj_folder(path)
    if not path.exists():
        raise RigError(f"blendshape set not found: {path}")
    if path.suffix.lower() not in GLTF_SUFFIXES:
        raise RigError(f"unsupported blendshape set {path}: give a folder of OBJs or a "
                       f"{'/'.join(GLTF_SUFFIXES)} file with morph targets")
    from thunder3d.rigs.gltf import read_gltf_morphs

    morphs = read_gltf_morphs(path, mesh=mesh)
    sidecars = (path.with_name(f"{path.stem}.regions.json"), path.with_name("regions.json"))
    return BlendshapeSet(morphs.vertices, morphs.triangles, morphs.target_names,
                         morphs.target_deltas, sidecars)


def find_neutral(objs: list[Path]) -> Path:
    """The neutral mesh among a folder's OBJ files (see :data:`NEUTRAL_NAMES`)."""
    by_name = {p.name.lower(): p for p in objs}
    for name in NEUTRAL_NAMES:
        if name in by_name:
            return by_name[name]
    candidates = [p for p in objs if "neutral" in p.stem.lower()]
    if len(candidates) == 1:
        return candidates[0]
    listed = [p.name for p in (candidates or objs)]
    shown = ", ".join(listed[:12]) + (f", ... ({len(listed)} files)" if len(listed) > 12 else "")
    what = "several candidates" if candidates else "none of the files looks like one"
    raise RigError(f"cannot tell which OBJ is the neutral mesh ({what}: {shown}); name it "
                   f"one of {list(NEUTRAL_NAMES)}")


def read_obj_folder(folder: Path) -> BlendshapeSet:
    """A neutral OBJ plus one OBJ per shape (same vertex count, sorted by file name)."""
    objs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".obj")
    if not objs:
        raise RigError(f"no OBJ files in {folder}: expected a neutral mesh and one OBJ per shape")
    neutral_path = find_neutral(objs)
    shape_paths = [p for p in objs if p != neutral_path]
    if not shape_paths:
        raise RigError(f"{folder} holds only the neutral mesh {neutral_path.name}; add one OBJ per shape")
    neutral_mesh = read_obj(neutral_path)
    neutral = neutral_mesh.vertices
    faces = neutral_mesh.triangles()
    if len(faces) == 0:
        raise RigError(f"the neutral mesh {neutral_path} has no faces")
    deltas = np.empty((len(shape_paths), len(neutral), 3))
    for s, shape_path in enumerate(shape_paths):
        vertices = read_obj(shape_path, faces=False).vertices
        if vertices.shape != neutral.shape:
            raise RigError(f"{shape_path.name} has {len(vertices)} vertices but the neutral "
                           f"{neutral_path.name} has {len(neutral)}: every shape needs the same vertices")
        deltas[s] = vertices - neutral
    return BlendshapeSet(neutral, faces, [p.stem for p in shape_paths], deltas, (folder / "regions.json",))


# --------------------------------------------------------------------------- naming
def _is_half(name: str, arkit: str) -> bool:
    """True if ``name`` is a left/right half of the side-less ARKit shape ``arkit``."""
    return arkit in SPLIT_SHAPES and name.strip().replace("_", "").replace(" ", "").lower() != arkit.lower()


def arkit_shapes(names: list[str], deltas: np.ndarray) -> dict[str, np.ndarray]:
    """ARKit name -> deltas ``[V, 3]`` for the shapes of a set that match one.

    Split halves (``browInnerUp_L`` + ``_R``) are summed; when several whole shapes match one
    ARKit name (``JawOpen`` and ``jaw_open``) the first is kept, with a warning.
    """
    groups: dict[str, list[int]] = {}
    for s, name in enumerate(names):
        key = arkit_name(name)
        if key is not None:
            groups.setdefault(key, []).append(s)
    out = {}
    for key, members in groups.items():
        halves = [s for s in members if _is_half(names[s], key)]
        whole = [s for s in members if s not in halves]
        if len(whole) > 1 or (whole and halves):
            warnings.warn(f"shapes {[names[s] for s in members]} all match ARKit {key!r}; "
                          f"using {names[whole[0]]!r}", stacklevel=3)
        out[key] = deltas[whole[0]] if whole else deltas[halves].sum(axis=0)
    return out


def arkit_layout(names: list[str], arkit: Mapping[str, np.ndarray]) -> np.ndarray:
    """Deltas ``[52, V, 3]`` in :data:`ARKIT_NAMES` order; zeros for shapes the set lacks.

    Warns once about absent ARKit shapes and once about the set's non-ARKit shapes (dropped).
    """
    if len(arkit) < MIN_ARKIT_MATCHES:
        raise RigError(f"only {len(arkit)} of the set's {len(names)} shapes match ARKit names "
                       f"({sorted(arkit)}); use names='native' to keep the set's own names")
    absent = [n for n in ARKIT_NAMES if n not in arkit]
    if absent:
        warnings.warn(f"blendshape set lacks {len(absent)} ARKit shapes (they get zero deltas): "
                      f"{absent}", stacklevel=3)
    extra = [n for n in names if arkit_name(n) is None]
    if extra:
        warnings.warn(f"ignoring {len(extra)} shapes that are not ARKit shapes: {extra}", stacklevel=3)
    num_vertices = len(next(iter(arkit.values())))
    out = np.zeros((len(ARKIT_NAMES), num_vertices, 3))
    for key, delta in arkit.items():
        out[ARKIT_INDEX[key]] = delta
    return out


def native_layout(names: list[str], deltas: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The set's own names and deltas ``[S, V, 3]``; duplicate names are an error."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RigError(f"the blendshape set has duplicate shape names {duplicates}")
    return list(names), deltas


# --------------------------------------------------------------------------- regions and units
def resolve_regions(
    shapes: BlendshapeSet, arkit: Mapping[str, np.ndarray], regions: str | os.PathLike | Mapping | None
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Regions and lip landmarks: the sidecar's entries, the rest derived from the ARKit shapes."""
    num_vertices = len(shapes.neutral)
    if isinstance(regions, Mapping):
        given = parse_regions(regions, num_vertices)
    elif regions is not None:
        given = read_regions_json(regions, num_vertices)
    else:
        found = [p for p in shapes.sidecars if p.is_file()]
        given = read_regions_json(found[0], num_vertices) if found else ({}, {})
    missing = missing_entries(*given)
    if not missing:
        return given
    try:
        auto = derive_regions(shapes.neutral, shapes.faces, arkit)
    except RigError as exc:
        raise RigError(f"{exc} (missing: {missing})") from None
    return {**auto[0], **given[0]}, {**auto[1], **given[1]}


def guess_units(neutral: np.ndarray) -> str:
    """``"m"``, ``"cm"`` or ``"mm"``: the unit that makes the mesh's largest extent closest to a
    head's (~25 cm). Warns when even that size is implausible (pass ``units=``)."""
    extent = float(np.ptp(neutral, axis=0).max())
    if extent <= 0:
        raise RigError("the neutral mesh has zero size")
    units = min(MM_PER_UNIT, key=lambda u: abs(math.log(extent * MM_PER_UNIT[u] / HEAD_SIZE_MM)))
    size_mm = extent * MM_PER_UNIT[units]
    if not HEAD_SIZE_MM / 3 <= size_mm <= HEAD_SIZE_MM * 3:
        warnings.warn(f"the mesh is {extent:g} units across, not head-sized in any unit; guessed "
                      f"units={units!r}, pass units= to state them", stacklevel=3)
    return units
