"""Minimal, fast Wavefront OBJ reading and writing (vertices and polygon faces only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder3d.errors import RigError


@dataclass
class ObjMesh:
    """An OBJ's geometry.

    Attributes:
        vertices: ``[V, 3]`` float64 positions.
        polygons: list of vertex-index arrays (0-based), one per face, as written (tris, quads, ...).
    """

    vertices: np.ndarray
    polygons: list[np.ndarray]

    def triangles(self) -> np.ndarray:
        """``[F, 3]`` int64 triangles by fan triangulation of each polygon."""
        return triangulate(self.polygons)


def triangulate(polygons: list[np.ndarray]) -> np.ndarray:
    """Fan-triangulate polygons (lists of vertex indices) into ``[F, 3]`` int64."""
    tris = []
    for poly in polygons:
        for k in range(1, len(poly) - 1):
            tris.append((poly[0], poly[k], poly[k + 1]))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def read_obj(path: str | os.PathLike, *, faces: bool = True) -> ObjMesh:
    """Read an OBJ file's ``v`` and (optionally) ``f`` records.

    Texture/normal indices (``f 1/2/3``) are ignored; negative (relative) indices are resolved.
    Raises :class:`RigError` for a missing file or one without vertices.
    """
    path = Path(path)
    if not path.is_file():
        raise RigError(f"OBJ file not found: {path}")
    verts: list[str] = []
    polys: list[np.ndarray] = []
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line[2:])
            elif faces and line.startswith("f "):
                idx = [int(tok.split("/", 1)[0]) for tok in line[2:].split()]
                n = len(verts)
                polys.append(np.asarray([i - 1 if i > 0 else n + i for i in idx], dtype=np.int64))
    if not verts:
        raise RigError(f"OBJ file has no vertices: {path}")
    try:
        vertices = np.loadtxt(verts, dtype=np.float64, usecols=(0, 1, 2), ndmin=2)
    except ValueError as exc:
        raise RigError(f"OBJ file has malformed vertex lines: {path} ({exc})") from None
    for poly in polys:
        if len(poly) < 3 or poly.min() < 0 or poly.max() >= len(vertices):
            raise RigError(f"OBJ file has a face with bad vertex indices: {path}")
    return ObjMesh(vertices=vertices, polygons=polys)


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write ``vertices [V, 3]`` and triangles ``faces [F, 3]`` (0-based) as an OBJ, atomically."""
    from thunder3d.utils.io import atomic_path

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        np.savetxt(fh, vertices, fmt="v %.6f %.6f %.6f")
        np.savetxt(fh, faces + 1, fmt="f %d %d %d")
