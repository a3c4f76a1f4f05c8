"""Audio in and out: any file soundfile reads -> 16 kHz mono float32, with clear errors.

Every path into thunder3d goes through :func:`to_mono_16k` (arrays) or :func:`load_audio` (files),
so all audio is converted the same way: channels averaged to mono, integers scaled to [-1, 1),
resampled with a polyphase filter at the reduced rational ratio, and checked (non-empty, finite,
at least one animation frame long). Samples beyond +-1 in float files are kept as they are.

Resampling is ``scipy.signal.resample_poly`` with its default Kaiser-windowed filter: from 44.1 kHz
to 16 kHz the passband is flat within 0.2 % up to 6 kHz (-0.25 dB at 7 kHz) and content above
9.5 kHz is attenuated by more than 53 dB.

Long files can be streamed with :func:`iter_audio_blocks`, which gives the same samples as
:func:`load_audio` block by block (up to float rounding).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from thunder3d.constants import FPS, SAMPLE_RATE
from thunder3d.errors import AudioError
from thunder3d.utils.io import atomic_path

# resample_poly's default FIR filter is 10 * max(up, down) taps long on each side at the upsampled
# rate, i.e. 10 * max(up, down) / up input samples; streaming reads that much context around blocks.
_FILTER_HALF_WIDTH = 10


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header only."""

    path: str
    sample_rate: int
    channels: int
    frames: int  # samples per channel
    format: str  # e.g. "WAV", "FLAC", "OGG"
    subtype: str  # e.g. "PCM_16", "FLOAT", "VORBIS"

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _check_path(path: str | os.PathLike) -> str:
    """Return ``path`` as a string, or raise AudioError if it is not a non-empty regular file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"audio file not found: {path}")
    if os.path.isdir(path):
        raise AudioError(f"expected an audio file, got a directory: {path}")
    if os.path.getsize(path) == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    return path


def _open(path: str) -> sf.SoundFile:
    """Open ``path`` for reading, turning libsndfile's failures into AudioError."""
    try:
        return sf.SoundFile(path)
    except sf.SoundFileError as e:
        raise AudioError(f"cannot read audio file {path}: not a supported or intact audio file ({e})") from e


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Describe an audio file from its header, without decoding the samples."""
    path = _check_path(path)
    with _open(path) as f:
        return AudioInfo(path, f.samplerate, f.channels, f.frames, f.format, f.subtype)


def _resample_ratio(sr_in: int, sr_out: int) -> tuple[int, int]:
    """Reduced ``(up, down)`` with ``sr_in * up / down == sr_out``."""
    g = math.gcd(sr_in, sr_out)
    return sr_out // g, sr_in // g


def _resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of ``[N]`` float32 to ``[ceil(N * sr_out / sr_in)]`` float32."""
    if sr_in == sr_out:
        return wav
    up, down = _resample_ratio(sr_in, sr_out)
    return resample_poly(wav, up, down).astype(np.float32, copy=False)


def _to_float_mono(data: np.ndarray, name: str) -> np.ndarray:
    """``[N]`` or channels-last ``[N, ch]`` int/float samples -> ``[N]`` float32 mono (channel mean)."""
    data = np.asarray(data)
    if data.ndim == 2 and 0 < data.shape[0] < data.shape[1]:
        raise AudioError(f"{name}: shape {data.shape} looks channels-first; pass [samples, channels]")
    if data.ndim not in (1, 2):
        raise AudioError(f"{name}: expected shape [samples] or [samples, channels], got {data.shape}")
    if np.issubdtype(data.dtype, np.unsignedinteger):  # e.g. 8-bit wav: offset binary
        half = 2.0 ** (8 * data.dtype.itemsize - 1)
        data = (data.astype(np.float64) - half) / half
    elif np.issubdtype(data.dtype, np.signedinteger):
        data = data / 2.0 ** (8 * data.dtype.itemsize - 1)
    elif not np.issubdtype(data.dtype, np.floating):
        raise AudioError(f"{name}: expected integer or float samples, got dtype {data.dtype}")
    if data.ndim == 2:
        data = data.mean(axis=1)
    return data.astype(np.float32, copy=False)


def _check_length(num_samples: int, sr: int, name: str) -> None:
    """Raise AudioError for audio with no samples or shorter than one animation frame."""
    if num_samples == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if num_samples < math.ceil(sr / FPS):
        raise AudioError(
            f"{name}: is {1000 * num_samples / sr:.1f} ms long; at least {1000 // FPS} ms "
            f"(one animation frame) is needed"
        )


def _check_finite(wav: np.ndarray, name: str) -> None:
    if not np.isfinite(wav).all():
        raise AudioError(f"{name}: contains non-finite samples (NaN or inf)")


