"""Audio in and out: any file soundfile reads -> 16 kHz mono float32, with clear errors.

Every path into thunder3d goes through :func:`to_mono_16k` (arrays) or :func:`load_audio` (files),
so all audio is converted the same way: channels averaged to mono, integers scaled to [-1, 1),
resampled with a polyphase filter at the reduced rational ratio, and checked (a sample rate of at
least 8000 Hz, non-empty, finite, at least one animation frame long). Samples beyond +-1 in float
files are kept as they are. Input that is not plausibly speech (a steady tone, or float samples far
beyond full scale such as unscaled integer PCM) is still used, with a ``UserWarning``
(:func:`speech_problem`, run on the first 30 s).

Resampling is ``scipy.signal.resample_poly`` with its default Kaiser-windowed filter: from 44.1 kHz
to 16 kHz the passband is flat within 0.2 % up to 6 kHz (-0.25 dB at 7 kHz) and content above
9.5 kHz is attenuated by more than 53 dB.

Long files can be streamed with :func:`iter_audio_blocks`, which gives the same samples as
:func:`load_audio` block by block (up to float rounding).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from thunder3d.constants import FPS, SAMPLE_RATE
from thunder3d.errors import AudioError, AudioTooLongError
from thunder3d.utils.io import atomic_path

# resample_poly's default FIR filter is 10 * max(up, down) taps long on each side at the upsampled
# rate, i.e. 10 * max(up, down) / up input samples; streaming reads that much context around blocks.
_FILTER_HALF_WIDTH = 10

MIN_SAMPLE_RATE = 8000
"""Lowest input sample rate accepted (Hz): below it the speech band (up to 4 kHz) is not there."""

# the plausibility check (not speech -> a warning): how much of the start it looks at, and its limits
_CHECK_SECONDS = 30.0  # the first 30 s (a file's first streamed block) are enough to tell
_MAX_PEAK = 2.0  # float samples beyond +-2 (6 dB over full scale): mis-scaled or garbage, not audio
# a steady tone: over the loud frames, >= 95 % of the mean spectrum's energy within +-3 bins of its
# peak, >= 90 % of the frames each holding >= 90 % of their energy there, and a level that holds
# (interquartile range of the frame levels <= 3 dB); speech moves its level from syllable to syllable
_TONE_SHARE, _TONE_FRAME_SHARE, _TONE_FRAMES, _TONE_LEVEL_IQR_DB = 0.95, 0.9, 0.9, 3.0
_TONE_FLOOR_DB = -60.0  # frames quieter than this (dBFS RMS, as is_silent) are not looked at


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
    """Describe an audio file from its header, without decoding the samples.

    Raises:
        AudioError: missing, empty, corrupt or non-audio file, or a sample rate below 8000 Hz.
    """
    path = _check_path(path)
    with _open(path) as f:
        info = AudioInfo(path, f.samplerate, f.channels, f.frames, f.format, f.subtype)
    _check_rate(info.sample_rate, path)
    return info


def _check_rate(sr, name: str) -> None:
    """Raise AudioError for a sample rate that is not a whole number of Hz >= 8000."""
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)) \
            or not math.isfinite(sr) or int(sr) != sr or sr <= 0:
        raise AudioError(f"{name}: sample rate must be a positive integer, got {sr}")
    if sr < MIN_SAMPLE_RATE:
        raise AudioError(f"{name}: sample rate {int(sr)} Hz is too low for speech; at least "
                         f"{MIN_SAMPLE_RATE} Hz is needed (a wrong rate in the header?)")


def _resample_ratio(sr_in: int, sr_out: int) -> tuple[int, int]:
    """Reduced ``(up, down)`` with ``sr_in * up / down == sr_out``."""
    g = math.gcd(sr_in, sr_out)
    return sr_out // g, sr_in // g


def _resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of ``[N]`` float32 to ``[ceil(N * sr_out / sr_in)]`` float32."""
    if sr_in == sr_out:
        return wav
    from scipy.signal import resample_poly  # here: scipy.signal takes a second to import

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
    _check_rate(sr_in, name)
    mono = _to_float_mono(data, name)
    _check_finite(mono, name)
    wav = _resample(mono, int(sr_in), sr_out)
    _check_length(wav.size, sr_out, name)
    warn_if_not_speech(wav, sr_out, name, stacklevel=3)  # the caller of to_mono_16k / load_audio
    return wav


