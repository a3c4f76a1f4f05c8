"""``thunder3d animate`` and ``thunder3d demo`` with a tiny talker trained here."""

import math
import os

import numpy as np
import pytest
from helpers import needs_gl

from thunder3d.audio.io import save_audio
from thunder3d.audio.tts import synthesize
from thunder3d.cli import main
from thunder3d.constants import SAMPLES_PER_FRAME

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tiny_talker):
    return tiny_talker


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    save_audio(folder / "bob.wav", synthesize("Bob made a map of Paris.", voice="en-us").wav)
    save_audio(folder / "ann.flac", synthesize("Ann has a red hat.", voice="en-gb").wav)
    (folder / "notes.txt").write_text("not audio, ignored")
    return folder


def frames_of(path):
    import soundfile as sf

    info = sf.info(str(path))
    return math.ceil(info.frames * 16000 / info.samplerate / SAMPLES_PER_FRAME)


def test_animate_a_file(run, speech_dir, tmp_path, capsys):
    wav, out = speech_dir / "bob.wav", tmp_path / "out"
    args = ["animate", str(wav), "-o", str(out), "--model", str(run), "--samples", "2", "--steps", "2",
            "--emotion", "happy", "--intensity", "2", "--format", "npz,csv,glb", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ("bob.npz", "bob.wav", "bob_s0.csv", "bob_s1.csv", "bob_s0.glb", "bob_s1.glb"):
        assert (out / name).is_file() and str(out / name) in printed
    with np.load(out / "bob.npz") as data:
        coeffs = data["coeffs"]
    assert coeffs.shape == (2, frames_of(wav), 52) and np.isfinite(coeffs).all()
    header = (out / "bob_s0.csv").read_text().splitlines()[0]
    assert "JawOpen" in header


def test_animate_a_folder_one_result_folder_per_file(run, speech_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["animate", str(speech_dir), "-o", str(out), "--model", str(run), "--steps", "2",
                 "--format", "npz", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ann", "bob"]
    for stem, source in (("ann", "ann.flac"), ("bob", "bob.wav")):
        with np.load(out / stem / f"{stem}.npz") as data:
            assert data["coeffs"].shape[-2:] == (frames_of(speech_dir / source), 52)


def test_bad_audio_exits_2_before_any_work(run, speech_dir, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["-o", str(out), "--model", str(run), "--steps", "2", "--no-progress"]
    assert main(["animate", str(tmp_path / "missing.wav")] + base) == 2
    assert "audio file not found" in capsys.readouterr().err
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a_good.wav").write_bytes((speech_dir / "bob.wav").read_bytes())
    (folder / "b_corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    assert main(["animate", str(folder)] + base) == 2
    err = capsys.readouterr().err
    assert err.startswith("thunder3d: error:") and "b_corrupt.wav" in err and len(err.splitlines()) == 1
    assert not (out / "a_good").exists()  # refused before animating anything
    assert main(["animate", str(folder), "--skip-bad"] + base) == 0
    assert (out / "a_good" / "a_good.npz").is_file() and "skipped" in capsys.readouterr().err
    assert main(["animate", str(speech_dir / "bob.wav"), "--emotion", "furious"] + base) == 2
    assert "contempt" in capsys.readouterr().err


def test_unusable_output_folder_exits_2(run, speech_dir, tmp_path, capsys):
    wav = str(speech_dir / "bob.wav")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["animate", wav, "-o", str(a_file), "--model", str(run), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["animate", wav, "-o", str(speech_dir), "--model", str(run), "--no-progress"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err  # bob.wav -> bob.wav
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert main(["animate", wav, "-o", str(locked / "out"), "--model", str(run), "--no-progress"]) == 2
        assert "cannot write into" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def _check_video(path, seconds):
    from thunder3d.render.video import probe_media

    info = probe_media(path)
    streams = {s["type"]: s for s in info["streams"]}
    assert streams["video"]["codec"] == "h264" and streams["audio"]["codec"] == "aac"
    assert streams["video"]["duration"] == pytest.approx(seconds, abs=0.05)
    assert streams["audio"]["duration"] == pytest.approx(seconds, abs=0.05)
    return streams


@needs_gl
def test_demo_writes_a_video_with_sound_a_glb_and_an_npz(run, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--model", str(run), "--size", "128", "--steps", "2",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("demo.mp4", "demo.glb", "demo.npz", "demo.wav"):
        assert (out / name).is_file() and str(out / name) in printed
    with np.load(out / "demo.npz") as data:
        frames = data["coeffs"].shape[-2]
    streams = _check_video(out / "demo.mp4", frames / 25)
    assert streams["video"]["width"] == 128


@pytest.mark.slow
@needs_gl
def test_animate_mp4_has_the_speech(run, speech_dir, tmp_path):
    out = tmp_path / "out"
    wav = speech_dir / "ann.flac"
    assert main(["animate", str(wav), "-o", str(out), "--model", str(run), "--steps", "2",
                 "--samples", "2", "--format", "mp4", "--size", "64", "--no-progress"]) == 0
    _check_video(out / "ann.mp4", frames_of(wav) / 25)


@pytest.mark.slow
@needs_gl
def test_demo_with_the_shipped_model(tmp_path, capsys):
    """The acceptance run: ``thunder3d demo`` with nothing but the package (small video size)."""
    from thunder3d.eval.metrics import aperture_indices, aperture_of, rig_vertices
    from thunder3d.inference.animator import PRETRAINED_DIR
    from thunder3d.rigs import load_rig

    assert (PRETRAINED_DIR / "model.safetensors").is_file(), "the shipped model is missing"
    assert sum(f.stat().st_size for f in PRETRAINED_DIR.iterdir()) <= 30e6
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "128", "--no-progress", "--threads", "1"]) == 0
    with np.load(out / "demo.npz") as data:
        coeffs = data["coeffs"][0]
    _check_video(out / "demo.mp4", len(coeffs) / 25)
    rig = load_rig("builtin")
    import torch

    aperture = aperture_of(rig_vertices(rig, torch.from_numpy(coeffs), aperture_indices(rig))) * rig.mm_per_unit
    # a trained model talks: the lips open wide for the sentence's vowels and meet again
    assert float(aperture.max()) > 8.0 and float(aperture.min()) < 1.5
