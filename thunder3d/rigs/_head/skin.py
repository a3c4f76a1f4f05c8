"""The skin as a ray-cast grid with slits for the mouth and the eyes.

Rays leave a "capsule" spine inside the head: horizontal rays from the vertical axis
``(0, y, AXIS_Z)`` for the band from the brows down to the mouth line, and fans of rays from the
band's two ends for the top of the head and for the chin and neck. So the grid rows through the
eyes and the mouth are level, and each slit is one grid row whose vertices are doubled between
its two corner columns: upper and lower lip (or lid) are distinct vertices. The lids are opened by
warping the grid rows next to the eye slit up and down; the lips stay closed (coincident).

Grid rows run from the crown (row 0) down to the neck; columns go round the head with the
azimuth ``theta`` (0 = straight ahead, positive towards +x), packed densely at the front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thunder3d.rigs._head import layout as L
from thunder3d.rigs._head.raycast import cast_inward
from thunder3d.rigs._head.sdf import head_sdf

NUM_COLUMNS = 120
FRONT_DENSITY = 0.3  # d(theta)/ds at the front relative to a uniform spacing
TOP_Y = 2.6  # top of the band of horizontal rays (above the brows)


@dataclass
class Slit:
    """A doubled stretch of one grid row.

    Attributes:
        row: the grid row.
        cols: ``[K]`` columns from one corner to the other (corners included, single vertices).
        upper: ``[K]`` vertex indices of the upper side (corners shared with ``lower``).
        lower: ``[K]`` vertex indices of the lower side.
    """

    row: int
    cols: np.ndarray
    upper: np.ndarray
    lower: np.ndarray

    def loop(self) -> np.ndarray:
        """Hole boundary ``[2K - 2]``: along the upper side, then back along the lower side."""
        return np.concatenate([self.upper, self.lower[-2:0:-1]])


@dataclass
class SkinGrid:
    """The open skin surface (holes at the slits).

    Attributes:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` outward-wound triangles.
        grid: ``[R, C]`` vertex index of each grid node (the upper copy on slits); poles excluded.
        mouth: the mouth slit; ``eyes``: the lid slits, subject's left (+x) first.
    """

    verts: np.ndarray
    faces: np.ndarray
    grid: np.ndarray
    mouth: Slit
    eyes: tuple[Slit, Slit]


def column_angles(n: int = NUM_COLUMNS) -> np.ndarray:
    """Azimuths ``[n]`` (rad), mirror-symmetric (column ``j`` <-> ``n - j``), dense at the front."""
    s = np.arange(n) * (2.0 / n) - 1.0  # s = 0 (front) is column n // 2, s = -1 the back
    a = FRONT_DENSITY
    return np.pi * (a * s + (1.0 - a) * s**3)


def _spaced(start: float, stop: float, step: float) -> np.ndarray:
    """Values from ``start`` to ``stop`` (both included) at about ``step`` apart."""
    n = max(1, int(round(abs(stop - start) / step)))
    return np.linspace(start, stop, n + 1)


def row_rays() -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per grid row the ray origin height and elevation.

    Returns:
        origin_y ``[R]``, elevation ``[R]`` (rad), the eye slit row and the mouth slit row.
    """
    top = np.radians(np.concatenate([_spaced(84, 36, 6.0), _spaced(33, 3, 3.0)]))
    band = np.concatenate([_spaced(TOP_Y, L.EYE_SLIT_Y, 0.2), _spaced(L.EYE_SLIT_Y, -1.6, 0.2)[1:],
                           _spaced(-1.6, -3.8, 0.33)[1:], _spaced(-3.8, -5.6, 0.2)[1:],
                           _spaced(-5.6, L.MOUTH_Y, 0.18)[1:]])
    bottom = -np.radians(np.concatenate([_spaced(0.8, 8.0, 0.8), _spaced(10, 30, 2.0), _spaced(34, 86, 4.0)]))
    origin_y = np.concatenate([np.full(top.size, TOP_Y), band, np.full(bottom.size, L.MOUTH_Y)])
    elevation = np.concatenate([top, np.zeros(band.size), bottom])
    eye_row = top.size + int(np.argmin(np.abs(band - L.EYE_SLIT_Y)))
    mouth_row = top.size + band.size - 1
    return origin_y, elevation, eye_row, mouth_row


def _rays(origin_y, elevation, theta) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions ``[..., 3]`` of rays from the spine (broadcast over inputs)."""
    origin_y, elevation, theta = np.broadcast_arrays(origin_y, elevation, theta)
    origins = np.stack([np.zeros_like(origin_y), origin_y, np.full_like(origin_y, L.AXIS_Z)], axis=-1)
    c = np.cos(elevation)
    dirs = np.stack([np.sin(theta) * c, np.sin(elevation), np.cos(theta) * c], axis=-1)
    return origins, dirs


def cast(origin_y, elevation, theta) -> np.ndarray:
    """Skin points ``[..., 3]`` hit by the rays (broadcast over the inputs)."""
    origins, dirs = _rays(origin_y, elevation, theta)
    shape = origins.shape
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    t = cast_inward(head_sdf, o, d)
    return (o + t[:, None] * d).reshape(shape)


def lid_profile(theta: np.ndarray, inner: float, outer: float, peak: float) -> np.ndarray:
    """Almond lid opening ``[N]`` in 0..1 between the canthi azimuths ``inner``, ``outer``.

    ``peak`` (0..1) is where along the eye the opening is largest.
    """
    t = np.clip((theta - inner) / (outer - inner), 0.0, 1.0)
    skew = t ** (np.log(0.5) / np.log(peak))  # moves the maximum to t = peak
    return (4.0 * skew * (1.0 - skew)) ** 0.75


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _slit_columns(theta: np.ndarray, hit_x: np.ndarray, x0: float, x1: float) -> np.ndarray:
    """Columns ``[K]`` (increasing) whose hits lie from ``x0`` to ``x1``, on the front (+z) side."""
    front = np.abs(theta) < np.pi / 2
    cand = np.flatnonzero(front)
    j0 = cand[np.argmin(np.abs(hit_x[cand] - x0))]
    j1 = cand[np.argmin(np.abs(hit_x[cand] - x1))]
    return np.arange(min(j0, j1), max(j0, j1) + 1)


def _lid_warp(origin_y: np.ndarray, theta: np.ndarray, eye_cols: np.ndarray, eye_row: int,
              band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-node ray heights ``[R, C]`` with the rows around the eye slit pushed apart.

    Returns the warped heights (upper lid side on the slit row) and the lower-lid heights ``[C]``
    of the slit row.
    """
    n = theta.size
    y_slit = origin_y[eye_row]
    inner, outer = np.abs(theta[eye_cols[0]]), np.abs(theta[eye_cols[-1]])
    inner, outer = min(inner, outer), max(inner, outer)
    opening = lid_profile(np.abs(theta), inner, outer, 0.45), lid_profile(np.abs(theta), inner, outer, 0.55)
    up, down = L.LID_UP * opening[0], L.LID_DOWN * opening[1]  # [C]
    oy = np.repeat(origin_y[:, None], n, axis=1)
    dy = oy - y_slit
    above = band[:, None] & (dy >= 0)
    below = band[:, None] & (dy < 0)
    oy = oy + np.where(above, up * (1.0 - smoothstep(0.0, 1.1, dy)), 0.0)
    oy = oy - np.where(below, down * (1.0 - smoothstep(0.0, 0.9, -dy)), 0.0)
    return oy, y_slit - down


def _grid_faces(upper_ix: np.ndarray, lower_ix: np.ndarray) -> np.ndarray:
    """Triangles ``[F, 3]`` of the quads between consecutive rows, columns wrapping round.

    ``upper_ix`` / ``lower_ix`` ``[R, C]`` index each node as seen from the quad above / below it
    (they differ on slits). The diagonal is mirrored between the two halves so the triangulation
    is left-right symmetric.
    """
    rows, cols = upper_ix.shape
    j = np.arange(cols)
    jn = (j + 1) % cols
    a, c = lower_ix[:-1][:, j], lower_ix[:-1][:, jn]  # upper row of each quad
    b, d = upper_ix[1:][:, j], upper_ix[1:][:, jn]  # lower row
    right = (np.arange(cols) >= cols // 2)[None, :].repeat(rows - 1, axis=0)  # +x half
    t1 = np.where(right[..., None], np.stack([a, b, c], -1), np.stack([a, b, d], -1))
    t2 = np.where(right[..., None], np.stack([b, d, c], -1), np.stack([a, d, c], -1))
    return np.concatenate([t1.reshape(-1, 3), t2.reshape(-1, 3)])


def _fan(center: int, ring: np.ndarray, reverse: bool) -> np.ndarray:
    """Triangles ``[K, 3]`` joining a cyclic ring to a centre vertex."""
    nxt = np.roll(ring, -1)
    tri = np.stack([np.full_like(ring, center), ring, nxt], axis=1)
    return tri[:, [0, 2, 1]] if reverse else tri


def build_skin() -> SkinGrid:
    """Cast the skin grid, open the lids and double the slit rows (see module docstring)."""
    theta = column_angles()
    origin_y, elevation, eye_row, mouth_row = row_rays()
    rows, cols = origin_y.size, theta.size
    band = elevation == 0.0
    # 1. slit extents from the level rows through the eyes and the mouth
    eye_hits = cast(origin_y[eye_row], 0.0, theta)
    mouth_hits = cast(origin_y[mouth_row], 0.0, theta)
    eye_left = _slit_columns(theta, eye_hits[:, 0], L.EYE_INNER_X, L.EYE_OUTER_X)
    eye_right = _slit_columns(theta, eye_hits[:, 0], -L.EYE_OUTER_X, -L.EYE_INNER_X)
    mouth_cols = _slit_columns(theta, mouth_hits[:, 0], -L.MOUTH_HALF_WIDTH, L.MOUTH_HALF_WIDTH)
    # 2. the grid with the lids opened, the poles, and the lower-lid copies of the eye slit row
    oy, lower_lid_y = _lid_warp(origin_y, theta, eye_left, eye_row, band)
    nodes = cast(oy, elevation[:, None], theta[None, :])  # [R, C, 3]
    poles = cast(np.array([TOP_Y, L.MOUTH_Y]), np.radians([90.0, -90.0]), 0.0)  # [2, 3]
    eye_inner = np.concatenate([eye_right[1:-1], eye_left[1:-1]])
    lids = cast(lower_lid_y[eye_inner], 0.0, theta[eye_inner])
    # 3. indices: top pole, grid, bottom pole, lower copies (mouth, then both eyes)
    upper_ix = 1 + np.arange(rows * cols).reshape(rows, cols)
    lower_ix = upper_ix.copy()
    bottom_pole = 1 + rows * cols
    mouth_inner = mouth_cols[1:-1]
    copies = np.concatenate([mouth_inner, eye_inner])
    copy_rows = np.concatenate([np.full(mouth_inner.size, mouth_row), np.full(eye_inner.size, eye_row)])
    lower_ix[copy_rows, copies] = bottom_pole + 1 + np.arange(copies.size)
    verts = np.concatenate([poles[:1], nodes.reshape(-1, 3), poles[1:], nodes[mouth_row, mouth_inner], lids])
    faces = np.concatenate([
        _fan(0, upper_ix[0], reverse=False),
        _grid_faces(upper_ix, lower_ix),
        _fan(bottom_pole, lower_ix[-1], reverse=True),
    ])

    def slit(row: int, cs: np.ndarray) -> Slit:
        return Slit(row, cs, upper_ix[row, cs], lower_ix[row, cs])

    return SkinGrid(verts, faces, upper_ix, slit(mouth_row, mouth_cols),
                    (slit(eye_row, eye_left), slit(eye_row, eye_right)))
