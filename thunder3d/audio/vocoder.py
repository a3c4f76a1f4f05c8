"""Hear a log-mel: invert :func:`~thunder3d.audio.features.log_mel` back to a waveform.

Meant for listening to what a face model predicts (or to the audio a clip was trained on), not for
production audio. Two steps, both plain torch and batched over any leading dimensions:

1. :func:`mel_to_linear` undoes the mel filterbank. 80 bands cannot determine 257 FFT bins, so it
   picks the non-negative power spectrum whose mel bands match best in the least-squares sense:
   accelerated projected gradient (FISTA) on ``min ||P @ fb - mel||^2`` subject to ``P >= 0``,
   started from the pseudo-inverse solution clamped at 0. Rows (frames) are independent, so every
   frame of every batch item is solved at once. Bands at the log floor (``log(1e-5)``) carry no
   level information ("at most 1e-5"), so they are fitted as 0: a silent log-mel gives a zero
   spectrum and therefore exact silence.
2. :func:`griffin_lim` finds a phase for those magnitudes with fast Griffin-Lim (Perraudin, Balazs
   and Søndergaard, 2013: Griffin-Lim's alternating projections plus a momentum term), using
   exactly the STFT of ``log_mel`` (periodic Hann 400, FFT 512, hop 160, centred, reflect-padded),
   so ``M`` frames come back as ``M * 160`` samples and ``log_mel`` of the result has ``M`` frames
   again. The initial phase is uniform noise from a seeded CPU ``torch.Generator``: the same seed
   gives the same samples.

:func:`vocode` chains the two and peak-normalises the result to -1 dBFS.

Quality, measured on espeak-ng speech (5 sentences x 2 voices, ``en-us`` and ``en-us+f3``, 3-5 s
each; wav -> log_mel -> mel_to_linear -> griffin_lim, 60 iterations, no level normalisation):

* log-mel round trip, mean |difference|: 0.103 nats (0.093-0.114). The mel inversion alone costs
  0.003 (0.001-0.005); Griffin-Lim from the true STFT magnitudes alone reaches 0.077, so the phase
  retrieval, not the mel inversion, is the main loss.
* spectral convergence ``||S_out| - |S_target|| / ||S_target||``: 0.070 (0.054-0.083) against the
  magnitudes it was given, falling with iterations (random phase 0.59, 10 it 0.14, 30 it 0.087,
  100 it 0.065); 0.147 (0.12-0.20) against the original STFT, because 80 bands cannot restore the
  harmonic fine structure they average away.
* intelligibility proxy: pocketsphinx phone recognition (:func:`~thunder3d.audio.align.recognize_phones`,
  itself weak) matches espeak's own phone labels on 41 % of 10 ms frames for the original audio and
  39 % for the vocoded audio; phone error rate against espeak's sequence 55 % vs 59 %; the two
  recognitions agree on 76 % of frames.

In short: the usual Griffin-Lim sound, robotic and phasey (buzzy, slightly reverberant), yet
intelligible by the proxy above; good enough to hear lip-sync against the face, not production
audio. Speed: about 0.3 s to vocode 10 s of audio with 60 iterations on 2 CPU threads (0.6 s on one).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from thunder3d.audio.features import LOG_FLOOR, mel_filterbank
from thunder3d.constants import HOP_LENGTH, N_FFT, N_MELS, WIN_LENGTH
from thunder3d.errors import AudioError

N_FREQS = N_FFT // 2 + 1  # 257 linear-frequency bins
SPECTRUM_KINDS = ("power", "magnitude")

# Log-mel values within this of log(LOG_FLOOR) are taken as "at the floor" (clamped, no level).
_FLOOR_TOLERANCE = 1e-4
# A vocoded item whose peak stays below this is left as it is instead of being normalised, so that
# near-silence is not blown up to full scale: a log-mel up to 1 nat above the floor everywhere
# (e.g. a model's prediction for silence) vocodes to noise peaking around -43..-39 dBFS.
_SILENCE_PEAK_DBFS = -40.0


def _as_tensor(x: Tensor | np.ndarray, name: str, width: int) -> Tensor:
    """numpy/torch ``[..., M, width]`` -> float32/float64 tensor, checked; AudioError otherwise."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, Tensor):
        raise AudioError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if t.ndim < 2 or t.shape[-1] != width:
        raise AudioError(f"{name} must have shape [..., M, {width}], got {list(t.shape)}")
    if t.shape[-2] < 2:
        # the centred STFT reflect-pads 256 samples, which needs more than 256 samples (2 frames)
        raise AudioError(f"{name} needs at least 2 frames (20 ms), got {t.shape[-2]}")
    if not torch.isfinite(t).all():
        raise AudioError(f"{name} contains NaN or infinite values")
    return t


