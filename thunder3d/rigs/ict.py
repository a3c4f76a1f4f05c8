"""ICT-FaceKit (ICT Face Model Light, MIT licence) as a thunder3d rig.

The upstream data (https://github.com/ICT-VGL/ICT-FaceKit) is a folder ``FaceXModel/`` holding
``generic_neutral_mesh.obj`` (26719 vertices, centimetres, quads and triangles), 53 ARKit-style
expression OBJs named with ``_L``/``_R`` sides, identity OBJs ``identityNNN.obj`` (absolute meshes
of other faces, used here as an identity basis ``identity - neutral``) and ``vertex_indices.json``.
The project never ships that data: :func:`convert_ict` turns it into one compact ``.npz`` file
(``thunder3d rig import-ict``) and :func:`load_ict` builds a
:class:`~thunder3d.rigs.base.LinearBlendshapeRig` from that file, or from the upstream folder
through a cache.

Kept mesh parts (the upstream README's vertex ranges): face, head and neck, mouth socket, eye
sockets, gums and tongue, teeth and eyeballs -- vertices ``[0, 24591)``, which is every part before
the lacrimal fluid. The lacrimal fluid, eye blend, eye occlusion and eyelash meshes are dropped: they
are thin transparent or alpha-textured layers made for Unreal Engine's eye shaders and render as
opaque sheets over the eyes without them.

Coefficients are the 52 ARKit names (:data:`~thunder3d.rigs.arkit.ARKIT_NAMES`). ICT splits two
ARKit shapes in halves (``browInnerUp_L``/``_R``, ``cheekPuff_L``/``_R``): the ARKit shape is the sum
of both halves. ICT has no ``tongueOut``: its delta is zero. :func:`arkit_to_ict` and
:func:`ict_to_arkit` move weights between the two layouts.

Upstream quirk: the eyeballs are rigid in every expression (``eyeLook*`` move only the eyelids and
the skin around them); gaze needs a rotation of the eyeball parts, which a linear rig cannot hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from thunder3d.errors import RigError
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES, arkit_name
from thunder3d.rigs.base import LinearBlendshapeRig
from thunder3d.rigs.meshio import read_obj

FORMAT_VERSION = 1
"""Version of the converted file layout; files of another version are refused (cached ones rebuilt)."""

ICT_NAMES: tuple[str, ...] = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R",
    "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimple_L", "mouthDimple_R",
    "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L",
    "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmile_L",
    "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L", "mouthUpperUp_R",
    "noseSneer_L", "noseSneer_R",
)
"""The 53 ICT-FaceKit expression names in upstream order (``vertex_indices.json`` ``expressions``)."""
assert len(ICT_NAMES) == 53 and len(set(ICT_NAMES)) == 53

# Upstream mesh parts: name -> [start, stop) vertex range (README "Face Model Topology").
ICT_PARTS: dict[str, tuple[int, int]] = {
    "face": (0, 9409),
    "head_neck": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_socket_left": (13294, 13678),
    "eye_socket_right": (13678, 14062),
    "gums_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "eyeball_left": (21451, 23021),
    "eyeball_right": (23021, 24591),
    "lacrimal_fluid_left": (24591, 24795),
    "lacrimal_fluid_right": (24795, 24999),
    "eye_blend_left": (24999, 25023),
    "eye_blend_right": (25023, 25047),
    "eye_occlusion_left": (25047, 25199),
    "eye_occlusion_right": (25199, 25351),
    "eyelashes_left": (25351, 26035),
    "eyelashes_right": (26035, 26719),
}
ICT_NUM_VERTICES = 26719
KEPT_PARTS = ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right",
              "gums_tongue", "teeth", "eyeball_left", "eyeball_right")
"""Parts kept for the rig, in upstream order (they form the contiguous range [0, 24591))."""
NARROW_FACE = (0, 6706)   # README "Face Area Details": the narrow face area (no ears, neck, scalp)
IRIS_RANGES = ((22221, 23021), (23791, 24591))  # inner eyeball meshes; sclera meshes are the shells

# Multi-PIE 68-point landmark indices used below (positions in ``idx_to_landmark_verts``).
_LM_CHIN, _LM_NOSE_TIP, _LM_NOSE_BASE = 8, 30, 33
_LM_OUTER_LIP = slice(48, 60)
_LM_INNER_CORNER_RIGHT, _LM_INNER_UPPER_MID, _LM_INNER_CORNER_LEFT, _LM_INNER_LOWER_MID = 60, 62, 64, 66

COLORS = {
    "skin": (0.86, 0.66, 0.55),
    "lips": (0.72, 0.38, 0.40),
    "mouth_socket": (0.42, 0.15, 0.16),
    "eye_socket": (0.30, 0.18, 0.16),
    "gums": (0.80, 0.46, 0.48),
    "teeth": (0.93, 0.91, 0.85),
    "sclera": (0.95, 0.94, 0.91),
    "iris": (0.33, 0.22, 0.14),
    "pupil": (0.04, 0.04, 0.04),
}
"""Vertex colours (RGB 0..1) written into converted files."""


# ===================================================================== name mappings
def _arkit_from_ict_matrix() -> np.ndarray:
    """``[52, 53]`` 0/1 matrix: ARKit shape a is the sum of the ICT shapes i with ``M[a, i] = 1``."""
    mat = np.zeros((len(ARKIT_NAMES), len(ICT_NAMES)), dtype=np.float32)
    for i, name in enumerate(ICT_NAMES):
        target = arkit_name(name)
        if target is None:  # pragma: no cover - guarded by ICT_NAMES being fixed
            raise RigError(f"ICT shape {name!r} has no ARKit counterpart")
        mat[ARKIT_INDEX[target], i] = 1.0
    return mat


ARKIT_FROM_ICT = _arkit_from_ict_matrix()
"""``[52, 53]``: ``deltas_arkit = ARKIT_FROM_ICT @ deltas_ict`` (split shapes summed, tongueOut zero)."""


def _apply(coeffs, matrix: np.ndarray, expect: int, what: str):
    """``coeffs [..., expect] @ matrix [expect, K]`` for a tensor or array, keeping its type."""
    if coeffs.shape[-1] != expect:
        raise RigError(f"{what} takes coefficients [..., {expect}], got shape {tuple(coeffs.shape)}")
    if isinstance(coeffs, Tensor):
        return coeffs @ torch.as_tensor(matrix, dtype=coeffs.dtype, device=coeffs.device)
    coeffs = np.asarray(coeffs)
    return coeffs @ matrix.astype(np.result_type(coeffs.dtype, np.float32))


def arkit_to_ict(coeffs):
    """ARKit weights ``[..., 52]`` -> ICT weights ``[..., 53]`` giving the same mesh.

    A split ARKit shape's weight goes to both ICT halves; ``tongueOut`` is dropped (ICT has none).
    Works on tensors (differentiably) and arrays.
    """
    return _apply(coeffs, ARKIT_FROM_ICT, len(ARKIT_NAMES), "arkit_to_ict")


def ict_to_arkit(coeffs):
    """ICT weights ``[..., 53]`` -> ARKit weights ``[..., 52]``; split shapes take the mean of L/R.

    ``ict_to_arkit(arkit_to_ict(w)) == w`` for every ``w`` whose ``tongueOut`` is 0 (it becomes 0).
    """
    counts = ARKIT_FROM_ICT.sum(axis=1)  # [52] how many ICT shapes feed each ARKit shape
    back = (ARKIT_FROM_ICT / np.maximum(counts, 1.0)[:, None]).T  # [53, 52] mean of the halves
    return _apply(coeffs, back, len(ICT_NAMES), "ict_to_arkit")


# ===================================================================== finding the upstream data
def find_model_dir(src: str | os.PathLike) -> Path:
    """The ``FaceXModel`` folder of an ICT-FaceKit checkout (``src`` may be that folder itself)."""
    src = Path(src).expanduser()
    if not src.exists():
        raise RigError(f"ICT-FaceKit path not found: {src}")
    for cand in (src, src / "FaceXModel"):
        if (cand / "vertex_indices.json").is_file():
            return cand
    raise RigError(
        f"{src} is not an ICT-FaceKit folder: expected FaceXModel/vertex_indices.json in it (or "
        "vertex_indices.json directly). Get the data from https://github.com/ICT-VGL/ICT-FaceKit")


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _identity_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("identity[0-9][0-9][0-9].obj"))


def _source_files(model_dir: Path) -> list[Path]:
    files = [model_dir / "vertex_indices.json", model_dir / "generic_neutral_mesh.obj"]
    files += [model_dir / f"{name}.obj" for name in ICT_NAMES]
    return files + _identity_files(model_dir)


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract the FaceXModel OBJ/JSON files of an ICT-FaceKit tarball into ``dest``.

    Returns the extracted ``FaceXModel`` folder. Members with absolute paths or ``..`` are refused.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and "FaceXModel/" in m.name and m.name.endswith((".obj", ".json"))]
            for m in members:
                if m.name.startswith(("/", "\\")) or ".." in Path(m.name).parts:
                    raise RigError(f"{archive} holds an unsafe member path {m.name!r}")
            if not members:
                raise RigError(f"{archive} holds no FaceXModel/ folder: not an ICT-FaceKit archive")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - older interpreters; members were checked above
                tar.extractall(dest, members=members)
    except (tarfile.TarError, OSError) as exc:
        raise RigError(f"cannot read ICT-FaceKit archive {archive}: {exc}") from None
    found = sorted(p.parent for p in dest.rglob("vertex_indices.json"))
    if not found:
        raise RigError(f"{archive} lacks FaceXModel/vertex_indices.json: not an ICT-FaceKit archive")
    return found[0]


# ===================================================================== geometry helpers
def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean ``[N]``: which 2D ``points [N, 2]`` lie inside ``polygon [K, 2]`` (even-odd rule)."""
    x, y = points[:, 0:1], points[:, 1:2]  # [N, 1] against the K edges
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return ((crosses & (x < x_at)).sum(axis=1) % 2) == 1


