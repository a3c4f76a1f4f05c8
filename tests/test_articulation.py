"""Coarticulation (thunder3d.data.articulation): closure, opening, anticipation, silence, style.

Lip measurements are taken on the built-in rig, as the corpus acceptance criteria ask.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thunder3d.audio.phones import BILABIAL, PHONES, Phone
from thunder3d.data.articulation import PHONE_TARGETS, SpeakerStyle, articulate, normalise_phone
from thunder3d.errors import ThunderError
from thunder3d.rigs import ARKIT_NAMES, load_rig
from thunder3d.rigs.arkit import ARKIT_INDEX

FPS = 25
# typical durations (s) at a normal speaking rate; anything else 0.08
DUR = {"AA": 0.14, "AE": 0.14, "AO": 0.15, "AY": 0.18, "EY": 0.16, "OW": 0.16, "UW": 0.16, "IY": 0.12,
       "AH": 0.07, "IH": 0.07, "EH": 0.09, "P": 0.08, "B": 0.07, "M": 0.08, "T": 0.07, "D": 0.06,
       "G": 0.07, "K": 0.08, "S": 0.1, "L": 0.06, "N": 0.06, "HH": 0.06, "F": 0.09, "V": 0.06}
WORDS = {
    "bob": "B AA B",
    "map": "M AE P",
    "papa": "P AA P AH",
    "a big apple": "AH B IH G AE P AH L",
    "mama": "M AA M AH",
    "pop": "P AA P",
    "bob ate a map": "B AA B EY T AH M AE P",
    "my bike bumped a mop": "M AY B AY K B AH M P T AH M AA P",
    "pam bought maps": "P AE M B AO T M AE P S",
}
OPEN = ("AA", "AE", "AO", "AW", "AY")  # the clearly open vowels (AH is often a short schwa)


def utterance(labels: str, lead: float = 0.12, tail: float = 0.2, rate: float = 1.0):
    """Timed phones for space-separated labels, with silence before and after; returns (phones, T)."""
    phones, t = [], lead
    for label in labels.split():
        d = DUR.get(label, 0.08) * rate
        phones.append(Phone(t, t + d, label))
        t += d
    return phones, int(np.ceil((t + tail) * FPS))


def centre_frame(p) -> int:
    """The frame whose interval [t, t+1)/fps contains the phone's centre."""
    return int(0.5 * (p.start + p.end) * FPS)


@pytest.fixture(scope="module")
def rig():
    return load_rig("builtin")


def aperture(rig, coeffs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return rig.lip_aperture(rig(torch.from_numpy(coeffs))).numpy()


def closure_and_open_ratios(rig, phones, coeffs):
    """Aperture / clip p95 at the centre of each bilabial, and the peak over each open vowel."""
    ap = aperture(rig, coeffs)
    p95 = np.percentile(ap, 95)
    times = (np.arange(len(ap)) + 0.5) / FPS
    closed = [ap[centre_frame(p)] / p95 for p in phones if p.label in BILABIAL]
    opened = [ap[(times >= p.start) & (times < p.end)].max(initial=ap[centre_frame(p)]) / p95
              for p in phones if p.label in OPEN]
    return np.array(closed), np.array(opened)


def test_output_contract():
    phones, T = utterance("B AA B")
    out = articulate(phones, T)
    assert out.shape == (T, len(ARKIT_NAMES)) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out, articulate(phones, T))  # deterministic
    assert articulate([], 5).shape == (5, 52) and not articulate([], 5).any()
    assert articulate(phones, 0).shape == (0, 52)


def test_phone_table_covers_the_phone_set():
    assert set(PHONE_TARGETS) == set(PHONES)
    assert normalise_phone("aa1") == "AA" and normalise_phone("sp") == "SIL"
    with pytest.raises(ThunderError, match="valid:.*ZH"):
        normalise_phone("QQ")


def test_bad_phones_are_rejected():
    with pytest.raises(ThunderError, match="before the previous"):
        articulate([Phone(0.0, 0.2, "AA"), Phone(0.1, 0.3, "B")], 10)
    with pytest.raises(ThunderError, match="bad interval"):
        articulate([Phone(0.3, 0.2, "AA")], 10)
    with pytest.raises(ThunderError):
        articulate([("a", "b")], 10)


STYLES = {"neutral": SpeakerStyle(), "sampled3": SpeakerStyle.sample(3), "sampled7": SpeakerStyle.sample(7),
          "lax": SpeakerStyle(smoothing=1.35, gain=0.75, jaw_lip_ratio=1.5, asymmetry=0.2)}


@pytest.mark.parametrize("style", STYLES, ids=list(STYLES))
@pytest.mark.parametrize("rate", [1.0, 0.8])
def test_bilabials_close_and_open_vowels_open(rig, style, rate):
    """Acceptance: aperture at every p/b/m centre < 10% of the clip's p95; open vowels reach > 50%."""
    for word, labels in WORDS.items():
        phones, T = utterance(labels, rate=rate, lead=0.08, tail=0.12)
        coeffs = articulate(phones, T, STYLES[style])
        closed, opened = closure_and_open_ratios(rig, phones, coeffs)
        assert closed.max() < 0.1, (word, closed)
        assert opened.min() > 0.5, (word, opened)