@functools.lru_cache(maxsize=None)
def _tables(device: str, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, float]:
    """``(window [400], filterbank [F, 80], pseudo-inverse [80, F], 1 / Lipschitz constant)``.

    The window and filterbank are those of :func:`log_mel`; built once per device and dtype.
    """
    with torch.inference_mode(False):  # plain tensors, even if first built under inference_mode
        window = torch.hann_window(WIN_LENGTH, periodic=True, dtype=dtype, device=device)
        fb64 = mel_filterbank(dtype=torch.float64)
        pinv = torch.linalg.pinv(fb64).to(device, dtype)
        # the gradient of 0.5 ||P fb - mel||^2 is (P fb - mel) fb^T, Lipschitz in P with ||fb||_2^2
        step = 1.0 / torch.linalg.matrix_norm(fb64, 2).square().item()
        return window, fb64.to(device, dtype), pinv, step


def mel_to_linear(log_mel: Tensor | np.ndarray, n_iter: int = 50) -> Tensor:
    """Non-negative power spectrogram whose mel bands best match ``log_mel`` (least squares).

    Solves ``min_P ||P @ fb - exp(log_mel)||^2, P >= 0`` per frame by FISTA (accelerated projected
    gradient), started from the pseudo-inverse solution clamped at 0. Bands at the log floor are
    fitted as 0 (see the module docstring). With the default 50 iterations the mel bands of the
    result are within 0.001-0.005 nats (mean) of ``log_mel`` on speech; the clamped pseudo-inverse
    alone (``n_iter=0``) within about 0.07.

    Args:
        log_mel: ``[..., M, 80]`` natural-log mel power, as :func:`log_mel` makes it (numpy or torch).
        n_iter: projected-gradient iterations (0: the clamped pseudo-inverse).

    Returns:
        ``[..., M, 257]`` power spectrogram (``|STFT|^2``), float32 (float64 for float64 input),
        on ``log_mel``'s device.
    """
    x = _as_tensor(log_mel, "log_mel", N_MELS)
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise AudioError(f"n_iter must be a non-negative integer, got {n_iter!r}")
    _, fb, pinv, step = _tables(str(x.device), x.dtype)
    at_floor = x <= math.log(LOG_FLOOR) + _FLOOR_TOLERANCE
    mel = torch.where(at_floor, 0.0, x.exp())  # [..., M, 80]
    target_back = mel @ fb.T  # [..., M, F]: fb^T applied to the target, fixed across iterations

    power = (mel @ pinv).clamp(min=0.0)  # [..., M, F]
    lookahead, t = power, 1.0
    for _ in range(n_iter):
        # gradient step at the look-ahead point, then projection onto P >= 0
        grad = (lookahead @ fb) @ fb.T - target_back
        new = (lookahead - step * grad).clamp(min=0.0)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        lookahead = new + ((t - 1.0) / t_next) * (new - power)
        power, t = new, t_next
    return power


