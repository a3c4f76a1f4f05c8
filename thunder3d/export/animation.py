"""``export_animation``: one call that writes an animation in every requested format.

Layout in ``out_dir`` for ``stem="animation"`` (``_s0``, ``_s1``, ... per sample when N > 1; no
suffix for a single sample)::

    animation.wav                 the audio, 16 kHz 16-bit, trimmed/padded to T / fps
    animation.npz                 all N samples (thunder3d.export.npz)
    animation[_sK]_obj/frame_00000.obj, ...   mesh sequences (thunder3d.export.mesh)
    animation[_sK]_ply/frame_00000.ply, ...
    animation[_sK].csv            Live Link Face CSV (ARKit rigs only)
    animation[_sK].glb            + .regions.json; the GLBs name animation.wav as their audio
    animation.mp4                 one video, N samples side by side in a grid

Everything is checked before the first file is written (coefficients, names, fps, formats against
the rig, the MP4 size, the folder's writability); each file is written atomically. The checks that
need no animation (formats, MP4 size) are :func:`~thunder3d.export.common.check_export_options`, for
a command to call before it computes one.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from thunder3d.errors import ExportError
from thunder3d.export.common import (as_batch, check_coeffs, check_export_options, check_fps, check_names,
                                     ensure_folder, fit_duration, load_wav, sample_suffix)
from thunder3d.export.glb import write_glb
from thunder3d.export.livelink import check_arkit_names, check_csv_fps, write_arkit_csv
from thunder3d.export.mesh import write_mesh_sequence
from thunder3d.export.npz import write_npz
from thunder3d.export.retarget import retarget_matrix
from thunder3d.export.video import write_mp4


@dataclass(frozen=True)
class ExportJob:
    """Everything a format writer needs: validated coefficients ``values [N, T, C]`` in the rig's layout."""

    out_dir: Path
    stem: str
    rig: object
    coeffs: np.ndarray  # as given (rank kept for npz), rig layout
    values: np.ndarray  # [N, T, C]
    fps: float
    wav: np.ndarray | None
    wav_name: str | None
    size: int

    def name(self, index: int) -> str:
        return self.stem + sample_suffix(index, len(self.values))


def _npz(job: ExportJob) -> list[Path]:
    return [write_npz(job.out_dir / f"{job.stem}.npz", job.coeffs, fps=job.fps, names=job.rig.coeff_names,
                      rig=job.rig, audio=job.wav)]


def _meshes(fmt: str) -> Callable[[ExportJob], list[Path]]:
    def write(job: ExportJob) -> list[Path]:
        return [path for n, sample in enumerate(job.values)
                for path in write_mesh_sequence(job.out_dir / f"{job.name(n)}_{fmt}", job.rig, sample, fmt=fmt)]
    return write


def _csv(job: ExportJob) -> list[Path]:
    return [write_arkit_csv(job.out_dir / f"{job.name(n)}.csv", sample, names=job.rig.coeff_names, fps=job.fps)
            for n, sample in enumerate(job.values)]


def _glb(job: ExportJob) -> list[Path]:
    return [write_glb(job.out_dir / f"{job.name(n)}.glb", job.rig, sample, names=job.rig.coeff_names,
                      fps=job.fps, audio_file=job.wav_name)
            for n, sample in enumerate(job.values)]


def _mp4(job: ExportJob) -> list[Path]:
    return [write_mp4(job.out_dir / f"{job.stem}.mp4", job.rig, job.values, audio=job.wav, fps=job.fps,
                      size=job.size)]


WRITERS: dict[str, Callable[[ExportJob], list[Path]]] = {
    "npz": _npz, "obj": _meshes("obj"), "ply": _meshes("ply"), "csv": _csv, "glb": _glb, "mp4": _mp4,
}


def _check_stem(stem: str) -> str:
    if not isinstance(stem, str) or not stem.strip() or stem in (".", "..") or any(c in stem for c in "/\\"):
        raise ExportError(f"stem must be a plain file name without folders, got {stem!r}")
    return stem


def to_rig_layout(values: np.ndarray, names: tuple[str, ...], rig) -> np.ndarray:
    """``values [..., C]`` in layout ``names`` mapped onto ``rig.coeff_names`` (identity if equal);
    warns about rig coefficients no name feeds."""
    if names == tuple(rig.coeff_names):
        return values
    matrix = retarget_matrix(names, rig.coeff_names)
    unfed = [n for n, column in zip(rig.coeff_names, matrix.T) if not column.any()]
    if unfed:
        warnings.warn(f"retargeting onto rig {rig.spec!r}: {len(unfed)} of its coefficients get no value "
                      f"(zero): {unfed[:8]}{' ...' if len(unfed) > 8 else ''}", stacklevel=3)
    return values @ matrix


def export_animation(out_dir: str | os.PathLike, rig, coeffs, *, names: Sequence[str], fps: float, audio=None,
                     formats: Sequence[str] | str = ("npz",), stem: str = "animation",
                     size: int = 512) -> dict[str, list[Path]]:
    """Write an animation of ``rig`` in each of ``formats`` into ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: the folder (created if needed).
        rig: the :class:`~thunder3d.rigs.Rig` to drive.
        coeffs: ``[N, T, C]`` samples (or ``[T, C]``), numpy or torch.
        names: the C coefficient names. A layout other than the rig's (an ARKit model driving an
            ICT or GLB rig) is mapped onto the rig by name (:func:`thunder3d.export.retarget`).
        fps: frame rate.
        audio: optional ``[N]`` 16 kHz array or audio file, saved as ``<stem>.wav`` and muxed into the MP4.
        formats: a subset of :data:`FORMATS`, as a sequence or comma-separated string.
        stem: the base name of every output.
        size: MP4 pixels per grid cell, 16..4096 (checked only when ``mp4`` is among the formats).
    Returns:
        Format -> written paths (``"wav"`` too when there is audio), in the order requested.
    Raises:
        ExportError: bad input or an unwritable ``out_dir``, before anything is written.
    """
    formats = check_export_options(formats, size)  # the formats, and the MP4 size when one is asked for
    stem = _check_stem(stem)
    given = check_coeffs(coeffs)
    names = check_names(names, given.shape[-1])
    given = to_rig_layout(given, names, rig)
    fps = check_fps(fps)
    if "csv" in formats:
        check_arkit_names(rig.coeff_names)
        check_csv_fps(fps)
    wav = load_wav(audio)
    out_dir = ensure_folder(out_dir)
    out: dict[str, list[Path]] = {}
    wav_name = None
    if wav is not None:
        from thunder3d.audio.io import save_audio

        wav_path = out_dir / f"{stem}.wav"
        save_audio(wav_path, fit_duration(wav, given.shape[-2], fps))
        out["wav"], wav_name = [wav_path], wav_path.name
    job = ExportJob(out_dir=out_dir, stem=stem, rig=rig, coeffs=given, values=as_batch(given), fps=fps,
                    wav=wav, wav_name=wav_name, size=size)
    for fmt in formats:
        out[fmt] = WRITERS[fmt](job)
    return out


def written_summary(written: dict[str, list[Path]]) -> list[str]:
    """One line per format of what :func:`export_animation` wrote: the file, or the folder and the
    file count of a mesh sequence."""
    lines = []
    for fmt, paths in written.items():
        if len(paths) > 4 and len({p.parent for p in paths}) <= 4:
            folders = ", ".join(str(d) + "/" for d in dict.fromkeys(p.parent for p in paths))
            lines.append(f"  {fmt:<4} {folders} ({len(paths)} files)")
        else:
            lines += [f"  {fmt:<4} {path}" for path in paths]
    return lines
