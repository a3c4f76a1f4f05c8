"""Skinning math for articulated rigs (FLAME): rotations, joint regression, linear blend skinning.

Plain functions, tensors in and tensors out, batched over a leading ``N``. Rotations are axis-angle
vectors (direction = axis, length = angle in radians, right-handed). Pose-corrective features follow
SMPL/FLAME: ``(R_j - I)`` of every non-root joint, flattened row-major and concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from thunder3d.rigs.base import blend_shapes  # re-exported: the one blendshape sum all rigs use

_SMALL_ANGLE_SQ = 1e-6
"""Below this squared angle (rad²) sin(t)/t uses its Taylor series (exact to float precision)."""


def _sinc_of_sq(theta_sq: Tensor) -> Tensor:
    """``sin(t) / t`` as a function of ``t²``, with finite values and gradients at ``t = 0``."""
    small = theta_sq < _SMALL_ANGLE_SQ
    theta = torch.where(small, torch.ones_like(theta_sq), theta_sq).sqrt()  # no sqrt(0) in the graph
    return torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(theta) / theta)


def batch_rodrigues(rot_vecs: Tensor) -> Tensor:
    """Rotation matrices ``[N, 3, 3]`` of axis-angle vectors ``[N, 3]`` (Rodrigues' formula).

    ``R = I + a·K + b·K²`` with ``K`` the cross-product matrix of the (unnormalised) vector,
    ``a = sin(t)/t`` and ``b = (1 - cos t)/t² = ½·(sin(t/2)/(t/2))²``. Near zero both come from
    their Taylor series, so ``R`` and its gradient are exact at zero rotation (``dR/dv = K``) and
    ``b`` does not lose precision to ``1 - cos t`` cancelling.
    """
    x, y, z = rot_vecs.unbind(-1)  # each [N]
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)
    theta_sq = (rot_vecs * rot_vecs).sum(-1)  # [N]
    a = _sinc_of_sq(theta_sq)[:, None, None]
    b = 0.5 * _sinc_of_sq(theta_sq / 4.0).square()[:, None, None]
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)
    return eye + a * K + b * (K @ K)


def vertices2joints(J_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Joint locations ``[B, J, 3]`` regressed from vertices ``[B, V, 3]`` with ``J_regressor [J, V]``."""
    return J_regressor @ vertices  # broadcast over B: [J, V] @ [B, V, 3]


class RigidTransforms(NamedTuple):
    """Result of :func:`batch_rigid_transform`.

    Attributes:
        posed_joints: ``[B, J, 3]`` joint locations after posing.
        transforms: ``[B, J, 4, 4]`` per-joint transforms mapping rest-pose points to posed points.
    """

    posed_joints: Tensor
    transforms: Tensor


def _homogeneous(rot: Tensor, trans: Tensor) -> Tensor:
    """4x4 transforms ``[..., 4, 4]`` from rotations ``[..., 3, 3]`` and translations ``[..., 3]``."""
    top = torch.cat([rot, trans.unsqueeze(-1)], dim=-1)  # [..., 3, 4]
    bottom = rot.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*rot.shape[:-2], 1, 4)
    return torch.cat([top, bottom], dim=-2)


