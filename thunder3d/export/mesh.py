"""Per-frame mesh files: ``frame_00000.obj`` / ``.ply``, one per animation frame.

Vertices are the rig's forward output in the rig's own units (``rig.units``: cm for builtin/ICT,
m for FLAME; stated in a PLY comment), faces the rig's triangles (0-based in PLY, 1-based in OBJ).
OBJ goes through :func:`thunder3d.rigs.meshio.write_obj` (6 decimals); PLY is
``binary_little_endian 1.0`` with float32 ``x y z`` and ``uchar``-counted ``int`` triangle lists.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from thunder3d.errors import ExportError
from thunder3d.export.common import check_coeffs, ensure_folder, rig_frames
from thunder3d.rigs.meshio import write_obj
from thunder3d.utils.io import atomic_path

MESH_FORMATS = ("obj", "ply")
FACE_DTYPE = np.dtype([("count", "u1"), ("vertices", "<i4", (3,))])


def ply_header(num_vertices: int, num_faces: int, comment: str = "") -> bytes:
    """The ASCII header of a binary little-endian PLY with float xyz and triangle lists."""
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {line}" for line in comment.splitlines() if line]
    lines += [f"element vertex {num_vertices}", "property float x", "property float y", "property float z",
              f"element face {num_faces}", "property list uchar int vertex_indices", "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def face_bytes(faces: np.ndarray) -> bytes:
    """Triangles ``[F, 3]`` as PLY face records (``3`` then three little-endian int32)."""
    records = np.empty(len(faces), dtype=FACE_DTYPE)
    records["count"] = 3
    records["vertices"] = faces
    return records.tobytes()


def write_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, comment: str = "") -> Path:
    """Write ``vertices [V, 3]`` and triangles ``faces [F, 3]`` as a binary PLY, atomically."""
    data = ply_header(len(vertices), len(faces), comment) + np.asarray(vertices, "<f4").tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data + face_bytes(np.asarray(faces)))
    return Path(path)


def write_mesh_sequence(folder: str | os.PathLike, rig, coeffs, *, fmt: str = "obj",
                        stem: str = "frame") -> list[Path]:
    """Write one mesh per frame of ``coeffs [T, C]`` into ``folder`` as ``{stem}_{t:05d}.{fmt}``.

    The rig runs a few frames at a time (memory does not grow with ``T``); each file is written
    atomically, and if writing fails part way the files of this call are removed again.

    Returns:
        The T paths, in frame order.
    Raises:
        ExportError: unknown ``fmt``, bad coefficients (checked before any file), unwritable folder.
    """
    if fmt not in MESH_FORMATS:
        raise ExportError(f"unknown mesh format {fmt!r}; valid: {list(MESH_FORMATS)}")
    values = check_coeffs(coeffs, num_coeffs=rig.num_coeffs, ndims=(2,))
    folder = ensure_folder(folder)
    faces = rig.faces.cpu().numpy()
    digits = max(5, len(str(values.shape[0] - 1)))
    faces_ply = face_bytes(faces) if fmt == "ply" else b""
    header = ply_header(rig.num_vertices, len(faces), f"thunder3d {rig.spec} units {rig.units}")
    written: list[Path] = []
    try:
        for t, vertices in enumerate(rig_frames(rig, values)):
            path = folder / f"{stem}_{t:0{digits}d}.{fmt}"
            if fmt == "obj":
                write_obj(path, vertices, faces)
            else:
                with atomic_path(path) as tmp:
                    tmp.write_bytes(header + vertices.astype("<f4").tobytes() + faces_ply)
            written.append(path)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return written
