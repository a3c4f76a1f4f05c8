"""Closed meshes inside the head: eyeballs, the two rows of teeth with gums, the tongue.

Each builder returns a :class:`Part` in its rest position (cm), colours included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thunder3d.rigs._head import layout as L

SCLERA = (0.93, 0.91, 0.87)
IRIS = (0.33, 0.45, 0.55)
IRIS_RIM = (0.16, 0.22, 0.28)
PUPIL = (0.02, 0.02, 0.03)
TOOTH = (0.95, 0.93, 0.85)
TOOTH_GAP = (0.70, 0.66, 0.58)
GUM = (0.85, 0.48, 0.50)
TONGUE = (0.80, 0.42, 0.44)

# widths (arc length, cm) of the teeth from the middle outwards: incisors, canine, premolars
TOOTH_WIDTHS = (0.85, 0.66, 0.75, 0.70, 0.70)


@dataclass
class Part:
    """A closed mesh: ``verts [V, 3]``, ``faces [F, 3]`` (local indices), ``colors [V, 3]``."""

    verts: np.ndarray
    faces: np.ndarray
    colors: np.ndarray


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume of a closed triangle mesh; positive when the faces wind outwards."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->", a, np.cross(b, c)) / 6.0)


def _outward(part: Part) -> Part:
    if signed_volume(part.verts, part.faces) < 0:
        part.faces = part.faces[:, ::-1].copy()
    return part


def sweep(sections: np.ndarray, closed_ends: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A tube through cross-section loops ``[S, K, 3]``: verts ``[S K (+2), 3]``, faces ``[F, 3]``.

    With ``closed_ends`` the first and last loops are capped by fans to their centroids.
    """
    s, k, _ = sections.shape
    idx = np.arange(s * k).reshape(s, k)
    a, b = idx[:-1], idx[1:]
    a1, b1 = np.roll(a, -1, axis=1), np.roll(b, -1, axis=1)
    faces = [np.stack([a, b, a1], -1).reshape(-1, 3), np.stack([b, b1, a1], -1).reshape(-1, 3)]
    verts = [sections.reshape(-1, 3)]
    if closed_ends:
        ends = np.stack([sections[0].mean(0), sections[-1].mean(0)])
        first, last = s * k, s * k + 1
        faces += [np.stack([np.full(k, first), idx[0], np.roll(idx[0], -1)], 1),
                  np.stack([np.full(k, last), np.roll(idx[-1], -1), idx[-1]], 1)]
        verts.append(ends)
    return np.concatenate(verts), np.concatenate(faces)


def eyeball(center, segments: int = 24) -> Part:
    """A UV sphere looking along +z with a slightly bulging cornea; pupil, iris and sclera colours."""
    pa, ia = L.PUPIL_ANGLE, L.IRIS_ANGLE
    polar = np.concatenate([[0.07, 0.15, pa - 0.01, pa + 0.01, 0.33, 0.43, ia - 0.012, ia + 0.012],
                            np.linspace(ia + 0.2, np.pi - 0.15, 12)])
    azim = np.arange(segments) * (2 * np.pi / segments)
    radius = L.EYE_RADIUS + 0.07 * np.clip(1.0 - (polar / ia) ** 2, 0.0, None)  # cornea
    ring = np.stack([np.sin(polar)[:, None] * np.cos(azim), np.sin(polar)[:, None] * np.sin(azim),
                     np.cos(polar)[:, None].repeat(segments, 1)], -1) * radius[:, None, None]
    verts, faces = sweep(ring)  # the end fans meet the two poles, moved onto the sphere below
    verts[-2:] = [[0, 0, L.EYE_RADIUS + 0.07], [0, 0, -L.EYE_RADIUS]]
    angle = np.concatenate([np.repeat(polar, segments), [0.0, np.pi]])
    colors = np.where((angle < pa)[:, None], PUPIL,
                      np.where((angle < ia)[:, None],
                               np.where((angle > ia - 0.1)[:, None], IRIS_RIM, IRIS), SCLERA))
    return _outward(Part(verts + np.asarray(center), faces, colors.astype(float)))


