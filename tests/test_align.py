"""Forced alignment and phone recognition (pocketsphinx) on real speech made here by espeak-ng."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pytest

from thunder3d.audio.align import (
    align,
    align_detailed,
    align_file,
    normalize_text,
    recognize_phones,
)
from thunder3d.audio.io import save_audio
from thunder3d.audio.phones import SIL, validate_phones
from thunder3d.audio.tts import synthesize
from thunder3d.errors import AudioError

TEXTS = {
    "en-us": "She sells sea shells by the sea shore. Bob picked a map.",
    "en-gb+m1": "We also need a small plastic snake and a big toy frog for the kids.",
}


def matched_starts(ref, hyp):
    """Start times of the phones (SIL excluded) that the two label sequences share, in order."""
    a = [p for p in ref if p.label != SIL]
    b = [p for p in hyp if p.label != SIL]
    sm = difflib.SequenceMatcher(None, [p.label for p in a], [p.label for p in b], autojunk=False)
    pairs = [(a[m.a + k].start, b[m.b + k].start) for m in sm.get_matching_blocks()
             for k in range(m.size)]
    return np.array(pairs).reshape(-1, 2), len(a)


def check_covering(phones, duration):
    validate_phones(phones, duration)
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(duration)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(phones, phones[1:]))


@pytest.fixture(scope="module", params=list(TEXTS))
def clip(request):
    return synthesize(TEXTS[request.param], request.param)


def test_align_agrees_with_espeak_timings(clip):
    result = align_detailed(clip.wav, clip.text)
    check_covering(result.phones, clip.duration)
    assert [w.text for w in result.words] == normalize_text(clip.text)
    pairs, n_ref = matched_starts(clip.phones, result.phones)
    diff = np.abs(pairs[:, 0] - pairs[:, 1])
    # measured: 90-100 % of espeak's phones match in order, median |boundary diff| 8-17 ms
    assert len(pairs) >= 0.85 * n_ref
    assert np.median(diff) < 0.025
    assert np.mean(diff < 0.05) > 0.8


def test_recognize_phones(clip):
    phones = recognize_phones(clip.wav)
    check_covering(phones, clip.duration)
    pairs, n_ref = matched_starts(clip.phones, phones)
    # measured on these clips: about 40 % of espeak's phones recognised in order, boundaries of
    # the recognised ones within ~15 ms (phone recognition without text is much weaker)
    assert len(pairs) >= 0.25 * n_ref
    assert np.median(np.abs(pairs[:, 0] - pairs[:, 1])) < 0.04
    # speech and silence found where espeak put them
    speech = [p for p in phones if p.label != SIL]
    assert speech[0].start < 0.3 and speech[-1].end > clip.duration - 0.3


def test_deterministic(clip):
    assert align(clip.wav, clip.text) == align(clip.wav, clip.text)
    assert recognize_phones(clip.wav) == recognize_phones(clip.wav)


def test_normalize_text():
    assert normalize_text("Hello, World! It's 42.") == ["hello", "world", "it's", "forty", "two"]
    assert normalize_text("1,203") == ["one", "two", "hundred", "three"]
    assert normalize_text("...") == []


def test_unknown_word_pronounced_by_espeak():
    utt = synthesize("The zorblax sang.", "en-us")
    with pytest.warns(UserWarning, match="zorblax"):
        result = align_detailed(utt.wav, utt.text)
    assert result.added_words == ["zorblax"]
    assert [w.text for w in result.words] == ["the", "zorblax", "sang"]


def test_align_file(tmp_path: Path, clip):
    path = tmp_path / "clip.wav"
    save_audio(path, clip.wav, subtype="FLOAT")
    assert align_file(path, clip.text) == align(clip.wav, clip.text)
    assert align_file(path) == recognize_phones(clip.wav)


def test_errors():
    wav = synthesize("Hello there.").wav
    with pytest.raises(AudioError, match="no words"):
        align(wav, "")
    with pytest.raises(AudioError, match="no words"):
        align(wav, " ?! ")
    with pytest.raises(AudioError, match="no audio samples"):
        align(np.zeros(0, np.float32), "hello")
    with pytest.raises(AudioError, match="one animation frame"):
        recognize_phones(np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="non-finite"):
        align(np.full(16000, np.nan, np.float32), "hello")


def test_align_mismatched_text_is_refused():
    """Twelve words cannot fit into well under a second of speech (each phone needs several 10 ms
    frames): the alignment is refused with a clear message, while the true transcript aligns."""
    wav = synthesize("Hello there.").wav
    duration = wav.size / 16000
    assert duration < 1.2
    with pytest.raises(AudioError, match=rf"could not align .*\({duration:.2f} s, 12 words\): "
                                         r"does the text match the speech\?"):
        align(wav, "the quick brown fox jumps over the lazy dog again and again")
    result = align_detailed(wav, "Hello there.")
    check_covering(result.phones, duration)
    assert [w.text for w in result.words] == ["hello", "there"]


HUMAN = Path("/usr/share/pocketsphinx/test/data/goforward.raw")  # Debian pocketsphinx-testdata


@pytest.mark.skipif(not HUMAN.is_file(), reason=f"human test recording not installed ({HUMAN}; "
                    "Debian package pocketsphinx-testdata)")
def test_human_recording():
    pcm = np.fromfile(HUMAN, dtype="<i2").astype(np.float32) / 32768
    phones = align(pcm, "go forward ten meters")
    check_covering(phones, pcm.size / 16000)
    assert {"G", "OW", "F", "AO", "R", "W", "ER", "D", "T", "EH", "N", "M", "IY", "Z"} <= {
        p.label for p in phones}


def test_recognition_does_not_depend_on_earlier_calls():
    """pocketsphinx's running cepstral mean is reset per utterance: same audio, same phones."""
    from thunder3d.audio.align import recognize_phones
    from thunder3d.audio.tts import synthesize

    a = synthesize("Bob bought a big map.", voice="en-us").wav
    b = synthesize("Some other words entirely, spoken louder.", voice="en-gb").wav * 3.0
    first = recognize_phones(a)
    recognize_phones(b)
    again = recognize_phones(a)
    assert [(p.label, p.start, p.end) for p in first] == [(p.label, p.start, p.end) for p in again]
