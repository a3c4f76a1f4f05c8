"""``thunder3d train talker`` and ``thunder3d sample`` at tiny size, through the CLI."""

import numpy as np
import pytest

from thunder3d.audio.io import save_audio
from thunder3d.audio.tts import synthesize
from thunder3d.cli import main
from thunder3d.data.synth import synthesize_corpus


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_train_talker_then_sample(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    synthesize_corpus(corpus, hours=0.02, seed=2, workers=1, progress=False, max_clips=12)
    run = tmp_path / "talker"
    args = ["train", "talker", "--corpus", str(corpus), "--out", str(run), "--steps", "3",
            "--batch-size", "2", "--dim", "32", "--layers", "1", "--heads", "2", "--window", "2",
            "--eval-every", "3", "--save-every", "3", "--warmup", "1", "--eval-windows", "2",
            "--eval-steps", "2", "--audio-dim", "16", "--no-progress", "--seed", "0"]
    assert main(args) == 0
    assert (run / "best" / "model.safetensors").is_file()
    import json

    # options left at their defaults add nothing to the config, so older runs stay resumable
    assert "cmn" not in json.loads((run / "last" / "config.json").read_text())["data"]["audio"]
    wav = tmp_path / "speech.wav"
    save_audio(wav, synthesize("Bob made a map of Paris.", voice="en-us").wav)
    out = tmp_path / "anim.npz"
    base = ["sample", str(wav), "--talker", str(run), "--steps", "2", "--seed", "4"]
    assert main(base + ["-o", str(out), "--samples", "2", "--emotion", "happy"]) == 0
    with np.load(out) as data:
        coeffs = data["coeffs"]
        assert coeffs.shape[0] == 2 and coeffs.shape[2] == 52 and np.isfinite(coeffs).all()
    again = tmp_path / "again.npz"
    assert main(base + ["-o", str(again), "--samples", "2", "--emotion", "happy"]) == 0
    assert np.array_equal(np.load(again)["coeffs"], coeffs)  # same seed, same samples
    assert main(base + ["-o", str(tmp_path / "x.npz"), "--emotion", "furious"]) == 2
    assert "contempt" in capsys.readouterr().err  # the valid emotions are listed
