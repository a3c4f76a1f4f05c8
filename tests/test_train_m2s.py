"""M2S end to end at small size: train through the CLI, evaluate, speak, load with checks."""

import json

import numpy as np
import pytest

from thunder3d.cli import main
from thunder3d.data.clip import corpus_clips, load_clip
from thunder3d.data.synth import synthesize_corpus
from thunder3d.errors import CheckpointError
from thunder3d.checkpoints import load_m2s


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("m2s_corpus")
    synthesize_corpus(out, hours=0.02, seed=5, workers=1, progress=False, max_clips=20)
    return out


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("m2s_run") / "run"
    args = ["train", "m2s", "--corpus", str(corpus), "-o", str(out), "--steps", "6",
            "--batch-size", "4", "--dim", "32", "--layers", "1", "--heads", "2", "--window", "2",
            "--eval-every", "3", "--save-every", "3", "--warmup", "2", "--no-progress", "--seed", "1"]
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_train_eval_speak(run, corpus, tmp_path, capsys):
    assert (run / "best" / "model.safetensors").is_file() and (run / "last" / "config.json").is_file()
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["task"] == "m2s" and config["rig"]["spec"] == "builtin"
    assert config["model"]["input"] == "mouth2s"

    out = tmp_path / "eval.json"
    code = main(["eval", "m2s", "--model", str(run), "--corpus", str(corpus), "--split", "train",
                 "--clips", "3", "-o", str(out)])
    result = json.loads(out.read_text())
    assert code == (0 if result["criterion_met"] else 1)  # the exit status reports the sync criterion
    assert set(result["sync_curve"]) == {"0", "±1", "±2", "±4", "±8", "mismatched", "neutral"}
    assert result["clips"] == 3 and np.isfinite(result["mel_l1"])

    clip = corpus_clips(corpus, "train")[0]
    wav = tmp_path / "speech.wav"
    assert main(["speak", str(corpus / f"{clip}.npz"), "--m2s", str(run), "-o", str(wav),
                 "--iterations", "4"]) == 0
    import soundfile

    audio, sr = soundfile.read(wav)
    frames = load_clip(corpus, clip, audio=False).num_frames
    assert sr == 16000 and len(audio) == frames * 640  # one animation frame = 640 samples of speech
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.1  # peak-normalised, not silence


def test_resume_continues(run, corpus, capsys):
    args = ["train", "m2s", "--corpus", str(corpus), "-o", str(run), "--steps", "8",
            "--batch-size", "4", "--dim", "32", "--layers", "1", "--heads", "2", "--window", "2",
            "--eval-every", "4", "--save-every", "4", "--warmup", "2", "--no-progress", "--seed", "1",
            "--resume"]
    assert main(args) == 0
    assert "at step 6" in capsys.readouterr().out  # picked up the fixture's 6-step run
    state = json.loads((run / "last" / "training_state.json").read_text())
    assert state["state"]["step"] == 8
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # evaluated at 3 and 6 before, then at 8: continued, not restarted (which would evaluate at 4)
    assert [r["step"] for r in records if r["split"] == "val"] == [3, 6, 8]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 8


def test_load_checks_rig_input_and_truncation(run, tmp_path, capsys):
    model, rig = load_m2s(run)
    assert rig.name == "builtin" and model.cfg.input == "mouth2s"
    with pytest.raises(CheckpointError, match="input 'mouth2s', not 'exp2s'"):
        load_m2s(run, input="exp2s")
    # a truncated weights file is a clear CheckpointError
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run / "best", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_m2s(broken)
    assert main(["eval", "m2s", "--model", str(broken), "--corpus", str(tmp_path)]) == 2
    assert "thunder3d: error:" in capsys.readouterr().err


def test_speak_rejects_bad_animation(run, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, coeffs=np.full((10, 7), np.nan, dtype=np.float32))
    assert main(["speak", str(bad), "--m2s", str(run), "-o", str(tmp_path / "x.wav")]) == 2
    assert "coeffs must be finite" in capsys.readouterr().err


def test_load_refuses_another_rig(run, ict_file):
    with pytest.raises(CheckpointError, match="trained for rig 'builtin', not 'ict:"):
        load_m2s(run, rig=f"ict:{ict_file}")


def test_still_spans_silence_a_resting_face(corpus):
    """The still-span augmentation puts a neutral face over background audio and SIL phones, and
    leaves everything outside the span untouched."""
    import torch

    from thunder3d.constants import SAMPLES_PER_FRAME
    from thunder3d.data.dataset import collate
    from thunder3d.train.m2s import M2SData, M2STask

    task = M2STask(M2SData(corpus=str(corpus), still_prob=1.0, still_seconds=(0.4, 0.8)),
                   dict(dim=16, layers=1, heads=2))
    batch = collate([task._train[i] for i in range(2)])
    torch.manual_seed(0)
    out = task.still_spans(batch)
    for b in range(2):
        changed = (out["coeffs"][b] != batch["coeffs"][b]).any(-1).nonzero().flatten()
        assert len(changed) > 0
        lo, hi = int(changed.min()), int(changed.max()) + 1
        assert 10 <= hi - lo <= 20  # 0.4-0.8 s at 25 fps
        assert hi - lo <= int(batch["mask"][b].sum()) - 12  # at least 0.5 s left as it was
        assert torch.all(out["coeffs"][b, lo:hi] == 0) and torch.all(out["phones"][b, lo:hi] == 0)
        assert torch.equal(out["coeffs"][b, :lo], batch["coeffs"][b, :lo])
        span = out["audio"][b, lo * SAMPLES_PER_FRAME:hi * SAMPLES_PER_FRAME]
        loud = batch["audio"][b].reshape(-1, SAMPLES_PER_FRAME).square().mean(-1).max()
        assert float(span.square().mean()) < 0.05 * float(loud)  # background, not speech
    assert torch.equal(batch["coeffs"], collate([task._train[i] for i in range(2)])["coeffs"])  # copy
    off = M2STask(M2SData(corpus=str(corpus), still_prob=0.0), dict(dim=16, layers=1, heads=2))
    assert torch.equal(off.still_spans(batch)["audio"], batch["audio"])
