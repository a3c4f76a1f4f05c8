"""Generator of the built-in procedural head (private; use ``thunder3d.rigs.builtin``).

One module per job: ``layout`` (landmark positions), ``sdf`` + ``raycast`` + ``skin`` (the skin
surface as a ray-cast grid with mouth and lid slits), ``interior`` (inner lips, mouth bag, lid
pockets), ``parts`` (eyeballs, teeth, tongue), ``mesh`` (assembly), ``fields`` (weight fields),
``shapes`` (the 52 ARKit blendshapes), ``regions`` (regions, lip landmarks, colours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thunder3d.rigs._head.fields import compute_fields
from thunder3d.rigs._head.mesh import build_mesh
from thunder3d.rigs._head.regions import lid_landmarks, lip_landmarks, regions, vertex_colors
from thunder3d.rigs._head.shapes import ShapeBuilder


@dataclass(frozen=True)
class HeadArrays:
    """Everything a rig needs, as float32 / int64 numpy arrays.

    Attributes:
        neutral: ``[V, 3]`` rest vertices (cm). ``faces``: ``[F, 3]``. ``colors``: ``[V, 3]``.
        deltas: ``[52, V, 3]`` ARKit blendshapes. ``regions``: name -> ``[R]`` vertex indices.
        lip_landmarks: name -> vertex index. ``lid_landmarks``: the lid edge midpoints.
    """

    neutral: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    deltas: np.ndarray
    regions: dict
    lip_landmarks: dict
    lid_landmarks: dict


def build_head() -> HeadArrays:
    """Generate the head from scratch (deterministic, no data files)."""
    mesh = build_mesh()
    fields = compute_fields(mesh)
    return HeadArrays(
        neutral=mesh.verts.astype(np.float32),
        faces=mesh.faces.astype(np.int64),
        colors=vertex_colors(mesh, fields).astype(np.float32),
        deltas=ShapeBuilder(mesh).build().astype(np.float32),
        regions=regions(mesh, fields),
        lip_landmarks=lip_landmarks(mesh),
        lid_landmarks=lid_landmarks(mesh),
    )
