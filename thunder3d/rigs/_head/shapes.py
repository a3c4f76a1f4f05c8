"""The 52 ARKit blendshapes of the built-in head, as deltas from the rest pose.

Rotations (jaw, eyeballs, lids) are applied per vertex with a weighted angle, and the blendshape
is the displacement at weight 1; the other shapes are smooth displacement fields over the
:mod:`~thunder3d.rigs._head.fields`. One-sided shapes are written for the subject's left (+x,
``s = +1``) and mirrored for the right (``s = -1``): ``x`` is read as ``s * x`` and the x part of
the displacement is multiplied by ``s``.
"""

from __future__ import annotations

import numpy as np

from thunder3d.rigs._head import layout as L
from thunder3d.rigs._head.fields import (Fields, compute_fields, gauss, lid_margins, lip_heights,
                                         lower_lid, upper_lid)
from thunder3d.rigs._head.mesh import EYEBALL, MOUTH_BAG, TONGUE, HeadMesh
from thunder3d.rigs._head.skin import smoothstep
from thunder3d.rigs.arkit import ARKIT_NAMES

JAW_OPEN_DEG = 13.5
BLINK_LOWER_SHARE = 0.2  # part of the lid closing done by the lower lid


def rotate_x(p: np.ndarray, center, angle: np.ndarray) -> np.ndarray:
    """Rotate points ``[N, 3]`` about the x axis through ``center`` by ``angle [N]`` (rad, + lifts the front)."""
    q = p - center
    c, s = np.cos(angle), np.sin(angle)
    return center + np.stack([q[:, 0], c * q[:, 1] + s * q[:, 2], -s * q[:, 1] + c * q[:, 2]], 1)


