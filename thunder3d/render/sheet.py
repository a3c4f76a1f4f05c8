"""Contact sheets: pictures in a grid, each with an optional label underneath (Pillow text).

- :func:`contact_sheet` lays out ready images (e.g. renders, or frames of a video).
- :func:`sequence_sheet` renders chosen frames of a vertex sequence with one :class:`Renderer`
  and one camera, then lays them out — for documentation figures such as every third frame of a
  word with the phone under each picture.
- :class:`GridLayout` is the shared geometry: cell positions and a canvas with the labels already
  drawn. :func:`thunder3d.render.video.render_video_grid` fills the same canvas once per video
  frame, so labels cost nothing per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from thunder3d.errors import RenderError
from thunder3d.render.gl import _as_numpy, _parse_size

SHEET_BACKGROUND = (255, 255, 255)
LABEL_COLOR = (20, 20, 20)


def _font(height: int):
    """Pillow's default font, scaled to fit a label strip ``height`` px tall when Pillow can."""
    from PIL import ImageFont

    try:  # Pillow >= 10.1 with FreeType ships a scalable default font
        return ImageFont.load_default(size=max(8, int(height * 0.7)))
    except (TypeError, ValueError, OSError):
        return ImageFont.load_default()


def default_label_height(cell_height: int) -> int:
    """Label strip height for a cell: about 11% of it, between 14 and 40 px."""
    return int(min(40, max(14, round(cell_height * 0.11))))


