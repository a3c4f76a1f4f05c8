"""Log-mel features in torch, and the helpers that tie mel frames to animation frames.

Timing contract (thunder3d.constants): 16 kHz audio, 25 fps animation, 640 samples per animation
frame, mel hop 160, so 4 mel frames per animation frame. Mel frame ``m`` is centred on sample
``160 * m``; animation frame ``t`` covers samples ``[640 t, 640 t + 640)`` and owns mel frames
``4 t .. 4 t + 3``. N samples give ``N // 160`` mel frames and ``N // 640`` animation frames, so
``T * 640`` samples give exactly ``4 * T`` mel frames.

Feature definition (the M2S target, keep it stable): power spectrum of a periodic Hann window of
400 samples zero-padded to a 512-point FFT, reflect-padded centred frames, Slaney-normalised
Slaney-scale mel filterbank (librosa's default), natural log of the mel power clamped at 1e-5.
Power rather than magnitude, so that the floor (1e-5) sits around -57 dBFS for white noise: room
noise and dither fall below it and the features follow speech, not the recording's noise floor.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor, nn

from thunder3d.constants import (
    F_MAX,
    F_MIN,
    FPS,
    HOP_LENGTH,
    MELS_PER_FRAME,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    WIN_LENGTH,
)

LOG_FLOOR = 1e-5  # mel power below this is clamped before the log

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per 6.4x).
_HZ_PER_MEL = 200.0 / 3.0
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _HZ_PER_MEL
_MELS_PER_LOG = 27.0 / math.log(6.4)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _LOG_START_MEL + _MELS_PER_LOG * np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ)
    return np.where(hz < _LOG_START_HZ, hz / _HZ_PER_MEL, log_part)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _LOG_START_HZ * np.exp((np.maximum(mel, _LOG_START_MEL) - _LOG_START_MEL) / _MELS_PER_LOG)
    return np.where(mel < _LOG_START_MEL, mel * _HZ_PER_MEL, log_part)


def mel_filterbank(
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    sr: int = SAMPLE_RATE,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Triangular filters on Slaney's mel scale, each scaled to unit area in Hz (Slaney norm).

    Returns:
        ``[n_fft // 2 + 1, n_mels]``, so that ``power_spectrum [..., F] @ fb`` gives mel bands.
    """
    fft_hz = np.linspace(0.0, sr / 2, n_fft // 2 + 1)  # [F]
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))  # [n_mels + 2]
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # each [n_mels, 1]
    rising = (fft_hz - lower) / (centre - lower)  # [n_mels, F]
    falling = (upper - fft_hz) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    weights = triangles * (2.0 / (upper - lower))  # area normalisation
    return torch.from_numpy(weights.T.copy()).to(dtype)