def _convert(data: np.ndarray, sr_in: int, sr_out: int, name: str) -> np.ndarray:
    """Mono, resample and validate: the one conversion every input goes through."""
    if int(sr_in) != sr_in or sr_in <= 0:
        raise AudioError(f"{name}: sample rate must be a positive integer, got {sr_in}")
    mono = _to_float_mono(data, name)
    _check_finite(mono, name)
    wav = _resample(mono, int(sr_in), sr_out)
    _check_length(wav.size, sr_out, name)
    return wav


def to_mono_16k(data: np.ndarray, sr: int, *, name: str = "audio array") -> np.ndarray:
    """Convert an in-memory array to thunder3d's audio format.

    Args:
        data: ``[N]`` or channels-last ``[N, ch]`` samples; integers are scaled to [-1, 1).
        sr: sample rate of ``data`` in Hz.
        name: how error messages refer to the array.

    Returns:
        ``[M]`` float32 at 16 kHz, ``M = ceil(N * 16000 / sr)``.
    """
    return _convert(data, sr, SAMPLE_RATE, name)


def load_audio(
    source: str | os.PathLike | tuple[np.ndarray, int],
    *,
    sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Load an audio file (or an ``(array, sample_rate)`` pair) as mono float32 at ``sr``.

    Args:
        source: a path to anything soundfile reads (wav, flac, ogg, ...), or ``(array, rate)``
            with the array shaped ``[N]`` or ``[N, ch]``.
        sr: output sample rate in Hz.
        max_seconds: if given, longer audio is refused (checked from the header, before decoding).

    Returns:
        ``[M]`` float32, ``M = ceil(N * sr / rate)``. Silence is valid (see :func:`is_silent`).

    Raises:
        AudioError: missing, empty, corrupt or non-audio file; no samples; NaN/inf samples;
            shorter than one animation frame (40 ms); longer than ``max_seconds``.
    """
    if isinstance(source, tuple):
        data, sr_in = source
        name = "audio array"
    else:
        info = audio_info(source)
        name = info.path
        _check_duration(info.frames / info.sample_rate, max_seconds, name)
        with _open(info.path) as f:
            data, sr_in = f.read(dtype="float32", always_2d=True), f.samplerate
    wav = _convert(data, sr_in, sr, name)
    _check_duration(wav.size / sr, max_seconds, name)
    return wav


def _check_duration(seconds: float, max_seconds: float | None, name: str) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(f"{name}: is {seconds:.2f} s long, more than the allowed {max_seconds:g} s")


def iter_audio_blocks(
    path: str | os.PathLike, block_seconds: float, *, sr: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Stream a file as consecutive mono float32 blocks at ``sr``, without loading it whole.

    Each block is read with enough context on both sides for the resampling filter, and block
    starts fall on whole resampling periods, so the concatenated blocks equal
    ``load_audio(path, sr=sr)`` up to float rounding. Every block but the last holds
    ``block_seconds * sr`` samples rounded up to a multiple of ``sr / gcd(rate, sr)`` (one
    resampling period); the last holds the rest.

    Raises:
        AudioError: as :func:`load_audio`; a NaN/inf block raises when it is reached.
    """
    info = audio_info(path)
    up, down = _resample_ratio(info.sample_rate, sr)
    out_block = max(up, math.ceil(block_seconds * sr / up) * up)
    in_block = out_block // up * down
    # context in input samples, a multiple of `down` so every read starts on the output grid
    context = math.ceil(_FILTER_HALF_WIDTH * max(up, down) / up / down + 1) * down
    _check_length(math.ceil(info.frames * up / down), sr, info.path)
    with _open(info.path) as f:
        for start in range(0, info.frames, in_block):
            stop = min(start + in_block, info.frames)
            lo, hi = max(0, start - context), min(info.frames, stop + context)
            f.seek(lo)
            chunk = _to_float_mono(f.read(hi - lo, dtype="float32", always_2d=True), info.path)
            _check_finite(chunk, info.path)
            wav = _resample(chunk, info.sample_rate, sr)
            offset = lo // down * up  # output index of the chunk's first sample
            yield wav[start // down * up - offset : math.ceil(stop * up / down) - offset]


def is_silent(wav: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True if the RMS level of ``wav`` (float, full scale = 1) is below ``threshold_db`` dBFS."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if np.size(wav) else 0.0
    return rms == 0.0 or 20.0 * math.log10(rms) < threshold_db


def save_audio(
    path: str | os.PathLike, wav: np.ndarray, sr: int = SAMPLE_RATE, *, subtype: str | None = None
) -> None:
    """Write ``wav`` (``[N]`` or ``[N, ch]`` float) atomically; the format follows the extension.

    ``subtype=None`` uses the format's default: 16-bit PCM for wav and flac, Vorbis for ogg.
    Float samples beyond +-1 are clipped when written as integers.
    """
    wav = np.asarray(wav)
    _check_finite(wav, os.fspath(path))
    with atomic_path(path) as tmp:
        sf.write(tmp, wav, sr, subtype=subtype)