def _stft(wav: Tensor, window: Tensor) -> Tensor:
    """``[B, N]`` -> ``[B, F, N // 160 + 1]`` complex, the analysis of :func:`log_mel`."""
    return torch.stft(wav, N_FFT, HOP_LENGTH, WIN_LENGTH, window, center=True, pad_mode="reflect",
                      return_complex=True)


def _istft(spec: Tensor, window: Tensor, length: int) -> Tensor:
    """``[B, F, M + 1]`` complex -> ``[B, length]``, least-squares inverse of :func:`_stft`."""
    return torch.istft(spec, N_FFT, HOP_LENGTH, WIN_LENGTH, window, center=True, length=length)


def _target_magnitude(spec: Tensor, kind: str) -> Tensor:
    """``[..., M, F]`` power or magnitude -> ``[B, F, M + 1]`` magnitudes for the STFT frames.

    ``log_mel`` drops the STFT frame centred on the last sample (so that N samples give N // 160
    frames); the inversion needs it back, and repeats frame M - 1 for it.
    """
    mag = spec.clamp(min=0.0).sqrt() if kind == "power" else spec.clamp(min=0.0)
    mag = mag.reshape(-1, *mag.shape[-2:]).transpose(1, 2)  # [B, F, M], frequency-major for stft
    return torch.cat([mag, mag[..., -1:]], dim=-1)  # [B, F, M + 1]


