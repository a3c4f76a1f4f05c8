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
from thunder3d.rigs._head.fields import (Fields, compute_fields, gauss, lid_margins, lower_lid,
                                         upper_lid)
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

    def mouth_funnel(self) -> np.ndarray:
        f = self.f
        u = f.x / L.MOUTH_HALF_WIDTH
        open_ = np.clip(1.0 - u**2, 0.0, None) ** 0.7
        inner = ((self.m.part == MOUTH_BAG) & (self.m.ring <= 2)).astype(float)
        lift = np.where(f.lower > 0.5, -0.45, 0.35) * open_ * gauss(f.height, 1.2)
        d = vec(-0.18 * f.x, lift, 0.55 + 0.35 * inner + 0.2 * open_)
        return d * f.lips_area[:, None]

    def mouth_pucker(self) -> np.ndarray:
        f = self.f
        u = f.x / L.MOUTH_HALF_WIDTH
        forward = 0.9 * np.clip(1.0 - 0.5 * u**2, 0.0, None)
        squeeze = -0.35 * f.height * gauss(f.height, 1.0)  # lips pressed towards the mouth line
        return vec(-0.36 * f.x * gauss(u, 1.6), squeeze, forward) * f.lips_area[:, None]

    def mouth_shift(self, s: int) -> np.ndarray:
        w = self.f.lips_area * gauss(self.f.x, 3.5)
        return vec(0.8 * s, 0.0, -0.1) * w[:, None]

    def mouth_smile(self, s: int) -> np.ndarray:
        corner = self.mouth_corner_field(s, reach=2.0)
        cheek = gauss(self.side_x(s) - 3.3, 1.4) * gauss(self.f.y - (L.MOUTH_Y + 3.0), 1.5) * self.f.skin_front
        return vec(0.45 * s, 0.55, -0.3) * corner[:, None] + vec(0.1 * s, 0.35, 0.2) * cheek[:, None]

    def mouth_frown(self, s: int) -> np.ndarray:
        corner = self.mouth_corner_field(s, reach=1.6)
        return vec(0.1 * s, -0.5, -0.05) * corner[:, None]

    def mouth_dimple(self, s: int) -> np.ndarray:
        corner = self.mouth_corner_field(s, reach=1.3)
        return vec(0.25 * s, 0.05, -0.35) * corner[:, None]

    def mouth_stretch(self, s: int) -> np.ndarray:
        corner = self.mouth_corner_field(s, reach=1.8)
        lower = self.f.lower * corner
        return vec(0.5 * s, -0.15, -0.15) * corner[:, None] + vec(0, -0.2, 0) * lower[:, None]

    def mouth_roll(self, upper: bool) -> np.ndarray:
        """Roll one lip in over the teeth: its red turns inwards (back and towards the mouth line)."""
        f = self.f
        part = self.upper_part() if upper else self.lower_part()
        sign = 1.0 if upper else -1.0
        away = np.clip(sign * f.height, 0.0, 1.2)  # distance from the mouth line on that lip
        d = vec(0, -sign * 0.45 * away, -0.35 - 0.3 * away)
        return d * (part * np.clip(1.0 - (f.x / (L.MOUTH_HALF_WIDTH + 0.3)) ** 2, 0.0, None))[:, None]

    def mouth_shrug(self, upper: bool) -> np.ndarray:
        f = self.f
        if upper:
            return vec(0, 0.3, 0.15) * self.upper_part()[:, None]
        chin = self.f.skin_front * gauss(f.x, 2.2) * gauss(f.y - (L.MOUTH_Y - 3.0), 1.5)
        return vec(0, 0.35, 0.2) * np.maximum(self.lower_part(), chin)[:, None]

    def mouth_press(self, s: int) -> np.ndarray:
        f = self.f
        half = smoothstep(-1.0, 1.0, self.side_x(s)) * f.lips_area * gauss(f.height, 0.9)
        return vec(0.12 * s, -0.3 * np.clip(f.height, -0.9, 0.9), -0.1) * half[:, None]

    def mouth_lower_down(self, s: int) -> np.ndarray:
        w = self.lower_part() * gauss(self.side_x(s) - 0.9, 1.5)
        return vec(0, -0.6, 0.05) * w[:, None]

    def mouth_upper_up(self, s: int) -> np.ndarray:
        f = self.f
        w = self.upper_part() * gauss(self.side_x(s) - 0.9, 1.5)
        fold = self.f.skin_front * gauss(self.side_x(s) - 1.8, 1.0) * gauss(f.y - (L.MOUTH_Y + 2.2), 1.0)
        return vec(0, 0.55, 0.1) * np.maximum(w, 0.5 * fold)[:, None]

    # ------------------------------------------------------------------ brows, cheeks, nose, tongue
    def brow_field(self, center_x: float, width: float) -> np.ndarray:
        f = self.f
        return self.f.skin_front * gauss(f.x - center_x, width) * gauss(f.y - (L.BROW_Y + 0.5), 1.6) \
            * (f.y > L.EYE_Y) * (1.0 - 0.7 * self.up_lid)

    def brow_down(self, s: int) -> np.ndarray:
        w = self.brow_field(s * 2.3, 1.6)
        return vec(-0.12 * s, -0.4, 0.08) * w[:, None]

    def brow_inner_up(self) -> np.ndarray:
        w = self.brow_field(0.0, 1.9)
        return vec(0, 0.55, 0) * w[:, None]

    def brow_outer_up(self, s: int) -> np.ndarray:
        w = self.brow_field(s * 4.0, 1.4)
        return vec(0, 0.5, 0) * w[:, None]

    def cheek_puff(self) -> np.ndarray:
        f = self.f
        cheeks = gauss(np.abs(f.x) - 3.6, 1.4) * gauss(f.y - (L.MOUTH_Y + 0.8), 1.8) * f.skin_front
        out = np.stack([f.x, np.zeros_like(f.x), f.z - L.AXIS_Z], 1)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return 0.9 * out * cheeks[:, None] + vec(0, 0, 0.15) * f.lips_area[:, None]

    def cheek_squint(self, s: int) -> np.ndarray:
        f = self.f
        w = gauss(self.side_x(s) - 3.6, 1.5) * gauss(f.y - (L.EYE_Y - 2.3), 1.2) * f.skin_front
        _, lo = self.lid_angles()
        return vec(0, 0.3, 0.08) * w[:, None] + self.lids(s, 0.0 * lo, 0.6 * lo, bulge=1.0)

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