def rotate_y(p: np.ndarray, center, angle: np.ndarray) -> np.ndarray:
    """Rotate points ``[N, 3]`` about the y axis through ``center`` by ``angle`` (rad, + turns +z to +x)."""
    q = p - center
    c, s = np.cos(angle), np.sin(angle)
    return center + np.stack([c * q[:, 0] + s * q[:, 2], q[:, 1], -s * q[:, 0] + c * q[:, 2]], 1)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals ``[V, 3]`` of outward-wound triangles ``[F, 3]``."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = np.cross(b - a, c - a)  # [F, 3], length = twice the area
    out = np.zeros_like(verts)
    for k in range(3):
        np.add.at(out, faces[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def vec(dx, dy, dz) -> np.ndarray:
    """Stack three broadcastable components into ``[N, 3]`` (or ``[3]`` for scalars)."""
    return np.stack(np.broadcast_arrays(dx, dy, dz), -1).astype(float)


class ShapeBuilder:
    """Computes every blendshape of one head; ``build()`` returns ``[52, V, 3]`` in ARKit order."""

    def __init__(self, mesh: HeadMesh) -> None:
        self.m = mesh
        self.f: Fields = compute_fields(mesh)
        self.p = mesh.verts
        self.hinge = np.array([0.0, *L.JAW_HINGE])
        self.up_lid, self.lo_lid = upper_lid(mesh, self.f), lower_lid(mesh, self.f)
        self.normals = vertex_normals(mesh.verts, mesh.faces)

    # ------------------------------------------------------------------ helpers
    def side_x(self, s: int) -> np.ndarray:
        """``x`` seen from side ``s`` (positive towards that side)."""
        return s * self.f.x

    def eye_of(self, s: int) -> np.ndarray:
        return self.m.centers["eye_left" if s > 0 else "eye_right"]

    def mouth_corner_field(self, s: int, reach: float = 1.8) -> np.ndarray:
        """Weight ``[V]`` round the mouth corner of side ``s``: 1 at the corner, 0 at the middle."""
        f, xs = self.f, self.side_x(s)
        along = smoothstep(-0.3, 1.0, xs / L.MOUTH_HALF_WIDTH)
        beyond = gauss(np.clip(xs - L.MOUTH_HALF_WIDTH, 0.0, None), reach)
        return along * beyond * gauss(f.height, reach) * self.mouth_mask()

    def mouth_mask(self) -> np.ndarray:
        """Skin of the face and the inner lips (not the deep mouth bag, teeth or tongue)."""
        m = self.m
        return (self.f.skin_front | ((m.part == MOUTH_BAG) & (m.ring <= 2))).astype(float)

    def upper_part(self) -> np.ndarray:
        return (1.0 - self.f.lower) * self.f.lips_area

    def lower_part(self) -> np.ndarray:
        return self.f.lower * self.f.lips_area

    def jaw_rotation(self, angle_deg: float) -> np.ndarray:
        a = -np.radians(angle_deg) * self.f.jaw
        return rotate_x(self.p, self.hinge, a) - self.p

    # ------------------------------------------------------------------ eyes
    def lid_angles(self) -> tuple[np.ndarray, np.ndarray]:
        """Closing angles ``[V]`` (rad) of the upper and lower lid at each vertex's ``|x|``."""
        xs, up, lo = lid_margins(self.m)
        c = self.m.centers["eye_left"]
        ang_up = np.arctan2(up[:, 1] - c[1], up[:, 2] - c[2])
        ang_lo = np.arctan2(lo[:, 1] - c[1], lo[:, 2] - c[2])
        total = np.interp(np.abs(self.f.x), xs, ang_up - ang_lo)
        return (1.0 - BLINK_LOWER_SHARE) * total, BLINK_LOWER_SHARE * total

    def lids(self, s: int, upper_angle: np.ndarray, lower_angle: np.ndarray, bulge: float = 0.0) -> np.ndarray:
        """Rotate side ``s``'s lids about the eye centre (angles ``[V]``, + lifts) with their weights.

        ``bulge`` pushes the moved lids out from the eye by that fraction of the chord's sag, so
        partial weights do not cut into the eyeball.
        """
        c = self.eye_of(s)
        mine = (np.sign(self.f.x) == s) | (self.m.eye == s)
        d = np.zeros_like(self.p)
        for weight, angle in ((self.up_lid, upper_angle), (self.lo_lid, lower_angle)):
            a = np.where(mine, weight * angle, 0.0)
            moved = rotate_x(self.p, c, a)
            radial = moved - c
            radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
            sag = np.linalg.norm(self.p - c, axis=1) * (1.0 - np.cos(a / 2.0))
            d += moved + bulge * sag[:, None] * radial - self.p
        return d

    def eye_blink(self, s: int) -> np.ndarray:
        up, lo = self.lid_angles()
        d = self.lids(s, -up, lo, bulge=2.0)
        slit = self.m.eyes[0 if s > 0 else 1]
        # the lid edges meet exactly: the upper edge goes where the lower edge goes
        d[slit.upper] = self.p[slit.lower] + d[slit.lower] - self.p[slit.upper]
        return d

    def eye_rotation(self, s: int, pitch_deg: float, yaw_deg: float, lid_follow: float) -> np.ndarray:
        """Turn side ``s``'s eyeball (pitch + up, yaw + towards +x); the upper lid follows a little."""
        c = self.eye_of(s)
        ball = (self.m.part == EYEBALL) & (self.m.eye == s)
        moved = rotate_y(rotate_x(self.p, c, np.radians(pitch_deg)), c, np.radians(yaw_deg))
        d = np.where(ball[:, None], moved - self.p, 0.0)
        if pitch_deg:
            follow = np.full(len(self.p), lid_follow * np.radians(pitch_deg))
            d += self.lids(s, follow, 0.4 * follow, bulge=1.0)
        return d

    def eye_squint(self, s: int) -> np.ndarray:
        up, lo = self.lid_angles()
        d = self.lids(s, -0.12 * up, 1.2 * lo, bulge=1.0)
        cheek = gauss(self.side_x(s) - L.EYE_X, 1.3) * gauss(self.f.y - (L.EYE_Y - 1.8), 0.9)
        return d + vec(0, 0.18, 0.05) * (cheek * self.f.skin_front)[:, None]

    def eye_wide(self, s: int) -> np.ndarray:
        up, lo = self.lid_angles()
        return self.lids(s, 0.3 * up, -0.5 * lo, bulge=0.5)

    # ------------------------------------------------------------------ jaw
    def jaw_open(self) -> np.ndarray:
        return self.jaw_rotation(JAW_OPEN_DEG)

    def jaw_shift(self, dx: float, dz: float) -> np.ndarray:
        return vec(dx, 0, dz) * self.f.jaw[:, None]

    # ------------------------------------------------------------------ mouth
    def mouth_close(self) -> np.ndarray:
        """Seal the lips against an open jaw: the gap jawOpen makes is closed 45 % from above."""
        f, m = self.f, self.m
        lower_row = m.mouth.lower
        jaw = self.jaw_open()[lower_row]  # [K, 3] jaw motion of the lower lip edge
        xs = self.p[lower_row, 0]
        order = np.argsort(xs)
        gap = np.stack([np.interp(f.x, xs[order], jaw[order, k]) for k in range(3)], 1)
        return gap * ((0.45 - f.lower) * f.lips_area)[:, None]

    def lip_core_z(self) -> np.ndarray:
        """Depth ``[V]`` of the lips' cores at each vertex's x: 0.45 cm behind the mouth line."""
        line = self.p[self.m.mouth.upper]
        order = np.argsort(line[:, 0])
        return np.interp(self.f.x, line[order, 0], line[order, 2]) - 0.45

    def lip_turn(self, upper: bool, angle: float, reach: float = 0.9, span: float = 1.05) -> np.ndarray:
        """Turn one lip about its core (an x axis inside the lip) by ``angle`` rad: + rolls it in, - out.

        The lip, its inner surface and the skin just past the red turn rigidly; the turn fades
        over ``reach`` cm beyond the vermilion border and towards ``span`` times the mouth half-width.
        """
        f = self.f
        sign = 1.0 if upper else -1.0
        top, bottom = lip_heights(f.x / L.MOUTH_HALF_WIDTH)
        border = np.maximum(top if upper else bottom, 0.3)
        away = sign * f.height - border  # distance beyond the border (negative on the red)
        mine = (f.lower < 0.5) if upper else (f.lower >= 0.5)
        w = mine * (1.0 - smoothstep(0.0, reach, away)) * self.mouth_mask()
        w *= 1.0 - smoothstep(span - 0.5, span, np.abs(f.x) / L.MOUTH_HALF_WIDTH)
        core = vec(0.0, L.MOUTH_Y + sign * 0.5 * border, self.lip_core_z())  # [V, 3] axis points
        return rotate_x(self.p, core, -sign * angle * w) - self.p  # the lower lip rolls in lifting its front

    def lip_thin(self, amount: float, side: np.ndarray | float = 1.0) -> np.ndarray:
        """Squeeze the red of both lips towards the mouth line by ``amount`` (0..1) of its height."""
        f = self.f
        h = np.clip(f.y - L.MOUTH_Y, -1.6, 1.6)  # 0 on both copies of the mouth line
        w = (1.0 - smoothstep(0.7, 1.7, np.abs(f.height))) * self.mouth_mask() * side
        w *= 1.0 - smoothstep(0.8, 1.3, np.abs(f.x) / L.MOUTH_HALF_WIDTH)
        return vec(0, -amount * h, 0) * w[:, None]

    def cone(self, reach: float) -> np.ndarray:
        """Weight ``[V]``: 1 on the lips and inner lips, falling off over ``reach`` cm round them."""
        f = self.f
        top, bottom = lip_heights(f.x / L.MOUTH_HALF_WIDTH)
        out = np.clip(np.where(f.height > 0, f.height - np.maximum(top, 0.6), -f.height - np.maximum(bottom, 0.6)),
                      0.0, None)
        beyond = np.clip(np.abs(f.x) - L.MOUTH_HALF_WIDTH, 0.0, None)
        w = gauss(np.hypot(out, beyond), reach) * self.f.skin_front
        return np.where(self.mouth_mask() * (self.m.part == MOUTH_BAG) > 0, 1.0, w)

    def mouth_funnel(self) -> np.ndarray:
        """Lips pushed forward into a rounded trumpet ("oo", "sh"): bunched, parted, red turned out.

        The jaw drops a little so the teeth part behind the opening.
        """
        f = self.f
        u = f.x / L.MOUTH_HALF_WIDTH
        open_ = np.clip(1.0 - (u / 0.8) ** 2, 0.0, None) ** 0.5  # a round opening in the middle
        cone = self.cone(1.1)
        inner = ((self.m.part == MOUTH_BAG) & (self.m.ring == 2)).astype(float)
        lift = np.where(f.lower > 0.5, 0.0, 0.18) * open_ * gauss(f.height, 1.3) * (1.0 - 0.4 * inner)
        bunch = -0.3 * f.x * cone
        d = vec(bunch, lift * self.mouth_mask(), 0.75 * cone + 0.15 * open_ * f.lips_area)
        turn = self.lip_turn(True, -0.5, span=0.9) + self.lip_turn(False, -0.5, span=0.9)
        return d + turn + self.jaw_rotation(0.28 * JAW_OPEN_DEG)

    def mouth_pucker(self) -> np.ndarray:
        """Lips pushed forward and bunched to the middle, fuller and slightly turned out; closed."""
        f = self.f
        u = f.x / L.MOUTH_HALF_WIDTH
        cone = self.cone(1.3)
        forward = 1.05 * cone * np.clip(1.0 - 0.35 * u**2, 0.0, None)
        bunch = -0.31 * f.x * cone
        d = vec(bunch, 0.0, forward)
        return d + self.lip_thin(-0.25)

    def mouth_shift(self, s: int) -> np.ndarray:
        w = self.f.lips_area * gauss(self.f.x, 3.5)
        return vec(0.8 * s, 0.0, -0.1) * w[:, None]

    def corner_pull(self, s: int, reach: float) -> np.ndarray:
        """Weight ``[V]``: 1 at side ``s``'s mouth corner, 0 in the middle of the lips (a U along them)."""
        f, xs = self.f, self.side_x(s)
        along = smoothstep(-0.15, 1.0, xs / L.MOUTH_HALF_WIDTH)
        beyond = gauss(np.clip(xs - L.MOUTH_HALF_WIDTH, 0.0, None), reach)
        return along * beyond * gauss(f.y - L.MOUTH_Y, 0.9 * reach) * self.mouth_mask()  # same on both lips

    def nasolabial(self, s: int) -> np.ndarray:
        """Weight ``[V]`` of the cheek lateral to side ``s``'s nose-to-mouth fold (sharp at the fold)."""
        f, xs = self.f, self.side_x(s)
        a, b = np.array([1.75, L.NOSE_TIP_Y - 0.35]), np.array([3.75, L.MOUTH_Y - 1.2])
        t = ((xs - a[0]) * (b - a)[0] + (f.y - a[1]) * (b - a)[1]) / ((b - a) @ (b - a))  # 0..1 along it
        normal = np.array([(b - a)[1], -(b - a)[0]]) / np.linalg.norm(b - a)  # points laterally (+x)
        normal *= np.sign(normal[0])
        dist = (xs - a[0]) * normal[0] + (f.y - a[1]) * normal[1]
        along = smoothstep(-0.25, 0.1, t) * (1.0 - smoothstep(0.85, 1.2, t))
        return smoothstep(-0.05, 0.55, dist) * gauss(dist, 2.0) * along * f.skin_front

    def mouth_smile(self, s: int) -> np.ndarray:
        f = self.f
        corner = self.corner_pull(s, 1.9)
        cheek = gauss(self.side_x(s) - 3.3, 1.4) * gauss(f.y - (L.EYE_Y - 3.4), 1.5) * f.skin_front
        fold = self.nasolabial(s)
        _, lo = self.lid_angles()
        return (vec(0.5 * s, 0.8, -0.45) * corner[:, None] + vec(0.05 * s, 0.45, 0.3) * cheek[:, None]
                + vec(0.1 * s, 0.3, 0.3) * fold[:, None]
                + self.lids(s, 0.0 * lo, 0.3 * lo, bulge=1.0))

    def mouth_frown(self, s: int) -> np.ndarray:
        f = self.f
        corner = self.corner_pull(s, 1.7)
        below = corner * smoothstep(0.5, -1.5, f.y - L.MOUTH_Y)  # skin under the corner drawn down further
        return vec(0.15 * s, -0.7, -0.1) * corner[:, None] + vec(0.05 * s, -0.25, -0.1) * below[:, None]

    def mouth_dimple(self, s: int) -> np.ndarray:
        corner = self.mouth_corner_field(s, reach=1.3)
        return vec(0.25 * s, 0.05, -0.35) * corner[:, None]

    def mouth_stretch(self, s: int) -> np.ndarray:
        f = self.f
        corner = self.corner_pull(s, 1.8)
        half = smoothstep(-1.0, 1.0, self.side_x(s))
        lower = self.lower_part() * gauss(f.x, 1.8) * half
        return (vec(0.65 * s, -0.3, -0.25) * corner[:, None] + vec(0, -0.2, 0) * lower[:, None]
                + self.lip_thin(0.35, half))

    def mouth_roll(self, upper: bool) -> np.ndarray:
        """Roll one lip in over the teeth: its red turns back into the mouth."""
        sign = 1.0 if upper else -1.0
        d = self.lip_turn(upper, 1.45, reach=1.0)
        w = (self.upper_part() if upper else self.lower_part()) * gauss(self.f.x, 2.2)
        return d + vec(0, -sign * 0.1, -0.15) * w[:, None]

    def mouth_shrug(self, upper: bool) -> np.ndarray:
        f = self.f
        if upper:
            return vec(0, 0.3, 0.15) * self.upper_part()[:, None]
        chin = self.f.skin_front * gauss(f.x, 2.2) * gauss(f.y - (L.MOUTH_Y - 3.0), 1.5)
        return vec(0, 0.35, 0.2) * np.maximum(self.lower_part(), chin)[:, None]

    def mouth_press(self, s: int) -> np.ndarray:
        """Lips pressed together: the red thins and goes back, the skin round it bulges a little."""
        f = self.f
        half = smoothstep(-1.0, 1.0, self.side_x(s))
        rim = gauss(np.abs(f.height) - 1.2, 0.45) * self.cone(1.0) * half
        red = self.mouth_mask() * gauss(f.height, 1.0) * half * gauss(f.x / L.MOUTH_HALF_WIDTH, 1.1)
        return (self.lip_thin(0.55, half) + vec(0.1 * s, 0, -0.2) * red[:, None]
                + vec(0, 0, 0.12) * rim[:, None])

    def mouth_lower_down(self, s: int) -> np.ndarray:
        w = self.lower_part() * gauss(self.side_x(s) - 0.9, 1.5)
        return vec(0, -0.75, 0.12) * w[:, None]

    def mouth_upper_up(self, s: int) -> np.ndarray:
        f = self.f
        w = self.upper_part() * gauss(self.side_x(s) - 0.9, 1.5)
        fold = self.f.skin_front * gauss(self.side_x(s) - 1.8, 1.0) * gauss(f.y - (L.MOUTH_Y + 2.2), 1.0)
        return vec(0, 0.7, 0.15) * np.maximum(w, 0.5 * fold)[:, None] + 0.5 * vec(0.05 * s, 0.3, 0.3) * \
            self.nasolabial(s)[:, None]

    # ------------------------------------------------------------------ brows, cheeks, nose, tongue
    def brow_field(self, center_x: float, width: float) -> np.ndarray:
        f = self.f
        return self.f.skin_front * gauss(f.x - center_x, width) * gauss(f.y - (L.BROW_Y + 0.5), 1.6) \
            * (f.y > L.EYE_Y) * (1.0 - 0.7 * self.up_lid)

    def brow_down(self, s: int) -> np.ndarray:
        f = self.f
        w = self.brow_field(s * 2.3, 1.8)
        between = f.skin_front * gauss(f.x, 0.7) * gauss(f.y - L.BROW_Y, 0.9)
        crease = f.skin_front * gauss(self.side_x(s) - 0.55, 0.18) * gauss(f.y - L.BROW_Y, 0.7)
        return (vec(-0.3 * s, -0.6, 0.15) * w[:, None] + vec(0, -0.15, 0.12) * between[:, None]
                + vec(0, 0, -0.14) * crease[:, None])

    def brow_inner_up(self) -> np.ndarray:
        """Inner brow ends raised (the brows tilt up to the middle), the forehead above them creased."""
        f = self.f
        inner = gauss(np.abs(f.x) - 1.2, 1.3) + 0.3 * gauss(f.x, 1.0)
        w = self.f.skin_front * inner * gauss(f.y - (L.BROW_Y + 0.6), 1.5) * (f.y > L.EYE_Y) \
            * (1.0 - 0.7 * self.up_lid)
        furrows = f.skin_front * gauss(f.x, 2.4) * (gauss(f.y - (L.BROW_Y + 2.2), 0.28)
                                                    + 0.7 * gauss(f.y - (L.BROW_Y + 3.4), 0.3))
        return vec(0, 0.85, 0.05) * w[:, None] + vec(0, 0, -0.13) * furrows[:, None]

    def brow_outer_up(self, s: int) -> np.ndarray:
        w = self.brow_field(s * 4.0, 1.5)
        return vec(0.05 * s, 0.65, 0) * w[:, None]

    def cheek_puff(self) -> np.ndarray:
        f = self.f
        cheeks = gauss(np.abs(f.x) - 4.2, 1.5) * gauss(f.y - (L.MOUTH_Y + 1.0), 1.8) * f.skin_front
        return 1.1 * self.normals * cheeks[:, None] + vec(0, 0, 0.2) * f.lips_area[:, None]

    def cheek_squint(self, s: int) -> np.ndarray:
        f = self.f
        w = gauss(self.side_x(s) - 3.5, 1.5) * gauss(f.y - (L.EYE_Y - 2.2), 1.1) * f.skin_front
        _, lo = self.lid_angles()
        return vec(0, 0.6, 0.2) * w[:, None] + self.lids(s, 0.0 * lo, 0.8 * lo, bulge=1.0)

    def nose_sneer(self, s: int) -> np.ndarray:
        f = self.f
        w = gauss(self.side_x(s) - 1.2, 0.9) * gauss(f.y - (L.NOSE_TIP_Y - 0.2), 1.1) * f.skin_front
        return vec(0.08 * s, 0.3, -0.05) * w[:, None]

    def tongue_out(self) -> np.ndarray:
        f = self.f
        tongue = (self.m.part == TONGUE).astype(float)
        front = tongue * smoothstep(f.z[tongue > 0].min(), f.z[tongue > 0].max(), f.z)
        d = vec(0, -0.35, 2.6) * front[:, None]
        return d + vec(0, -0.35, 0.1) * self.lower_part()[:, None] + vec(0, 0.1, 0.1) * self.upper_part()[:, None]

    # ------------------------------------------------------------------ all 52
    def build(self) -> np.ndarray:
        """Deltas ``[52, V, 3]`` in :data:`~thunder3d.rigs.arkit.ARKIT_NAMES` order."""
        shapes = {"jawOpen": self.jaw_open(), "jawForward": self.jaw_shift(0.0, 0.6),
                  "mouthClose": self.mouth_close(), "mouthFunnel": self.mouth_funnel(),
                  "mouthPucker": self.mouth_pucker(),
                  "mouthRollLower": self.mouth_roll(False), "mouthRollUpper": self.mouth_roll(True),
                  "mouthShrugLower": self.mouth_shrug(False), "mouthShrugUpper": self.mouth_shrug(True),
                  "browInnerUp": self.brow_inner_up(), "cheekPuff": self.cheek_puff(),
                  "tongueOut": self.tongue_out()}
        for name, s in (("Left", 1), ("Right", -1)):
            shapes.update({
                f"eyeBlink{name}": self.eye_blink(s),
                f"eyeLookDown{name}": self.eye_rotation(s, -25.0, 0.0, 0.35),
                f"eyeLookUp{name}": self.eye_rotation(s, 20.0, 0.0, 0.35),
                f"eyeLookIn{name}": self.eye_rotation(s, 0.0, -25.0 * s, 0.0),
                f"eyeLookOut{name}": self.eye_rotation(s, 0.0, 25.0 * s, 0.0),
                f"eyeSquint{name}": self.eye_squint(s), f"eyeWide{name}": self.eye_wide(s),
                f"jaw{name}": self.jaw_shift(0.7 * s, 0.0), f"mouth{name}": self.mouth_shift(s),
                f"mouthSmile{name}": self.mouth_smile(s), f"mouthFrown{name}": self.mouth_frown(s),
                f"mouthDimple{name}": self.mouth_dimple(s), f"mouthStretch{name}": self.mouth_stretch(s),
                f"mouthPress{name}": self.mouth_press(s), f"mouthLowerDown{name}": self.mouth_lower_down(s),
                f"mouthUpperUp{name}": self.mouth_upper_up(s), f"browDown{name}": self.brow_down(s),
                f"browOuterUp{name}": self.brow_outer_up(s), f"cheekSquint{name}": self.cheek_squint(s),
                f"noseSneer{name}": self.nose_sneer(s),
            })
        return np.stack([shapes[n] for n in ARKIT_NAMES])
