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
    out = tmp_path / "anim"
    base = ["animate", str(wav), "--model", str(run), "--steps", "2", "--seed", "4", "--format", "npz"]
    assert main(base + ["-o", str(out), "--samples", "2", "--emotion", "happy", "--intensity", "2"]) == 0
    with np.load(out / "speech.npz") as data:
        coeffs = data["coeffs"]
        assert coeffs.shape[0] == 2 and coeffs.shape[2] == 52 and np.isfinite(coeffs).all()
    again = tmp_path / "again"
    assert main(base + ["-o", str(again), "--samples", "2", "--emotion", "happy", "--intensity", "2"]) == 0
    assert np.array_equal(np.load(again / "speech.npz")["coeffs"], coeffs)  # same seed, same samples
    # the old names still work for one release: --talker, --out, --audio-scale
    old = tmp_path / "old"
    assert main(["animate", str(wav), "--talker", str(run), "--out", str(old), "--steps", "2", "--seed", "4",
                 "--samples", "2", "--emotion", "happy", "--intensity", "2", "--audio-scale", "1"]) == 0
    assert np.array_equal(np.load(old / "speech.npz")["coeffs"], coeffs)
    assert main(base + ["-o", str(tmp_path / "x"), "--emotion", "furious"]) == 2
    assert "contempt" in capsys.readouterr().err  # the valid emotions are listed

    # fine-tune it with the training-only mel augmentation: a new run from its weights
    tuned = tmp_path / "tuned"
    tune = [a if a != str(run) else str(tuned) for a in args] + [
        "--init", str(run / "last"), "--audio-warp", "0.1", "--audio-band-mask", "6", "--steps", "2",
        "--oversample", "en=2"]
    assert main(tune) == 0
    saved = json.loads((tuned / "last" / "config.json").read_text())
    assert saved["model"]["audio"]["warp"] == 0.1 and saved["model"]["audio"]["band_mask"] == 6
    assert saved["train"]["init"] == str(run / "last") and saved["data"]["oversample"] == {"en": 2}
    assert "oversample" not in json.loads((run / "last" / "config.json").read_text())["data"]
    capsys.readouterr()
    wrong = [a if a != str(run) else str(tmp_path / "x") for a in args] + ["--audio", "phonetic",
                                                                          "--audio-warp", "0.1"]
    assert main(wrong) == 2
    err = capsys.readouterr().err
    assert "unknown option" in err and "'warp'" in err and "phonetic" in err
    for option in ("--mel-dropout", "--phone-scale"):
        wrong = [a if a != str(run) else str(tmp_path / "x") for a in args] + [option, "0.3"]
        assert main(wrong) == 2
        err = capsys.readouterr().err
        assert "unknown option" in err and option[2:].replace("-", "_") in err and err.count("\n") == 1
    assert main(args[:5] + [str(tmp_path / "z"), "--oversample", "en"]) == 2
    assert "VOICE_PREFIX=K" in capsys.readouterr().err
    other = [a if a != str(run) else str(tmp_path / "y") for a in args] + ["--dim", "48",
                                                                          "--init", str(run / "last")]
    assert main(other) == 2 and "does not fit this model" in capsys.readouterr().err
