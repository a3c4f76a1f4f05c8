"""FLAME as a thunder3d rig: expression + jaw pose (+ optional neck, global, eye pose) -> vertices.

FLAME (Li et al. 2017) is a linear identity/expression model with pose-corrective blendshapes and
linear blend skinning over five joints: global (0), neck (1), jaw (2), left eye (3), right eye (4).
The user brings the model file (it needs a registration): ``generic_model.pkl`` of FLAME 2017,
2019, 2020 or 2023, read with the restricted unpickler of :mod:`thunder3d.utils.safe_pickle`
(no chumpy, no code run), or an ``.npz`` with the same keys (read with ``allow_pickle=False``):

======================  =====================================================================
``v_template``          ``[V, 3]`` neutral mesh, metres
``f``                   ``[F, 3]`` triangles
``shapedirs``           ``[V, 3, K]``: ``K - 100`` identity components, then 100 expression ones
``posedirs``            ``[V, 3, 36]`` or ``[V*3, 36]`` pose correctives ((J-1)*9 features)
``J_regressor``         ``[5, V]`` dense, or a scipy csc/csr matrix in a pickle
``kintree_table``       ``[2, 5]``: row 0 the parent of each joint (root's is ignored)
``weights``             ``[V, 5]`` skinning weights
======================  =====================================================================

Coefficient layout (``coeff_names``): ``exp000 .. exp{E-1}``, then ``jaw_rx, jaw_ry, jaw_rz``
(axis-angle, radians), then the extra pose groups asked for, in the order given: ``global_r*``,
``neck_r*``, ``leye_r* reye_r*`` (group ``eyes``). Identity is ``forward(shape=[..., S])``.

Regions come from the public ``FLAME_masks.pkl`` when given (``masks=PATH``), else from geometry;
see :func:`derive_regions`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components
import torch
from torch import Tensor

from thunder3d.errors import RigError
from thunder3d.rigs.base import SKIN_COLOR, Rig
from thunder3d.rigs.lbs import blend_shapes, lbs
from thunder3d.utils.safe_pickle import safe_load_pickle, to_numpy

JOINT_PREFIXES = ("global", "neck", "jaw", "leye", "reye")
"""Coefficient-name prefix of each FLAME joint, in joint order."""
NUM_JOINTS = len(JOINT_PREFIXES)
JAW, LEFT_EYE, RIGHT_EYE = 2, 3, 4

POSE_GROUPS: dict[str, tuple[int, ...]] = {"global": (0,), "neck": (1,), "jaw": (2,), "eyes": (3, 4)}
"""Pose groups that ``pose=`` may name, and their joints."""

NUM_EXPRESSION_CHOICES = (50, 100)
FILE_EXPRESSION_COMPONENTS = 100
"""FLAME files store 100 expression components after the identity ones in ``shapedirs``."""

REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")

MASK_SOURCES: dict[str, tuple[str, ...]] = {
    "lips": ("lips",),
    "face": ("face",),
    "upper_face": ("forehead", "eye_region"),
    "eyes": ("left_eyeball", "right_eyeball"),
}
"""Required regions taken from ``FLAME_masks.pkl`` (union of the listed masks) when it has them."""

LIPS_RADIUS, MOUTH_RADIUS = 0.2, 0.5
"""Lips / mouth: vertices this close to the mouth opening, as a fraction of the mouth width."""
FACE_BACK, FACE_TOP, FACE_BOTTOM = 0.5, 0.9, 0.9
"""Face box, in eye distances: behind the eye centres, above the eyes, below the mouth."""

LIP_COLOR, EYE_COLOR = (0.72, 0.38, 0.38), (0.93, 0.93, 0.9)


# --------------------------------------------------------------------------- the model file
@dataclass
class FlameModel:
    """A FLAME model file's arrays, checked for consistent sizes.

    Attributes:
        v_template: ``[V, 3]`` float32 neutral vertices (metres).
        faces: ``[F, 3]`` int64 triangles.
        shapedirs: ``[V, 3, K]`` float32, identity components then 100 expression components.
        posedirs: ``[(J-1)*9, V*3]`` float32 pose-corrective basis, one row per pose feature.
        J_regressor: ``[J, V]`` float32 dense joint regressor.
        parents: ``[J]`` int64 parent joint of each joint (``-1`` for the root).
        weights: ``[V, J]`` float32 skinning weights.
    """

    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    parents: np.ndarray
    weights: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_identity(self) -> int:
        return int(self.shapedirs.shape[2]) - FILE_EXPRESSION_COMPONENTS

    def expression_dirs(self, count: int) -> np.ndarray:
        """The first ``count`` expression components, ``[count, V, 3]``."""
        start = self.num_identity
        return self.shapedirs[:, :, start : start + count].transpose(2, 0, 1)

    def identity_dirs(self, count: int) -> np.ndarray:
        """The first ``count`` identity components, ``[count, V, 3]``."""
        return self.shapedirs[:, :, :count].transpose(2, 0, 1)

    def rest_joints(self) -> np.ndarray:
        """``[J, 3]`` joint locations of the template."""
        return self.J_regressor @ self.v_template


def read_flame(path: str | os.PathLike) -> FlameModel:
    """Read and check a FLAME ``generic_model.pkl`` (safely) or ``.npz``; see the module docstring."""
    arrays = _read_arrays(Path(path))
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise RigError(f"{path} is not a FLAME model: missing keys {missing} (has {sorted(arrays)})")
    return _check_model(arrays, str(path))


def _read_arrays(path: Path) -> dict[str, Any]:
    """The FLAME keys of a pickle or npz file (told apart by content, not name) as numpy values."""
    if not path.is_file():
        raise RigError(f"FLAME model file not found: {path}")
    with open(path, "rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"  # an .npz is a zip archive
    if is_zip:
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise RigError(f"cannot read FLAME npz {path}: {exc}") from exc
    data = safe_load_pickle(path)
    if not isinstance(data, dict):
        raise RigError(f"{path} holds a {type(data).__name__}, not a FLAME model dict")
    # convert only the keys used, so unrelated chumpy expressions in the file do not matter
    return to_numpy({key: data[key] for key in REQUIRED_KEYS if key in data})


def _array(arrays: Mapping[str, Any], key: str, shape: Sequence[int | None], dtype: type,
           where: str) -> np.ndarray:
    """``arrays[key]`` as ``dtype``, checked against ``shape`` (``None`` = any size)."""
    try:
        value = np.asarray(arrays[key], dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise RigError(f"{where}: {key!r} is not a numeric array ({exc})") from exc
    if value.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, value.shape)):
        wanted = "[" + ", ".join("*" if n is None else str(n) for n in shape) + "]"
        raise RigError(f"{where}: {key!r} must be {wanted}, got {list(value.shape)}")
    return value


def _check_model(arrays: Mapping[str, Any], where: str) -> FlameModel:
    v_template = _array(arrays, "v_template", (None, 3), np.float32, where)
    V = v_template.shape[0]
    faces = _array(arrays, "f", (None, 3), np.int64, where)
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        raise RigError(f"{where}: 'f' indexes vertices out of range")
    shapedirs = _array(arrays, "shapedirs", (V, 3, None), np.float32, where)
    if shapedirs.shape[2] < FILE_EXPRESSION_COMPONENTS:
        raise RigError(f"{where}: shapedirs has {shapedirs.shape[2]} components; FLAME files hold "
                       f"identity components followed by {FILE_EXPRESSION_COMPONENTS} expression ones")
    weights = _array(arrays, "weights", (V, NUM_JOINTS), np.float32, where)
    J_regressor = _array(arrays, "J_regressor", (NUM_JOINTS, V), np.float32, where)
    parents = _array(arrays, "kintree_table", (2, NUM_JOINTS), np.int64, where)[0].copy()
    parents[0] = -1  # the root's entry is a sentinel (2**32 - 1 in FLAME files)
    if any(not 0 <= parents[j] < j for j in range(1, NUM_JOINTS)):
        raise RigError(f"{where}: kintree_table must list parents before children, got {parents.tolist()}")
    num_features = (NUM_JOINTS - 1) * 9
    posedirs = np.asarray(arrays["posedirs"], dtype=np.float32)
    if posedirs.size != V * 3 * num_features or posedirs.shape[-1] != num_features:
        raise RigError(f"{where}: 'posedirs' must be [{V}, 3, {num_features}] or [{V * 3}, {num_features}], "
                       f"got {list(posedirs.shape)}")
    posedirs = posedirs.reshape(V * 3, num_features).T.copy()  # [features, V*3]: one row per feature
    return FlameModel(v_template, faces, shapedirs, posedirs, J_regressor, parents, weights)


def load_masks(path: str | os.PathLike, num_vertices: int) -> dict[str, np.ndarray]:
    """Read ``FLAME_masks.pkl`` (region name -> vertex indices) through the safe unpickler."""
    data = to_numpy(safe_load_pickle(path))
    if not isinstance(data, dict) or not data:
        raise RigError(f"{path} is not a FLAME masks file (a dict of region name -> vertex indices)")
    masks = {}
    for name, idx in data.items():
        idx = np.asarray(idx)
        if idx.size == 0 or idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= num_vertices:
            raise RigError(f"{path}: mask {name!r} must hold vertex indices in 0..{num_vertices - 1}")
        masks[str(name)] = np.unique(idx.astype(np.int64))
    return masks


# --------------------------------------------------------------------------- layout and regions
def coeff_layout(num_expression: int, pose: Sequence[str] | str) -> tuple[list[str], list[int]]:
    """Coefficient names, and for each pose coefficient its slot in the flat ``[J*3]`` full pose.

    ``pose`` names the pose groups (``global``, ``neck``, ``jaw``, ``eyes``; a comma-separated
    string is accepted). Jaw pose is always present and comes first, the others follow in order.
    """
    groups = [g.strip() for g in pose.split(",")] if isinstance(pose, str) else list(pose)
    unknown = [g for g in groups if g not in POSE_GROUPS]
    if unknown:
        raise RigError(f"unknown FLAME pose group(s) {unknown}; valid: {list(POSE_GROUPS)}")
    if len(set(groups)) != len(groups):
        raise RigError(f"FLAME pose groups listed twice: {groups}")
    names = [f"exp{i:03d}" for i in range(num_expression)]
    slots = []
    for group in ["jaw"] + [g for g in groups if g != "jaw"]:
        for joint in POSE_GROUPS[group]:
            names += [f"{JOINT_PREFIXES[joint]}_r{axis}" for axis in "xyz"]
            slots += [joint * 3 + axis for axis in range(3)]
    return names, slots


def boundary_loops(faces: np.ndarray, num_vertices: int) -> list[np.ndarray]:
    """Vertex sets of the mesh's open boundaries (edges used by one triangle), one per loop."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    border = unique[counts == 1]  # [B, 2]
    graph = scipy.sparse.coo_matrix((np.ones(len(border)), (border[:, 0], border[:, 1])),
                                    shape=(num_vertices, num_vertices))
    _, labels = connected_components(graph, directed=False)
    on_border = np.unique(border)
    return [on_border[labels[on_border] == k] for k in np.unique(labels[on_border])]


