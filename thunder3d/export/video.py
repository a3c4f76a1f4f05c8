"""An animation as an MP4 (h264 + AAC) through :mod:`thunder3d.render.video` (imported lazily, so
the rest of the export package never loads the renderer)."""

from __future__ import annotations

import os
from pathlib import Path

from thunder3d.constants import FPS
from thunder3d.export.common import (as_batch, check_coeffs, check_fps, check_video_size, ensure_folder,
                                     load_wav, rig_frames)


def write_mp4(path: str | os.PathLike, rig, coeffs, *, audio=None, fps: float = FPS, size: int = 512,
              view: str = "front", samples_grid: bool = True) -> Path:
    """Render ``coeffs`` on ``rig`` to an MP4 with the audio muxed in, atomically.

    ``[T, C]`` (or ``[1, T, C]``) gives one animation (:func:`~thunder3d.render.video.render_video`,
    ``view`` may list several views side by side); ``[N, T, C]`` with ``N > 1`` gives the N samples
    of the same audio side by side (:func:`~thunder3d.render.video.render_video_grid`, one view):
    in a near-square grid with ``samples_grid=True`` (2 samples: one row, 4: two rows), in one row
    with ``samples_grid=False``. Frames are computed by the rig a few at a time and streamed to
    ffmpeg. The video lasts ``T / fps``; the audio is trimmed or padded with silence to match.

    Args:
        size: pixels per view / grid cell (square), 16..4096.
    Raises:
        ExportError: bad size/coefficients/fps/audio, unwritable folder; RenderError: no EGL, ffmpeg
        failing. Nothing is left at ``path`` on failure.
    """
    path = Path(path)
    size = check_video_size(size)
    values = as_batch(check_coeffs(coeffs, num_coeffs=rig.num_coeffs))
    fps = check_fps(fps)
    wav = load_wav(audio)
    ensure_folder(path.parent)
    from thunder3d.render.video import render_video, render_video_grid
    if len(values) == 1:
        return render_video(rig, rig_frames(rig, values[0]), path, audio=wav, fps=fps, size=size, view=view)
    cols = None if samples_grid else len(values)
    return render_video_grid(rig, [rig_frames(rig, sample) for sample in values], path, audio=wav, cols=cols,
                             fps=fps, size=size, view=view)
