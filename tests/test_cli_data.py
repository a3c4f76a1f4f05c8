"""The ``thunder3d data`` commands, run through the CLI entry point."""

import json

import pytest

from thunder3d.audio.io import save_audio
from thunder3d.audio.tts import synthesize
from thunder3d.cli import main
from thunder3d.data.clip import read_manifest


def test_data_align_writes_phones_json(tmp_path, capsys):
    utt = synthesize("Bob made a map.", voice="en-us")
    wav = tmp_path / "bob.wav"
    save_audio(wav, utt.wav)
    out = tmp_path / "phones.json"
    assert main(["data", "align", str(wav), "--text", utt.text, "-o", str(out)]) == 0
    phones = json.loads(out.read_text())
    labels = [p["label"] for p in phones]
    assert {"B", "M", "P"} <= set(labels)
    assert all(a["end"] <= b["start"] + 1e-9 for a, b in zip(phones, phones[1:]))
    capsys.readouterr()
    assert main(["data", "align", str(wav)]) == 0  # recognition, printed
    heard = json.loads(capsys.readouterr().out)
    assert heard[0]["start"] == 0 and heard[-1]["end"] == pytest.approx(len(utt.wav) / 16000, abs=0.02)
    assert all(a["end"] <= b["start"] + 1e-9 for a, b in zip(heard, heard[1:]))
    assert {p["label"] for p in heard} - {"SIL"}  # speech was heard, not only silence


def test_data_from_audio_and_errors(tmp_path, capsys):
    src = tmp_path / "src"
    save_audio(src / "a.wav", synthesize("A big apple.", voice="en-gb").wav)
    (src / "a.txt").write_text("A big apple.")
    assert main(["data", "from-audio", str(src), "-o", str(tmp_path / "corpus")]) == 0
    assert [e["id"] for e in read_manifest(tmp_path / "corpus")] == ["a"]
    assert main(["data", "align", str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err
    assert main(["data", "import", str(src), "--format", "bvh", "--out", str(tmp_path / "x")]) == 2
    assert "valid: flame, livelink" in capsys.readouterr().err
