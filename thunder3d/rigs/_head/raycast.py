"""Ray casting an implicit surface: the first hit from outside along rays pointing out of the head."""

from __future__ import annotations

from typing import Callable

import numpy as np

SDF = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _eval(sdf: SDF, origins: np.ndarray, dirs: np.ndarray, t: np.ndarray) -> np.ndarray:
    p = origins + t[:, None] * dirs
    return sdf(p[:, 0], p[:, 1], p[:, 2])


def cast_inward(sdf: SDF, origins: np.ndarray, dirs: np.ndarray, t_far: float = 15.0,
                min_step: float = 0.2, refine: int = 7) -> np.ndarray:
    """Distances ``[N]`` along rays ``origins + t * dirs`` (``[N, 3]`` each, unit ``dirs``) to the surface.

    Marches from ``t_far`` towards the origin (sphere-tracing steps, at least ``min_step``) until the
    first point inside, then refines the bracket with the Illinois variant of regula falsi. Rays
    must start inside the surface at ``t = 0``.
    """
    n = len(origins)
    t_out = np.full(n, t_far)
    f_out = _eval(sdf, origins, dirs, t_out)
    t_in = np.zeros(n)
    f_in = np.full(n, -1.0)
    active = np.arange(n)
    # 1. march inwards until each ray has a point inside
    while active.size:
        t = np.maximum(t_out[active] - np.maximum(0.85 * f_out[active], min_step), 0.0)
        f = _eval(sdf, origins[active], dirs[active], t)
        inside = f <= 0.0
        hit, miss = active[inside], active[~inside]
        t_in[hit], f_in[hit] = t[inside], f[inside]
        t_out[miss], f_out[miss] = t[~inside], f[~inside]
        active = miss
    # 2. refine the bracket [t_in, t_out] (Illinois: halve the weight of a stale end point)
    for _ in range(refine):
        t = t_in + (t_out - t_in) * f_in / (f_in - f_out)
        f = _eval(sdf, origins, dirs, t)
        inside = f <= 0.0
        f_out = np.where(inside, f_out * 0.5, f)
        t_out = np.where(inside, t_out, t)
        f_in = np.where(inside, f, f_in * 0.5)
        t_in = np.where(inside, t, t_in)
    return t_in - (t_out - t_in) * f_in / (f_out - f_in)
