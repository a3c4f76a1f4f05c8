"""Signed-distance primitives and the skin of the built-in head as one implicit function.

Points are passed as three coordinate arrays ``x, y, z`` of shape ``[N]`` (cm), which is several
times faster in numpy than ``[N, 3]`` rows; distances come back as ``[N]`` (negative inside). The
ellipsoid distance is the usual first-order bound, good enough for ray casting with bisection.
"""

from __future__ import annotations

import numpy as np

from thunder3d.rigs._head import layout as L


def ellipsoid(x, y, z, center, radii) -> np.ndarray:
    """Approximate distance ``[N]`` to an axis-aligned ellipsoid."""
    qx, qy, qz = (x - center[0]) / radii[0], (y - center[1]) / radii[1], (z - center[2]) / radii[2]
    k0 = np.sqrt(qx * qx + qy * qy + qz * qz)
    qx, qy, qz = qx / radii[0], qy / radii[1], qz / radii[2]
    k1 = np.sqrt(qx * qx + qy * qy + qz * qz)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def sphere(x, y, z, center, radius: float) -> np.ndarray:
    return np.sqrt((x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2) - radius


def capsule(x, y, z, a, b, radius_a: float, radius_b: float) -> np.ndarray:
    """Distance ``[N]`` to the segment ``a``-``b`` swept by a radius varying linearly from a to b."""
    ab = np.subtract(b, a, dtype=float)
    px, py, pz = x - a[0], y - a[1], z - a[2]
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / (ab @ ab), 0.0, 1.0)
    dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    return np.sqrt(dx * dx + dy * dy + dz * dz) - (radius_a + t * (radius_b - radius_a))


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two distances with blend width ``k``."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth intersection; ``smax(a, -b, k)`` carves ``b`` out of ``a``."""
    return -smin(-a, -b, k)


def head_sdf(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance ``[N]`` of the skin: cranium, face, jaw, neck, nose, brows, cheeks, lips, ears."""
    m = np.abs(x)  # one-sided features evaluated at |x| are mirrored onto both sides
    # 1. big masses: cranium, midface, jaw, chin, neck stub cut flat at the bottom
    d = ellipsoid(x, y, z, (0.0, 2.4, -0.7), (7.4, 8.7, 9.7))
    d = smin(d, ellipsoid(x, y, z, (0.0, -3.4, 2.2), (6.6, 5.8, 6.8)), 2.2)
    d = smin(d, ellipsoid(x, y, z, (0.0, -6.8, 3.0), (5.6, 4.4, 6.0)), 2.0)
    d = smin(d, capsule(m, y, z, (0.0, -10.4, 6.6), (4.7, -8.5, 0.8), 1.4, 1.2), 1.6)  # mandible
    d = smin(d, ellipsoid(x, y, z, (0.0, -10.3, 7.2), (2.6, 1.6, 1.9)), 1.8)
    d = smin(d, capsule(x, y, z, (0.0, -6.0, -1.8), (0.0, -24.0, -2.8), 5.0, 5.3), 2.4)
    d = smax(d, L.NECK_BOTTOM - y, 0.6)
    # 2. mid-face relief: muzzle, cheekbones, cheeks, brow ridge, eye sockets, eyeball bulge
    d = smin(d, ellipsoid(x, y, z, (0.0, -6.5, 7.4), (2.9, 2.5, 2.5)), 1.5)
    d = smin(d, ellipsoid(m, y, z, (4.5, -2.1, 5.2), (1.9, 1.3, 2.0)), 2.0)
    d = smin(d, ellipsoid(m, y, z, (3.0, -4.4, 6.7), (2.2, 2.0, 1.6)), 2.2)
    d = smin(d, ellipsoid(m, y, z, (3.8, -5.3, 5.2), (2.0, 1.9, 2.1)), 2.0)  # full cheeks
    d = smin(d, ellipsoid(m, y, z, (2.5, 1.3, 7.3), (2.4, 0.8, 1.2)), 1.8)
    d = smax(d, -ellipsoid(m, y, z, (L.EYE_X, L.EYE_Y - 0.1, 8.3), (1.8, 1.15, 1.3)), 1.3)
    d = smin(d, sphere(m, y, z, (L.EYE_X, L.EYE_Y, L.EYE_Z), L.EYE_RADIUS + 0.08), 0.25)
    # 3. nose: bridge, tip, wings
    d = smin(d, capsule(x, y, z, (0.0, 0.1, 8.7), (0.0, -4.1, 10.7), 0.55, 0.85), 1.3)
    d = smin(d, ellipsoid(x, y, z, (0.0, L.NOSE_TIP_Y, 10.9), (0.8, 0.7, 0.75)), 0.5)
    d = smin(d, ellipsoid(m, y, z, (1.25, L.NOSE_TIP_Y - 0.4, 9.7), (0.7, 0.6, 0.7)), 0.6)
    # 4. lips, with a crease along the mouth line
    d = smin(d, ellipsoid(x, y, z, (0.0, L.MOUTH_Y + 0.45, 9.45), (2.2, 0.55, 0.7)), 0.8)
    d = smin(d, ellipsoid(x, y, z, (0.0, L.MOUTH_Y - 0.55, 9.3), (1.8, 0.6, 0.7)), 0.8)
    d = smax(d, -capsule(x, y, z, (-2.4, L.MOUTH_Y, 10.4), (2.4, L.MOUTH_Y, 10.4), 0.5, 0.5), 0.3)
    # 5. ears: a flattened shell with a hollow
    d = smin(d, ellipsoid(m, y, z, (7.1, -1.3, -1.4), (1.0, 2.9, 1.7)), 0.7)
    d = smax(d, -ellipsoid(m, y, z, (7.8, -1.2, -1.1), (0.55, 1.9, 1.1)), 0.3)
    return d
