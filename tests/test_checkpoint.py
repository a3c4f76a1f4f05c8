"""Checkpoint directories: safetensors + JSON round trip, atomic replacement, clear errors."""

from __future__ import annotations

import json
import os
import random
import shutil
import time

import numpy as np
import pytest
import torch
from torch import nn

from thunder3d.errors import CheckpointError
from thunder3d.checkpoints import load_checkpoint, load_training_state, save_checkpoint
from thunder3d.checkpoints import FORMAT_VERSION, clean_stale

CONFIG = {"task": "m2s", "model": {"input": "mouth2s", "dim": 16, "kernel": [3, 5]},
          "rig": {"spec": "ict:/data/ict.npz", "options": {}},
          "normalizer": {"coeff_names": ["jawOpen"], "mean": [0.1], "std": [0.5]}}


class Tied(nn.Module):
    """A linear layer, a norm, a buffer and a tied pair of weights (shared storage)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.emb.weight
        self.norm = nn.LayerNorm(3)
        self.register_buffer("scale", torch.tensor([2.0]))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.emb(idx)) * self.scale)


def trained(seed: int = 0):
    torch.manual_seed(seed)
    model = Tied()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(2):
        model(torch.arange(5)).square().mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def test_round_trip(tmp_path):
    model, opt, sched = trained()
    rng = rng_state()
    state = {"step": 2, "epoch": 0, "best_metric": float("nan"), "sampler": {"samples_seen": 8},
             "rng": [rng], "by_int": {3: "three"}}
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    path = save_checkpoint(tmp_path / "ckpt", model=model, config=CONFIG, optimizer=opt,
                           scheduler=sched, state=state, ema=ema)
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "ema.safetensors", "model.safetensors", "training_state.json",
        "training_state.safetensors"]  # no pickles anywhere
    expected_next = (torch.rand(3), np.random.rand(), random.random())

    ckpt = load_checkpoint(path, expect={"task": "m2s", "rig.spec": "ict:/data/ict.npz",
                                         "model": {"input": "mouth2s", "kernel": (3, 5)}})
    assert ckpt.config["format_version"] == FORMAT_VERSION and ckpt.get("model.dim") == 16
    assert ckpt.config["normalizer"] == CONFIG["normalizer"]
    fresh = Tied()
    ckpt.load_into(fresh, ema=False)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    assert fresh.head.weight is fresh.emb.weight  # still tied after loading
    assert torch.equal(ckpt.weights()["norm.weight"], ema["norm.weight"])  # EMA preferred

    opt2 = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0 / (1 + s))
    restored = load_training_state(ckpt, opt2, sched2)
    assert restored["step"] == 2 and restored["sampler"] == {"samples_seen": 8}
    assert np.isnan(restored["best_metric"]) and restored["by_int"] == {3: "three"}
    assert sched2.last_epoch == sched.last_epoch and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for p_old, p_new in zip(opt.param_groups[0]["params"], opt2.param_groups[0]["params"]):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p_old][key], opt2.state[p_new][key])
    saved_rng = restored["rng"][0]
    torch.set_rng_state(saved_rng["torch"])
    np.random.set_state(saved_rng["numpy"])
    random.setstate(saved_rng["python"])
    assert torch.equal(torch.rand(3), expected_next[0])
    assert np.random.rand() == expected_next[1] and random.random() == expected_next[2]


def test_inference_checkpoint_and_replacement(tmp_path):
    path = tmp_path / "best"
    save_checkpoint(path, model=nn.Linear(2, 2), config=CONFIG)
    ckpt = load_checkpoint(path)
    assert ckpt.training_state is None and ckpt.ema_state_dict is None
    with pytest.raises(CheckpointError, match="no training state"):
        load_training_state(ckpt, None)
    # replacing keeps one directory and leaves no temporary or aside copies
    save_checkpoint(path, model=nn.Linear(2, 2), config={**CONFIG, "task": "talker"})
    assert load_checkpoint(path).task == "talker"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    # a failure while building the new one leaves the old one intact
    def boom(directory):
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, model=nn.Linear(2, 2), config=CONFIG, write_extra=boom)
    assert load_checkpoint(path).task == "talker"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_extra_files_from_the_task(tmp_path):
    path = save_checkpoint(tmp_path / "c", model=nn.Linear(2, 2), config=CONFIG,
                           write_extra=lambda d: (d / "vocab.json").write_text("[]"))
    assert (path / "vocab.json").read_text() == "[]"


@pytest.fixture()
def ckpt_dir(tmp_path):
    model, opt, sched = trained()
    return save_checkpoint(tmp_path / "ckpt", model=model, config=CONFIG, optimizer=opt,
                           scheduler=sched, state={"step": 2})


@pytest.mark.parametrize("name", ["model.safetensors", "training_state.safetensors"])
def test_truncated_safetensors(ckpt_dir, name):
    file = ckpt_dir / name
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(ckpt_dir)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):  # safetensors' own check
        load_checkpoint(ckpt_dir, verify=False)


def test_corrupt_bytes_are_caught_by_the_hash(ckpt_dir):
    file = ckpt_dir / "model.safetensors"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(ckpt_dir)


def test_missing_pieces(tmp_path, ckpt_dir):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope")
    (ckpt_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lacks model.safetensors"):
        load_checkpoint(ckpt_dir)
    (ckpt_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(ckpt_dir)


def test_left_aside_copy_is_recovered(tmp_path, ckpt_dir):
    # a save died between its two renames: the previous checkpoint sits at .ckpt.old-*, ckpt is gone
    expected = load_checkpoint(ckpt_dir).state_dict
    older = tmp_path / ".ckpt.old-00000001"
    shutil.copytree(ckpt_dir, older)
    (older / "model.safetensors").write_bytes(b"half a file")  # an incomplete copy is never used
    ckpt_dir.rename(tmp_path / ".ckpt.old-1234abcd")
    with pytest.warns(UserWarning, match=r"recovered the previous copy from \.ckpt\.old-1234abcd"):
        ckpt = load_checkpoint(ckpt_dir)
    assert ckpt.path == ckpt_dir and ckpt_dir.is_dir()
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in expected.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # the leftover copies are removed


def test_incomplete_aside_copy_is_named_not_used(tmp_path, ckpt_dir):
    aside = tmp_path / ".ckpt.old-1234abcd"
    ckpt_dir.rename(aside)
    (aside / "config.json").unlink()  # not a complete copy: nothing to recover
    with pytest.raises(CheckpointError, match=r"incomplete earlier copy at .*\.ckpt\.old-1234abcd"):
        load_checkpoint(ckpt_dir)
    assert not ckpt_dir.exists() and aside.is_dir()  # left for the user to inspect


def test_leftover_aside_copy_beside_a_good_checkpoint_is_removed(tmp_path, ckpt_dir):
    shutil.copytree(ckpt_dir, tmp_path / ".ckpt.old-1234abcd")  # the rmtree after the swap never ran
    assert load_checkpoint(ckpt_dir, verify=False).task == "m2s"
    assert (tmp_path / ".ckpt.old-1234abcd").is_dir()  # unverified: nothing is removed
    assert load_checkpoint(ckpt_dir).task == "m2s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_clean_stale_removes_dead_temporary_folders_only(tmp_path, ckpt_dir):
    dead = tmp_path / ".ckpt.tmp-k2j4h5_x"  # a save killed while writing (by an earlier process)
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"partial")
    hour_ago = time.time() - 3600
    for p in (dead / "model.safetensors", dead):
        os.utime(p, (hour_ago, hour_ago))
    busy = tmp_path / ".best.tmp-abcd1234"  # being written now by someone else: kept
    busy.mkdir()
    (tmp_path / ".notes.tmp-x").write_text("a file, not a checkpoint folder")
    aside = tmp_path / ".best.old-0123abcd"  # best/ was renamed aside, the new one never arrived
    shutil.copytree(ckpt_dir, aside)

    with pytest.warns(UserWarning, match="recovered"):
        removed = clean_stale(tmp_path, before=time.time() - 60)
    assert removed == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.tmp-abcd1234", ".notes.tmp-x", "best", "ckpt"]
    assert load_checkpoint(tmp_path / "best").task == "m2s"
    # by default only folders older than this process go: `busy` was made after it started
    assert clean_stale(tmp_path) == [] and busy.is_dir()
    assert clean_stale(tmp_path / "nowhere") == []


def test_clean_stale_spares_a_save_in_progress(tmp_path):
    seen = {}

    def look(directory):  # called inside save_checkpoint, while its tmp folder is being built
        seen["tmp"] = directory
        seen["removed"] = clean_stale(tmp_path, before=time.time() + 60)

    save_checkpoint(tmp_path / "ckpt", model=nn.Linear(2, 2), config=CONFIG, write_extra=look)
    assert seen["tmp"].name.startswith(".ckpt.tmp-") and seen["removed"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_bad_json_and_format_version(ckpt_dir):
    config = json.loads((ckpt_dir / "config.json").read_text())
    (ckpt_dir / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(ckpt_dir)
    (ckpt_dir / "config.json").write_text('{"task": "m2s",')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(ckpt_dir)


def test_expect_mismatch_names_both_values(ckpt_dir):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt_dir, expect={"task": "m2s", "rig.spec": "builtin", "model.input": "mouth2s"})
    assert str(info.value) == (f"checkpoint {ckpt_dir} was trained for rig 'ict:/data/ict.npz' "
                               "but 'builtin' was asked for")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt_dir, expect={"model.input": "exp2s", "task": "talker"})
    msg = str(info.value)
    assert "input 'mouth2s' but 'exp2s'" in msg and "task 'm2s' but 'talker'" in msg
    with pytest.raises(CheckpointError, match="no 'audio.encoder'"):
        load_checkpoint(ckpt_dir, expect={"audio.encoder": "mel"})


def test_weights_for_another_model(ckpt_dir):
    with pytest.raises(CheckpointError, match="does not fit this model: missing"):
        load_checkpoint(ckpt_dir).load_into(nn.Linear(3, 3))


def test_optimizer_for_other_parameters(ckpt_dir):
    ckpt = load_checkpoint(ckpt_dir)
    other = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(CheckpointError, match="cannot restore the optimizer"):
        load_training_state(ckpt, other)