def _tooth_stations() -> tuple[np.ndarray, np.ndarray]:
    """Arc-length stations ``[S]`` along one dental arch (middle = 0) and a gap flag per station."""
    bounds = np.concatenate([[0.0], np.cumsum(TOOTH_WIDTHS)])
    half = []
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        half += [b0, b0 + 0.08, 0.5 * (b0 + b1), b1 - 0.08]
    half = np.array(half[1:] + [bounds[-1]])
    arc = np.concatenate([-half[::-1], [0.0], half])
    gap = np.isin(np.round(np.abs(arc), 6), np.round(bounds, 6))
    return arc, gap


def _arch_x(arc: np.ndarray, curve: float) -> np.ndarray:
    """x ``[S]`` on the parabola z = -curve x^2 at the given arc lengths from its apex."""
    xs = np.linspace(0.0, 4.0, 400)
    lengths = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(xs), np.diff(curve * xs**2)))])
    return np.sign(arc) * np.interp(np.abs(arc), lengths, xs)


def teeth_row(upper: bool, z_front: float, curve: float) -> Part:
    """One row of teeth with its gums, swept along the dental arch.

    The upper biting edge lies 0.3 cm below the mouth line, overlapping the lower one (0.1 cm
    below it, behind the upper incisors); crowns are 0.9 cm tall and the gum 0.5 cm more.
    """
    arc, gap = _tooth_stations()
    x = _arch_x(arc, curve)
    z = z_front - curve * x**2
    normal = np.stack([2 * curve * x, np.ones_like(x)], 1) / np.hypot(2 * curve * x, 1)[:, None]  # (x, z) out
    thick = 0.62 + 0.18 * (x / x.max()) ** 2
    sign = 1.0 if upper else -1.0
    edge = L.MOUTH_Y - (0.2 + 0.1 * sign) + 0.1 * sign * gap  # upper edge overlaps the lower; gaps dip
    # profile (depth behind the front face, height from the edge) round the section
    depth = np.array([0.08, 0.0, 0.0, 0.0, -0.04, 0.12, 0.88, 1.0, 1.0, 0.92])
    height = np.array([0.0, 0.25, 0.88, 0.9, 1.15, 1.4, 1.4, 1.15, 0.3, 0.0])
    gum = height > 0.89
    d = depth[None, :] * thick[:, None]  # [S, K]
    sections = np.stack([x[:, None] - d * normal[:, None, 0],
                         edge[:, None] + sign * height[None, :],
                         z[:, None] - d * normal[:, None, 1]], -1)
    verts, faces = sweep(sections)
    colors = np.where(gum[None, :, None], GUM, np.where(gap[:, None, None], TOOTH_GAP, TOOTH))
    colors = np.concatenate([colors.reshape(-1, 3), [GUM, GUM]])
    return _outward(Part(verts, faces, colors.astype(float)))


def tongue(z_front: float, rings: int = 12, segments: int = 18) -> Part:
    """A flattened ellipsoid lying inside the lower dental arch, its tip behind the incisors."""
    center = np.array([0.0, L.MOUTH_Y - 0.95, z_front - 3.7])
    radii = np.array([1.85, 0.6, 2.6])
    polar = np.linspace(0.0, np.pi, rings + 2)[1:-1]  # from the tip (+z) backwards
    azim = np.arange(segments) * (2 * np.pi / segments)
    unit = np.stack([np.sin(polar)[:, None] * np.cos(azim), np.sin(polar)[:, None] * np.sin(azim),
                     np.cos(polar)[:, None].repeat(segments, 1)], -1)
    unit[..., 1] *= 1.0 - 0.3 * np.exp(-(unit[..., 0] / 0.25) ** 2) * (unit[..., 1] > 1e-6)  # midline groove
    verts, faces = sweep(center + unit * radii)
    verts[-2:] = center + np.array([[0, 0, radii[2]], [0, 0, -radii[2]]])
    colors = np.tile(TONGUE, (len(verts), 1))
    return _outward(Part(verts, faces, colors))
