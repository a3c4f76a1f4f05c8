"""Headless rendering of rig vertices to images (OpenGL through EGL, on CPU with Mesa llvmpipe).

Importing this package needs no GL: ``moderngl`` is loaded only when a :class:`Renderer` is made,
so inference code never depends on rendering.

- :func:`render_still` — one frame of a rig from named views, side by side.
- :func:`rig_camera` — the stable camera for a rig and view (from the neutral face, for videos).
- :func:`save_png` — atomic PNG writing.
- :class:`Renderer` — the reusable offscreen renderer (one context, many frames).
- :func:`render_video` / :func:`render_video_grid` — h264 + AAC MP4s of animations with their audio,
  streamed through the bundled ffmpeg (:class:`VideoWriter`); :func:`probe_media` reads streams back.
- :func:`contact_sheet` / :func:`sequence_sheet` — labelled grids of pictures or rendered frames.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from thunder3d.errors import RenderError
from thunder3d.render.camera import VIEWS, Camera, framing, look_at, parse_views, perspective
from thunder3d.render.gl import Renderer, vertex_normals
from thunder3d.render.sheet import GridLayout, contact_sheet, sequence_sheet
from thunder3d.render.video import VideoWriter, probe_media, render_video, render_video_grid


def rig_camera(rig, view: str, aspect: float = 1.0) -> Camera:
    """The camera framing ``rig``'s neutral ``face`` region (all vertices if it has none) for ``view``.

    Built from the neutral mesh, not the animated one, so every frame of a video shares it.
    """
    neutral = rig.neutral.detach().cpu().numpy()
    points = neutral[rig.region("face").cpu().numpy()] if "face" in rig.region_names else neutral
    return framing(points, view, rig.units, aspect=aspect)


def render_still(rig, vertices, views: str | Sequence[str] = "front,three_quarter",
                 size: int | tuple[int, int] = 512) -> np.ndarray:
    """Render one frame of a rig from several views, side by side.

    Args:
        rig: a :class:`thunder3d.rigs.Rig` (faces, vertex colours, neutral, regions, units).
        vertices: ``[V, 3]`` positions (numpy or torch), e.g. ``rig(coeffs)[0]``.
        views: comma-separated string or sequence of names from :data:`VIEWS`.
        size: pixels per view, an int or ``(width, height)``.
    Returns:
        ``[H, W * len(views), 3]`` uint8 RGB.
    """
    names = parse_views(views)
    with Renderer(rig.faces, rig.vertex_colors, size=size) as renderer:
        images = [renderer.render(vertices, rig_camera(rig, view, renderer.aspect)) for view in names]
    return np.concatenate(images, axis=1)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``[H, W, 3]`` (or ``[H, W]``) uint8 image as PNG, atomically (temp file, then rename)."""
    from PIL import Image

    from thunder3d.utils.io import atomic_path

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise RenderError(f"save_png takes a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


__all__ = [
    "VIEWS", "Camera", "GridLayout", "RenderError", "Renderer", "VideoWriter", "contact_sheet", "framing",
    "look_at", "parse_views", "perspective", "probe_media", "render_still", "render_video",
    "render_video_grid", "rig_camera", "save_png", "sequence_sheet", "vertex_normals",
]