def _eye_colours(verts: np.ndarray, start: int, stop: int, colors: np.ndarray) -> None:
    """Colour one eyeball: white sclera, dark iris and pupil around its cornea bulge (in place)."""
    ball = verts[start:stop]
    back = ball[ball[:, 2] < np.median(ball[:, 2])]
    # sphere fit to the rear half (no cornea there): |p|^2 = 2 c.p + (r^2 - |c|^2)
    lhs = np.c_[2.0 * back, np.ones(len(back))]
    sol = np.linalg.lstsq(lhs, (back ** 2).sum(1), rcond=None)[0]
    centre = sol[:3]
    radial = ball - centre
    dist = np.linalg.norm(radial, axis=1)
    axis = radial[np.argmax(dist)]  # the cornea apex sticks out furthest
    axis = axis / np.linalg.norm(axis)
    angle = np.degrees(np.arccos(np.clip((radial / dist[:, None]) @ axis, -1.0, 1.0)))
    colors[start:stop] = COLORS["sclera"]
    colors[start:stop][angle < 27.0] = COLORS["iris"]
    colors[start:stop][angle < 11.0] = COLORS["pupil"]


def _regions_and_landmarks(neutral: np.ndarray, deltas: np.ndarray, landmarks68: np.ndarray,
                           num_kept: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Named vertex regions and lip landmarks from part ranges, landmarks and expression motion.

    Args:
        neutral: ``[V, 3]`` kept vertices (cm). deltas: ``[53, V, 3]`` ICT-order expression deltas.
        landmarks68: ``[68]`` Multi-PIE landmark vertex indices. num_kept: V.
    """
    idx = np.arange(num_kept)
    lo, hi = NARROW_FACE
    face = idx[lo:hi]
    lm = neutral[landmarks68]  # [68, 3]

    # upper/lower face: split at the height of the nose tip
    split_y = lm[_LM_NOSE_TIP, 1]
    upper_face = face[neutral[face, 1] > split_y]
    lower_face = face[neutral[face, 1] <= split_y]

    # lips: face vertices inside the outer lip contour seen from the front (this takes the inner
    # lip surfaces rolling into the mouth too)
    lips = face[points_in_polygon(neutral[face, :2], lm[_LM_OUTER_LIP, :2])]

    # mouth: lips and the skin around them, from just under the nose to the chin and out to the
    # nasolabial folds: a superellipse (|x/a|^3 + |y/b|^3 <= 1) seen from the front
    top = lm[_LM_NOSE_BASE, 1] - 0.2
    bottom = lm[_LM_CHIN, 1]
    half_w = 1.45 * abs(lm[_LM_INNER_CORNER_LEFT, 0] - lm[_LM_INNER_CORNER_RIGHT, 0]) / 2
    cy, half_h = (top + bottom) / 2, (top - bottom) / 2
    p = neutral[face]
    inside = (np.abs(p[:, 0] / half_w) ** 3 + np.abs((p[:, 1] - cy) / half_h) ** 3) <= 1.0
    mouth = np.union1d(face[inside], lips)

    # eyes: eyeballs plus the eyelids (skin that a blink moves)
    blink = [ICT_NAMES.index("eyeBlink_L"), ICT_NAMES.index("eyeBlink_R")]
    lid_motion = np.linalg.norm(deltas[blink][:, face], axis=-1).max(axis=0)
    eyelids = face[lid_motion > 0.1]
    eyeballs = np.concatenate([idx[slice(*ICT_PARTS[p])] for p in ("eyeball_left", "eyeball_right")])

    regions = {
        "face": face,
        "upper_face": upper_face,
        "lower_face": lower_face,
        "lips": lips,
        "mouth": mouth,
        "eyes": np.union1d(eyelids, eyeballs),
        "eyelids": eyelids,
        "eyeballs": eyeballs,
        "teeth": idx[slice(*ICT_PARTS["teeth"])],
        "gums_tongue": idx[slice(*ICT_PARTS["gums_tongue"])],
        "mouth_socket": idx[slice(*ICT_PARTS["mouth_socket"])],
        "skin": idx[ICT_PARTS["face"][0]:ICT_PARTS["head_neck"][1]],
    }
    lip_landmarks = {
        "upper_inner": int(landmarks68[_LM_INNER_UPPER_MID]),
        "lower_inner": int(landmarks68[_LM_INNER_LOWER_MID]),
        "left_corner": int(landmarks68[_LM_INNER_CORNER_LEFT]),    # +x: the subject's left
        "right_corner": int(landmarks68[_LM_INNER_CORNER_RIGHT]),
    }
    return {k: np.asarray(v, dtype=np.int32) for k, v in regions.items()}, lip_landmarks


def smooth_on_mesh(values: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Average per-vertex ``values [V]`` with their mesh neighbours ``iterations`` times."""
    n = len(values)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])  # [2E, 2] both directions
    degree = np.maximum(np.bincount(edges[:, 0], minlength=n), 1)
    values = values.astype(np.float64)
    for _ in range(iterations):
        mean = np.bincount(edges[:, 0], weights=values[edges[:, 1]], minlength=n) / degree
        values = 0.5 * values + 0.5 * mean
    return values