def _hann_window(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Periodic Hann window ``[WIN_LENGTH]``; torch.stft centres it in the ``N_FFT`` frame."""
    return torch.hann_window(WIN_LENGTH, periodic=True, device=device, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _cached_tables(device: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(window [WIN_LENGTH], filterbank [F, N_MELS])`` on ``device``, built once per device/dtype."""
    with torch.inference_mode(False):  # plain tensors, usable by autograd even if first built in inference
        return _hann_window(device, dtype), mel_filterbank(dtype=dtype).to(device)


def _as_float_tensor(wav: Tensor | np.ndarray) -> Tensor:
    """numpy or torch float samples -> float32/float64 tensor (half precision is computed in float32)."""
    x = torch.from_numpy(np.ascontiguousarray(wav)) if isinstance(wav, np.ndarray) else wav
    if not x.is_floating_point():
        raise TypeError(f"expected float audio samples in [-1, 1], got dtype {x.dtype}")
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _log_mel(x: Tensor, window: Tensor, filterbank: Tensor) -> Tensor:
    """``[..., N]`` -> ``[..., N // HOP_LENGTH, n_mels]`` with the given window and filterbank."""
    *batch, n = x.shape
    if n <= N_FFT // 2:
        raise ValueError(f"log_mel needs more than {N_FFT // 2} samples, got {n}")
    spec = torch.stft(
        x.reshape(-1, n), N_FFT, HOP_LENGTH, WIN_LENGTH, window,
        center=True, pad_mode="reflect", return_complex=True,
    )  # [B, F, n // HOP_LENGTH + 1]
    power = torch.view_as_real(spec).square().sum(-1)  # |X|^2, finite gradient at 0 unlike abs()
    power = power[..., : n // HOP_LENGTH]  # drop the frame centred past the end: exact 4 per frame
    mel = power.transpose(1, 2) @ filterbank  # [B, T_mel, n_mels], time-major
    return torch.log(mel.clamp(min=LOG_FLOOR)).reshape(*batch, n // HOP_LENGTH, filterbank.shape[1])


def log_mel(wav: Tensor | np.ndarray) -> Tensor:
    """Log-mel features of 16 kHz audio, time-major (see the module docstring for the definition).

    Args:
        wav: ``[..., N]`` float samples (numpy or torch; any leading batch dims), N > 256.

    Returns:
        ``[..., N // 160, 80]`` on ``wav``'s device, float32 (float64 for float64 input).
        Differentiable with respect to ``wav``.
    """
    x = _as_float_tensor(wav)
    return _log_mel(x, *_cached_tables(str(x.device), x.dtype))


WHISPER_N_FFT = 400  # Whisper's front end: a 400-point FFT of the same 160-sample hop


@functools.lru_cache(maxsize=None)
def _whisper_tables(device: str) -> tuple[Tensor, Tensor]:
    with torch.inference_mode(False):
        return (torch.hann_window(WHISPER_N_FFT, periodic=True, device=device),
                mel_filterbank(N_MELS, WHISPER_N_FFT, SAMPLE_RATE, 0.0, SAMPLE_RATE / 2).to(device))


def whisper_log_mel(wav: Tensor | np.ndarray) -> Tensor:
    """Whisper's published log-mel front end (Radford et al., 2022), for its pretrained encoder.

    Power spectrum of a 400-point periodic Hann STFT (hop 160, centred, reflect-padded), the 80-band
    Slaney mel filterbank, ``log10`` clamped at 1e-10, then floored 8 (i.e. 80 dB) below the
    input's maximum and scaled as ``(x + 4) / 4``. The floor makes the features depend on the whole
    input's peak: encode audio in fixed chunks so that a frame sees the same input every time.

    Args:
        wav: ``[..., N]`` float samples of 16 kHz audio, N > 200.
    Returns:
        ``[..., N // 160, 80]`` float32 (4 frames per animation frame, as :func:`log_mel`).
    """
    x = _as_float_tensor(wav).float()
    *batch, n = x.shape
    if n <= WHISPER_N_FFT // 2:
        raise ValueError(f"whisper_log_mel needs more than {WHISPER_N_FFT // 2} samples, got {n}")
    window, filterbank = _whisper_tables(str(x.device))
    spec = torch.stft(x.reshape(-1, n), WHISPER_N_FFT, HOP_LENGTH, window=window, center=True,
                      pad_mode="reflect", return_complex=True)  # [B, 201, n // 160 + 1]
    power = torch.view_as_real(spec[..., : n // HOP_LENGTH]).square().sum(-1)  # [B, 201, n // 160]
    mel = torch.log10((power.transpose(1, 2) @ filterbank).clamp(min=1e-10))  # [B, n // 160, 80]
    mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
    return ((mel + 4.0) / 4.0).reshape(*batch, n // HOP_LENGTH, N_MELS)


class LogMel(nn.Module):
    """:func:`log_mel` as a module; window and filterbank are non-persistent buffers (not saved)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", _hann_window(), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        """``[..., N]`` -> ``[..., N // 160, 80]``."""
        return _log_mel(wav.to(self.filterbank.dtype), self.window, self.filterbank)


def num_frames(num_samples: int) -> int:
    """Whole animation frames in ``num_samples`` samples at 16 kHz (a trailing partial frame is dropped)."""
    return num_samples // SAMPLES_PER_FRAME


def frames_to_samples(frames: int) -> int:
    """Samples at 16 kHz spanned by ``frames`` animation frames."""
    return frames * SAMPLES_PER_FRAME


def frame_times(frames: int) -> np.ndarray:
    """Start time in seconds of each animation frame: ``[T]`` float64, frame t covers ``[t, t+1) / 25``."""
    return np.arange(frames, dtype=np.float64) / FPS


def mel_to_frames(mel: Tensor) -> Tensor:
    """Group mel frames per animation frame: ``[..., M, n_mels]`` -> ``[..., M // 4, 4 * n_mels]``.

    Trailing mel frames that do not fill an animation frame are dropped, so the frame count
    matches :func:`num_frames` of the audio.
    """
    *batch, m, n_mels = mel.shape
    t = m // MELS_PER_FRAME
    # row t is mel frames 4t..4t+3 concatenated in time order
    return mel[..., : t * MELS_PER_FRAME, :].reshape(*batch, t, MELS_PER_FRAME * n_mels)


def frames_to_mel(frames: Tensor) -> Tensor:
    """Inverse of :func:`mel_to_frames`: ``[..., T, 4 * n_mels]`` -> ``[..., 4 T, n_mels]``."""
    *batch, t, width = frames.shape
    return frames.reshape(*batch, t * MELS_PER_FRAME, width // MELS_PER_FRAME)


def pad_to_frames(wav: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Zero-pad the last axis of ``[..., N]`` up to a multiple of 640 samples; keeps numpy/torch type."""
    pad = -wav.shape[-1] % SAMPLES_PER_FRAME
    if isinstance(wav, np.ndarray):
        return np.pad(wav, [(0, 0)] * (wav.ndim - 1) + [(0, pad)])
    return nn.functional.pad(wav, (0, pad))


def rms_envelope(wav: Tensor | np.ndarray) -> Tensor:
    """Loudness per animation frame: RMS of each 640-sample frame.

    Args:
        wav: ``[..., N]`` float samples at 16 kHz.

    Returns:
        ``[..., N // 640]`` (a trailing partial frame is dropped), same dtype as :func:`log_mel`.
    """
    x = _as_float_tensor(wav)
    t = num_frames(x.shape[-1])
    frames = x[..., : frames_to_samples(t)].reshape(*x.shape[:-1], t, SAMPLES_PER_FRAME)
    return frames.square().mean(-1).sqrt()