def _mouth_opening(model: FlameModel) -> np.ndarray:
    """The boundary loop around the lips: it has vertices on both sides of the jaw (jaw weight
    below and at least 0.5); of several such loops (e.g. a neck cut skinned to the jaw) the smallest."""
    jaw = model.weights[:, JAW]
    loops = [loop for loop in boundary_loops(model.faces, model.num_vertices)
             if (jaw[loop] < 0.5).any() and (jaw[loop] >= 0.5).any()]
    if not loops:
        raise RigError("cannot find the mouth opening of this FLAME mesh (no open boundary with both "
                       "jaw-skinned and other vertices); it is needed for the lip landmarks")
    extent = [np.ptp(model.v_template[loop], axis=0).sum() for loop in loops]
    return loops[int(np.argmin(extent))]


def _lip_landmarks(model: FlameModel, loop: np.ndarray, mid_x: float) -> dict[str, int]:
    """Lip landmarks on the mouth opening ``loop``: inner midpoints nearest the plane ``x = mid_x``
    on the non-jaw (upper) and jaw (lower) side, corners at the loop's largest / smallest x."""
    x = model.v_template[loop, 0]
    upper = model.weights[loop, JAW] < 0.5
    off_mid = np.abs(x - mid_x)
    return {
        "upper_inner": int(loop[np.argmin(np.where(upper, off_mid, np.inf))]),
        "lower_inner": int(loop[np.argmin(np.where(upper, np.inf, off_mid))]),
        "left_corner": int(loop[np.argmax(x)]),
        "right_corner": int(loop[np.argmin(x)]),
    }