@dataclass(frozen=True)
class GridLayout:
    """Geometry of ``count`` equally sized cells in ``cols`` columns, reading order.

    Attributes:
        count: number of cells.
        cols, rows: grid size.
        cell: ``(width, height)`` of one picture in pixels.
        label_height: pixels below each picture for its label (0: no labels).
    """

    count: int
    cols: int
    rows: int
    cell: tuple[int, int]
    label_height: int = 0

    @classmethod
    def make(cls, count: int, cell: int | tuple[int, int], cols: int | None = None,
             labels: Sequence[str] | None = None, label_height: int | None = None) -> "GridLayout":
        """Validate the arguments; ``cols=None`` picks a near-square grid (``ceil(sqrt(count))``)."""
        if count < 1:
            raise RenderError("a grid needs at least one picture")
        if cols is None:
            cols = math.ceil(math.sqrt(count))
        if isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or cols < 1:
            raise RenderError(f"cols must be a positive integer, got {cols!r}")
        cols = min(int(cols), count)
        width, height = _parse_size(cell)
        if labels is not None and len(labels) != count:
            raise RenderError(f"got {len(labels)} labels for {count} pictures")
        if labels is None:
            label_height = 0
        elif label_height is None:
            label_height = default_label_height(height)
        return cls(count=count, cols=cols, rows=-(-count // cols), cell=(width, height),
                   label_height=int(label_height))

    @property
    def size(self) -> tuple[int, int]:
        """Whole canvas ``(width, height)``."""
        return self.cols * self.cell[0], self.rows * (self.cell[1] + self.label_height)

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left ``(y, x)`` pixel of picture ``index``."""
        row, col = divmod(index, self.cols)
        return row * (self.cell[1] + self.label_height), col * self.cell[0]

    def canvas(self, labels: Sequence[str] | None = None) -> np.ndarray:
        """``[H, W, 3]`` uint8 background with every label drawn, centred under its cell."""
        from PIL import Image, ImageDraw

        out = Image.new("RGB", self.size, SHEET_BACKGROUND)
        if labels is not None and self.label_height:
            draw, font = ImageDraw.Draw(out), _font(self.label_height)
            for k, label in enumerate(labels):
                y, x = self.origin(k)
                text = str(label)
                width = draw.textlength(text, font=font)
                if width > self.cell[0] - 4:  # too long for the cell: shorten and end with "..."
                    while len(text) > 1 and draw.textlength(text + "...", font=font) > self.cell[0] - 4:
                        text = text[:-1]
                    text += "..."
                    width = draw.textlength(text, font=font)
                top = y + self.cell[1] + self.label_height / 2
                draw.text((x + (self.cell[0] - width) / 2, top), text, fill=LABEL_COLOR, font=font,
                          anchor="lm")
        return np.array(out)

    def paste(self, canvas: np.ndarray, index: int, image: np.ndarray) -> None:
        """Copy ``image`` (``[cell_h, cell_w, 3]`` uint8) into cell ``index`` of ``canvas`` in place."""
        y, x = self.origin(index)
        canvas[y:y + self.cell[1], x:x + self.cell[0]] = image


def _as_image(image, cell: tuple[int, int] | None) -> np.ndarray:
    """``[H, W, 3]`` uint8 (grey ``[H, W]`` or RGBA accepted), resized to ``cell`` if given."""
    from PIL import Image

    array = _as_numpy(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise RenderError(f"contact sheet images must be uint8 [H, W, 3], got {array.dtype} {array.shape}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = array[:, :, :3]
    if cell is not None and (array.shape[1], array.shape[0]) != cell:
        array = np.asarray(Image.fromarray(array).resize(cell, Image.LANCZOS))
    return np.ascontiguousarray(array)


def contact_sheet(images: Sequence[np.ndarray], cols: int | None = None, labels: Sequence[str] | None = None,
                  cell_size: int | tuple[int, int] | None = None, *,
                  label_height: int | None = None) -> np.ndarray:
    """Lay images out in a grid, each with its label underneath.

    Args:
        images: ``N`` uint8 images ``[H, W, 3]`` (or ``[H, W]``, RGBA; numpy or torch).
        cols: pictures per row (``None``: a near-square grid).
        labels: ``N`` strings drawn under the pictures with Pillow's default font, or None.
        cell_size: picture size, int or ``(width, height)``; images of another size are resized.
            ``None``: the first image's size.
        label_height: pixels of the label strip (default about 11% of the cell height).
    Returns:
        ``[rows * (h + label_height), cols * w, 3]`` uint8 on a white background.
    """
    images = list(images)
    if not images:
        raise RenderError("contact_sheet needs at least one image")
    first = _as_image(images[0], None)
    cell = _parse_size(cell_size) if cell_size is not None else (first.shape[1], first.shape[0])
    layout = GridLayout.make(len(images), cell, cols, labels, label_height)
    canvas = layout.canvas(labels)
    for k, image in enumerate(images):
        layout.paste(canvas, k, _as_image(image, cell))
    return canvas


def sequence_sheet(rig, vertices, frames: Sequence[int] | None = None, *, cols: int | None = None,
                   labels: Sequence[str] | None = None, cell_size: int | tuple[int, int] = 192,
                   view: str = "front", camera=None, samples: int = 4,
                   label_height: int | None = None) -> np.ndarray:
    """Render chosen frames of a vertex sequence into a labelled contact sheet.

    Args:
        rig: the :class:`thunder3d.rigs.Rig` the vertices belong to (faces, colours, framing).
        vertices: ``[T, V, 3]`` (numpy or torch).
        frames: frame indices to show, in order (default: all frames).
        cols: pictures per row (``None``: near-square).
        labels: one string per shown frame (e.g. the phone at that frame), or None.
        cell_size: picture size, int or ``(width, height)``.
        view: a named view (:data:`thunder3d.render.VIEWS`) for the default camera.
        camera: a :class:`thunder3d.render.Camera` to use instead of the rig's stable framing of
            ``view`` (e.g. a close-up made with :func:`thunder3d.render.framing`).
        samples: MSAA samples (still images can afford smooth edges).
        label_height: pixels of the label strip.
    Returns:
        ``[H, W, 3]`` uint8.
    """
    from thunder3d.render import rig_camera
    from thunder3d.render.gl import Renderer

    if hasattr(vertices, "ndim") and vertices.ndim != 3:
        raise RenderError(f"vertices must be [T, V, 3], got {tuple(vertices.shape)}")
    count = len(vertices)
    frames = list(range(count)) if frames is None else [int(f) for f in frames]
    bad = [f for f in frames if not -count <= f < count]
    if bad:
        raise RenderError(f"frame {bad[0]} is outside a sequence of {count} frames")
    width, height = _parse_size(cell_size)
    with Renderer(rig.faces, rig.vertex_colors, size=(width, height), samples=samples) as renderer:
        camera = camera if camera is not None else rig_camera(rig, view, renderer.aspect)
        images = [renderer.render(vertices[f], camera) for f in frames]
    return contact_sheet(images, cols, labels, (width, height), label_height=label_height)


__all__ = ["GridLayout", "contact_sheet", "default_label_height", "sequence_sheet"]
