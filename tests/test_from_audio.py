"""Recordings -> pseudo-ground-truth clips (thunder3d data from-audio) on real synthesized speech."""

from pathlib import Path

import numpy as np
import pytest

from thunder3d.audio.io import save_audio
from thunder3d.audio.phones import BILABIAL
from thunder3d.audio.tts import synthesize
from thunder3d.data.clip import DataError, load_clip, read_manifest
from thunder3d.data.real import from_audio

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    src = tmp_path_factory.mktemp("rec")
    utt = synthesize("Bob bought a big map of Paris.", voice="en-us")
    save_audio(src / "speaker1" / "bob.wav", utt.wav)
    (src / "speaker1" / "bob.txt").write_text(utt.text)
    save_audio(src / "speaker1" / "free.wav", synthesize("Mama made a pie.", voice="en-gb").wav)
    return src


def test_from_audio_makes_valid_clips(recordings, tmp_path):
    report = from_audio(recordings, tmp_path, progress=False)
    assert sorted(report.imported) == ["speaker1_bob", "speaker1_free"]
    entries = {e["id"]: e for e in read_manifest(tmp_path)}
    assert set(entries) == set(report.imported)
    clip = load_clip(tmp_path, "speaker1_bob")
    assert clip.coeffs.shape == (len(clip.audio) // 640, 52)
    assert clip.meta["alignment"] == "forced" and clip.text.startswith("Bob")
    assert load_clip(tmp_path, "speaker1_free").meta["alignment"] == "recognized"
    # the lips close at the centre of every aligned bilabial
    close, jaw = clip.coeff_names.index("mouthClose"), clip.coeff_names.index("jawOpen")
    centres = [int((p.start + p.end) / 2 * 25) for p in clip.phones if p.label in BILABIAL]
    assert centres, "expected bilabials in 'Bob bought a big map'"
    for f in centres:
        assert clip.coeffs[f, close] >= 0.8 * clip.coeffs[f, jaw]


def test_from_audio_deterministic(recordings, tmp_path):
    from_audio(recordings, tmp_path / "a", progress=False, seed=3)
    from_audio(recordings, tmp_path / "b", progress=False, seed=3)
    for name in ("speaker1_bob.npz", "speaker1_bob.wav"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_from_audio_bad_input(recordings, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.wav").write_text("not audio")
    with pytest.raises(DataError, match="broken.wav"):
        from_audio(bad, tmp_path / "out", progress=False)
    report = from_audio(bad, tmp_path / "out", progress=False, skip_bad=True)
    assert report.imported == [] and report.skipped[0][0] == "broken"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        from_audio(empty, tmp_path / "out", progress=False)


@pytest.mark.skipif(not LIBRIVOX.is_dir(), reason="Debian pocketsphinx-testdata (real recordings) not installed")
def test_from_audio_on_real_human_speech(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    line = next(l for l in lines if l.endswith("(sense_and_sensibility_01_austen_64kb-0880)"))
    text = line.split("<s>")[1].split("</s>")[0].strip()
    wav = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"
    (src / "real.wav").symlink_to(wav)
    (src / "real.txt").write_text(text)
    from_audio(src, tmp_path / "out", progress=False)
    clip = load_clip(tmp_path / "out", "real")
    labels = [p.label for p in clip.phones if p.label != "SIL"]
    assert {"M", "N"} <= set(labels)  # "man", "not", "an"
    jaw = clip.coeffs[:, clip.coeff_names.index("jawOpen")]
    assert np.isfinite(clip.coeffs).all() and jaw.max() > 0.2


def test_sphinx_transcription_file_is_read(tmp_path):
    """A folder in the Sphinx test-data layout (one ``transcription`` file) is force-aligned."""
    from thunder3d.data.real import read_sphinx_transcription, read_transcript

    (tmp_path / "transcription").write_text(
        "<s> bob made a map </s> (utt_1)\n<s> </s> (empty)\nnot a transcription line\n"
        "<s> ann has a hat </s> (utt_2)\n")
    assert read_sphinx_transcription(tmp_path / "transcription") == {
        "utt_1": "bob made a map", "utt_2": "ann has a hat"}
    assert read_transcript(tmp_path / "utt_2.wav") == "ann has a hat"
    assert read_transcript(tmp_path / "empty.wav") is None
    (tmp_path / "utt_2.txt").write_text("a sidecar wins")
    assert read_transcript(tmp_path / "utt_2.wav") == "a sidecar wins"
