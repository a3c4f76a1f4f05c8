"""Non-speech motion and its combination with speech (thunder3d.data.expression)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thunder3d.audio.phones import BILABIAL, Phone
from thunder3d.data.articulation import articulate
from thunder3d.data.expression import (
    EMOTION_PATTERNS,
    EMOTIONS,
    INTENSITIES,
    blink_process,
    check_emotion,
    check_intensity,
    combine,
    expression_track,
)
from thunder3d.errors import ThunderError
from thunder3d.rigs import load_rig
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES

FPS = 25
I = ARKIT_INDEX
SMILE = [I["mouthSmileLeft"], I["mouthSmileRight"]]
FROWN = [I["mouthFrownLeft"], I["mouthFrownRight"]]
MOUTH = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith("mouth") or n == "jawOpen"]
SENTENCE = [("B", 0.07), ("AA", 0.14), ("B", 0.07), ("EY", 0.16), ("T", 0.07), ("AH", 0.07),
            ("M", 0.08), ("AE", 0.14), ("P", 0.08), ("P", 0.08), ("AA", 0.14), ("M", 0.08),
            ("AH", 0.07), ("B", 0.07), ("IH", 0.08), ("G", 0.07), ("AE", 0.14), ("P", 0.08),
            ("AH", 0.07), ("L", 0.06)]  # "bob ate a map, pop, a big apple"


def sentence(lead: float = 0.1, tail: float = 0.15):
    phones, t = [], lead
    for label, d in SENTENCE:
        phones.append(Phone(t, t + d, label))
        t += d
    return phones, int(np.ceil((t + tail) * FPS))


def test_check_names():
    assert check_emotion("Happy") == "happy" and check_emotion("surprise") == "surprised"
    with pytest.raises(ThunderError, match="valid: neutral, happy.*contempt"):
        check_emotion("bored")
    assert check_intensity(2) == 2 and check_intensity("3") == 3 and check_intensity("level_1") == 1
    for bad in (0, 4, "high", True, 1.5):
        with pytest.raises(ThunderError, match="valid: 1, 2, 3"):
            check_intensity(bad)
    assert set(EMOTION_PATTERNS) == set(EMOTIONS) and EMOTIONS[0] == "neutral" and len(EMOTIONS) == 8


def test_track_contract_and_determinism():
    T = 250
    a = expression_track(T, "happy", 2, np.random.default_rng(4), emphasis_times=[1.0, 3.0])
    b = expression_track(T, "happy", 2, np.random.default_rng(4), emphasis_times=[1.0, 3.0])
    c = expression_track(T, "happy", 2, np.random.default_rng(5), emphasis_times=[1.0, 3.0])
    assert a.offsets.shape == (T, 52) and a.offsets.dtype == np.float32
    assert a.head_rotation.shape == (T, 3) and a.head_rotation.dtype == np.float32
    assert a.offsets.min() >= 0 and a.offsets.max() <= 1
    assert np.abs(a.head_rotation).max() < 0.25  # small: a few degrees
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.head_rotation, b.head_rotation)
    np.testing.assert_array_equal(a.blink_times, b.blink_times)
    assert not np.array_equal(a.offsets, c.offsets)
    assert expression_track(0, "sad", 1, 0).offsets.shape == (0, 52)
    with pytest.raises(ThunderError, match="valid"):
        expression_track(10, "joy", 1, 0)


def test_emotions_move_the_mouth_corners():
    T = 25 * 8
    tracks = {e: expression_track(T, e, 3, np.random.default_rng(0)).offsets for e in EMOTIONS}
    happy, sad = tracks["happy"], tracks["sad"]
    assert happy[:, SMILE].mean() > sad[:, SMILE].mean() + 0.3
    assert sad[:, FROWN].mean() > happy[:, FROWN].mean() + 0.25
    # every emotion's mouth differs measurably from every other one's
    for i, e in enumerate(EMOTIONS):
        for f in EMOTIONS[i + 1:]:
            diff = np.abs(tracks[e][:, MOUTH].mean(0) - tracks[f][:, MOUTH].mean(0)).max()
            assert diff > 0.05, (e, f, diff)
    # contempt is one-sided
    contempt = tracks["contempt"][:, SMILE].mean(0)
    assert abs(contempt[0] - contempt[1]) > 0.25


@pytest.mark.parametrize("emotion", EMOTIONS[1:])
def test_intensity_orders_the_offsets(emotion):
    def size(name, k):
        return expression_track(200, name, k, np.random.default_rng(9)).offsets.sum()

    base = size("neutral", 1)  # same draws without the emotion pattern
    sizes = [size(emotion, k) - base for k in INTENSITIES]
    assert 0 < sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] > 2.0 * sizes[0]  # intensity 3 is 2.5x intensity 1


def test_emotion_drifts_slowly():
    smile = expression_track(25 * 20, "happy", 2, np.random.default_rng(1)).offsets[:, SMILE[0]]
    assert smile.std() > 0.02  # it moves
    assert np.abs(np.diff(smile)).max() < 0.03  # but slowly (per 40 ms frame)


def test_blink_rate_and_shape():
    T = 25 * 60 * 5
    track = expression_track(T, "neutral", 1, np.random.default_rng(2024))
    blinks = track.blink_times
    rate = len(blinks) / 5.0
    assert 10 <= rate <= 25, rate
    assert np.diff(blinks).min() >= 0.4  # refractory period
    lid = track.offsets[:, I["eyeBlinkLeft"]]
    peaks = [lid[int(t * FPS): int(t * FPS) + 9].max() for t in blinks[:-1]]
    assert min(peaks) > 0.6  # every blink closes the eye
    closed = (lid > 0.5).mean()
    assert 0.01 < closed < 0.08  # eyes mostly open
    rates = [len(blink_process(np.random.default_rng(s), 600.0, 17.0)) / 10 for s in range(3)]
    assert all(14 <= r <= 20 for r in rates), rates


def test_brow_raises_follow_emphasis():
    T = 25 * 120
    emphasis = np.arange(1.0, 119.0, 2.0)
    brow = expression_track(T, "neutral", 1, np.random.default_rng(3), emphasis_times=emphasis)
    plain = expression_track(T, "neutral", 1, np.random.default_rng(3))
    up = brow.offsets[:, I["browInnerUp"]]
    assert up.mean() > plain.offsets[:, I["browInnerUp"]].mean() + 0.02
    times = (np.arange(T) + 0.5) / FPS
    near = np.zeros(T, bool)
    for e in emphasis:
        near |= (times > e) & (times < e + 0.35)
    far = np.ones(T, bool)
    for e in emphasis:
        far &= ~((times > e - 0.2) & (times < e + 0.8))
    assert up[near].mean() > up[far].mean() + 0.05
    # nods: about half the emphases are followed by a quick pitch bump (0.015-0.045 rad above the slow
    # drift); without emphasis there are none
    def bumps(track) -> np.ndarray:
        pitch = track.head_rotation[:, 0]
        frame = (emphasis * FPS).astype(int)
        return pitch[frame + 1] - (pitch[frame - 10] + pitch[frame + 12]) / 2  # +40 ms vs -400/+480 ms

    nodded = bumps(brow) > 0.01
    assert 0.25 < nodded.mean() < 0.75
    assert bumps(brow)[nodded].max() < 0.06 and np.abs(bumps(plain)).max() < 0.01


@pytest.fixture(scope="module")
def rig():
    return load_rig("builtin")


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_combine_keeps_bilabial_closure(rig, emotion):
    """Emotion at intensity 3 on top of speech: p/b/m still close (< 10% of the clip's p95)."""
    phones, T = sentence()
    speech = articulate(phones, T)
    track = expression_track(T, emotion, 3, np.random.default_rng(7))
    out = combine(speech, track.offsets)
    assert out.shape == (T, 52) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert np.all(out[:, I["mouthClose"]] <= out[:, I["jawOpen"]] + 1e-6)
    with torch.no_grad():
        ap = rig.lip_aperture(rig(torch.from_numpy(out))).numpy()
    p95 = np.percentile(ap, 95)
    ratios = [ap[int((p.start + p.end) / 2 * FPS)] / p95 for p in phones if p.label in BILABIAL]
    assert max(ratios) < 0.1, (emotion, np.round(ratios, 3))
    vowels = [ap[int((p.start + p.end) / 2 * FPS)] / p95 for p in phones if p.label in ("AA", "AE")]
    assert min(vowels) > 0.5, (emotion, np.round(vowels, 3))


def test_combine_rules():
    phones, T = sentence(lead=0.5)
    speech = articulate(phones, T)
    happy = expression_track(T, "happy", 3, np.random.default_rng(1)).offsets
    out = combine(speech, happy)
    # smile corners persist during speech
    assert out[:, SMILE].mean() > 0.8 * happy[:, SMILE].mean()
    # surprise's jaw adds to the speech jaw, and closed lips follow it
    surprise = expression_track(T, "surprised", 3, np.random.default_rng(1)).offsets
    out = combine(speech, surprise)
    jaw = I["jawOpen"]
    assert np.all(out[:, jaw] >= speech[:, jaw] - 1e-6)
    assert out[:, jaw].mean() > speech[:, jaw].mean() + 0.05
    # a bilabial frame keeps its closure ratio on the wider jaw
    b = int((phones[0].start + phones[0].end) / 2 * FPS)
    assert out[b, I["mouthClose"]] / out[b, jaw] > 0.95
    # at rest (leading silence) the surprised jaw drop parts the lips
    assert out[0, jaw] > 0.04 and out[0, I["mouthClose"]] < 0.1 * out[0, jaw]
    # rounding halves a smile
    rounded = np.zeros((1, 52), np.float32)
    rounded[0, I["mouthPucker"]] = 1.0
    smile = np.zeros((1, 52), np.float32)
    smile[0, SMILE] = 0.6
    assert combine(rounded, smile)[0, SMILE[0]] == pytest.approx(0.3)
    # clamped
    assert combine(np.ones((3, 52), np.float32), np.ones((3, 52), np.float32)).max() == 1.0
    with pytest.raises(ThunderError, match="52"):
        combine(np.zeros((3, 52)), np.zeros((4, 52)))


def test_angry_emphasis_lowers_brows():
    """Emphasis raises would cancel an angry brow posture: for angry they furrow instead."""
    from thunder3d.rigs.arkit import ARKIT_INDEX

    times = [0.5, 1.5, 2.5, 3.5]
    angry = expression_track(125, "angry", 3, np.random.default_rng(4), emphasis_times=times).offsets
    up = angry[:, ARKIT_INDEX["browInnerUp"]] + angry[:, ARKIT_INDEX["browOuterUpLeft"]]
    down = angry[:, ARKIT_INDEX["browDownLeft"]]
    assert down.min() > up.max()


def test_head_rotation_is_axis_angle_in_rig_frame():
    from thunder3d.data.expression import euler_to_rotvec

    # pitch only -> rotation about +x; yaw only -> about +y; roll only -> about -z
    np.testing.assert_allclose(euler_to_rotvec(np.array([[0.1, 0, 0]])), [[0.1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(euler_to_rotvec(np.array([[0, 0.2, 0]])), [[0, 0.2, 0]], atol=1e-12)
    np.testing.assert_allclose(euler_to_rotvec(np.array([[0, 0, 0.05]])), [[0, 0, -0.05]], atol=1e-12)
