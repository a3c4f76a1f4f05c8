"""Ground-truth-free lip checks against values worked out by hand."""

import math

import numpy as np
import pytest

from thunder3d.audio.phones import Phone
from thunder3d.eval.grounded import (
    audio_envelope,
    closure_rate,
    closure_threshold,
    open_threshold,
    open_vowel_rate,
    peak_lag,
    reference_opening,
    segment_frames,
    sync_lag,
)


def test_thresholds_follow_the_95th_percentile_with_floors():
    # 20 values, nineteen 0 and one 20: P95 sits at rank 0.95 * 19 = 18.05 -> 0 + 0.05 * 20 = 1
    spike = [0.0] * 19 + [20.0]
    assert reference_opening(spike) == pytest.approx(1.0)
    assert closure_threshold(spike) == 1.0  # max(1 mm, 0.1 mm)
    assert open_threshold(spike) == 3.0  # max(3 mm, 0.5 mm)
    ramp = np.linspace(0.0, 40.0, 41)  # 0, 1, ..., 40 mm: P95 = 38
    assert closure_threshold(ramp) == pytest.approx(3.8)
    assert open_threshold(ramp) == pytest.approx(19.0)


def test_segments_cover_the_overlapped_frames_plus_one_each_side():
    # 25 fps: frame t covers [0.04 t, 0.04 (t + 1))
    assert segment_frames(Phone(0.10, 0.15, "P"), 10) == slice(1, 5)  # frames 2-3, widened 1-4
    assert segment_frames(Phone(0.08, 0.16, "P"), 10) == slice(1, 5)  # edges do not reach frame 4
    assert segment_frames(Phone(0.101, 0.105, "P"), 10) == slice(1, 4)  # inside frame 2 only
    assert segment_frames(Phone(0.0, 0.04, "P"), 10) == slice(0, 2)  # clipped at the start
    assert segment_frames(Phone(0.30, 0.32, "P"), 5) == slice(4, 5)  # past the end: the last frame
    assert segment_frames(Phone(0.10, 0.15, "P"), 10, widen=0) == slice(2, 4)


# aperture (mm) of 10 frames and the phones over it; sorted apertures 0.5 2 2 5 8 8 8 8 12 12 give
# P95 = 12 (rank 8.55 between two 12s): closed at <= 1.2 mm, open at >= 6 mm
APERTURE = [2.0, 2.0, 0.5, 8.0, 8.0, 8.0, 5.0, 12.0, 12.0, 8.0]
PHONES = [
    Phone(0.00, 0.04, "AE"),  # frame 0, read over 0-1: max 2 < 6 -> not open
    Phone(0.04, 0.08, "T"),
    Phone(0.08, 0.16, "M"),  # frames 2-3, read over 1-4: min 0.5 <= 1.2 -> closed
    Phone(0.16, 0.24, "SIL"),
    Phone(0.24, 0.28, "P"),  # frame 6, read over 5-7: min 5 > 1.2 -> not closed
    Phone(0.28, 0.36, "AA"),  # frames 7-8, read over 6-9: max 12 >= 6 -> open
]


def test_closure_and_open_vowel_rates_by_hand():
    closure = closure_rate(APERTURE, PHONES)
    assert closure == {"rate": 0.5, "hits": 1, "segments": 2, "threshold_mm": pytest.approx(1.2)}
    vowels = open_vowel_rate(APERTURE, PHONES)
    assert vowels == {"rate": 0.5, "hits": 1, "segments": 2, "threshold_mm": pytest.approx(6.0)}


def test_a_still_face_closes_but_never_opens_and_an_open_one_the_reverse():
    still = np.zeros(10)
    assert closure_rate(still, PHONES)["rate"] == 1.0
    assert open_vowel_rate(still, PHONES)["rate"] == 0.0
    gaping = np.full(10, 10.0)
    assert closure_rate(gaping, PHONES)["rate"] == 0.0
    assert open_vowel_rate(gaping, PHONES)["rate"] == 1.0


def test_rates_are_none_without_the_phones_they_judge():
    no_bilabial = [p for p in PHONES if p.label not in ("M", "P")]
    assert closure_rate(APERTURE, no_bilabial) == {"rate": None, "hits": 0, "segments": 0,
                                                   "threshold_mm": pytest.approx(1.2)}
    assert open_vowel_rate(APERTURE, [])["rate"] is None


def test_envelope_is_the_rms_per_animation_frame():
    wav = np.concatenate([np.full(640, 0.5), np.tile([0.2, -0.2], 320)])
    np.testing.assert_allclose(audio_envelope(wav, 2), [0.5, 0.2])
    # half a frame of 0.2 then zero padding: sqrt(320 * 0.04 / 640) = sqrt(0.02)
    np.testing.assert_allclose(audio_envelope(wav[:960], 2), [0.5, math.sqrt(0.02)])
    np.testing.assert_allclose(audio_envelope(wav, 1), [0.5])  # cut to the frames asked for


def _speech(T=100, seed=0):
    """A wav whose envelope is a random gain per frame (sign-alternating blocks of RMS 1 x gain)."""
    gain = np.random.default_rng(seed).uniform(0.05, 1.0, T)
    return np.repeat(gain, 640) * np.tile([1.0, -1.0], 320 * T), gain


@pytest.mark.parametrize("k", [3, 0, -2])
def test_sync_lag_finds_a_delay_of_k_frames(k):
    wav, env = _speech()
    np.testing.assert_allclose(audio_envelope(wav, len(env)), env)
    idx = np.clip(np.arange(len(env)) - k, 0, len(env) - 1)
    aperture = 2.0 + 7.0 * env[idx]  # lips follow the audio k frames later (edges held)
    result = sync_lag(aperture, wav)
    assert result["lag_frames"] == k
    assert result["lag_ms"] == pytest.approx(40.0 * k)
    assert result["peak_corr"] == pytest.approx(1.0)
    assert len(result["curve"]) == 21 and result["curve"][10 + k] == pytest.approx(1.0)


def test_sync_lag_of_a_still_face_is_undefined():
    wav, env = _speech(T=20)
    result = sync_lag(np.zeros(20), wav)
    assert result["lag_ms"] is None and result["peak_corr"] is None
    assert result["curve"] == [None] * 21
    short = sync_lag(env[:4], wav[: 4 * 640], max_lag=2)  # only lags with 3+ shared frames exist
    assert short["curve"][0] is None and short["curve"][-1] is None and short["lag_frames"] == 0
    with pytest.raises(ValueError, match="odd"):
        sync_lag(env, wav, smooth=2)



def test_sync_lag_can_smooth_the_envelope():
    wav, env = _speech(T=30)
    held = np.concatenate([env[:1], env, env[-1:]])  # edges held
    aperture = (held[:-2] + held[1:-1] + held[2:]) / 3  # lips that follow a 3-frame mean of the audio
    assert sync_lag(aperture, wav, smooth=3)["peak_corr"] == pytest.approx(1.0)
    assert sync_lag(aperture, wav)["peak_corr"] < 0.95


def test_peak_lag_ignores_undefined_lags():
    assert peak_lag([0.1, math.nan, 0.5, 0.2, 0.3]) == {"lag_frames": 0, "lag_ms": 0.0, "peak_corr": 0.5}
    assert peak_lag([0.1, 0.9, 0.5, 0.2, 0.3]) == {"lag_frames": -1, "lag_ms": -40.0, "peak_corr": 0.9}
    assert peak_lag([math.nan] * 3) == {"lag_frames": None, "lag_ms": None, "peak_corr": None}