def griffin_lim(
    spectrogram: Tensor | np.ndarray,
    n_iter: int = 60,
    momentum: float = 0.99,
    seed: int = 0,
    *,
    kind: str = "power",
) -> Tensor:
    """Waveform whose STFT magnitudes match ``spectrogram``: fast Griffin-Lim.

    Each iteration imposes the target magnitudes on the current phases, goes to the waveform and
    back (the projection onto consistent spectrograms), then extrapolates by ``momentum`` times the
    change since the previous iteration (``momentum=0`` is the original Griffin-Lim). The STFT is
    the one :func:`log_mel` uses, so ``M`` frames give ``M * 160`` samples.

    Args:
        spectrogram: ``[..., M, 257]`` non-negative power (``kind="power"``, what
            :func:`mel_to_linear` returns) or magnitude (``kind="magnitude"``), numpy or torch.
        n_iter: phase-update iterations (0: the random initial phase).
        momentum: fast Griffin-Lim's extrapolation weight in ``[0, 1)``; 0.99 as in the paper.
        seed: seed of the random initial phase (a CPU ``torch.Generator``, so results do not depend
            on the device the generator would otherwise live on).
        kind: ``"power"`` or ``"magnitude"``.

    Returns:
        ``[..., M * 160]`` float32 (float64 for float64 input) on ``spectrogram``'s device, at the
        level the spectrogram implies (not normalised).
    """
    if kind not in SPECTRUM_KINDS:
        raise AudioError(f"unknown spectrogram kind {kind!r}; valid kinds: {', '.join(SPECTRUM_KINDS)}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise AudioError(f"n_iter must be a non-negative integer, got {n_iter!r}")
    if not 0.0 <= momentum < 1.0:
        raise AudioError(f"momentum must be in [0, 1), got {momentum!r}")
    spec = _as_tensor(spectrogram, "spectrogram", N_FREQS)
    if (spec < 0).any():
        raise AudioError("spectrogram must be non-negative (a power or magnitude spectrogram)")
    *batch, m, _ = spec.shape
    length = m * HOP_LENGTH
    window = _tables(str(spec.device), spec.dtype)[0]
    mag = _target_magnitude(spec, kind)  # [B, F, M + 1]

    generator = torch.Generator().manual_seed(int(seed))
    # drawn in float32 whatever the dtype, so a seed gives the same start in float32 and float64
    angle = (torch.rand(mag.shape, generator=generator) * (2.0 * math.pi)).to(mag.dtype)
    phase = torch.polar(torch.ones_like(angle), angle).to(spec.device)  # unit complex [B, F, M + 1]
    previous = torch.zeros_like(phase)
    for _ in range(n_iter):
        rebuilt = _stft(_istft(mag * phase, window, length), window)  # consistent spectrogram
        accelerated = rebuilt + momentum * (rebuilt - previous) if momentum else rebuilt
        previous = rebuilt
        # keep the phase only; tiny floor so that zero bins get phase 0 instead of NaN
        phase = accelerated / accelerated.abs().clamp(min=torch.finfo(mag.dtype).tiny)
    return _istft(mag * phase, window, length).reshape(*batch, length)


def spectral_convergence(wav: Tensor | np.ndarray, spectrogram: Tensor | np.ndarray, *,
                         kind: str = "power") -> Tensor:
    """``|| |STFT(wav)| - target || / || target ||`` (Frobenius, per item): 0 is a perfect match.

    Args:
        wav: ``[..., N]`` samples.
        spectrogram: ``[..., N // 160, 257]`` target power (``kind="power"``) or magnitude.

    Returns:
        ``[...]`` (a 0-dim tensor for a single item).
    """
    if kind not in SPECTRUM_KINDS:
        raise AudioError(f"unknown spectrogram kind {kind!r}; valid kinds: {', '.join(SPECTRUM_KINDS)}")
    target = _as_tensor(spectrogram, "spectrogram", N_FREQS)
    target = target.clamp(min=0.0).sqrt() if kind == "power" else target
    x = torch.as_tensor(np.ascontiguousarray(wav) if isinstance(wav, np.ndarray) else wav)
    x = x.to(device=target.device, dtype=target.dtype)
    *batch, m, f = target.shape
    if x.shape[-1] // HOP_LENGTH != m:
        raise AudioError(f"wav of {x.shape[-1]} samples has {x.shape[-1] // HOP_LENGTH} frames, "
                         f"spectrogram has {m}")
    window = _tables(str(target.device), target.dtype)[0]
    mag = _stft(x.reshape(-1, x.shape[-1]), window).abs()[..., :m].transpose(1, 2)  # [B, M, F]
    diff = torch.linalg.matrix_norm(mag - target.reshape(-1, m, f))
    return (diff / torch.linalg.matrix_norm(target.reshape(-1, m, f)).clamp(min=1e-12)).reshape(batch)


def vocode(log_mel: Tensor | np.ndarray, n_iter: int = 60, seed: int = 0, *,
           momentum: float = 0.99, peak_dbfs: float | None = -1.0) -> np.ndarray:
    """16 kHz waveform for a log-mel: :func:`mel_to_linear`, then :func:`griffin_lim`.

    Args:
        log_mel: ``[..., M, 80]`` as :func:`log_mel` makes it (e.g. a model's prediction).
        n_iter: Griffin-Lim iterations.
        seed: seed of Griffin-Lim's initial phase; the same input and seed give the same samples.
        momentum: fast Griffin-Lim's momentum (see :func:`griffin_lim`).
        peak_dbfs: normalise each item's peak to this level; ``None`` keeps the level the log-mel
            implies (so that ``log_mel(vocode(x, peak_dbfs=None))`` is comparable with ``x``).
            Items that are silent (log-mel at the floor everywhere: exact zeros) or whose peak is
            below -40 dBFS (near-silence) are left as they are rather than amplified.

    Returns:
        ``[..., M * 160]`` float32 numpy array at 16 kHz, finite.
    """
    wav = griffin_lim(mel_to_linear(log_mel), n_iter, momentum, seed)
    wav = wav.detach().to("cpu", torch.float64).numpy()
    if peak_dbfs is not None:
        peak = np.abs(wav).max(axis=-1, keepdims=True)  # [..., 1]
        audible = peak >= 10.0 ** (_SILENCE_PEAK_DBFS / 20.0)
        gain = np.where(audible, 10.0 ** (peak_dbfs / 20.0) / np.where(audible, peak, 1.0), 1.0)
        wav = wav * gain
    return wav.astype(np.float32)