def test_labiodentals_tuck_the_lower_lip():
    phones, T = utterance("AA F AA V AA")
    out = articulate(phones, T)
    roll = out[:, ARKIT_INDEX["mouthRollLower"]]
    for p in phones:
        if p.label in ("F", "V"):
            assert roll[centre_frame(p)] > 0.4
        else:
            assert roll[centre_frame(p)] < 0.25


def test_jaw_by_vowel_height_rounding_and_spreading():
    def at_centre(vowel, name):
        phones, T = utterance(f"T {vowel} T")
        return articulate(phones, T)[centre_frame(phones[1]), ARKIT_INDEX[name]]

    assert at_centre("AA", "jawOpen") > at_centre("AH", "jawOpen") > at_centre("IY", "jawOpen")
    assert at_centre("AE", "jawOpen") > 2 * at_centre("UW", "jawOpen")
    assert at_centre("UW", "mouthPucker") > 0.4 > at_centre("IY", "mouthPucker") + 0.3
    assert at_centre("IY", "mouthStretchLeft") > 0.2 > at_centre("UW", "mouthStretchLeft") + 0.15
    assert at_centre("OW", "mouthFunnel") > 0.25


def test_rounding_is_anticipated():
    """Lip rounding for an upcoming UW starts >= 50 ms before its onset (through S T)."""
    for labels in ("S T UW", "IY S T UW", "AH K S UW"):
        phones, T = utterance(labels)
        pucker = articulate(phones, T)[:, ARKIT_INDEX["mouthPucker"]]
        onset = phones[-1].start
        before = int(np.floor((onset - 0.05) * FPS - 0.5))  # last frame centred >= 50 ms before
        assert (before + 0.5) / FPS <= onset - 0.05
        assert pucker[before] > 0.2 * pucker.max(), (labels, pucker[before], pucker.max())
    control, T = utterance("S T IY")  # no rounding to anticipate
    assert articulate(control, T)[:, ARKIT_INDEX["mouthPucker"]].max() < 0.02


def test_hh_takes_the_next_vowel_shape():
    def hh(vowel, name):
        phones, T = utterance(f"HH {vowel}", lead=0.3)
        return articulate(phones, T)[centre_frame(phones[0]), ARKIT_INDEX[name]]

    assert hh("UW", "mouthPucker") > hh("AA", "mouthPucker") + 0.2
    assert hh("AA", "jawOpen") > hh("UW", "jawOpen") + 0.1


def test_silence_relaxes_to_rest():
    """Speech, 1.2 s of SIL, speech: the face is at rest during the pause and relaxes in 100-250 ms."""
    first, _ = utterance("M AA P AA", lead=0.5)
    second, T = utterance("B AA M", lead=0.0)
    pause_start = first[-1].end
    pause_end = pause_start + 1.2
    second = [Phone(p.start + pause_end, p.end + pause_end, p.label) for p in second]
    phones = first + [Phone(pause_start, pause_end, "SIL")] + second
    T = int((second[-1].end + 0.6) * FPS)
    out = articulate(phones, T)
    times = (np.arange(T) + 0.5) / FPS
    quiet = (times > pause_start + 0.25) & (times < pause_end - 0.25)
    assert np.abs(out[quiet]).max() < 1e-3
    assert np.abs(out[:2]).max() < 1e-3 and np.abs(out[-3:]).max() < 1e-3  # leading/trailing silence
    # relaxation after the final open vowel: jaw below 10% of its peak 100-250 ms after it ends
    jaw = out[:, ARKIT_INDEX["jawOpen"]]
    relaxed = times[(times > pause_start) & (jaw < 0.1 * jaw.max())][0] - pause_start
    assert 0.1 <= relaxed <= 0.25, relaxed
    settling = (times > first[-1].end) & (times < pause_start + 0.25)
    assert np.all(np.diff(jaw[settling]) <= 1e-6)  # relaxes monotonically


def test_speaker_style():
    style = SpeakerStyle.sample(np.random.default_rng(5))
    assert SpeakerStyle.from_dict(style.to_dict()) == style
    assert SpeakerStyle.sample(11) == SpeakerStyle.sample(11) != SpeakerStyle.sample(12)
    assert SpeakerStyle() == SpeakerStyle.from_dict({})
    with pytest.raises(ThunderError, match="valid"):
        SpeakerStyle.from_dict({"gian": 1.0})
    with pytest.raises(ThunderError):
        SpeakerStyle(gain=-1.0)
    with pytest.raises(ThunderError):
        SpeakerStyle(asymmetry=0.9)
    phones, T = utterance("M AE P IY")
    base = articulate(phones, T)
    left = articulate(phones, T, SpeakerStyle(asymmetry=0.2))
    i, j = ARKIT_INDEX["mouthStretchLeft"], ARKIT_INDEX["mouthStretchRight"]
    assert left[:, i].sum() > 1.3 * left[:, j].sum() and np.allclose(base[:, i], base[:, j])
    jawy = articulate(phones, T, SpeakerStyle(jaw_lip_ratio=1.6))
    k = ARKIT_INDEX["jawOpen"]
    assert jawy[:, k].max() > 1.1 * base[:, k].max() and jawy[:, i].max() < base[:, i].max()
    big = articulate(phones, T, SpeakerStyle(gain=1.3))
    assert big[:, k].max() > 1.2 * base[:, k].max()
