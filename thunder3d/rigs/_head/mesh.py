"""Assembly of the whole rest-pose head: skin with its pockets, eyeballs, teeth and tongue.

Besides positions and triangles every vertex carries a few labels that the blendshapes and the
regions are computed from (which part it belongs to, pocket ring, upper/lower side of a slit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from thunder3d.rigs._head import layout as L
from thunder3d.rigs._head.interior import TEETH_FRONT_BEHIND_LIPS, ARCH_CURVE, lid_pocket, mouth_bag, tube_faces
from thunder3d.rigs._head.parts import Part, eyeball, teeth_row, tongue
from thunder3d.rigs._head.skin import Slit, build_skin

SKIN, MOUTH_BAG, LID_POCKET, EYEBALL, UPPER_TEETH, LOWER_TEETH, TONGUE = range(7)


@dataclass
class HeadMesh:
    """The rest pose and per-vertex labels.

    Attributes:
        verts: ``[V, 3]`` positions (cm). ``faces``: ``[F, 3]`` outward-wound triangles.
        colors: ``[V, 3]`` RGB of the parts (skin colours are filled in by ``regions``).
        part: ``[V]`` part code (``SKIN`` .. ``TONGUE``); pocket vertices count as their pocket.
        ring: ``[V]`` pocket ring number (0 off the pockets).
        side: ``[V]`` +1 / -1 on the upper / lower side of a slit or pocket, else 0.
        eye: ``[V]`` +1 / -1 for the left / right eye's lid slit, pocket and ball, else 0.
        mouth: the mouth slit; ``eyes``: the lid slits (left, right); ``grid``: skin grid indices.
        centers: named 3D points (eye centres).
    """

    verts: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    part: np.ndarray
    ring: np.ndarray
    side: np.ndarray
    eye: np.ndarray
    mouth: Slit
    eyes: tuple[Slit, Slit]
    grid: np.ndarray
    centers: dict = field(default_factory=dict)


class _Builder:
    """Appends vertex blocks with their labels and returns their global index ranges."""

    def __init__(self) -> None:
        self.blocks: dict[str, list[np.ndarray]] = {k: [] for k in
                                                    ("verts", "colors", "part", "ring", "side", "eye")}
        self.faces: list[np.ndarray] = []
        self.count = 0

    def add(self, verts, part, colors=None, ring=0.0, side=0.0, eye=0.0) -> int:
        first, n = self.count, len(verts)
        b = self.blocks
        b["verts"].append(np.asarray(verts, float))
        b["colors"].append(np.zeros((n, 3)) if colors is None else np.asarray(colors, float))
        for key, value in (("part", part), ("ring", ring), ("side", side), ("eye", eye)):
            b[key].append(np.broadcast_to(np.asarray(value, float), (n,)).copy())
        self.count += n
        return first

    def add_part(self, p: Part, code: int, eye: float = 0.0) -> None:
        first = self.add(p.verts, code, p.colors, eye=eye)
        self.faces.append(p.faces + first)

    def cat(self, key: str) -> np.ndarray:
        return np.concatenate(self.blocks[key])


def _slit_side(count: int, slit: Slit) -> np.ndarray:
    """Side labels ``[count]`` of the skin vertices: +1 / -1 on the doubled slit row, else 0."""
    side = np.zeros(count)
    side[slit.upper[1:-1]] = 1.0
    side[slit.lower[1:-1]] = -1.0
    return side


def build_mesh() -> HeadMesh:
    """Build the rest-pose head (deterministic)."""
    skin = build_skin()
    b = _Builder()
    n_skin = len(skin.verts)
    side = _slit_side(n_skin, skin.mouth) + _slit_side(n_skin, skin.eyes[0]) + _slit_side(n_skin, skin.eyes[1])
    eye = np.zeros(n_skin)
    for slit, sign in zip(skin.eyes, (1.0, -1.0)):
        eye[np.concatenate([slit.upper, slit.lower])] = sign
    b.add(skin.verts, SKIN, side=side, eye=eye)
    b.faces.append(skin.faces)
    # 1. pockets hanging from the slits: the mouth bag and the two lid pockets
    loop = skin.mouth.loop()
    bag = mouth_bag(skin.verts[loop], skin.mouth.upper.size)
    first = b.add(bag.verts, MOUTH_BAG, ring=bag.ring, side=bag.side)
    b.faces.append(tube_faces(loop, bag.num_rings, first))
    centers = {"eye_left": np.array([L.EYE_X, L.EYE_Y, L.EYE_Z]),
               "eye_right": np.array([-L.EYE_X, L.EYE_Y, L.EYE_Z])}
    for slit, sign, key in zip(skin.eyes, (1.0, -1.0), ("eye_left", "eye_right")):
        loop = slit.loop()
        pocket = lid_pocket(skin.verts[loop], slit.upper.size, centers[key])
        first = b.add(pocket.verts, LID_POCKET, ring=pocket.ring, side=pocket.side, eye=sign)
        b.faces.append(tube_faces(loop, pocket.num_rings, first))
    # 2. closed parts
    for sign, key in ((1.0, "eye_left"), (-1.0, "eye_right")):
        b.add_part(eyeball(centers[key]), EYEBALL, eye=sign)
    z_front = skin.verts[skin.mouth.upper[skin.mouth.upper.size // 2], 2] - TEETH_FRONT_BEHIND_LIPS
    b.add_part(teeth_row(True, z_front, ARCH_CURVE), UPPER_TEETH)
    b.add_part(teeth_row(False, z_front - 0.72, ARCH_CURVE), LOWER_TEETH)
    b.add_part(tongue(z_front), TONGUE)
    return HeadMesh(
        verts=b.cat("verts"), faces=np.concatenate(b.faces).astype(np.int64), colors=b.cat("colors"),
        part=b.cat("part").astype(np.int64), ring=b.cat("ring"), side=b.cat("side"),
        eye=b.cat("eye"), mouth=skin.mouth, eyes=skin.eyes, grid=skin.grid, centers=centers,
    )