def speech_problem(wav: np.ndarray, sr: int = SAMPLE_RATE) -> str | None:
    """Why ``wav`` (mono float, full scale = 1) is not plausibly speech, or None if it may be.

    Looks at the first 30 s only (a few milliseconds of work) and flags two things:

    - samples far beyond full scale (peak above 2.0): integer PCM stored as float unscaled,
      or garbage;
    - a steady tone: over the frames louder than -60 dBFS, at least 95 % of the energy sits
      within +-3 bins (about +-50 Hz) of a single frequency, in nearly every frame (90 %), at a
      level that holds (frame levels' interquartile range <= 3 dB). Speech spreads its energy over
      harmonics and formants that move, and its level changes from syllable to syllable; silence
      and noise have no dominant frequency.
    """
    part = np.asarray(wav[: int(_CHECK_SECONDS * sr)], dtype=np.float32)
    if part.size == 0:
        return None
    peak = float(np.max(np.abs(part)))
    if peak > _MAX_PEAK:
        return (f"samples reach {peak:.3g}, far beyond full scale (1.0), so the audio looks mis-scaled "
                "or corrupt (integer PCM stored as float?)")
    hz = _steady_tone(part, sr)
    if hz is not None:
        return f"this is a steady tone at about {hz:.0f} Hz, not speech"
    return None


def _steady_tone(wav: np.ndarray, sr: int) -> float | None:
    """The frequency of a steady tone holding nearly all the energy of ``wav``'s loud frames, or None."""
    n = 1 << max(6, round(math.log2(0.064 * sr)))  # ~64 ms frames: 1024 samples at 16 kHz
    count = wav.size // n
    if count < 4:  # under ~0.25 s: too short to tell
        return None
    frames = wav[: count * n].reshape(count, n).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)  # a DC offset is not a tone
    power = np.mean(np.square(frames), axis=1)
    loud = power > 10.0 ** (_TONE_FLOOR_DB / 10.0)
    if np.count_nonzero(loud) < 4:
        return None
    level = 10.0 * np.log10(power[loud])
    if float(np.subtract(*np.percentile(level, [75, 25]))) > _TONE_LEVEL_IQR_DB:
        return None
    spectra = np.abs(np.fft.rfft(frames[loud] * np.hanning(n), axis=1)) ** 2  # [F, n / 2 + 1]
    mean = spectra.mean(axis=0)
    k = int(np.argmax(mean))
    band = slice(max(0, k - 3), k + 4)
    total = float(mean.sum())
    if total <= 0.0 or float(mean[band].sum()) < _TONE_SHARE * total:
        return None
    held = spectra[:, band].sum(axis=1) >= _TONE_FRAME_SHARE * spectra.sum(axis=1)
    if float(np.mean(held)) < _TONE_FRAMES:
        return None
    bins = np.arange(band.start, band.start + mean[band].size)
    return float(np.sum(bins * mean[band]) / np.sum(mean[band])) * sr / n  # between the bins


def warn_if_not_speech(wav: np.ndarray, sr: int, name: str, *, stacklevel: int = 2) -> None:
    """``warnings.warn`` one sentence (UserWarning) naming ``name`` when :func:`speech_problem`
    finds one; the audio is still used as it is."""
    problem = speech_problem(wav, sr)
    if problem is not None:
        warnings.warn(f"{name}: {problem}; it is used as it is", UserWarning, stacklevel=stacklevel + 1)


def to_mono_16k(data: np.ndarray, sr: int, *, name: str = "audio array") -> np.ndarray:
    """Convert an in-memory array to thunder3d's audio format.

    Args:
        data: ``[N]`` or channels-last ``[N, ch]`` samples; integers are scaled to [-1, 1).
        sr: sample rate of ``data`` in Hz.
        name: how error messages refer to the array.

    Returns:
        ``[M]`` float32 at 16 kHz, ``M = ceil(N * 16000 / sr)``.
    Raises:
        AudioError: as :func:`load_audio` (``sr`` below 8000 Hz, NaN/inf, too short, bad shape);
            audio that is not plausibly speech gives a ``UserWarning`` instead.
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
        AudioError: missing, empty, corrupt or non-audio file; a sample rate below 8000 Hz; no
            samples; NaN/inf samples; shorter than one animation frame (40 ms); longer than
            ``max_seconds``.

    Audio that is not plausibly speech (:func:`speech_problem`) gives a ``UserWarning`` and is
    returned as it is.
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
        raise AudioTooLongError(f"{name}: is {seconds:.2f} s long, more than the allowed {max_seconds:g} s")


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
            block = wav[start // down * up - offset : math.ceil(stop * up / down) - offset]
            if start == 0:  # the first block tells whether this is plausibly speech
                warn_if_not_speech(block, sr, info.path, stacklevel=2)
            yield block


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
    if Path(path).suffix.lower().lstrip(".") not in {f.lower() for f in sf.available_formats()}:
        raise AudioError(f"{path}: cannot tell the audio format from its extension; use .wav, .flac or .ogg")
    with atomic_path(path) as tmp:
        sf.write(tmp, wav, sr, subtype=subtype)
