"""Log-mel features against librosa (the independent reference) and the frame-timing contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thunder3d.audio import (
    LogMel,
    frame_times,
    frames_to_mel,
    frames_to_samples,
    log_mel,
    mel_filterbank,
    mel_to_frames,
    num_frames,
    pad_to_frames,
    rms_envelope,
)
from thunder3d.audio import features
from thunder3d.constants import MELS_PER_FRAME, N_MELS, SAMPLE_RATE, SAMPLES_PER_FRAME


def chirp_and_noise(seconds: float, seed: int = 0) -> np.ndarray:
    """A 100 Hz .. 7.5 kHz sweep plus noise at 16 kHz: ``[N]`` float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    phase = 2 * np.pi * (100 * t + (7400 * t**2) / (2 * seconds))
    return 0.4 * np.sin(phase) + 0.02 * rng.standard_normal(t.size)


@pytest.mark.parametrize(
    "kwargs", [{}, {"n_mels": 40, "f_min": 20.0, "f_max": 7600.0}, {"n_mels": 128, "n_fft": 1024, "sr": 22050}]
)
def test_filterbank_matches_librosa(kwargs):
    librosa = pytest.importorskip("librosa")
    args = {"n_mels": 80, "n_fft": 512, "sr": 16000, "f_min": 0.0, "f_max": 8000.0} | kwargs
    ref = librosa.filters.mel(
        sr=args["sr"], n_fft=args["n_fft"], n_mels=args["n_mels"], fmin=args["f_min"], fmax=args["f_max"]
    )
    fb = mel_filterbank(**args)
    assert fb.shape == (args["n_fft"] // 2 + 1, args["n_mels"]) and fb.dtype == torch.float32
    np.testing.assert_allclose(fb.numpy().T, ref, atol=1e-6)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-3), (np.float64, 1e-6)])
