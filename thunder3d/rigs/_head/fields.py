"""Smooth per-vertex weight fields of the rest head that the blendshapes and regions are built on.

All fields are ``[V]`` arrays over every vertex of a :class:`~thunder3d.rigs._head.mesh.HeadMesh`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thunder3d.rigs._head import layout as L
from thunder3d.rigs._head.mesh import LID_POCKET, LOWER_TEETH, MOUTH_BAG, SKIN, TONGUE, HeadMesh
from thunder3d.rigs._head.skin import smoothstep


def gauss(x: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-((x / width) ** 2))


def jaw_line(z: np.ndarray) -> np.ndarray:
    """Height ``[N]`` of the lower border of the mandible, from the chin (front) to the jaw angle."""
    return -12.0 + 3.3 * np.clip((8.0 - z) / 8.5, 0.0, 1.0)


@dataclass
class Fields:
    """Named fields of one head.

    Attributes:
        x, y, z: ``[V]`` rest coordinates.
        height: ``[V]`` height above the mouth line; on the doubled slit row and in the mouth bag
            +-0.1 by side, so upper and lower lip copies fall on their own side.
        lower: ``[V]`` 0 on the upper lip and above, 1 on the lower lip and below (sharp across the
            mouth slit, smooth beyond the mouth corners).
        jaw: ``[V]`` share of the jaw rotation.
        lips_area: ``[V]`` 1 on the lips and the inner lip rings, falling off over the skin round them.
        vermilion: ``[V]`` 1 on the red of the lips (outer skin), 0 elsewhere (soft edge).
        skin_front: ``[V]`` bool, skin (grid) vertices on the face side of the head.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    height: np.ndarray
    lower: np.ndarray
    jaw: np.ndarray
    lips_area: np.ndarray
    vermilion: np.ndarray
    skin_front: np.ndarray


def lip_heights(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights ``[N]`` of the upper and lower vermilion at ``u = x / MOUTH_HALF_WIDTH`` (0 beyond)."""
    inside = np.clip(1.0 - u**2, 0.0, None)
    bow = 1.0 - 0.15 * gauss(u * L.MOUTH_HALF_WIDTH, 0.3) + 0.08 * gauss(np.abs(u * L.MOUTH_HALF_WIDTH) - 0.45, 0.3)
    return 0.78 * inside**0.5 * bow, 0.95 * inside**0.6


def compute_fields(mesh: HeadMesh) -> Fields:
    x, y, z = mesh.verts.T
    part = mesh.part
    on_mouth = (part == SKIN) | (part == MOUTH_BAG)
    height = y - L.MOUTH_Y + 0.1 * mesh.side * on_mouth
    u = x / L.MOUTH_HALF_WIDTH
    # 1. upper/lower split: sharp inside the mouth span, widening past the corners
    width = 0.04 + 1.2 * smoothstep(0.55, 2.2, np.abs(u))
    lower = 0.5 * (1.0 - np.tanh(height / width))
    # 2. jaw share: the lower part, fading out under the jaw line (neck) and behind the jaw
    mandible = smoothstep(-2.2, 0.0, y - jaw_line(z)) * smoothstep(-2.5, -0.5, z)
    jaw = np.where(on_mouth, lower * np.where(part == SKIN, mandible, 1.0), 0.0)
    jaw = np.where((part == LOWER_TEETH) | (part == TONGUE), 1.0, jaw)
    # 3. lips: the red of the lips, and the lip area with falloff
    top, bottom = lip_heights(u)
    skin_front = (part == SKIN) & (z > 3.0)
    soft = 0.1
    verm = smoothstep(-soft, soft, top - height) * smoothstep(-soft, soft, height + bottom)
    vermilion = np.where(skin_front & (np.abs(u) < 1.0) & (z > 7.0), verm, 0.0)
    beyond = np.clip(np.abs(x) - L.MOUTH_HALF_WIDTH, 0.0, None)
    area = gauss(np.clip(np.abs(height) - 0.8, 0.0, None), 0.9) * gauss(beyond, 1.1)
    lips_area = np.where(skin_front, area, 0.0)
    lips_area = np.where((part == MOUTH_BAG) & (mesh.ring <= 2), 1.0, lips_area)
    return Fields(x, y, z, height, lower, jaw, lips_area, vermilion, skin_front)


def lid_margins(mesh: HeadMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The left eye's lid edges: ``x [K]``, upper edge points ``[K, 3]``, lower edge points ``[K, 3]``."""
    slit = mesh.eyes[0]
    return mesh.verts[slit.upper, 0], mesh.verts[slit.upper], mesh.verts[slit.lower]


def upper_lid(mesh: HeadMesh, f: Fields) -> np.ndarray:
    """Share ``[V]`` of each vertex in the upper lid's closing rotation (1 at the lid edge)."""
    xs, up, _ = lid_margins(mesh)
    edge_y = np.interp(np.abs(f.x), xs, up[:, 1])
    near = np.hypot(np.abs(f.x) - L.EYE_X, f.y - L.EYE_Y) < 2.6
    skin = (mesh.part == SKIN) & near & (f.z > L.EYE_Z - 0.5) & (mesh.side >= 0)
    w = np.where(skin & (f.y >= edge_y - 1e-6), 1.0 - smoothstep(0.0, 0.8, f.y - edge_y), 0.0)
    pocket = (mesh.part == LID_POCKET) & (mesh.side > 0)
    return np.where(pocket, np.where(mesh.ring == 1, 1.0, 0.5), w)


def lower_lid(mesh: HeadMesh, f: Fields) -> np.ndarray:
    """Share ``[V]`` of each vertex in the lower lid's motions (1 at the lid edge)."""
    xs, _, lo = lid_margins(mesh)
    edge_y = np.interp(np.abs(f.x), xs, lo[:, 1])
    near = np.hypot(np.abs(f.x) - L.EYE_X, f.y - L.EYE_Y) < 2.6
    skin = (mesh.part == SKIN) & near & (f.z > L.EYE_Z - 0.5) & (mesh.side <= 0)
    w = np.where(skin & (f.y <= edge_y + 1e-6), 1.0 - smoothstep(0.0, 0.9, edge_y - f.y), 0.0)
    pocket = (mesh.part == LID_POCKET) & (mesh.side < 0)
    return np.where(pocket, np.where(mesh.ring == 1, 1.0, 0.5), w)
