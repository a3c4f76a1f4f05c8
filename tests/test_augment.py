"""Speech augmentation: timing kept (or scaled consistently), finite, SNR, zero-delay reverb."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from thunder3d.audio.augment import (
    NOISE_KINDS,
    AugmentConfig,
    add_noise,
    augment,
    make_noise,
    normalize_level,
    reverberate,
    room_impulse_response,
    speed_perturb,
)
from thunder3d.constants import SAMPLE_RATE
from thunder3d.errors import AudioError

ALL_ON = AugmentConfig(p_speed=1.0, p_reverb=1.0, p_noise=1.0, p_eq=1.0, p_bandlimit=1.0)
NO_SPEED = AugmentConfig(p_speed=0.0, p_reverb=1.0, p_noise=1.0, p_eq=1.0, p_bandlimit=1.0)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A real TTS clip (espeak-ng), about 2.5 s."""
    from thunder3d.audio.tts import synthesize

    return synthesize("Please bring the purple map to my mother before lunch.", "en-us").wav


def test_length_kept_without_speed(speech):
    for seed in range(6):
        out, scale = augment(speech, np.random.default_rng(seed), NO_SPEED)
        assert out.shape == speech.shape and out.dtype == np.float32
        assert scale == 1.0
        assert np.isfinite(out).all() and np.abs(out).max() <= NO_SPEED.peak_limit + 1e-6


def test_speed_scales_length_consistently(speech):
    scales = set()
    for seed in range(8):
        log = {}
        out, scale = augment(speech, np.random.default_rng(seed), ALL_ON, log=log)
        assert abs(out.size - speech.size * scale) <= 1  # phone times * scale stay on the audio
        assert 1 / 1.1 - 1e-9 <= scale <= 1 / 0.9 + 1e-9
        assert log["speed"]["speed"] == pytest.approx(1 / scale, abs=1e-6)
        scales.add(scale)
    assert len(scales) > 2


def test_speed_perturb_moves_events_by_the_scale():
    x = np.zeros(16000)
    x[8000] = 1.0  # an impulse at 0.5 s
    y, scale = speed_perturb(x, 1.1)
    assert int(np.argmax(np.abs(y))) == pytest.approx(8000 * scale, abs=1)


def test_deterministic(speech):
    a = augment(speech, np.random.default_rng(7), ALL_ON)
    b = augment(speech, np.random.default_rng(7), ALL_ON)
    c = augment(speech, np.random.default_rng(8), ALL_ON)
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    assert not (a[0].shape == c[0].shape and np.array_equal(a[0], c[0]))


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_snr_is_what_was_asked(speech, kind):
    noise = make_noise(np.random.default_rng(1), speech.size, kind)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-6)
    for snr in (0.0, 10.0, 25.0):
        mixed = add_noise(speech, noise, snr)
        residual = mixed - speech
        measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(residual**2))
        assert measured == pytest.approx(snr, abs=0.01)


def test_noise_colours_differ_in_slope():
    rng = np.random.default_rng(0)
    def low_high_ratio(kind):
        spec = np.abs(np.fft.rfft(make_noise(rng, 32000, kind))) ** 2
        f = np.fft.rfftfreq(32000, 1 / SAMPLE_RATE)
        return spec[(f > 100) & (f < 400)].mean() / spec[(f > 3000) & (f < 6000)].mean()
    white, pink, brown = (low_high_ratio(k) for k in ("white", "pink", "brown"))
    assert white < pink < brown
    assert 0.5 < white < 2


def test_reverb_keeps_direct_path_at_lag_zero(speech):
    rng = np.random.default_rng(3)
    for rt60 in (0.2, 0.7):
        rir = room_impulse_response(rng, rt60, drr_db=3.0)
        assert rir[0] == 1.0 and np.argmax(np.abs(rir)) == 0
        wet = reverberate(speech, rir)
        assert wet.shape == speech.shape
        xc = correlate(wet, speech, mode="full", method="fft")
        lags = np.arange(-speech.size + 1, speech.size)
        assert lags[np.argmax(xc)] == 0


def test_full_chain_has_no_time_shift(speech):
    """EQ and band-limiting are zero-phase: the whole chain without speed keeps the alignment."""
    for seed in range(4):
        out, _ = augment(speech, np.random.default_rng(seed), NO_SPEED)
        xc = correlate(out, speech, mode="full", method="fft")
        lag = np.argmax(xc) - (speech.size - 1)
        assert abs(lag) <= 2, lag


def test_level_never_clips():
    x = np.random.default_rng(0).standard_normal(16000) * 0.01
    x[100] = 0.5  # a spike: the RMS target would push it beyond 1
    y = normalize_level(x, -10.0, 0.99)
    assert np.abs(y).max() <= 0.99 + 1e-6
    z = normalize_level(x, -40.0)
    assert 20 * np.log10(np.sqrt(np.mean(z.astype(np.float64) ** 2))) == pytest.approx(-40.0, abs=0.01)
    assert not np.any(normalize_level(np.zeros(100), -20.0))


def test_none_config_only_normalises(speech):
    out, scale = augment(speech, np.random.default_rng(0), AugmentConfig.none())
    assert scale == 1.0
    corr = np.corrcoef(out, speech)[0, 1]
    assert corr > 0.9999


def test_bad_config_and_input():
    with pytest.raises(AudioError, match="probability"):
        AugmentConfig(p_noise=1.5)
    with pytest.raises(AudioError, match="noise_kinds"):
        AugmentConfig(noise_kinds=("purple",))
    with pytest.raises(AudioError):
        augment(np.array([np.nan, 0.0]), np.random.default_rng(0))
    cfg = AugmentConfig(snr_db=(1.0, 2.0))
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
