"""The shared training loop on a tiny regression task: optimisation, exact resume after a kill,
gradient accumulation, EMA, best checkpoint, time budget, Ctrl-C, and refusal to clobber a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from thunder3d.errors import CheckpointError
from thunder3d.checkpoints import load_checkpoint
from thunder3d.train import EMA, StepBatchSampler, Task, TrainConfig, TrainError, train
from thunder3d.train.loop import build_optimizer, lr_factor

TESTS = Path(__file__).resolve().parent


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- a tiny task
class Items(torch.utils.data.Dataset):
    """``{"x" [D], "y" [1], "index", "epoch"}``; remembers the epoch set by the loop."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.epoch = x, y, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": i, "epoch": self.epoch}


class Net(nn.Module):
    def __init__(self, dim: int, width: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, width)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, 1]
        return self.out(self.drop(torch.tanh(self.norm(self.inp(x)))))


class Regression(Task):
    """Fit y = x·w (+ noise) with a small MLP; records the batch indices each step sees."""

    name = "regress"

    def __init__(self, n: int = 48, dim: int = 4, width: int = 8, dropout: float = 0.0,
                 kill_at: int | None = None, interrupt_at: int | None = None,
                 record_file: str | None = None, scripted_metric: list[float] | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(dim, 1, generator=g)
        x = torch.randn(n + 16, dim, generator=g)
        y = x @ w + 0.01 * torch.randn(n + 16, 1, generator=g)
        self.train_items, self.val_items = Items(x[:n], y[:n]), Items(x[n:], y[n:])
        self.dim, self.width, self.dropout = dim, width, dropout
        self.kill_at, self.interrupt_at, self.record_file = kill_at, interrupt_at, record_file
        self.scripted_metric = scripted_metric
        self.seen: dict[int, list[int]] = {}
        self.epochs: set[int] = set()

    def build_model(self) -> nn.Module:
        return Net(self.dim, self.width, self.dropout)

    def model_config(self) -> dict:
        return {"dim": self.dim, "width": self.width, "dropout": self.dropout}

    def checkpoint_config(self) -> dict:
        return {"data": {"kind": "random-linear"}}

    def train_dataset(self):
        return self.train_items

    def val_dataset(self):
        return self.val_items

    def loss(self, model, batch, step):
        if step == self.kill_at:
            os._exit(3)  # a hard kill: nothing is saved
        if step == self.interrupt_at and step not in self.seen:
            os.kill(os.getpid(), signal.SIGINT)
        if step >= 0:
            self.seen.setdefault(step, []).extend(batch["index"].tolist())
            self.epochs.update(batch["epoch"].tolist())
            if self.record_file:
                with open(self.record_file, "a") as f:
                    f.write(json.dumps([step, batch["index"].tolist()]) + "\n")
        err = model(batch["x"]) - batch["y"]
        return err.square().mean(), {"mae": err.abs().mean()}

    def evaluate(self, model, val_loader):
        metrics = super().evaluate(model, val_loader)
        if self.scripted_metric is not None:
            metrics["score"] = self.scripted_metric.pop(0)
        return metrics


def cfg(tmp: Path, **kw) -> TrainConfig:
    base = dict(out=str(tmp), steps=20, batch_size=4, lr=0.05, min_lr=0.005, warmup_steps=3,
                weight_decay=0.01, eval_every=5, save_every=5, log_every=2, device="cpu",
                progress=False, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_killed(out: str, record_file: str) -> None:
    """Run B of the resume test, in its own process: dies at step 12, its last save is step 10."""
    torch.set_num_threads(1)
    train(Regression(dropout=0.2, kill_at=12, record_file=record_file), cfg(Path(out), ema_decay=0.9))


# --------------------------------------------------------------------------- tests
def test_a_few_steps_reduce_the_loss(tmp_path):
    task = Regression()
    result = train(task, cfg(tmp_path, steps=30, eval_every=10))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if r["split"] == "val"]
    train_loss = [r["loss"] for r in records if r["split"] == "train"]
    assert len(val) == 3 and val[-1] < 0.5 * val[0]
    assert train_loss[-1] < 0.5 * train_loss[0]
    assert {"lr", "grad_norm", "mae", "samples_per_s"} <= set(records[0])
    assert result.step == 30 and result.stopped == "completed"
    # tensorboard/ holds the same scalars as metrics.jsonl, at the same steps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    for tag, split, key in (("val/val_loss", "val", "val_loss"), ("train/loss", "train", "loss")):
        events = board.Scalars(tag)
        assert [e.step for e in events] == [r["step"] for r in records if r["split"] == split]
        assert [e.value for e in events] == pytest.approx([r[key] for r in records if r["split"] == split],
                                                          rel=1e-6)  # stored as float32
    assert [e.step for e in board.Scalars("val/val_loss")] == [10, 20, 30]
    ckpt = load_checkpoint(result.last, expect={"task": "regress", "model.width": 8,
                                                "data.kind": "random-linear"})
    assert ckpt.step == 30 and ckpt.config["train"]["steps"] == 30
    assert task.epochs >= {0, 1}  # 30 steps x 4 > 48 items: set_epoch reached the dataset


def test_sampler_is_a_function_of_the_step():
    full = StepBatchSampler(10, 4, steps=6, seed=3)
    batches = list(full)
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    stream = [i for b in batches for _, i in b]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # a new permutation each epoch
    # resumed at step 4: the same batches as the uninterrupted sampler
    assert list(StepBatchSampler(10, 4, steps=6, seed=3, start_step=4)) == batches[4:]
    # 2 ranks x 2 micro-steps x batch 1 regroup the same samples as batch 4
    split = [StepBatchSampler(10, 1, steps=6, seed=3, grad_accum=2, rank=r, world_size=2)
             for r in (0, 1)]
    for step in range(6):
        regrouped = [i for m in range(2) for s in split for i in s.indices(step, m)]
        assert regrouped == full.indices(step, 0)


def test_killed_run_resumes_at_the_right_step_with_the_same_data(tmp_path):
    # run A: 20 steps straight (dropout and EMA on, so RNG and EMA state must be restored too)
    a = Regression(dropout=0.2)
    result_a = train(a, cfg(tmp_path / "a", ema_decay=0.9))
    # run B: a separate process killed at step 12; its last checkpoint is step 10
    out_b, record = tmp_path / "b", tmp_path / "b_batches.jsonl"
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_train_loop as t; "
            f"t.run_killed({str(out_b)!r}, {str(record)!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert load_checkpoint(out_b / "last").step == 10
    killed: dict[int, list[int]] = {}
    for line in record.read_text().splitlines():
        step, idx = json.loads(line)
        killed.setdefault(step, []).extend(idx)
    assert sorted(killed) == list(range(12))
    # resume B in this process (whose RNG is in another state) up to 20
    torch.manual_seed(12345)
    b = Regression(dropout=0.2)
    result_b = train(b, cfg(out_b, ema_decay=0.9, resume=True))
    assert sorted(b.seen) == list(range(10, 20)) and result_b.step == 20
    for step in range(12):
        assert killed[step] == a.seen[step]
    for step in range(10, 20):
        assert b.seen[step] == a.seen[step]
    wa, wb = weights(result_a.model), weights(result_b.model)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for k in result_a.ema.shadow:
        assert torch.equal(result_a.ema.shadow[k], result_b.ema.shadow[k]), k
    assert result_a.best_metric == result_b.best_metric
    # metrics.jsonl: the records the killed run wrote after step 10 were replaced, not duplicated
    steps = [json.loads(line)["step"] for line in (out_b / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 20


def test_resume_of_a_finished_run_extends_it(tmp_path):
    train(Regression(), cfg(tmp_path, steps=6))
    result = train(Regression(), cfg(tmp_path, steps=9, resume=True))
    assert result.step == 9 and load_checkpoint(tmp_path / "last").step == 9


def test_gradient_accumulation_matches_the_larger_batch(tmp_path):
    big = train(Regression(), cfg(tmp_path / "big", steps=8, batch_size=4, grad_accum=1))
    acc_task = Regression()
    acc = train(acc_task, cfg(tmp_path / "acc", steps=8, batch_size=2, grad_accum=2))
    assert len(acc_task.seen[0]) == 4
    for k, v in weights(big.model).items():
        torch.testing.assert_close(weights(acc.model)[k], v, rtol=0, atol=1e-6)


def test_ema_updates():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # warm-up decay: min(0.5, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["weight"], d * before["weight"] + (1 - d) * model.weight)
    with ema.applied_to(model):
        torch.testing.assert_close(model.weight, ema.shadow["weight"])
    torch.testing.assert_close(model.weight, before["weight"] + 1.0)


def test_ema_weights_are_saved_and_evaluated(tmp_path):
    result = train(Regression(), cfg(tmp_path, steps=10, ema_decay=0.8))
    best = load_checkpoint(result.best)
    assert best.ema_state_dict is not None and best.training_state is None
    assert best.weights() is best.ema_state_dict
    assert not torch.equal(best.ema_state_dict["out.weight"], best.state_dict["out.weight"])
    last = load_checkpoint(result.last)
    torch.testing.assert_close(last.ema_state_dict["out.weight"], result.ema.shadow["out.weight"])


@pytest.mark.parametrize("mode, best_step", [("min", 4), ("max", 2)])
def test_best_checkpoint_follows_the_metric(tmp_path, mode, best_step):
    task = Regression(scripted_metric=[3.0, 1.0, 2.0])
    result = train(task, cfg(tmp_path, steps=6, eval_every=2, best_metric="score", best_mode=mode))
    assert result.best_step == best_step
    assert result.best_metric == {"min": 1.0, "max": 3.0}[mode]
    best = load_checkpoint(tmp_path / "best")
    assert best.config["step"] == best_step and best.config["metrics"]["score"] == result.best_metric
    assert load_checkpoint(tmp_path / "last").training_state["state"]["best_step"] == best_step


def test_missing_best_metric_is_a_clear_error(tmp_path):
    with pytest.raises(TrainError, match="best metric 'nope'"):
        train(Regression(), cfg(tmp_path, steps=2, eval_every=1, best_metric="nope"))


def test_time_budget_stops_and_saves(tmp_path):
    result = train(Regression(), cfg(tmp_path, steps=1000, max_minutes=1e-6))
    assert result.stopped == "time_budget" and result.step == 1
    assert load_checkpoint(tmp_path / "last").step == 1
    # evaluated before stopping: best/ is that step-1 evaluation
    assert result.best == tmp_path / "best" and result.best_step == 1
    best = load_checkpoint(result.best)
    assert best.step == 1 and best.config["metrics"]["val_loss"] == result.best_metric
    again = train(Regression(), cfg(tmp_path, steps=4, resume=True))
    assert again.step == 4 and again.stopped == "completed"


def test_stop_at_trains_in_chunks_like_one_run(tmp_path):
    """``stop_at`` stops (evaluated, saved) mid-schedule; resuming to the end gives the weights of
    one uninterrupted run."""
    whole = train(Regression(), cfg(tmp_path / "whole", steps=12))
    first = train(Regression(), cfg(tmp_path / "chunks", steps=12, stop_at=5))
    assert first.stopped == "stop_at" and first.step == 5
    assert first.best == tmp_path / "chunks" / "best" and first.best_step == 5  # evaluated at the stop
    assert load_checkpoint(first.best).config["metrics"]["val_loss"] == first.best_metric
    assert load_checkpoint(tmp_path / "chunks" / "last").step == 5
    again = train(Regression(), cfg(tmp_path / "chunks", steps=12, stop_at=5, resume=True))
    assert again.step == 5  # already there: nothing to do
    rest = train(Regression(), cfg(tmp_path / "chunks", steps=12, resume=True))
    assert rest.step == 12 and rest.stopped == "completed"
    for k, v in weights(whole.model).items():
        torch.testing.assert_close(weights(rest.model)[k], v, rtol=0, atol=1e-6)


def test_ctrl_c_saves_last_and_reraises(tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(Regression(interrupt_at=3), cfg(tmp_path, steps=20))
    assert load_checkpoint(tmp_path / "last").step == 4  # the step in flight was finished
    assert signal.getsignal(signal.SIGINT) is handler
    assert train(Regression(), cfg(tmp_path, steps=6, resume=True)).step == 6


def _stale(folder: Path, name: str) -> Path:
    """A ``.NAME.tmp-*`` folder as a save killed mid-way (in an earlier process) leaves it."""
    tmp = folder / f".{name}.tmp-k1ll3d_x"
    tmp.mkdir(parents=True)
    (tmp / "model.safetensors").write_bytes(b"partial")
    old = time.time() - 3600
    for p in (tmp / "model.safetensors", tmp):
        os.utime(p, (old, old))
    return tmp


def test_resume_tidies_what_interrupted_saves_left(tmp_path):
    train(Regression(), cfg(tmp_path, steps=6))
    _stale(tmp_path, "last")
    _stale(tmp_path, "best")
    # killed between the two renames of a save of last/: the step-6 checkpoint is aside, no last/
    (tmp_path / "last").rename(tmp_path / ".last.old-1234abcd")
    task = Regression()
    with pytest.warns(UserWarning, match="recovered the previous copy"):
        result = train(task, cfg(tmp_path, steps=9, resume=True))
    assert min(task.seen) == 6 and result.step == 9  # resumed from the recovered step-6 checkpoint
    assert load_checkpoint(tmp_path / "last").step == 9
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_run_ends_without_stale_temporary_folders(tmp_path):
    _stale(tmp_path, "last")
    assert train(Regression(), cfg(tmp_path, steps=2)).step == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (tmp_path / "last").is_dir() and (tmp_path / "best").is_dir()


def test_no_validation_data_is_announced_once(tmp_path):
    class NoVal(Regression):
        def val_dataset(self):
            return None

    with pytest.warns(UserWarning) as record:
        result = train(NoVal(), cfg(tmp_path, steps=4, eval_every=1))
    said = [str(w.message) for w in record if "validation" in str(w.message)]
    assert len(said) == 1 and "no evaluation will run and no best/ checkpoint" in said[0]
    assert result.best is None and not (tmp_path / "best").exists() and (tmp_path / "last").is_dir()


def test_refuses_to_overwrite_another_run(tmp_path):
    train(Regression(), cfg(tmp_path, steps=2))
    before = (tmp_path / "last" / "model.safetensors").read_bytes()
    with pytest.raises(TrainError) as info:
        train(Regression(width=16), cfg(tmp_path, steps=2))
    msg = str(info.value)
    assert "width 8 but 16 was asked for" in msg and "--output" in msg and "--resume" in msg
    with pytest.raises(TrainError, match="already holds a run of this task and model at step 2"):
        train(Regression(), cfg(tmp_path, steps=2))
    with pytest.raises(CheckpointError, match="width 8 but 16"):
        train(Regression(width=16), cfg(tmp_path, steps=4, resume=True))
    assert (tmp_path / "last" / "model.safetensors").read_bytes() == before


def test_init_fine_tunes_from_another_runs_weights(tmp_path):
    base = train(Regression(), cfg(tmp_path / "base", steps=6, ema_decay=0.5))
    start = load_checkpoint(base.out / "last")
    seen = {}

    class Spy(Regression):
        def loss(self, model, batch, step):
            if step == 0:
                seen.update(weights(model))
            return super().loss(model, batch, step)

    # the model config may differ where the weights do not (dropout here)
    result = train(Spy(dropout=0.3), cfg(tmp_path / "ft", steps=3, init=str(base.out / "last")))
    for name, value in start.weights().items():  # step 0 sees the EMA weights of the base run
        assert torch.equal(seen[name], value), name
    assert load_checkpoint(result.out / "last").config["train"]["init"] == str(base.out / "last")

    class Other(Regression):
        name = "other"

    with pytest.raises(CheckpointError, match="a 'regress' checkpoint, this is a 'other' run"):
        train(Other(), cfg(tmp_path / "x1", steps=2, init=str(base.out / "last")))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        train(Regression(width=16), cfg(tmp_path / "x2", steps=2, init=str(base.out / "last")))
    with pytest.raises(CheckpointError):
        train(Regression(), cfg(tmp_path / "x3", steps=2, init=str(tmp_path / "missing")))


def test_train_config_round_trip_and_validation():
    c = TrainConfig(out="x", steps=5, betas=(0.8, 0.9))
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(TrainError, match="valid: .*grad_accum"):
        TrainConfig.from_dict({"stpes": 3})
    with pytest.raises(TrainError, match="valid: cosine, constant"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(TrainError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(TrainError, match="unknown device"):
        train(Regression(), TrainConfig(out="unused", device="tpu"))


def test_lr_schedule_and_weight_decay_groups():
    c = TrainConfig(steps=100, lr=1.0, min_lr=0.1, warmup_steps=10)
    assert lr_factor(0, c) == pytest.approx(0.1) and lr_factor(9, c) == pytest.approx(1.0)
    assert lr_factor(10, c) == pytest.approx(1.0) and lr_factor(100, c) == pytest.approx(0.1)
    assert 0.1 < lr_factor(55, c) < 1.0
    opt = build_optimizer(Net(4, 8, 0.0).parameters(), c, torch.device("cpu"))
    decayed = {p.dim() for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {p.dim() for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == {2} and plain == {1}


def test_worker_processes_load_the_same_batches(tmp_path):
    inline, pooled = Regression(), Regression()
    a = train(inline, cfg(tmp_path / "a", steps=6, eval_every=0))
    b = train(pooled, cfg(tmp_path / "b", steps=6, eval_every=0, num_workers=2))
    assert pooled.seen == inline.seen
    for k, v in weights(a.model).items():
        assert torch.equal(weights(b.model)[k], v), k