def derive_regions(model: FlameModel) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Regions and lip landmarks from the template, skinning weights and joints.

    1. ``eyes``: vertices whose largest skinning weight is an eye joint (the eyeballs).
    2. The mouth opening: the open boundary loop spanning jaw-skinned (weight >= 0.5) and other
       vertices (:func:`_mouth_opening`); FLAME's lips end at such a hole.
    3. Landmarks: ``upper_inner`` / ``lower_inner`` are the loop's non-jaw / jaw vertices nearest
       the mid-sagittal plane (half-way between the eye joints); ``left_corner`` / ``right_corner``
       its vertices of largest / smallest x (+x is the subject's left).
    4. ``lips`` / ``mouth``: non-eye vertices within 0.2 / 0.5 mouth widths of the opening.
    5. ``face``: non-eye vertices at most 0.5 eye distances behind the eye centres, between
       0.9 eye distances above the eyes and 0.9 below the mouth, plus the mouth.
    6. ``upper_face``: face vertices above the middle between the eye line and the mouth.
    """
    v = model.v_template
    joints = model.rest_joints()
    not_eye = ~np.isin(model.weights.argmax(axis=1), (LEFT_EYE, RIGHT_EYE))
    eyes = np.flatnonzero(~not_eye)
    if eyes.size == 0:
        raise RigError("no vertex of this mesh is skinned to the eye joints, as FLAME's eyeballs are; "
                       "is it a FLAME model?")
    loop = _mouth_opening(model)
    landmarks = _lip_landmarks(model, loop, mid_x=joints[[LEFT_EYE, RIGHT_EYE], 0].mean())
    width = np.linalg.norm(v[landmarks["left_corner"]] - v[landmarks["right_corner"]])
    to_opening = np.linalg.norm(v[:, None, :] - v[None, loop, :], axis=-1).min(axis=1)  # [V]
    lips = not_eye & (to_opening <= LIPS_RADIUS * width)
    mouth = not_eye & (to_opening <= MOUTH_RADIUS * width)
    eye_centre = joints[[LEFT_EYE, RIGHT_EYE]].mean(axis=0)
    eye_dist = np.linalg.norm(joints[LEFT_EYE] - joints[RIGHT_EYE])
    mouth_y = 0.5 * (v[landmarks["upper_inner"], 1] + v[landmarks["lower_inner"], 1])
    face = mouth | (not_eye
                    & (v[:, 2] >= eye_centre[2] - FACE_BACK * eye_dist)
                    & (v[:, 1] <= eye_centre[1] + FACE_TOP * eye_dist)
                    & (v[:, 1] >= mouth_y - FACE_BOTTOM * eye_dist))
    upper_face = face & (v[:, 1] >= 0.5 * (eye_centre[1] + mouth_y))
    regions = {"lips": lips, "mouth": mouth, "face": face, "upper_face": upper_face}
    regions = {name: np.flatnonzero(mask) for name, mask in regions.items()}
    regions["eyes"] = eyes
    return regions, landmarks


def apply_masks(regions: dict[str, np.ndarray], masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Regions with ``FLAME_masks.pkl`` taking over: every mask under its own name, the required
    regions from :data:`MASK_SOURCES` where the masks have them; ``mouth`` keeps the lips."""
    out = {**regions, **masks}
    for region, sources in MASK_SOURCES.items():
        if all(src in masks for src in sources):
            out[region] = np.unique(np.concatenate([masks[src] for src in sources]))
    out["mouth"] = np.union1d(out["mouth"], out["lips"])
    return out


def _vertex_colors(num_vertices: int, regions: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[V, 3]`` skin colour with red lips and white eyeballs, for rendering."""
    colors = np.tile(np.asarray(SKIN_COLOR, dtype=np.float32), (num_vertices, 1))
    colors[regions["lips"]] = LIP_COLOR
    colors[regions["eyes"]] = EYE_COLOR
    return colors


# --------------------------------------------------------------------------- the rig
class FlameRig(Rig):
    """FLAME: coefficients ``[..., T, C]`` (module docstring layout) -> vertices ``[..., T, V, 3]`` (metres).

    Args:
        model: the checked model file (:func:`read_flame`).
        spec: the ``load_rig`` spec.
        num_expression: expression components used, 50 or 100.
        num_shape: identity components accepted by ``forward(shape=...)`` (at most the file's).
        pose: pose groups in the layout (see :func:`coeff_layout`).
        masks: optional FLAME masks (region name -> vertex indices) that replace derived regions.
    """

    def __init__(
        self,
        model: FlameModel,
        *,
        spec: str,
        num_expression: int = 50,
        num_shape: int = 100,
        pose: Sequence[str] | str = ("jaw",),
        masks: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if num_expression not in NUM_EXPRESSION_CHOICES:
            raise RigError(f"num_expression must be one of {NUM_EXPRESSION_CHOICES}, got {num_expression!r}; "
                           f"the file provides {FILE_EXPRESSION_COMPONENTS} expression components "
                           f"(shapedirs has {model.shapedirs.shape[2]} = {model.num_identity} identity "
                           f"+ {FILE_EXPRESSION_COMPONENTS} expression)")
        if not 0 <= num_shape <= model.num_identity:
            raise RigError(f"num_shape must be in 0..{model.num_identity} (identity components in the file), "
                           f"got {num_shape!r}")
        names, slots = coeff_layout(num_expression, pose)
        regions, landmarks = derive_regions(model)
        if masks is not None:
            regions = apply_masks(regions, masks)
        super().__init__(
            name="flame", spec=spec, coeff_names=names,
            neutral=torch.from_numpy(model.v_template), faces=torch.from_numpy(model.faces),
            regions=regions, lip_landmarks=landmarks, units="m",
            vertex_colors=torch.from_numpy(_vertex_colors(model.num_vertices, regions)),
            num_shape=num_shape,
        )
        self.num_expression = num_expression
        tables = {
            "expression_dirs": model.expression_dirs(num_expression),  # [E, V, 3]
            "identity_dirs": model.identity_dirs(num_shape),  # [S, V, 3]
            "posedirs": model.posedirs,  # [(J-1)*9, V*3]
            "J_regressor": model.J_regressor,  # [J, V]
            "lbs_weights": model.weights,  # [V, J]
        }
        for key, value in tables.items():
            self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(value)), persistent=False)
        self.register_buffer("parents", torch.from_numpy(model.parents), persistent=False)
        self.register_buffer("pose_slots", torch.tensor(slots, dtype=torch.long), persistent=False)

    def forward(self, coeffs: Tensor, shape: Tensor | None = None) -> Tensor:
        """Vertices ``[..., T, V, 3]`` for coefficients ``[..., T, C]``.

        ``shape``: optional identity coefficients ``[..., S]`` (``S <= num_shape``), one per sequence,
        shared by its ``T`` frames.
        """
        self.check_coeffs(coeffs)
        self.check_shape(shape)
        lead, V = coeffs.shape[:-1], self.num_vertices
        flat = coeffs.reshape(-1, self.num_coeffs)  # [N, C], N = frames over all leading dims
        E = self.num_expression
        v_shaped = self.neutral + blend_shapes(flat[:, :E], self.expression_dirs)  # [N, V, 3]
        if shape is not None:
            v_shaped = v_shaped + self._identity_offsets(shape, lead).reshape(-1, V, 3)
        full_pose = flat.new_zeros(flat.shape[0], NUM_JOINTS * 3)  # joints outside the layout stay at rest
        full_pose[:, self.pose_slots] = flat[:, E:]
        out = lbs(v_shaped, full_pose.view(-1, NUM_JOINTS, 3), self.posedirs, self.J_regressor,
                  self.parents, self.lbs_weights)
        return out.vertices.reshape(*lead, V, 3)

    def _identity_offsets(self, shape: Tensor, lead: torch.Size) -> Tensor:
        """Identity offsets ``[*lead, V, 3]`` of ``shape [..., S]``, broadcast over the frame axis."""
        offsets = blend_shapes(shape, self.identity_dirs[: shape.shape[-1]])  # [..., V, 3]
        if lead:
            offsets = offsets.unsqueeze(-3)  # [..., 1, V, 3]: one identity per sequence
        try:
            return offsets.expand(*lead, self.num_vertices, 3)
        except RuntimeError as exc:
            raise RigError(f"shape {tuple(shape.shape)} does not match coefficients with leading "
                           f"dims {tuple(lead)}: want [..., S] with ... = {tuple(lead[:-1])}") from exc


def load_flame(
    path: str | os.PathLike,
    num_expression: int = 50,
    num_shape: int = 100,
    pose: Sequence[str] | str = ("jaw",),
    masks: str | os.PathLike | None = None,
) -> FlameRig:
    """Build a :class:`FlameRig` from a FLAME model file (``load_rig("flame:PATH", **kwargs)``).

    Args:
        path: ``generic_model.pkl`` (any FLAME release) or an ``.npz`` with the same keys.
        num_expression: 50 or 100 expression coefficients.
        num_shape: identity coefficients accepted by ``forward(shape=...)``.
        pose: pose groups after the jaw: any of ``global``, ``neck``, ``eyes`` (``jaw`` is implied).
        masks: optional ``FLAME_masks.pkl`` whose regions replace the geometric ones.
    """
    model = read_flame(path)
    mask_table = None if masks is None else load_masks(masks, model.num_vertices)
    return FlameRig(model, spec=f"flame:{os.fspath(path)}", num_expression=num_expression,
                    num_shape=num_shape, pose=pose, masks=mask_table)
