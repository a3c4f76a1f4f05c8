"""Import captured or reconstructed talking-head data into the clip format (:mod:`.clip`).

``import_corpus(fmt, src, out)`` is what ``thunder3d data import --format FMT SRC --out DIR``
runs. Each format lives in its own module and provides two functions:

- ``find_pairs(src) -> (pairs, unpaired)``: the (clip id, wav, motion file) triples found under
  ``src`` (recursively) and the files left without a partner;
- ``read_pair(pair, **options) -> Clip``: one clip at 25 fps, split and all.

=============  =================================================================================
``flame``      FLAME parameters (``.npz``/``.pkl``) + wav: :mod:`thunder3d.data.import_flame`
``livelink``   Live Link Face CSV (ARKit 52/61 columns) + wav: :mod:`thunder3d.data.import_livelink`
=============  =================================================================================

Conventions shared by the formats:

- **Pairing**: ``<name>.wav`` with ``<name>.<motion ext>`` in the same folder. The clip id is the
  path relative to ``src`` without extension, folders joined by ``_`` and characters other than
  letters, digits, ``.``, ``_``, ``-`` replaced by ``_`` (``M003/angry/level_1/001`` ->
  ``M003_angry_level_1_001``).
- **Metadata from folders** (when the motion file holds none): a folder named after a MEAD
  emotion (``angry``, ``happy``...; see :data:`~thunder3d.data.clip.EMOTION_ALIASES`) gives the
  emotion, ``level_N`` the intensity, ``train``/``val``/``valid``/``validation``/``test`` the
  split; the speaker (``style``) is the first folder under ``src`` (none for a flat folder).
- **Resampling to 25 fps**: frame ``j`` of the output is the motion at ``j / 25`` s, with
  ``round(T * 25 / fps)`` frames. Blendshape and expression coefficients are interpolated
  linearly, rotations (axis-angle) by spherical linear interpolation of the rotations.
- **Audio/motion length**: the wav is loaded as 16 kHz mono. When it and the resampled motion
  differ by at most one frame (640 samples), both are trimmed to the shorter whole number of
  frames; more than that is an error naming the clip.
- **Splits**: kept when the file or a folder gives one; otherwise assigned by hashing
  (:func:`~thunder3d.data.clip.assign_split`, 80/10/10). ``split_by="speaker"`` hashes the
  speaker (held-out speakers; clips without one hash their id), ``"clip"`` the clip id,
  ``"auto"`` (default) uses the speaker when the import finds at least 3 speakers, else the id.
- **Bad input** (length mismatch, NaN/inf, unknown keys, unsupported fps, unreadable files)
  raises :class:`~thunder3d.data.clip.DataError` naming the clip; with ``skip_bad=True`` the clip
  is skipped and listed in :attr:`ImportReport.skipped`.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thunder3d.audio.io import load_audio
from thunder3d.constants import FPS, SAMPLES_PER_FRAME
from thunder3d.data.clip import (
    EMOTION_ALIASES,
    EMOTIONS,
    Clip,
    DataError,
    append_manifest,
    assign_split,
    manifest_entry,
    save_clip,
)
from thunder3d.errors import AudioError, ThunderError

FORMATS: dict[str, str] = {
    "flame": "thunder3d.data.import_flame",
    "livelink": "thunder3d.data.import_livelink",
}
"""Import formats and the module implementing each."""

MIN_FPS, MAX_FPS = 1.0, 1000.0
"""Source frame rates outside this range are refused as unsupported."""

SPLIT_BY = ("auto", "speaker", "clip")
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
_LEVEL = re.compile(r"^level[_-]?(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class SourcePair:
    """A clip found under the source folder: its id, wav and motion file, and its folders."""

    id: str
    wav: Path
    motion: Path
    folders: tuple[str, ...]  # folders between src and the files, outermost first


@dataclass
class ImportReport:
    """What :func:`import_corpus` did."""

    format: str
    src: Path
    out: Path
    imported: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip id, reason)
    unpaired: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        """A few lines for the CLI."""
        lines = [f"imported {len(self.imported)} clip(s) from {self.src} ({self.format}) "
                 f"into {self.out}"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} bad clip(s):")
            lines += [f"  {cid}: {reason}" for cid, reason in self.skipped]
        if self.unpaired:
            lines.append(f"{len(self.unpaired)} file(s) without a partner:")
            lines += [f"  {path}: {reason}" for path, reason in self.unpaired]
        return "\n".join(lines)


# --------------------------------------------------------------------------- format registry
def _format_module(fmt: str):
    if fmt not in FORMATS:
        raise DataError(f"unknown import format {fmt!r}; valid: {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[fmt])


def import_corpus(
    fmt: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    skip_bad: bool = False,
    progress: bool = True,
    *,
    split_by: str = "auto",
    subtype: str = "PCM_16",
    **options: Any,
) -> ImportReport:
    """Convert every clip under ``src`` to the clip format in ``out`` and update its manifest.

    Args:
        fmt: one of :data:`FORMATS`.
        src: folder searched recursively for pairs of wav and motion file.
        out: corpus folder to write (created; clips of the same id are replaced).
        skip_bad: list bad clips in the report and go on, instead of raising.
        progress: show a progress bar.
        split_by: ``auto``, ``speaker`` or ``clip`` (module docstring).
        subtype: wav sample format of the written clips (``PCM_16`` or ``FLOAT``).
        **options: format options (``fps``, ``num_expression``... see each format module).

    Returns:
        An :class:`ImportReport`.

    Raises:
        DataError: unknown format/option, missing or empty ``src``, nothing paired, or the first
            bad clip when ``skip_bad`` is False.
    """
    module = _format_module(fmt)
    if split_by not in SPLIT_BY:
        raise DataError(f"unknown split_by {split_by!r}; valid: {', '.join(SPLIT_BY)}")
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise DataError(f"unknown option(s) {unknown} for format {fmt!r}; valid: "
                        f"{', '.join(module.OPTIONS) or 'none'}")
    src, out = Path(src), Path(out)
    check_source_folder(src)
    pairs, unpaired = module.find_pairs(src)
    report = ImportReport(format=fmt, src=src, out=out, unpaired=list(unpaired))
    if not pairs:
        detail = f"; unpaired: {[p for p, _ in unpaired][:5]}" if unpaired else ""
        raise DataError(f"no {fmt} clips found in {src} (expected <name>.wav next to "
                        f"<name>{'|'.join(module.MOTION_EXTENSIONS)}){detail}")
    speakers = {speaker_of(p) for p in pairs} - {None}
    use_speaker = split_by == "speaker" or (split_by == "auto" and len(speakers) >= 3)

    entries = []
    try:
        for pair in _progress(pairs, progress, f"import {fmt}"):
            try:
                clip = module.read_pair(pair, **options)
                if clip.split is None:
                    key = (clip.style or clip.id) if use_speaker else clip.id
                    clip.split = assign_split(key)
                save_clip(out, clip, subtype=subtype)
            except ThunderError as exc:
                if not skip_bad:
                    if isinstance(exc, DataError) and repr(pair.id) in str(exc):
                        raise
                    raise DataError(f"clip {pair.id!r}: {exc}") from exc
                report.skipped.append((pair.id, str(exc)))
                continue
            report.imported.append(clip.id)
            entries.append(manifest_entry(clip))
    finally:  # clips written before an error or interruption are complete: list them
        if entries:
            append_manifest(out, entries)
    return report


def _progress(items: Sequence, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="clip")


# --------------------------------------------------------------------------- pairing helpers
def check_source_folder(src: Path) -> None:
    if not src.exists():
        raise DataError(f"source folder not found: {src}")
    if not src.is_dir():
        raise DataError(f"expected a source folder, got a file: {src}")
    if not any(p.is_file() for p in src.rglob("*")):
        raise DataError(f"source folder is empty: {src}")


def clip_id_for(rel: Path) -> str:
    """Clip id of a file at ``rel`` (relative to the source folder, without extension)."""
    text = "_".join(rel.parts)
    text = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-")
    return text[:200] or "clip"


def pair_files(src: Path, motion_exts: Sequence[str]) -> tuple[list[SourcePair], list[tuple[str, str]]]:
    """Pair ``<name>.wav`` with ``<name><ext>`` (first of ``motion_exts`` found) under ``src``.

    Returns the pairs sorted by id and the ``(path, reason)`` of files left alone. Hidden files and
    folders (starting with ``.``) are ignored. Two pairs whose ids collide are an error.
    """
    motion_exts = tuple(e.lower() for e in motion_exts)
    groups: dict[Path, dict[str, Path]] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        ext = path.suffix.lower()
        if ext == ".wav" or ext in motion_exts:
            groups.setdefault(rel.with_suffix(""), {})[ext] = path
    pairs, unpaired, ids = [], [], {}
    for stem, files in sorted(groups.items()):
        motions = [files[e] for e in motion_exts if e in files]
        if ".wav" not in files:
            unpaired += [(str(m), "no .wav with the same name") for m in motions]
            continue
        if not motions:
            unpaired.append((str(files[".wav"]), f"no {'/'.join(motion_exts)} with the same name"))
            continue
        for extra in motions[1:]:
            unpaired.append((str(extra), f"ignored: {motions[0].name} is used for this clip"))
        cid = clip_id_for(stem)
        if cid in ids:
            raise DataError(f"clip id {cid!r} is made by both {ids[cid]} and {files['.wav']}; "
                            "rename one of them")
        ids[cid] = files[".wav"]
        pairs.append(SourcePair(cid, files[".wav"], motions[0], stem.parts[:-1]))
    return pairs, unpaired


def speaker_of(pair: SourcePair) -> str | None:
    """The first folder under the source that names no split, emotion or level; None if none does."""
    for folder in pair.folders:
        key = folder.lower()
        if not (key in SPLIT_FOLDERS or key in EMOTIONS or key in EMOTION_ALIASES or _LEVEL.match(key)):
            return folder
    return None


def folder_metadata(pair: SourcePair) -> dict[str, Any]:
    """Emotion, intensity, split and style read from the pair's folder names (module docstring)."""
    meta: dict[str, Any] = {"style": speaker_of(pair)}
    for folder in pair.folders:
        key = folder.lower()
        if key in SPLIT_FOLDERS:
            meta["split"] = SPLIT_FOLDERS[key]
        elif key in EMOTIONS or key in EMOTION_ALIASES:
            meta["emotion"] = EMOTION_ALIASES.get(key, key)
        elif (m := _LEVEL.match(key)) is not None:
            meta["intensity"] = int(m.group(1))
    return meta