def batch_rigid_transform(rot_mats: Tensor, joints: Tensor, parents: Tensor) -> RigidTransforms:
    """Pose a kinematic chain.

    Args:
        rot_mats: ``[B, J, 3, 3]`` local rotation of each joint, about the joint.
        joints: ``[B, J, 3]`` rest-pose joint locations.
        parents: ``[J]`` parent index of each joint (root first, ``parents[j] < j``; root's is ignored).
    Returns:
        :class:`RigidTransforms` with posed joints ``[B, J, 3]`` and transforms ``[B, J, 4, 4]``.
    """
    parent_list = [int(p) for p in parents.tolist()]
    # 1. each joint's offset from its parent (the root keeps its own location)
    rel_joints = joints.clone()
    rel_joints[:, 1:] = joints[:, 1:] - joints[:, parent_list[1:]]
    # 2. local transform: rotate about the joint, placed at the offset from the parent
    local = _homogeneous(rot_mats, rel_joints)  # [B, J, 4, 4]
    # 3. chain to world transforms, parents before children
    chain = [local[:, 0]]
    for j in range(1, len(parent_list)):
        chain.append(chain[parent_list[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)  # [B, J, 4, 4]
    # 4. posed joints are the world translations
    posed_joints = world[..., :3, 3]
    # 5. subtract the rotated rest joint so the transforms apply to rest-pose vertices directly
    rot = world[..., :3, :3]
    trans = posed_joints - (rot @ joints.unsqueeze(-1)).squeeze(-1)
    return RigidTransforms(posed_joints, _homogeneous(rot, trans))


@dataclass
class LBSOutput:
    """Result of :func:`lbs`: posed ``vertices [N, V, 3]`` and ``joints [N, J, 3]``."""

    vertices: Tensor
    joints: Tensor


def lbs(
    v_shaped: Tensor,
    pose: Tensor,
    posedirs: Tensor,
    J_regressor: Tensor,
    parents: Tensor,
    weights: Tensor,
) -> LBSOutput:
    """Pose-corrective blendshapes followed by linear blend skinning.

    Args:
        v_shaped: ``[N, V, 3]`` rest-pose vertices with identity and expression already applied.
        pose: ``[N, J, 3]`` axis-angle rotation of every joint (joint 0 is the root).
        posedirs: ``[(J-1)*9, V*3]`` pose-corrective basis (one row per pose feature).
        J_regressor: ``[J, V]`` joint regressor.
        parents: ``[J]`` kinematic tree (see :func:`batch_rigid_transform`).
        weights: ``[V, J]`` skinning weights (rows sum to one).
    Returns:
        :class:`LBSOutput` with posed vertices ``[N, V, 3]`` and joints ``[N, J, 3]``.
    """
    N, V, _ = v_shaped.shape
    J = pose.shape[1]
    # 1. joints of the shaped rest mesh
    joints = vertices2joints(J_regressor, v_shaped)  # [N, J, 3]
    # 2. rotation matrices
    rot_mats = batch_rodrigues(pose.reshape(-1, 3)).view(N, J, 3, 3)
    # 3. pose correctives from the non-root joints' (R - I), flattened row-major
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    pose_feature = (rot_mats[:, 1:] - eye).reshape(N, (J - 1) * 9)
    v_posed = torch.addmm(v_shaped.reshape(N, V * 3), pose_feature, posedirs).view(N, V, 3)
    # 4. world transforms of the joints
    posed_joints, transforms = batch_rigid_transform(rot_mats, joints, parents)
    # 5. blend the joints' top 3x4 rows per vertex in one [N*12, J] @ [J, V] product (vertices last,
    #    which keeps step 6 elementwise and contiguous: much faster than N*V tiny matrix products)
    rows = transforms[:, :, :3, :].reshape(N, J, 12).transpose(1, 2).reshape(N * 12, J)
    blended = (rows @ weights.T).view(N, 3, 4, V)  # [n, a, b, v] = sum_j weights[v, j] T[n, j, a, b]
    # 6. x' = M[:, :3] x + M[:, 3] for every vertex, one coordinate of x at a time (unbind rather
    #    than indexing: its backward writes one gradient tensor instead of one per index)
    m0, m1, m2, trans = blended.unbind(2)  # each [N, 3, V]
    x0, x1, x2 = v_posed.transpose(1, 2).unsqueeze(1).unbind(2)  # each [N, 1, V]
    out = torch.addcmul(torch.addcmul(torch.addcmul(trans, m0, x0), m1, x1), m2, x2)  # [N, 3, V]
    return LBSOutput(vertices=out.transpose(1, 2), joints=posed_joints)


__all__ = [
    "LBSOutput", "RigidTransforms", "batch_rigid_transform", "batch_rodrigues", "blend_shapes",
    "lbs", "vertices2joints",
]
