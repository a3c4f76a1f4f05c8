"""Camera math in numpy: look-at and perspective matrices, and framing a face for named views.

Matrices are ``[4, 4]`` float64 in the column-vector convention (``clip = P @ V @ [x, y, z, 1]``);
the renderer transposes them when it hands them to OpenGL. World coordinates follow the rig
convention: +y up, +z out of the face, +x towards the subject's left.
"""

from __future__ import annotations

from thunder3d.errors import RenderError
import math
from dataclasses import dataclass

import numpy as np


VIEWS = {"front": 0.0, "three_quarter": 35.0, "side": 90.0}
"""Named views -> camera azimuth in degrees around +y. Positive angles move the camera towards +x,
so ``three_quarter`` and ``side`` show the subject's left cheek."""

MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "m": 1000.0}  # as in rigs.base, without importing torch here
MIN_RADIUS_MM = 5.0
"""Smallest half-extent framed, so a degenerate (flat or single-point) input still gets a camera."""


@dataclass(frozen=True)
class Camera:
    """A perspective pinhole camera.

    Attributes:
        eye: camera position ``(x, y, z)`` in world units.
        target: the point looked at.
        up: world direction that appears upwards in the image.
        fov_y: vertical field of view in degrees.
        near, far: clip distances (world units, > 0).
    """

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov_y: float = 20.0
    near: float = 0.1
    far: float = 1000.0

    def view_matrix(self) -> np.ndarray:
        """World -> camera ``[4, 4]``."""
        return look_at(self.eye, self.target, self.up)

    def projection_matrix(self, aspect: float) -> np.ndarray:
        """Camera -> clip ``[4, 4]`` for an image of width/height ``aspect``."""
        return perspective(self.fov_y, aspect, self.near, self.far)


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World -> camera matrix ``[4, 4]``: the camera sits at ``eye`` and looks down its -z at ``target``."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = right, true_up, -forward  # rows: camera axes in world coordinates
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def perspective(fov_y: float, aspect: float, near: float, far: float) -> np.ndarray:
    """OpenGL perspective projection ``[4, 4]`` (``fov_y`` in degrees, depth mapped to [-1, 1])."""
    f = 1.0 / math.tan(math.radians(fov_y) / 2.0)
    m = np.zeros((4, 4))
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2.0 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def parse_views(views: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"front,three_quarter"`` or a sequence -> validated tuple of view names."""
    names = views.split(",") if isinstance(views, str) else list(views)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise RenderError(f"no view given; valid: {list(VIEWS)}")
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise RenderError(f"unknown view {unknown[0]!r}; valid: {list(VIEWS)}")
    return tuple(names)


def framing(
    points: np.ndarray,
    view: str = "front",
    units: str = "cm",
    *,
    aspect: float = 1.0,
    fov_y: float = 20.0,
    margin: float = 0.12,
) -> Camera:
    """A camera that frames ``points`` for a named view.

    Compute it once from the neutral mesh (not per frame) so an animation does not jitter.

    Args:
        points: ``[N, 3]`` vertices (e.g. the rig's ``face`` region) or a ``[2, 3]`` bbox (min, max).
        view: one of :data:`VIEWS`.
        units: length unit of ``points`` (``mm``, ``cm``, ``m``), used for the minimum extent.
        aspect: image width / height.
        fov_y: vertical field of view in degrees (narrow, like a portrait lens).
        margin: fraction of the half-image left empty around the bounding box.
    Returns:
        A :class:`Camera` looking at the bbox centre from the view's azimuth, at eye level, at the
        smallest distance where all eight bbox corners fit inside the image with the margin.
    """
    if view not in VIEWS:
        raise RenderError(f"unknown view {view!r}; valid: {list(VIEWS)}")
    if units not in MM_PER_UNIT:
        raise RenderError(f"unknown units {units!r}; valid: {list(MM_PER_UNIT)}")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if points.size == 0 or not np.isfinite(points).all():
        raise RenderError("cannot frame an empty or non-finite set of points")
    lo, hi = points.min(axis=0), points.max(axis=0)
    center = (lo + hi) / 2.0
    half = np.maximum((hi - lo) / 2.0, MIN_RADIUS_MM / MM_PER_UNIT[units])
    corners = center + half * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])

    azimuth = math.radians(VIEWS[view])
    direction = np.array([math.sin(azimuth), 0.0, math.cos(azimuth)])  # from target towards the eye
    rel = look_at(direction, np.zeros(3))[:3, :3] @ (corners - center).T  # [3, 8] in camera axes
    x, y, toward = rel[0], rel[1], rel[2]  # ``toward``: how far a corner sits in front of the centre
    tan_y = math.tan(math.radians(fov_y) / 2.0) * (1.0 - margin)
    tan_x = tan_y * aspect
    # a corner projects inside the image iff |x| / (d - toward) <= tan_x, likewise for y
    distance = float(np.max(np.maximum(np.abs(x) / tan_x, np.abs(y) / tan_y) + toward))
    return Camera(
        eye=tuple(float(v) for v in center + distance * direction),
        target=tuple(float(v) for v in center),
        fov_y=fov_y,
        near=distance / 10.0,  # generous clip planes: the rest of the head may lie outside the bbox
        far=distance * 10.0,
    )