def test_log_mel_matches_librosa(dtype, tol):
    librosa = pytest.importorskip("librosa")
    wav = chirp_and_noise(3.0).astype(dtype)
    power = librosa.feature.melspectrogram(
        y=wav, sr=16000, n_fft=512, hop_length=160, win_length=400, window="hann", center=True,
        pad_mode="reflect", power=2.0, n_mels=80, fmin=0.0, fmax=8000.0,
    )  # [80, N // 160 + 1]
    ref = np.log(np.maximum(power, features.LOG_FLOOR)).T[: wav.size // 160]

    ours = log_mel(wav)
    assert ours.dtype == torch.from_numpy(wav).dtype
    assert np.abs(ours.numpy() - ref).max() < tol


@pytest.mark.parametrize("frames", [1, 2, 7, 25, 101])
def test_four_mel_frames_per_animation_frame(frames):
    wav = torch.randn(frames_to_samples(frames)) * 0.1
    mel = log_mel(wav)
    assert mel.shape == (MELS_PER_FRAME * frames, N_MELS)
    assert mel_to_frames(mel).shape == (frames, MELS_PER_FRAME * N_MELS)


@pytest.mark.parametrize("num_samples", [257, 639, 640, 1000, 16001, 12345])
def test_any_length_gives_floor_of_hops(num_samples):
    mel = log_mel(torch.randn(num_samples) * 0.1)
    assert mel.shape == (num_samples // 160, N_MELS)
    assert mel_to_frames(mel).shape[0] == num_frames(num_samples) == num_samples // 640


def test_time_major_and_aligned():
    # silence for 10 frames then a tone: mel frames before the onset sit at the floor
    wav = torch.zeros(frames_to_samples(20))
    onset = frames_to_samples(10)
    wav[onset:] = 0.5 * torch.sin(2 * math.pi * 440 * torch.arange(wav.numel() - onset) / SAMPLE_RATE)
    mel = log_mel(wav)  # [80, 80]: time first
    floor = math.log(features.LOG_FLOOR)
    reach = 256 // 160  # frames whose 512-sample window reaches the onset
    assert torch.all(mel[: 40 - reach - 1] == floor)
    assert torch.all(mel[40 + reach + 1 :].amax(-1) > floor + 5)


def test_batch_equals_per_item():
    wavs = torch.from_numpy(np.stack([chirp_and_noise(1.0, seed=s) for s in range(6)])).float()
    batched = log_mel(wavs.reshape(2, 3, -1))
    assert batched.shape == (2, 3, 100, N_MELS)
    single = torch.stack([log_mel(w) for w in wavs]).reshape(2, 3, 100, N_MELS)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_gradient_flows_to_wav():
    wav = torch.from_numpy(chirp_and_noise(0.5)).float()
    wav[:2000] = 0.0  # silence too: the clamp gives zero gradient there, never NaN
    wav.requires_grad_(True)
    log_mel(wav).mean().backward()
    assert torch.isfinite(wav.grad).all() and wav.grad[4000:].abs().sum() > 0


def test_tables_built_under_inference_mode_still_support_autograd():
    wav = torch.randn(1600, generator=torch.Generator().manual_seed(0))

    def grad_of_log_mel() -> torch.Tensor:
        x = wav.clone().requires_grad_(True)
        log_mel(x).sum().backward()
        return x.grad

    features._cached_tables.cache_clear()
    reference = grad_of_log_mel()  # tables built with autograd on
    features._cached_tables.cache_clear()
    with torch.inference_mode():
        log_mel(torch.randn(1600))  # tables now built (and cached) under inference mode
    grad = grad_of_log_mel()
    assert grad.shape == wav.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0
    torch.testing.assert_close(grad, reference, rtol=0, atol=0)


def test_log_mel_input_checks():
    with pytest.raises(ValueError, match="256"):
        log_mel(torch.zeros(200))
    with pytest.raises(TypeError, match="float"):
        log_mel(np.zeros(16000, np.int16))


def test_module_matches_function_and_saves_nothing():
    module = LogMel()
    wav = torch.from_numpy(chirp_and_noise(0.4)).float()
    torch.testing.assert_close(module(wav), log_mel(wav))
    assert module.state_dict() == {}
    assert module.double()(wav.double()).dtype == torch.float64


def test_mel_frame_grouping_round_trip():
    mel = torch.arange(2 * 12 * 3, dtype=torch.float32).reshape(2, 12, 3)
    frames = mel_to_frames(mel)  # [2, 3, 12]
    assert frames.shape == (2, 3, 12)
    for t in range(3):
        for k in range(MELS_PER_FRAME):
            assert torch.equal(frames[:, t, 3 * k : 3 * k + 3], mel[:, 4 * t + k])
    assert torch.equal(frames_to_mel(frames), mel)
    assert mel_to_frames(mel[:, :11]).shape == (2, 2, 12)  # a partial animation frame is dropped


def test_frame_helpers():
    assert num_frames(639) == 0 and num_frames(640) == 1 and num_frames(16000) == 25
    assert frames_to_samples(25) == 16000
    np.testing.assert_allclose(frame_times(3), [0.0, 0.04, 0.08])
    for n in (1, 640, 641):
        padded = pad_to_frames(np.ones((2, n), np.float32))
        assert isinstance(padded, np.ndarray) and padded.shape == (2, math.ceil(n / 640) * 640)
        assert padded[:, :n].sum() == 2 * n and padded[:, n:].sum() == 0
        assert pad_to_frames(torch.ones(n)).shape == (math.ceil(n / 640) * 640,)


def test_rms_envelope():
    amplitude = torch.tensor([0.0, 0.1, 0.5]).repeat_interleave(SAMPLES_PER_FRAME)
    t = torch.arange(amplitude.numel(), dtype=torch.float32) / SAMPLE_RATE
    wav = amplitude * torch.sin(2 * math.pi * 500 * t)  # 500 Hz: whole periods per frame
    env = rms_envelope(torch.cat([wav, torch.ones(100)]))  # trailing partial frame is dropped
    torch.testing.assert_close(env, torch.tensor([0.0, 0.1, 0.5]) / math.sqrt(2), atol=1e-5, rtol=0)
    assert rms_envelope(np.zeros((4, 1280), np.float32)).shape == (4, 2)


# --------------------------------------------------------------------------- mel augmentation
def _tone(hz: float) -> torch.Tensor:
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    return torch.sin(2 * math.pi * hz * t)[None]


@pytest.mark.parametrize("alpha", [0.88, 1.12])
def test_warp_moves_a_tone_by_alpha(alpha):
    from thunder3d.audio.mel_augment import warp_mel

    mel = features.log_mel(_tone(1500.0))  # [1, M, 80]
    warped = warp_mel(mel, torch.tensor([alpha]))
    expect = features.log_mel(_tone(1500.0 * alpha))
    assert warped.shape == mel.shape
    # the peak bin lands where a tone at alpha * 1500 Hz puts it (within one bin)
    assert abs(int(warped[0, 50].argmax()) - int(expect[0, 50].argmax())) <= 1
    assert torch.equal(warp_mel(mel, torch.ones(1)), mel)


def test_warp_and_band_mask_checks():
    from thunder3d.audio.mel_augment import mask_mel_bands, warp_mel
    from thunder3d.errors import AudioError

    with pytest.raises(AudioError, match=r"\[B, M, 80\]"):
        warp_mel(torch.zeros(2, 80), torch.ones(2))
    with pytest.raises(AudioError, match="positive"):
        warp_mel(torch.zeros(2, 3, 80), torch.tensor([1.0, 0.0]))
    torch.manual_seed(0)
    mel = torch.randn(64, 5, N_MELS)
    out = mask_mel_bands(mel, 8, value=0.0)
    masked = (out != mel).any(1)  # [B, 80] bins changed per item
    widths = masked.sum(-1)
    assert widths.max() <= 8 and widths.max() > 0
    for row in masked:  # one contiguous band
        idx = row.nonzero().flatten()
        assert len(idx) == 0 or int(idx[-1] - idx[0]) + 1 == len(idx)
    assert mask_mel_bands(mel, 0) is mel
