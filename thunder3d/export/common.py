"""Checks and helpers shared by the export writers: coefficients, names, fps, folders, audio, frames.

Every writer validates all of its input here *before* it creates a file, so a bad value (NaN
coefficients, a wrong coefficient count, an unwritable folder) raises :class:`ExportError` naming
the value and leaves nothing behind.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from thunder3d.constants import SAMPLE_RATE
from thunder3d.errors import ExportError

CHUNK_FRAMES = 32
"""Frames per rig forward when streaming vertices (bounds memory: 32 ICT frames are ~9 MB)."""

MAX_FPS = 1000.0

MIN_VIDEO_SIZE, MAX_VIDEO_SIZE = 16, 4096
"""The MP4 pixels per view / grid cell accepted (``--size``)."""


def check_video_size(size) -> int:
    """MP4 pixels per view / grid cell: a whole number in [16, 4096], as int; else ExportError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or not MIN_VIDEO_SIZE <= size <= MAX_VIDEO_SIZE:
        raise ExportError(f"video size must be a whole number of pixels from {MIN_VIDEO_SIZE} to "
                          f"{MAX_VIDEO_SIZE}, got {size!r}")
    return int(size)


def check_export_options(formats: str | Sequence[str] = ("npz",), size: int = 512) -> tuple[str, ...]:
    """Validate the options of :func:`thunder3d.export.export_animation` that need no animation,
    so a command can refuse them before any work: the formats (comma-separated string or
    sequence; see :func:`~thunder3d.export.formats.parse_formats`) and, when ``mp4`` is among
    them, the video ``size`` (:func:`check_video_size`).

    Returns:
        The parsed formats, e.g. ``("npz", "mp4")``.
    Raises:
        ExportError naming an unknown format or the bad size.
    """
    from thunder3d.export.formats import parse_formats

    if not isinstance(formats, str):
        if not all(isinstance(f, str) for f in formats):
            raise ExportError(f"formats must be names such as 'npz' or 'mp4', got {formats!r}")
        formats = ",".join(formats)
    parsed = parse_formats(formats)
    if "mp4" in parsed:
        check_video_size(size)
    return parsed



def as_numpy(coeffs) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a float32 numpy array."""
    if isinstance(coeffs, torch.Tensor):
        coeffs = coeffs.detach().float().cpu().numpy()  # float(): numpy has no bfloat16
    try:
        return np.asarray(coeffs, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"coefficients must be a numeric array, got {type(coeffs).__name__} ({exc})") from None


def check_coeffs(coeffs, *, num_coeffs: int | None = None, ndims: Sequence[int] = (2, 3),
                 what: str = "coefficients") -> np.ndarray:
    """``coeffs`` ``[T, C]`` or ``[N, T, C]`` as float32 numpy, checked: rank, ``C``, ``T >= 1``, finite.

    Raises:
        ExportError naming the shape, or the first sample/frame holding NaN or infinity.
    """
    out = as_numpy(coeffs)
    shapes = " or ".join("[N, T, C]" if n == 3 else "[T, C]" for n in ndims)
    if out.ndim not in ndims:
        raise ExportError(f"{what} must be {shapes}, got shape {tuple(out.shape)}")
    if out.shape[-2] == 0 or (out.ndim == 3 and out.shape[0] == 0):
        raise ExportError(f"{what} hold no frames: shape {tuple(out.shape)}")
    if num_coeffs is not None and out.shape[-1] != num_coeffs:
        raise ExportError(f"{what} have {out.shape[-1]} values per frame, the rig takes {num_coeffs} "
                          f"(shape {tuple(out.shape)}); map them with thunder3d.export.retarget")
    bad = np.argwhere(~np.isfinite(out))
    if bad.size:
        where = (f"sample {bad[0][0]}, frame {bad[0][1]}" if out.ndim == 3 else f"frame {bad[0][0]}")
        raise ExportError(f"{what} contain NaN or infinity ({len(bad)} values; first at {where}); "
                          "nothing was written")
    return out


def as_batch(coeffs: np.ndarray) -> np.ndarray:
    """``[T, C]`` -> ``[1, T, C]``; ``[N, T, C]`` unchanged."""
    return coeffs[None] if coeffs.ndim == 2 else coeffs


def check_names(names: Sequence[str], num_coeffs: int) -> tuple[str, ...]:
    """Coefficient names as a tuple of ``num_coeffs`` distinct strings."""
    if isinstance(names, str):
        raise ExportError(f"names must be a sequence of coefficient names, got the string {names!r}")
    out = tuple(str(n) for n in names)
    if len(out) != num_coeffs:
        raise ExportError(f"{len(out)} coefficient names for {num_coeffs} coefficients per frame")
    if len(set(out)) != len(out):
        raise ExportError(f"coefficient names repeat: {sorted({n for n in out if out.count(n) > 1})}")
    return out


def check_fps(fps) -> float:
    """A finite frame rate in (0, 1000] as float."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not (
            math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise ExportError(f"fps must be a number in (0, {MAX_FPS:g}], got {fps!r}")
    return float(fps)


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove it writable by making and removing a file in it.

    A real write catches what permission bits do not (read-only mounts, ACLs, a full disk's quota).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"cannot export into {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".thunder3d-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    return folder


def load_wav(audio) -> np.ndarray | None:
    """``None``, an audio file path (any format :func:`thunder3d.audio.io.load_audio` reads) or a
    ``[N]`` 16 kHz mono float array -> ``[N]`` float32 (or None)."""
    if audio is None:
        return None
    if isinstance(audio, (str, os.PathLike)):
        from thunder3d.audio.io import load_audio

        return load_audio(audio)
    wav = as_numpy(audio)
    if wav.ndim != 1 or wav.size == 0:
        raise ExportError(f"audio must be a non-empty [N] 16 kHz mono array or a file path, got shape {wav.shape}")
    if not np.isfinite(wav).all():
        raise ExportError("audio contains NaN or infinity")
    return wav


def fit_duration(wav: np.ndarray, num_frames: int, fps: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``wav`` trimmed to ``num_frames / fps`` seconds or padded with silence to it (the animation
    is authoritative, as in :mod:`thunder3d.render.video`)."""
    length = round(num_frames * sr / fps)
    if wav.size >= length:
        return wav[:length]
    return np.concatenate([wav, np.zeros(length - wav.size, dtype=wav.dtype)])


@torch.no_grad()
def rig_frames(rig, coeffs: np.ndarray, chunk: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """Vertices ``[V, 3]`` float32 of each frame of ``coeffs [T, C]``, in the rig's units.

    The rig runs on ``chunk`` frames at a time, so memory stays bounded for any ``T``.
    """
    device = rig.neutral.device
    for start in range(0, coeffs.shape[0], chunk):
        block = torch.from_numpy(np.ascontiguousarray(coeffs[start : start + chunk])).to(device)
        verts = rig(block).float().cpu().numpy()  # [chunk, V, 3]
        yield from verts


def sample_suffix(index: int, count: int) -> str:
    """``""`` for a single sample, else ``_s0``, ``_s1``, ..."""
    return "" if count == 1 else f"_s{index}"
