"""Griffin-Lim vocoder: the length contract, determinism, and round-trip quality on real TTS speech."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thunder3d.audio import log_mel, mel_filterbank, synthesize
from thunder3d.audio.features import LOG_FLOOR
from thunder3d.audio.vocoder import (
    griffin_lim,
    mel_to_linear,
    spectral_convergence,
    vocode,
)
from thunder3d.constants import HOP_LENGTH, N_MELS
from thunder3d.errors import AudioError

# Measured on 10 espeak utterances (2 voices): round-trip log-mel mean |diff| 0.093..0.114 nats at
# 60 iterations, spectral convergence 0.054..0.083 against the inverted spectrum; thresholds have margin.
ROUND_TRIP_L1 = 0.2
SPECTRAL_CONVERGENCE_60 = 0.15


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 2.5 s of espeak-ng speech, trimmed to whole mel hops: ``[N]`` float32."""
    wav = synthesize("The quick brown fox jumps over the lazy dog.").wav
    return wav[: wav.size // HOP_LENGTH * HOP_LENGTH]


@pytest.fixture(scope="module")
def speech_mel(speech) -> torch.Tensor:
    """``[M, 80]`` log-mel of :func:`speech`."""
    return log_mel(speech)


@pytest.fixture(scope="module")
def speech_power(speech_mel) -> torch.Tensor:
    """``[M, 257]`` power spectrum inverted from :func:`speech_mel`."""
    return mel_to_linear(speech_mel)


def random_log_mel(*shape: int, seed: int = 0) -> torch.Tensor:
    """Speech-like range of log-mel values (floor .. about +1): ``[*shape, 80]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, N_MELS, generator=g) * 12.0 + math.log(LOG_FLOOR)


@pytest.mark.parametrize("m", [2, 3, 41, 100])
def test_length_contract(m):
    wav = vocode(random_log_mel(m), n_iter=5)
    assert isinstance(wav, np.ndarray) and wav.dtype == np.float32
    assert wav.shape == (m * HOP_LENGTH,)
    assert np.isfinite(wav).all()
    assert log_mel(wav).shape == (m, N_MELS)  # and back to the same number of frames


def test_shapes_and_batching():
    mel = random_log_mel(2, 3, 20)
    power = mel_to_linear(mel)
    assert power.shape == (2, 3, 20, 257) and (power >= 0).all()
    wav = griffin_lim(power, n_iter=8)
    assert wav.shape == (2, 3, 20 * HOP_LENGTH)
    # the first item draws the first initial phases, so it matches the unbatched call
    torch.testing.assert_close(wav[0, 0], griffin_lim(power[0, 0], n_iter=8), atol=1e-5, rtol=1e-4)
    # mel_to_linear treats frames independently
    torch.testing.assert_close(power[1, 2], mel_to_linear(mel[1, 2]), atol=1e-7, rtol=1e-4)
    out = vocode(mel, n_iter=8)
    assert out.shape == (2, 3, 20 * HOP_LENGTH)
    np.testing.assert_allclose(np.abs(out).max(-1), 10 ** (-1 / 20), rtol=1e-5)  # each item normalised


def test_deterministic_by_seed(speech_mel):
    mel = speech_mel[:150]
    a, b = vocode(mel, n_iter=10, seed=3), vocode(mel, n_iter=10, seed=3)
    np.testing.assert_array_equal(a, b)
    c = vocode(mel, n_iter=10, seed=4)
    assert np.abs(a - c).max() > 1e-3


def test_numpy_and_torch_inputs(speech_mel):
    mel = speech_mel[:100]
    from_torch = vocode(mel, n_iter=10)
    np.testing.assert_array_equal(vocode(mel.numpy(), n_iter=10), from_torch)
    from_double = vocode(mel.double().numpy(), n_iter=10)
    assert from_double.dtype == np.float32
    np.testing.assert_allclose(from_double, from_torch, atol=1e-3)
    assert griffin_lim(mel_to_linear(mel.double()), n_iter=2).dtype == torch.float64


def test_mel_inversion_matches_bands(speech_mel, speech_power):
    fb = mel_filterbank()
    refit = torch.log((speech_power @ fb).clamp(min=LOG_FLOOR))
    assert (refit - speech_mel).abs().mean() < 0.02  # measured 0.001
    clamped_pinv = torch.log((mel_to_linear(speech_mel, n_iter=0) @ fb).clamp(min=LOG_FLOOR))
    assert (clamped_pinv - speech_mel).abs().mean() > (refit - speech_mel).abs().mean()


def test_round_trip_on_speech(speech_mel, speech_power):
    wav = vocode(speech_mel, peak_dbfs=None)  # the level the log-mel implies, comparable to it
    l1 = (log_mel(wav) - speech_mel).abs().mean().item()
    assert l1 < ROUND_TRIP_L1, l1
    assert spectral_convergence(wav, speech_power) < SPECTRAL_CONVERGENCE_60


def test_more_iterations_converge(speech_power):
    sc = [spectral_convergence(griffin_lim(speech_power, n), speech_power).item() for n in (0, 10, 60)]
    assert sc[0] > sc[1] > sc[2], sc
    plain = spectral_convergence(griffin_lim(speech_power, 20, momentum=0.0), speech_power)
    fast = spectral_convergence(griffin_lim(speech_power, 20), speech_power)
    assert fast < plain  # the momentum is what makes fast Griffin-Lim fast


def test_peak_normalised(speech_mel):
    wav = vocode(speech_mel[:150], n_iter=10, peak_dbfs=-6.0)
    assert np.abs(wav).max() == pytest.approx(10 ** (-6 / 20), rel=1e-5)


def test_silence_stays_silent():
    floor = log_mel(np.zeros(HOP_LENGTH * 50, dtype=np.float32))  # every band at the floor
    wav = vocode(floor)
    assert wav.shape == (50 * HOP_LENGTH,) and not wav.any()
    # just above the floor (a model's "closed mouth"): quiet, finite, not blown up to full scale
    near = vocode(torch.full((50, N_MELS), math.log(LOG_FLOOR) + 0.5))
    assert np.isfinite(near).all() and 0 < np.abs(near).max() < 10 ** (-40 / 20)


def test_bad_input():
    with pytest.raises(AudioError, match=r"\[\.\.\., M, 80\]"):
        vocode(torch.zeros(10, 40))
    with pytest.raises(AudioError, match="at least 2 frames"):
        vocode(torch.zeros(1, 80))
    with pytest.raises(AudioError, match="NaN"):
        vocode(torch.full((10, 80), float("nan")))
    with pytest.raises(AudioError, match="power, magnitude"):
        griffin_lim(torch.ones(10, 257), kind="complex")
    with pytest.raises(AudioError, match="non-negative"):
        griffin_lim(-torch.ones(10, 257))


def test_inversion_no_worse_than_librosa(speech_mel):
    """librosa's NNLS mel inversion (the independent reference) fits the bands no better than ours."""
    librosa = pytest.importorskip("librosa")
    mel = speech_mel[:100].double()
    power = np.exp(mel.numpy().T)  # librosa is frequency-major
    ref = librosa.feature.inverse.mel_to_stft(power, sr=16000, n_fft=512, power=2.0, norm="slaney",
                                              htk=False) ** 2  # magnitude -> power, [257, M]
    fb = mel_filterbank(dtype=torch.float64)

    def band_error(p: torch.Tensor) -> float:
        return (torch.log((p @ fb).clamp(min=LOG_FLOOR)) - mel).abs().mean().item()

    assert band_error(mel_to_linear(mel)) <= band_error(torch.from_numpy(ref.T)) + 1e-3
