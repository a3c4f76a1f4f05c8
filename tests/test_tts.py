"""Speech synthesis (espeak-ng through ctypes) and the common phone inventory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thunder3d.audio.phones import (
    BILABIAL,
    NUM_PHONES,
    OPEN_VOWELS,
    PHONES,
    SIL,
    Phone,
    espeak_to_arpabet,
    fill_silence,
    phone_index,
    phones_from_arrays,
    phones_from_json,
    phones_to_arrays,
    phones_to_json,
    to_frame_labels,
    validate_phones,
)
from thunder3d.audio.tts import list_variants, list_voices, synthesize
from thunder3d.errors import AudioError

TEXT = "Bob picked a map. Then we ate five fresh oranges."


@pytest.fixture(scope="module")
def utt_us():
    return synthesize(TEXT, "en-us")


@pytest.fixture(scope="module")
def utt_gb():
    return synthesize(TEXT, "en-gb+f3")


def labels(utt):
    return [p.label for p in utt.phones]


# ---- phones ----------------------------------------------------------------------------------
def test_inventory():
    assert len(PHONES) == NUM_PHONES == 40 and PHONES[0] == SIL and len(set(PHONES)) == 40
    assert phone_index("SIL") == 0 and PHONES[phone_index("ZH")] == "ZH"
    assert BILABIAL == {"P", "B", "M"} and OPEN_VOWELS == {"AA", "AE", "AO", "AW", "AY"}
    with pytest.raises(AudioError, match="unknown phone label 'Q'.*AA"):
        phone_index("Q")


def test_espeak_mapping():
    assert espeak_to_arpabet("'aI") == ("AY",)
    assert espeak_to_arpabet(",3:") == ("ER",)
    assert espeak_to_arpabet("tS") == ("CH",) and espeak_to_arpabet("dZ") == ("JH",)
    assert espeak_to_arpabet("_:") == (SIL,) and espeak_to_arpabet("_bogus") == (SIL,)
    assert espeak_to_arpabet("'A@") == ("AA", "R")
    assert espeak_to_arpabet("'A@", rhotic=False) == ("AA",)
    assert espeak_to_arpabet("'i@", next_mnemonic="r") == ("IH",)  # "period": no doubled R
    assert espeak_to_arpabet(";") == ()  # merged into the previous phone
    # unknown mnemonics never raise: longest known prefix, else the documented fallback
    assert espeak_to_arpabet("aI@9") == ("AY", "ER")
    assert espeak_to_arpabet("Q~") == ("AH",)
    assert all(set(espeak_to_arpabet(m)) <= set(PHONES) for m in ["@", "0", "V", "N", "j", "n-"])


def test_frame_labels_and_json():
    phones = [Phone(0.0, 0.05, SIL), Phone(0.05, 0.13, "B"), Phone(0.13, 0.3, "AA")]
    lab = to_frame_labels(phones, 9)  # centres at 0.02, 0.06, ..., 0.34
    assert lab.dtype == np.int64 and lab.shape == (9,)
    assert [PHONES[i] for i in lab] == ["SIL", "B", "B", "AA", "AA", "AA", "AA", "SIL", "SIL"]
    text = phones_to_json(phones)
    assert json.loads(text)[1] == {"start": 0.05, "end": 0.13, "label": "B"}
    assert phones_from_json(text) == phones
    assert phones_from_arrays(*phones_to_arrays(phones).values()) == phones
    with pytest.raises(AudioError, match="overlap"):
        phones_from_json('[[0, 0.2, "B"], [0.1, 0.3, "AA"]]')
    with pytest.raises(AudioError, match="after the audio"):
        validate_phones(phones, duration=0.2)
    with pytest.raises(AudioError, match="unknown phone label"):
        phones_from_json('[{"start": 0, "end": 1, "label": "XX"}]')


def test_fill_silence():
    filled = fill_silence([Phone(0.1, 0.2, "B"), Phone(0.205, 0.3, "AA")], 0.5, min_gap=0.01)
    assert [(p.start, p.end, p.label) for p in filled] == [
        (0.0, 0.1, SIL), (0.1, 0.205, "B"), (0.205, 0.3, "AA"), (0.3, 0.5, SIL)]


# ---- synthesis -------------------------------------------------------------------------------
@pytest.mark.parametrize("utt_name", ["utt_us", "utt_gb"])
def test_synthesis(utt_name, request):
    utt = request.getfixturevalue(utt_name)
    assert utt.sample_rate == 16000 and utt.wav.dtype == np.float32 and utt.wav.ndim == 1
    assert np.isfinite(utt.wav).all() and 0.05 < np.abs(utt.wav).max() <= 1.0
    # 10 words at 175 words/min is ~3.4 s of speech, plus sentence pauses
    assert 2.0 < utt.duration < 6.0
    validate_phones(utt.phones, utt.duration)
    assert utt.phones[0].start == 0.0 and utt.phones[-1].end == pytest.approx(utt.duration)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(utt.phones, utt.phones[1:]))
    got = set(labels(utt))
    assert {"B", "P", "M", "K", "T", "F", "V", "AE", "EY", "SIL"} <= got
    assert SIL in labels(utt)[1:-1]  # the full stop gives a pause
    assert [w.text for w in utt.words] == TEXT.replace(".", "").split()
    assert all(0 <= w.start < w.end <= utt.duration for w in utt.words)
    # frame labels for the animation clip
    frames = to_frame_labels(utt.phones, int(utt.duration * 25))
    assert set(PHONES[i] for i in frames) >= {"B", "M", "SIL"}


def test_deterministic(utt_us):
    synthesize("something else entirely", "en-us+klatt")  # state left behind must not matter
    again = synthesize(TEXT, "en-us")
    np.testing.assert_array_equal(again.wav, utt_us.wav)
    assert again.phones == utt_us.phones


def test_parameters_change_output(utt_us, utt_gb):
    assert utt_gb.voice == "en-gb+f3" and utt_us.voice == "en-us"
    assert utt_gb.wav.size != utt_us.wav.size or not np.array_equal(utt_gb.wav, utt_us.wav)
    slow = synthesize(TEXT, "en-us", rate=120)
    assert slow.duration > 1.25 * utt_us.duration
    high = synthesize(TEXT, "en-us", pitch=90)
    assert not np.array_equal(high.wav[: utt_us.wav.size], utt_us.wav[: high.wav.size])
    # the breathy variants use espeak-ng's noise generator: the seed matters, and is repeatable
    a, b = synthesize("Hello.", "en-us+whisper", seed=1), synthesize("Hello.", "en-us+whisper", seed=2)
    assert not np.array_equal(a.wav, b.wav)
    np.testing.assert_array_equal(a.wav, synthesize("Hello.", "en-us+whisper", seed=1).wav)


def test_voices():
    voices = list_voices()
    assert {"en-us", "en-gb", "en-gb-x-rp", "en-029"} <= set(voices)
    assert all(v.startswith("en") for v in voices)
    assert {"f3", "m1", "klatt", "whisper"} <= set(list_variants())
    assert len(list_voices(None)) > 50
    assert synthesize("Hi.", "EN-US+F3").voice == "en-us+f3"
    assert synthesize("Hi.", "en").voice == "en-gb"


@pytest.mark.parametrize("kwargs, match", [
    (dict(text=""), "empty"),
    (dict(text="   \n"), "empty"),
    (dict(text="hi", voice="xx-nope"), "unknown voice 'xx-nope'.*en-us"),
    (dict(text="hi", voice="en-us+nope"), "unknown voice variant 'nope'.*f3"),
    (dict(text="hi", rate=20), r"rate must be an integer in \[80, 450\]"),
    (dict(text="hi", rate=175.5), "rate"),
    (dict(text="hi", pitch=101), r"pitch must be an integer in \[0, 100\]"),
    (dict(text="hi", pitch_range=-1), "pitch_range"),
])
def test_errors(kwargs, match):
    with pytest.raises(AudioError, match=match):
        synthesize(**kwargs)


def _synth_in_worker(text):
    return synthesize(text).wav


def test_forked_worker_gives_identical_audio(utt_us):
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        wav = pool.apply(_synth_in_worker, (TEXT,))
    np.testing.assert_array_equal(wav, utt_us.wav)


def test_klatt_variants_are_deterministic():
    """Klatt voices draw noise from the C library's rand(): seeded per call, so repeatable."""
    import numpy as np

    from thunder3d.audio.tts import synthesize

    runs = [synthesize("Bob bought a big map.", voice="en-us+Reed", seed=3).wav for _ in range(3)]
    assert all(np.array_equal(r, runs[0]) for r in runs)
