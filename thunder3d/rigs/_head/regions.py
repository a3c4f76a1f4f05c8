"""Named vertex regions, lip landmarks and skin colours of the built-in head."""

from __future__ import annotations

import numpy as np

from thunder3d.rigs._head import layout as L
from thunder3d.rigs._head.fields import Fields, jaw_line, lower_lid, upper_lid
from thunder3d.rigs._head.mesh import (EYEBALL, LID_POCKET, LOWER_TEETH, MOUTH_BAG, SKIN, TONGUE,
                                       UPPER_TEETH, HeadMesh)
from thunder3d.rigs._head.skin import smoothstep

SKIN_RGB = np.array([0.86, 0.66, 0.55])
LIP_RGB = np.array([0.78, 0.46, 0.44])
INNER_LIP_RGB = np.array([0.72, 0.36, 0.38])
BROW_RGB = np.array([0.40, 0.28, 0.21])
MOUTH_DEEP_RGB = np.array([0.16, 0.04, 0.05])
MOUTH_WALL_RGB = np.array([0.42, 0.13, 0.14])
LID_INNER_RGB = np.array([0.86, 0.56, 0.54])


def _blend(base: np.ndarray, color: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return base + (color - base) * weight[:, None]


def brow_weight(f: Fields) -> np.ndarray:
    """``[V]`` 1 on the eyebrows (an arch over each eye, thinning outwards), soft edges."""
    ax = np.abs(f.x)
    t = np.clip((ax - 1.0) / 3.9, 0.0, 1.0)  # 0 at the inner end, 1 at the outer end
    center = L.BROW_Y + 0.15 + 0.35 * np.sin(np.pi * np.clip(t * 0.85 + 0.1, 0.0, 1.0)) - 0.3 * t
    half = 0.36 * (1.0 - 0.6 * t)
    along = smoothstep(0.8, 1.4, ax) * (1.0 - smoothstep(4.5, 5.2, ax))
    across = 1.0 - smoothstep(half - 0.22, half + 0.22, np.abs(f.y - center))  # soft edge over ~2 rows
    return np.where(f.skin_front & (f.z > 4.0), along * across, 0.0)


def vertex_colors(mesh: HeadMesh, f: Fields) -> np.ndarray:
    """``[V, 3]`` RGB: skin, red lips, brows, inner lips, dark mouth, pink lid pockets, parts."""
    part = mesh.part
    skin = np.tile(SKIN_RGB, (len(part), 1))
    skin = _blend(skin, LIP_RGB, f.vermilion)
    skin = _blend(skin, BROW_RGB, 0.85 * brow_weight(f))
    colors = np.where((part == SKIN)[:, None], skin, mesh.colors)
    depth = np.clip((mesh.ring - 2.0) / 3.0, 0.0, 1.0)
    bag = _blend(np.tile(MOUTH_WALL_RGB, (len(part), 1)), MOUTH_DEEP_RGB, depth)
    bag = np.where((mesh.ring <= 2)[:, None], INNER_LIP_RGB, bag)
    colors = np.where((part == MOUTH_BAG)[:, None], bag, colors)
    return np.where((part == LID_POCKET)[:, None], LID_INNER_RGB, colors)


def regions(mesh: HeadMesh, f: Fields) -> dict[str, np.ndarray]:
    """Region name -> sorted vertex indices (see ``thunder3d.rigs.builtin`` for the list)."""
    part = mesh.part
    inner_lips = (part == MOUTH_BAG) & (mesh.ring <= 2)
    lips = (f.vermilion > 0.5) | inner_lips | ((part == SKIN) & (mesh.side != 0) & (mesh.eye == 0))
    skin = part == SKIN
    below_jaw = f.y < jaw_line(f.z) - 0.3
    face = skin & (f.z > -0.8) & (f.y < 7.5) & ~below_jaw & ~((np.abs(f.x) > 6.3) & (f.z < 2.0))
    face |= inner_lips
    eyelids = skin & ((upper_lid(mesh, f) > 0.05) | (lower_lid(mesh, f) > 0.05))
    mouth = (skin & (f.z > 5.0) & (np.abs(f.x) < 3.3) & (f.y < L.NOSE_TIP_Y - 0.75)
             & (f.y > -11.6) & ~below_jaw) | lips
    named = {
        "lips": lips,
        "mouth": mouth,
        "face": face,
        "upper_face": face & (f.y > L.NOSE_TIP_Y),
        "eyes": (part == EYEBALL) | (part == LID_POCKET) | eyelids,
        "lower_face": face & (f.y <= L.NOSE_TIP_Y),
        "jaw": f.jaw > 0.5,
        "teeth": (part == UPPER_TEETH) | (part == LOWER_TEETH),
        "tongue": part == TONGUE,
        "eyeballs": part == EYEBALL,
        "skin": skin | (part == MOUTH_BAG) | (part == LID_POCKET),
    }
    return {name: np.flatnonzero(mask) for name, mask in named.items()}


def lip_landmarks(mesh: HeadMesh) -> dict[str, int]:
    """The inner lip midpoints (upper / lower copy of the slit's middle) and the mouth corners."""
    slit = mesh.mouth
    mid = slit.upper.size // 2
    x = mesh.verts[slit.upper, 0]
    left, right = (slit.upper[-1], slit.upper[0]) if x[-1] > x[0] else (slit.upper[0], slit.upper[-1])
    return {"upper_inner": int(slit.upper[mid]), "lower_inner": int(slit.lower[mid]),
            "left_corner": int(left), "right_corner": int(right)}


def lid_landmarks(mesh: HeadMesh) -> dict[str, int]:
    """The lid edge midpoints: ``{left,right}_{upper,lower}_lid`` vertex indices."""
    out = {}
    for slit, side in zip(mesh.eyes, ("left", "right")):
        mid = slit.upper.size // 2
        out[f"{side}_upper_lid"], out[f"{side}_lower_lid"] = int(slit.upper[mid]), int(slit.lower[mid])
    return out