# --------------------------------------------------------------------------- checks
def check_fps(fps: Any, clip_id: str, where: str) -> float:
    """``fps`` as a float, or DataError naming the clip for a non-number or one out of range."""
    try:
        value = float(np.asarray(fps).reshape(-1)[0]) if np.size(fps) == 1 else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or not MIN_FPS <= value <= MAX_FPS:
        raise DataError(f"clip {clip_id!r} ({where}): unsupported fps {fps!r}; expected a frame "
                        f"rate between {MIN_FPS:g} and {MAX_FPS:g}")
    return value


def check_finite(name: str, arr: np.ndarray, clip_id: str, where: str) -> None:
    if not np.isfinite(arr).all():
        frame = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)))[0][0])
        raise DataError(f"clip {clip_id!r} ({where}): {name} contains NaN or inf (first at source "
                        f"frame {frame})")


def load_clip_audio(path: Path, clip_id: str) -> np.ndarray:
    """The wav as 16 kHz mono float32, or DataError naming the clip."""
    try:
        return load_audio(path)
    except AudioError as exc:
        raise DataError(f"clip {clip_id!r}: {exc}") from exc


def fit_lengths(audio: np.ndarray, num_frames: int, clip_id: str) -> tuple[np.ndarray, int]:
    """Trim audio and motion to a common whole number of frames if they differ by <= 1 frame.

    Returns:
        ``(audio[:T * 640], T)`` with ``T = min(num_frames, len(audio) // 640)``.

    Raises:
        DataError: the lengths differ by more than one frame (640 samples).
    """
    diff = audio.size - num_frames * SAMPLES_PER_FRAME
    if abs(diff) > SAMPLES_PER_FRAME:
        raise DataError(
            f"clip {clip_id!r}: audio/motion length mismatch: the audio is {audio.size / 16000:.3f} s, "
            f"the motion {num_frames / FPS:.3f} s ({num_frames} frames at {FPS} fps); "
            f"they differ by {abs(diff) / SAMPLES_PER_FRAME:.1f} frames (at most 1 is trimmed)")
    frames = min(num_frames, audio.size // SAMPLES_PER_FRAME)
    if frames == 0:
        raise DataError(f"clip {clip_id!r}: shorter than one frame ({audio.size} samples)")
    return audio[: frames * SAMPLES_PER_FRAME], frames


# --------------------------------------------------------------------------- resampling
def resample_times(times: np.ndarray, num_out: int, fps: float = FPS) -> np.ndarray:
    """Output sample times ``j / fps`` clamped to the source's time range: ``[num_out]`` float64."""
    t = np.arange(num_out, dtype=np.float64) / fps
    return np.clip(t, times[0], times[-1])


def resample_linear(values: np.ndarray, times: np.ndarray, out_times: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``[T, D]`` samples at ``times`` ``[T]`` to ``out_times`` ``[T']``.

    Returns ``[T', D]`` float32. ``times`` must be increasing.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(times) == 1:
        return np.repeat(values[:1], len(out_times), axis=0).astype(np.float32)
    # index of the source interval holding each output time, and the fraction along it
    k = np.clip(np.searchsorted(times, out_times, side="right") - 1, 0, len(times) - 2)
    w = (out_times - times[k]) / (times[k + 1] - times[k])
    w = np.where(np.abs(w) < 1e-9, 0.0, np.where(np.abs(w - 1.0) < 1e-9, 1.0, w))[:, None]  # [T', 1]
    # (times that fall on a source sample copy it exactly)
    return ((1.0 - w) * values[k] + w * values[k + 1]).astype(np.float32)


def resample_rotations(rotvecs: np.ndarray, times: np.ndarray, out_times: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation of axis-angle rotations ``[T, 3]`` (radians) -> ``[T', 3]``.

    Each output rotation lies on the shortest arc between its two neighbouring source rotations;
    the result is returned as rotation vectors with angles in ``[0, pi]``.
    """
    from scipy.spatial.transform import Rotation, Slerp

    rotvecs = np.asarray(rotvecs, dtype=np.float64)
    if len(times) == 1:
        return np.repeat(rotvecs[:1], len(out_times), axis=0).astype(np.float32)
    slerp = Slerp(times, Rotation.from_rotvec(rotvecs))
    return slerp(out_times).as_rotvec().astype(np.float32)


def uniform_times(num_frames: int, fps: float) -> np.ndarray:
    """Source times ``i / fps`` of ``num_frames`` evenly spaced frames: ``[T]`` float64."""
    return np.arange(num_frames, dtype=np.float64) / fps


def make_clip(
    pair: SourcePair,
    *,
    times: np.ndarray,
    duration: float,
    linear: np.ndarray,
    rotations: Sequence[np.ndarray] = (),
    head_rotation: np.ndarray | None = None,
    **fields: Any,
) -> Clip:
    """Resample motion sampled at ``times`` to 25 fps, fit it to the pair's wav and build a Clip.

    Args:
        times: ``[T]`` source sample times in seconds (increasing, first at 0).
        duration: seconds the source motion spans (``T / fps`` for uniform frames).
        linear: ``[T, D]`` coefficients interpolated linearly (they come first in ``coeffs``).
        rotations: ``[T, 3]`` axis-angle groups interpolated by slerp, appended in order.
        head_rotation: ``[T, 3]`` axis-angle head rotation (slerp), or None.
        **fields: the other :class:`Clip` fields (``coeff_names``, ``rig``, ``style``...).
    """
    num_out = max(1, int(math.floor(duration * FPS + 0.5)))  # round(T * 25 / fps) for uniform frames
    out_times = resample_times(times, num_out)
    parts = [resample_linear(linear, times, out_times)]
    parts += [resample_rotations(r, times, out_times) for r in rotations]
    coeffs = np.concatenate(parts, axis=1)
    audio, frames = fit_lengths(load_clip_audio(pair.wav, pair.id), num_out, pair.id)
    head = None
    if head_rotation is not None:
        head = resample_rotations(head_rotation, times, out_times)[:frames]
    return Clip(id=pair.id, audio=audio, coeffs=coeffs[:frames], head_rotation=head, **fields)

__all__ = [
    "FORMATS", "ImportReport", "SourcePair", "check_fps", "clip_id_for", "fit_lengths",
    "folder_metadata", "import_corpus", "make_clip", "pair_files",
    "resample_linear", "resample_rotations", "speaker_of",
]