def _vertex_colours(neutral: np.ndarray, faces: np.ndarray,
                    regions: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[V, 3]`` uint8 colours: skin, lips (soft-edged), mouth interior, teeth, eyes."""
    colors = np.tile(np.asarray(COLORS["skin"]), (len(neutral), 1))
    lip_mask = np.zeros(len(neutral))
    lip_mask[regions["lips"]] = 1.0
    weight = smooth_on_mesh(lip_mask, faces, 3)[:, None]  # soften the polygon's jagged border
    colors = (1.0 - weight) * colors + weight * np.asarray(COLORS["lips"])
    colors[slice(*ICT_PARTS["mouth_socket"])] = COLORS["mouth_socket"]
    colors[ICT_PARTS["eye_socket_left"][0]:ICT_PARTS["eye_socket_right"][1]] = COLORS["eye_socket"]
    colors[slice(*ICT_PARTS["gums_tongue"])] = COLORS["gums"]
    colors[slice(*ICT_PARTS["teeth"])] = COLORS["teeth"]
    for part in ("eyeball_left", "eyeball_right"):
        _eye_colours(neutral, *ICT_PARTS[part], colors)
    return np.round(colors * 255).astype(np.uint8)


# ===================================================================== conversion
def _read_model(model_dir: Path) -> dict[str, np.ndarray]:
    """Read the upstream OBJs of ``model_dir`` into the arrays of a converted file."""
    try:
        meta = json.loads((model_dir / "vertex_indices.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RigError(f"cannot read {model_dir / 'vertex_indices.json'}: {exc}") from None
    names = tuple(meta.get("expressions", ()))
    if names != ICT_NAMES:
        raise RigError(f"{model_dir / 'vertex_indices.json'} lists unexpected expressions "
                       f"(expected the 53 of ICT Face Model Light): {list(names)[:5]}...")
    landmarks68 = np.asarray(meta.get("idx_to_landmark_verts", []), dtype=np.int64)
    if landmarks68.shape != (68,):
        raise RigError(f"{model_dir / 'vertex_indices.json'} lacks the 68 landmark indices")
    missing = [p.name for p in _source_files(model_dir) if not p.is_file()]
    if missing:
        raise RigError(f"ICT-FaceKit folder {model_dir} lacks {missing[:5]}")

    mesh = read_obj(model_dir / "generic_neutral_mesh.obj")
    if mesh.vertices.shape[0] != ICT_NUM_VERTICES:
        raise RigError(f"generic_neutral_mesh.obj has {mesh.vertices.shape[0]} vertices, "
                       f"expected {ICT_NUM_VERTICES} (ICT Face Model Light topology)")
    num_kept = ICT_PARTS[KEPT_PARTS[-1]][1]  # kept parts are the prefix [0, num_kept)
    neutral = mesh.vertices

    def deltas_of(path: Path) -> np.ndarray:
        verts = read_obj(path, faces=False).vertices
        if verts.shape != neutral.shape:
            raise RigError(f"{path.name} has {verts.shape[0]} vertices, expected {len(neutral)}")
        return (verts - neutral)[:num_kept]  # float64 difference of the printed values

    deltas = np.stack([deltas_of(model_dir / f"{n}.obj") for n in ICT_NAMES])  # [53, V, 3]
    identity_files = _identity_files(model_dir)
    identity = np.stack([deltas_of(p) for p in identity_files]) if identity_files else \
        np.zeros((0, num_kept, 3))
    tris = mesh.triangles()
    faces = tris[(tris < num_kept).all(axis=1)]  # dropped parts own the rest
    neutral = neutral[:num_kept]
    regions, lip_landmarks = _regions_and_landmarks(neutral, deltas, landmarks68, num_kept)
    arrays = {
        "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
        "units": np.asarray("cm"),
        "neutral": neutral.astype(np.float32),
        "faces": faces.astype(np.int32),
        "expression_names": np.asarray(ICT_NAMES),
        "deltas": deltas.astype(np.float32),
        "identity": identity.astype(np.float32),
        "identity_names": np.asarray([p.stem for p in identity_files], dtype=str),
        "vertex_colors": _vertex_colours(neutral, faces, regions),
        "landmarks68": landmarks68.astype(np.int32),
        "region_names": np.asarray(list(regions)),
        "lip_landmark_names": np.asarray(list(lip_landmarks)),
        "lip_landmarks": np.asarray(list(lip_landmarks.values()), dtype=np.int32),
        "part_names": np.asarray(KEPT_PARTS),
        "part_ranges": np.asarray([ICT_PARTS[p] for p in KEPT_PARTS], dtype=np.int32),
    }
    for name, idx in regions.items():
        arrays[f"region_{name}"] = idx
    return arrays


def convert_ict(src: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert ICT-FaceKit into one compact rig file; return its path.

    Args:
        src: the ICT-FaceKit folder, its ``FaceXModel`` subfolder, or a ``.tar.gz`` of the folder.
        out: the file to write (``.npz`` content whatever its suffix), written atomically.
    """
    from thunder3d.utils.io import atomic_path

    src = Path(src).expanduser()
    if _is_archive(src):
        with tempfile.TemporaryDirectory(prefix="thunder3d-ict-") as tmp:
            arrays = _read_model(extract_archive(src, tmp))
    else:
        arrays = _read_model(find_model_dir(src))
    out = Path(out).expanduser()
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # a file object: numpy adds no ".npz" to the name
    return out


# ===================================================================== loading
def _cache_path(src: Path, cache_dir: str | os.PathLike | None) -> Path:
    """Cache file of an upstream folder or archive, keyed by its files' names, sizes and times."""
    if cache_dir is None:
        from thunder3d.utils.io import cache_dir as default_cache

        cache_dir = default_cache()
    digest = hashlib.sha256(f"ict-format-{FORMAT_VERSION}".encode())
    files = [src] if src.is_file() else _source_files(find_model_dir(src))
    for path in files:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise RigError(f"ICT-FaceKit file missing: {path}") from None
        digest.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return Path(cache_dir).expanduser() / f"ict-{digest.hexdigest()[:16]}.npz"


def _read_converted(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise RigError(f"cannot read ICT rig file {path}: {exc}") from None
    version = int(arrays.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise RigError(f"{path} is an ICT rig file of format {version}, this thunder3d reads "
                       f"{FORMAT_VERSION}: convert again with 'thunder3d rig import-ict'")
    return arrays


def load_ict(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None
             ) -> LinearBlendshapeRig:
    """The ICT-FaceKit rig: 52 ARKit coefficients, centimetres, one identity coefficient per
    ``identityNNN.obj`` (10 upstream; ``forward(coeffs, shape=[..., S])``).

    Args:
        path: a file written by :func:`convert_ict`, the upstream folder (or its ``FaceXModel``), or
            a ``.tar.gz`` of it. Upstream data is converted once into
            ``cache_dir`` (default ``$THUNDER3D_CACHE`` or ``~/.cache/thunder3d``).
        cache_dir: where converted upstream data is cached.
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise RigError(f"ICT rig path not found: {src}")
    if src.is_dir() or _is_archive(src):
        file = _cache_path(src, cache_dir)
        if not file.is_file():
            convert_ict(src, file)
        try:
            arrays = _read_converted(file)
        except RigError:  # a stale or damaged cache entry: rebuild it once
            convert_ict(src, file)
            arrays = _read_converted(file)
    else:
        arrays = _read_converted(src)
    return rig_from_arrays(arrays, spec=f"ict:{path}")


def rig_from_arrays(arrays: Mapping[str, np.ndarray], spec: str) -> LinearBlendshapeRig:
    """Build the ARKit-layout rig from the arrays of a converted file."""
    ict_deltas = torch.from_numpy(np.ascontiguousarray(arrays["deltas"], dtype=np.float32))
    # [52, 53] @ [53, V*3]: split shapes summed, tongueOut zero
    deltas = torch.from_numpy(ARKIT_FROM_ICT) @ ict_deltas.reshape(len(ICT_NAMES), -1)
    num_vertices = arrays["neutral"].shape[0]
    identity = arrays["identity"]
    regions = {str(n): torch.from_numpy(arrays[f"region_{n}"].astype(np.int64))
               for n in arrays["region_names"]}
    lip_landmarks = {str(n): int(i) for n, i in zip(arrays["lip_landmark_names"], arrays["lip_landmarks"])}
    return LinearBlendshapeRig(
        name="ict",
        spec=spec,
        coeff_names=ARKIT_NAMES,
        neutral=torch.from_numpy(arrays["neutral"]),
        faces=torch.from_numpy(arrays["faces"].astype(np.int64)),
        regions=regions,
        lip_landmarks=lip_landmarks,
        units=str(arrays["units"]),
        vertex_colors=torch.from_numpy(arrays["vertex_colors"].astype(np.float32) / 255.0),
        deltas=deltas.reshape(len(ARKIT_NAMES), num_vertices, 3).contiguous(),
        identity=torch.from_numpy(identity) if len(identity) else None,
    )


__all__ = ["ARKIT_FROM_ICT", "FORMAT_VERSION", "ICT_NAMES", "ICT_PARTS", "KEPT_PARTS",
           "arkit_to_ict", "convert_ict", "extract_archive", "find_model_dir", "ict_to_arkit",
           "load_ict"]
