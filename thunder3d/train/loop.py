"""The one training loop shared by every task (M2S, the diffusion talker, the regressor baselines).

A task says *what* to train (:class:`Task`: model, datasets, loss, evaluation); :class:`TrainConfig`
says *how* (steps, batch, optimiser, schedule, EMA, logging, checkpoints); :func:`train` runs it::

    result = train(M2STask(...), TrainConfig(out="runs/m2s", steps=20_000, batch_size=16))

What a run leaves in ``out``::

    last/            checkpoint with the full training state (saved every ``save_every`` steps,
                     at the end, on Ctrl-C and when ``max_minutes`` runs out)
    best/            checkpoint of the best ``best_metric`` seen at evaluation (no training state;
                     only when the task has validation data, else a warning says there is none)
    metrics.jsonl    one JSON object per log or evaluation ({"step", "split", ...})
    tensorboard/     the same scalars for ``tensorboard --logdir out``

What a save killed mid-way leaves there (a ``.last.tmp-*`` folder, or ``last``/``best`` renamed
aside to ``.last.old-*``) is tidied when the run resumes and when it ends
(:func:`thunder3d.checkpoints.format.clean_stale`).

Data order. Batches come from :class:`StepBatchSampler`: the samples of optimizer step ``s`` are
the slice ``[s * G, (s + 1) * G)`` of an endless stream of per-epoch permutations of the dataset
seeded by ``(seed, epoch)``, where ``G = batch_size * grad_accum * world_size`` is the global batch;
each micro-step and rank takes its own ``batch_size`` piece of that slice. So the data a step sees
depends only on the seed and the step: a run resumed at step ``s`` sees exactly the batches an
uninterrupted run would have, and ``grad_accum`` / number of processes only regroup the same samples.
Datasets with ``set_epoch`` (like :class:`thunder3d.data.ClipDataset`) get the epoch of each item.

Randomness. The model is built after seeding with ``seed`` (same initial weights for any number
of processes); then each rank seeds ``seed + rank`` (dropout, augmentation in ``Task.loss``). The
RNG states of every rank are saved in ``last`` and restored on resume. Evaluation runs with its own
fixed seed and leaves the training RNG untouched.

Launching on several processes (PyTorch DDP; gloo on CPU, nccl on CUDA). ``batch_size`` is per
process, so the global batch is ``batch_size * grad_accum * nproc``. Rank 0 logs, evaluates and saves.

- one machine, N GPUs (or N CPU processes with ``--device cpu``)::

      torchrun --standalone --nproc_per_node N -m thunder3d train m2s --corpus DIR --output RUN ...

- several machines (run on each, ``--node_rank`` 0..M-1; ``MASTER`` is node 0's address, reachable
  from all, and ``--output`` must be on a filesystem every node can read for ``--resume``)::

      torchrun --nnodes M --node_rank K --nproc_per_node N \\
               --master_addr MASTER --master_port 29500 -m thunder3d train talker ... --output RUN

The same works from Python: any script calling :func:`train` can be started by ``torchrun``;
:func:`thunder3d.train.distributed.setup_distributed` reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from thunder3d.config import Config
from thunder3d.errors import CheckpointError, TrainError
from thunder3d.utils.io import atomic_write_text
from thunder3d.checkpoints.format import (
    CONFIG_FILE,
    Checkpoint,
    clean_stale,
    config_differences,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
)
from thunder3d.train.distributed import (
    DistInfo,
    all_gather_objects,
    any_rank,
    barrier,
    cleanup,
    setup_distributed,
)

LR_SCHEDULES = ("cosine", "constant")
BEST_MODES = ("min", "max")
PRECISIONS = ("fp32", "bf16")
RESERVED_CONFIG_KEYS = ("format_version", "files", "task", "model", "train", "step", "metrics")




# --------------------------------------------------------------------------- config
@dataclass
class TrainConfig(Config):
    """How to train (the task says what). ``0`` switches off the options that say so.

    Attributes:
        out: run folder (``last/``, ``best/``, ``metrics.jsonl``, ``tensorboard/``).
        steps: optimizer steps in total (a resumed run continues up to this number).
        batch_size: samples per micro-step *per process*.
        grad_accum: micro-steps per optimizer step.
        lr: peak learning rate (after the warm-up).
        min_lr: the floor the cosine schedule decays to (above ``lr``: no decay).
        warmup_steps: optimizer steps of linear warm-up to the peak learning rate.
        lr_schedule: ``cosine`` (to ``min_lr`` at ``steps``) or ``constant`` (after warm-up).
        weight_decay: AdamW decay of matrices; biases and norm weights (tensors < 2-D) get none.
        betas: AdamW betas.
        grad_clip: max global gradient norm (0 = no clipping; the norm is logged either way).
        ema_decay: decay of the EMA weights (0 = no EMA); evaluation and ``best`` use them.
        eval_every: evaluate every this many optimizer steps (0 = only at the end).
        save_every: save the last/ checkpoint every this many optimizer steps (0 = only at the end).
        log_every: log every this many optimizer steps.
        eval_batch_size: batch size of the validation loader (0 = ``batch_size``).
        seed: seeds the data order, the model initialisation and (``+ rank``) the training RNG.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (under torchrun, ``cuda`` is GPU LOCAL_RANK).
        precision: ``fp32`` or ``bf16`` (autocast of the task's loss).
        num_workers: DataLoader worker processes (0 = load in the training process).
        resume: continue the run in the output folder from its last/ checkpoint (starts fresh when there is none).
        init: fine-tune: a fresh run starts from this checkpoint's weights (its EMA weights when it
            has them) instead of a random initialisation; the optimizer, schedule and step start
            afresh. The checkpoint must be of the same task, and agree on everything the task
            stores besides the model and data settings (rig, normalisation); the model config may
            differ only where the weights do not (e.g. dropout, augmentation), or by submodules the
            model declares new (``init_optional``, e.g. the hybrid audio encoder's phone branch,
            which starts at zero). Ignored on resume.
        best_metric, best_mode: the evaluation metric that picks ``best/`` and ``min``/``max``.
        max_minutes: wall-clock budget of this process (0 = none); stops cleanly and saves.
        stop_at: stop cleanly (evaluate, save) once this step is reached (0 = run to ``steps``).
            The learning-rate schedule still spans ``steps``, so a long run can be trained in
            chunks: ``--resume`` with a later ``stop_at`` continues it exactly.
        progress: tqdm progress bar on the master process (else a log line every ``log_every``).
    """

    error = TrainError

    out: str = "runs/default"
    steps: int = 3000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 3e-5
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    eval_every: int = 250
    save_every: int = 250
    log_every: int = 10
    eval_batch_size: int = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    num_workers: int = 0
    resume: bool = False
    init: str = ""
    best_metric: str = "val_loss"
    best_mode: str = "min"
    max_minutes: float = 0.0
    stop_at: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = str(self.out)
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("best_mode", self.best_mode, BEST_MODES)
        _choice("precision", self.precision, PRECISIONS)
        for name in ("steps", "batch_size", "grad_accum", "log_every"):
            if int(getattr(self, name)) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "eval_batch_size", "num_workers", "stop_at"):
            if int(getattr(self, name)) < 0:
                raise TrainError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "max_minutes"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise TrainError(f"{name} must be a finite number >= 0, got {value}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise TrainError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise TrainError(f"betas must be two numbers in [0, 1), got {self.betas}")


    @property
    def global_batch(self) -> int:
        """Samples per optimizer step of one process (times the number of processes)."""
        return self.batch_size * self.grad_accum


def _choice(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise TrainError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


# --------------------------------------------------------------------------- task
class Task(abc.ABC):
    """What to train. Subclass it; the abstract methods are required, the others have defaults.

    ``name`` (e.g. ``"m2s"``, ``"talker"``) is stored in checkpoints and checked on resume.
    Set ``find_unused_parameters = True`` when some trainable parameters get no gradient in a step
    (only matters under DDP).
    """

    name: str = ""
    find_unused_parameters: bool = False

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A new model from this task's model config (the loop moves it to the device)."""

    @abc.abstractmethod
    def model_config(self) -> dict[str, Any]:
        """Plain JSON that rebuilds the model; saved as ``config.json["model"]``."""

    @abc.abstractmethod
    def train_dataset(self) -> Dataset:
        """Map-style dataset of training items (``set_epoch(epoch)`` is called when it exists)."""

    def val_dataset(self) -> Dataset | None:
        """Validation items, or None for no evaluation (then no ``best/`` checkpoint)."""
        return None

    def collate(self, items: Sequence[Any]) -> Any:
        """Items -> batch (default: :func:`torch.utils.data.default_collate`)."""
        return torch.utils.data.default_collate(items)

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Any, step: int) -> tuple[Tensor, Mapping[str, float]]:
        """Scalar loss of one micro-batch (already on the device) and named values to log.

        ``model`` may be a DDP wrapper: compute through ``model(...)`` (its ``forward``) so gradients
        are synchronised; reach the bare module with ``getattr(model, "module", model)`` only for
        work without trainable parameters. ``step`` is the optimizer step being computed (0-based).
        Log values may be floats or 0-d tensors; the loop averages them between log lines.
        """

    def evaluate(self, model: nn.Module, val_loader: Iterable[Any]) -> dict[str, float]:
        """Metrics on the validation set; must include ``TrainConfig.best_metric``.

        Runs on the master process only, under ``torch.no_grad()`` with the model in eval mode
        (EMA weights when enabled), batches already on the device and the RNG seeded with
        ``TrainConfig.seed`` (the same noise at every evaluation). Default: the mean of
        :meth:`loss` (called with ``step=-1``) and its logs over the batches, as ``val_loss`` and
        ``val_<name>``.
        """
        totals: dict[str, float] = {}
        count = 0
        for batch in val_loader:
            loss, logs = self.loss(model, batch, -1)
            for key, value in {"loss": loss, **dict(logs)}.items():
                totals[f"val_{key}"] = totals.get(f"val_{key}", 0.0) + float(value)
            count += 1
        return {k: v / max(count, 1) for k, v in totals.items()}

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter] | Iterable[dict]:
        """Parameters to optimise (default: those with ``requires_grad``), or AdamW param groups
        (dicts with ``params`` and e.g. their own ``lr``). Decay is split off per group."""
        return [p for p in model.parameters() if p.requires_grad]

    def checkpoint_config(self) -> dict[str, Any]:
        """More top-level ``config.json`` entries needed to use the model, e.g.
        ``{"rig": rig.config(), "normalizer": normalizer.to_dict(), "data": {...}}``.
        They are checked, with the task name and model config, on resume."""
        return {}

    def on_checkpoint(self, directory: Path, model: nn.Module, kind: str) -> None:
        """Write extra files into a checkpoint being built (``kind`` is ``last`` or ``best``).
        ``directory`` is the temporary folder that is renamed into place afterwards."""


# --------------------------------------------------------------------------- data order
class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches as a pure function of ``(seed, step, micro-step, rank)`` (module docstring).

    Yields lists of ``(epoch, index)`` for optimizer steps ``start_step .. steps - 1``, ``grad_accum``
    micro-batches each. Sample ``j`` of micro-step ``m`` on ``rank`` in step ``s`` is stream position
    ``start_sample + (s - start_step) * G + (m * world_size + rank) * batch_size + j`` whose epoch is
    ``position // n`` and whose index is ``perm(seed, epoch)[position % n]``.
    """

    def __init__(self, dataset_size: int, batch_size: int, *, steps: int, grad_accum: int = 1,
                 rank: int = 0, world_size: int = 1, seed: int = 0, start_step: int = 0,
                 start_sample: int | None = None) -> None:
        if dataset_size < 1:
            raise TrainError("the training dataset is empty")
        self.n = int(dataset_size)
        self.batch_size, self.grad_accum = int(batch_size), int(grad_accum)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed, self.steps, self.start_step = int(seed), int(steps), int(start_step)
        self.start_sample = self.start_step * self.global_batch if start_sample is None else int(start_sample)
        self._perm_epoch, self._perm = -1, np.arange(0)

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step over all ranks and micro-steps."""
        return self.batch_size * self.grad_accum * self.world_size

    def samples_seen(self, step: int) -> int:
        """Stream position after ``step`` optimizer steps (saved in checkpoints)."""
        return self.start_sample + (int(step) - self.start_step) * self.global_batch

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def items(self, step: int, micro: int) -> list[tuple[int, int]]:
        """``(epoch, index)`` of the micro-batch ``micro`` of optimizer step ``step`` on this rank."""
        first = self.samples_seen(step) + (micro * self.world_size + self.rank) * self.batch_size
        out = []
        for pos in range(first, first + self.batch_size):
            epoch = pos // self.n
            out.append((epoch, int(self.permutation(epoch)[pos % self.n])))
        return out

    def indices(self, step: int, micro: int) -> list[int]:
        """Dataset indices of :meth:`items`."""
        return [i for _, i in self.items(step, micro)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps):
            for micro in range(self.grad_accum):
                yield self.items(step, micro)

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.grad_accum


class _EpochItems(Dataset):
    """Wraps a dataset so that ``[(epoch, index)]`` sets the epoch (when it has ``set_epoch``)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._set_epoch = getattr(dataset, "set_epoch", None)
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if self._set_epoch is not None and epoch != self._epoch:
            self._set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


class _DeviceLoader:
    """Iterates a loader and moves each batch to ``device``."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device
        self.dataset = loader.dataset

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a nested dict/list/tuple batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not isinstance(batch, str):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


# --------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    evaluations are not dominated by the initial weights. Every rank keeps an identical copy
    (DDP keeps the parameters identical).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1.0 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise CheckpointError(f"EMA weights lack {missing[:5]}")
        for k in self.shadow:
            self.shadow[k].copy_(state[k])

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model`` (restored on exit)."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(backup)


# --------------------------------------------------------------------------- helpers
def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of each param group's learning rate at optimizer step ``step`` (0-based)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant" or cfg.lr == 0:
        return 1.0
    floor = min(cfg.min_lr, cfg.lr) / cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - floor)


def build_optimizer(params: Iterable[Any], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on tensors of 2+ dims only (no decay on biases and norms)."""
    groups = list(params)
    if not groups:
        raise TrainError("the task has no trainable parameters")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    split = []
    for group in groups:
        ps = [p for p in group["params"] if p.requires_grad]
        options = {k: v for k, v in group.items() if k != "params"}
        decay = options.pop("weight_decay", cfg.weight_decay)
        for chosen, wd in (([p for p in ps if p.dim() >= 2], decay), ([p for p in ps if p.dim() < 2], 0.0)):
            if chosen:
                split.append({**options, "params": chosen, "weight_decay": wd})
    if not split:
        raise TrainError("the task has no trainable parameters (all have requires_grad=False)")
    return torch.optim.AdamW(split, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                             fused=device.type == "cuda")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


@contextlib.contextmanager
def _preserved_rng(device: torch.device) -> Iterator[None]:
    saved = _rng_state(device)
    try:
        yield
    finally:
        _set_rng_state(saved, device)


class _Mean:
    """Running means of logged values (tensors are turned into floats only when read)."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            v = v.detach().float() if isinstance(v, Tensor) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: float(self.sums[k]) / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return out


def _mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Per-key mean over the ranks that logged the key (ranks may log different keys)."""
    gathered = all_gather_objects(values)
    if len(gathered) == 1:
        return values
    keys = sorted({k for g in gathered for k in g})  # type: ignore[union-attr]
    return {k: float(np.mean([g[k] for g in gathered if k in g])) for k in keys}  # type: ignore


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def _json_safe(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}


class _StopRequest:
    """First Ctrl-C asks the loop to stop after the current step (and save); a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: abort now
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step and saving last/ (Ctrl-C again to stop at once)", flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --------------------------------------------------------------------------- run folder
def read_run_config(out: str | os.PathLike) -> dict[str, Any] | None:
    """``config.json`` of ``out/last`` (for rebuilding a task before resuming), or None."""
    path = Path(out) / "last" / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from exc


def _check_out_folder(out: Path, identity: Mapping[str, Any]) -> None:
    """Refuse to start a fresh run in a folder that holds an earlier one (resume=False)."""
    present = [name for name in ("last", "best", "metrics.jsonl") if (out / name).exists()]
    if not present:
        return
    hint = ("pass --resume (resume=True) to continue it, or choose a new --output; "
            "earlier runs are never deleted")
    saved = read_run_config(out) if (out / "last" / CONFIG_FILE).is_file() else None
    if saved is None:
        raise TrainError(f"{out} already holds a run ({', '.join(present)}): {hint}")
    diffs = config_differences(saved, identity)
    if diffs:
        raise TrainError(f"{out} holds a different run (task {saved.get('task')!r} at step "
                         f"{saved.get('step')}; it was trained for " + "; for ".join(diffs)
                         + "): choose a new --output, or pass --resume only to continue that run")
    raise TrainError(f"{out} already holds a run of this task and model at step "
                     f"{saved.get('step')}: {hint}")


def _init_from(model: nn.Module, path: Path, identity: Mapping[str, Any], master: bool) -> None:
    """Load the weights of checkpoint ``path`` into ``model`` for fine-tuning (``TrainConfig.init``)."""
    init = load_checkpoint(path)
    if init.config.get("task") != identity["task"]:
        raise CheckpointError(f"--init {path}: a {init.config.get('task')!r} checkpoint, "
                              f"this is a {identity['task']!r} run")
    stored = {k: v for k, v in identity.items() if k not in ("task", "model", "data")}
    diffs = config_differences(init.config, stored)
    if diffs:
        raise CheckpointError(f"--init {path}: it was trained for " + "; for ".join(diffs))
    # submodules a model declares new (e.g. the hybrid encoder's phone branch) may be missing
    optional = [f"{name}.{sub}." if name else f"{sub}."
                for name, module in model.named_modules() for sub in getattr(module, "init_optional", ())]
    try:
        init.load_into(model, optional=optional)  # the EMA weights when it has them
    except RuntimeError as exc:  # a tensor of another shape: another architecture
        raise CheckpointError(f"--init {path} does not fit this model (another architecture?): "
                              + str(exc).splitlines()[0]) from None
    if master:
        print(f"initialised from {path} (step {init.config.get('step', '?')})", flush=True)


def _clean_run_folder(out: Path, say: bool = False) -> None:
    """Remove what interrupted checkpoint saves left in ``out`` (:func:`clean_stale`): stale
    ``.last.tmp-*`` / ``.best.tmp-*`` folders, and put back a ``last``/``best`` renamed aside.
    Never fails the run: a folder that cannot be tidied is left as it is."""
    try:
        removed = clean_stale(out)
    except (OSError, CheckpointError) as exc:
        warnings.warn(f"could not tidy {out} after an interrupted save: {exc}", stacklevel=2)
        return
    if say and removed:
        print(f"removed what interrupted saves left in {out}: {', '.join(p.name for p in removed)}", flush=True)


def _is_empty(dataset: Any) -> bool:
    try:
        return len(dataset) == 0
    except TypeError:  # an iterable-style dataset without a length
        return False


def _trim_metrics(path: Path, step: int) -> None:
    """Drop records after ``step`` (logged by a run that died after its last checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in kept))


# --------------------------------------------------------------------------- result
@dataclass
class TrainResult:
    """What :func:`train` returns. Every rank gets one; ``best_metric`` and ``metrics`` (the last
    evaluation) are known on rank 0 only, which also writes the checkpoints."""

    step: int
    best_metric: float | None
    best_step: int | None
    stopped: str  # "completed", "time_budget" or "stop_at"
    out: Path
    last: Path
    best: Path | None
    model: nn.Module = field(repr=False)
    ema: EMA | None = field(default=None, repr=False)
    metrics: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- the loop
def train(task: Task, cfg: TrainConfig) -> TrainResult:
    """Train ``task`` as ``cfg`` says; resumable, data-parallel under torchrun (module docstring)."""
    import torch.distributed as dist

    joined = dist.is_available() and dist.is_initialized()  # the caller's group: leave it alone
    try:
        info = setup_distributed(cfg.device)
    except ValueError as exc:
        raise TrainError(str(exc)) from exc
    try:
        return _train(task, cfg, info)
    finally:
        if not joined:
            cleanup()


def _train(task: Task, cfg: TrainConfig, info: DistInfo) -> TrainResult:
    started = time.monotonic()
    device, master = info.device, info.is_master
    out = Path(cfg.out)
    last_dir, best_dir = out / "last", out / "best"
    if not task.name:
        raise TrainError(f"{type(task).__name__}.name is empty: give the task a name")
    extra = dict(task.checkpoint_config())
    clash = sorted(set(extra) & set(RESERVED_CONFIG_KEYS))
    if clash:
        raise TrainError(f"checkpoint_config() may not set {clash} (reserved)")
    identity = {"task": task.name, "model": task.model_config(), **extra}

    # ---- where do we start: a fresh run or out/last
    if cfg.resume:  # first tidy what interrupted saves left (rank 0 only; the others wait)
        if master:
            _clean_run_folder(out, say=True)
        barrier()
    ckpt: Checkpoint | None = None
    if cfg.resume and last_dir.exists():
        ckpt = load_checkpoint(last_dir)
        diffs = config_differences(ckpt.config, identity)
        if diffs:
            raise CheckpointError(f"cannot resume {last_dir}: it was trained for " + "; for ".join(diffs)
                                  + "; choose a new --output for a different run")
    elif cfg.resume and list(out.glob(".last.old-*")):
        load_checkpoint(last_dir)  # raises, naming the copy an interrupted save left aside
    elif not cfg.resume:
        _check_out_folder(out, identity)

    # ---- model, optimizer, schedule, EMA (same initial weights on every rank)
    _seed_everything(cfg.seed)
    raw_model = task.build_model().to(device)
    if ckpt is None and cfg.init:
        _init_from(raw_model, Path(cfg.init), identity, master)
    optimizer = build_optimizer(task.trainable_parameters(raw_model), cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    ema = EMA(raw_model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    step, best_metric, best_step, samples_seen, data_seed = 0, None, None, 0, cfg.seed
    resumed_state: dict[str, Any] | None = None
    _seed_everything(cfg.seed + info.rank)
    if ckpt is not None:
        ckpt.load_into(raw_model, ema=False)
        state = resumed_state = load_training_state(ckpt, optimizer, scheduler)
        step = int(state["step"])
        if state.get("best_metric_name") == cfg.best_metric:  # else a new metric starts afresh
            best_metric, best_step = state.get("best_metric"), state.get("best_step")
        samples_seen = int(state["sampler"]["samples_seen"])
        data_seed = int(state["sampler"]["seed"])
        if ema is not None:
            if ckpt.ema_state_dict is not None:
                ema.load_state_dict(ckpt.ema_state_dict)
                ema.updates = int(state.get("ema_updates", step))
            else:
                ema = EMA(raw_model, cfg.ema_decay)
        rngs = state.get("rng") or []
        if len(rngs) == info.world_size:
            _set_rng_state(rngs[info.rank], device)
        else:  # another number of processes: fresh per-rank streams, still deterministic
            _seed_everything(cfg.seed + info.rank + 1000 * step)
        del ckpt
    model: nn.Module = raw_model
    if info.is_distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(raw_model, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=task.find_unused_parameters)

    # ---- data
    train_set = task.train_dataset()
    n_train = len(train_set)  # type: ignore[arg-type]
    if master and resumed_state is not None:
        print(f"resuming {last_dir} at step {step}", flush=True)
        if resumed_state["sampler"].get("dataset_size", n_train) != n_train:
            print(f"warning: the training set has {n_train} items, "
                  f"{resumed_state['sampler']['dataset_size']} when saved: the data order differs "
                  "from the interrupted run's", flush=True)
    sampler = StepBatchSampler(n_train, cfg.batch_size, steps=cfg.steps,
                               grad_accum=cfg.grad_accum, rank=info.rank, world_size=info.world_size,
                               seed=data_seed, start_step=step, start_sample=samples_seen)
    loader = DataLoader(_EpochItems(train_set), batch_sampler=sampler, collate_fn=task.collate,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.seed + info.rank))
    val_loader = None
    if master:
        val_set = task.val_dataset()
        if val_set is not None and _is_empty(val_set):
            val_set = None
        if val_set is None:
            warnings.warn(f"the {task.name} task has no validation data: no evaluation will run and no "
                          f"best/ checkpoint will be written in {out} (only last/)", stacklevel=3)
        if val_set is not None:
            val_loader = DataLoader(val_set, batch_size=cfg.eval_batch_size or cfg.batch_size,
                                    shuffle=False, collate_fn=task.collate, num_workers=cfg.num_workers,
                                    pin_memory=device.type == "cuda",
                                    generator=torch.Generator().manual_seed(cfg.seed))

    # ---- logging (master only)
    writer, pbar, metrics_path = None, None, out / "metrics.jsonl"
    if master:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            _trim_metrics(metrics_path, step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"), purge_step=step if cfg.resume else None)
        except ImportError:  # tensorboard missing: metrics.jsonl still has everything
            writer = None
        if cfg.progress and step < cfg.steps:
            from tqdm import tqdm

            pbar = tqdm(total=cfg.steps, initial=step, desc=f"train {task.name}", dynamic_ncols=True)

    def log(record: dict[str, Any]) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_json_safe_record(record)) + "\n")
        if writer is not None:
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, (int, float)):
                    writer.add_scalar(f"{record['split']}/{k}", v, record["step"])
            writer.flush()

    def say(text: str) -> None:
        (pbar.write if pbar is not None else print)(text)

    def checkpoint_config(metrics: Mapping[str, float] | None) -> dict[str, Any]:
        return {**identity, "train": cfg.to_dict(), "step": step, "metrics": _json_safe(metrics or {}),
                "world_size": info.world_size, "global_batch": sampler.global_batch}

    def save_last() -> None:
        rngs = all_gather_objects(rng_at_step)  # every rank's RNG state, in rank order
        if not master:
            return
        state = {"step": step, "epoch": sampler.samples_seen(step) // sampler.n,
                 "best_metric": best_metric, "best_step": best_step, "best_metric_name": cfg.best_metric,
                 "sampler": {"seed": data_seed, "samples_seen": sampler.samples_seen(step),
                             "global_batch": sampler.global_batch, "dataset_size": sampler.n},
                 "rng": rngs, "world_size": info.world_size,
                 "ema_updates": ema.updates if ema is not None else 0}
        save_checkpoint(last_dir, model=raw_model, config=checkpoint_config(last_metrics),
                        optimizer=optimizer, scheduler=scheduler, state=state, ema=ema,
                        write_extra=lambda d: task.on_checkpoint(d, raw_model, "last"))

    def evaluate() -> dict[str, float]:
        raw_model.eval()
        try:
            with _preserved_rng(device), torch.no_grad(), \
                    (ema.applied_to(raw_model) if ema is not None else contextlib.nullcontext()):
                _seed_everything(cfg.seed)  # the same randomness at every evaluation
                metrics = dict(task.evaluate(raw_model, _DeviceLoader(val_loader, device)))
        finally:
            raw_model.train()
        if cfg.best_metric not in metrics:
            raise TrainError(f"{type(task).__name__}.evaluate returned {sorted(metrics)} without the "
                             f"best metric {cfg.best_metric!r} (set TrainConfig.best_metric)")
        return {k: float(v) for k, v in metrics.items()}

    # ---- the loop: one optimizer step per iteration
    raw_model.train()
    batches = iter(loader)
    logged = _Mean()
    last_metrics: dict[str, float] = {}
    stopped, interrupted, in_update = "completed", False, False
    rng_at_step = _rng_state(device)
    t_log, steps_since_log = time.monotonic(), 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    try:
        with _StopRequest() as stop_request:
            while step < cfg.steps and not (cfg.stop_at and step >= cfg.stop_at):
                lr = optimizer.param_groups[0]["lr"]
                for micro in range(cfg.grad_accum):
                    batch = to_device(next(batches), device)
                    last_micro = micro == cfg.grad_accum - 1
                    sync = contextlib.nullcontext() if last_micro or not info.is_distributed \
                        else model.no_sync()  # type: ignore[operator]
                    with sync:  # gradients are all-reduced only on the last micro-step
                        with autocast:
                            loss, logs = task.loss(model, batch, step)
                        (loss / cfg.grad_accum).backward()
                    logged.add({"loss": loss, **dict(logs)})
                norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip or float("inf"))
                if not torch.isfinite(norm):
                    raise TrainError(f"non-finite gradient norm at step {step} (loss "
                                     f"{float(loss):.4g}); lower the lr or check the data; the last "
                                     f"checkpoint is {last_dir}")
                in_update = True
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if ema is not None:
                    ema.update(raw_model)
                in_update = False
                rng_at_step = _rng_state(device)  # what a checkpoint taken from here must restore
                steps_since_log += 1

                # stop together: every rank learns whether any rank ran out of time or got Ctrl-C
                time_up = cfg.max_minutes > 0 and time.monotonic() - started > cfg.max_minutes * 60
                time_up, interrupted = any_rank(time_up, stop_request.requested)
                stop = time_up or interrupted
                if time_up and not interrupted:
                    stopped = "time_budget"
                reached = bool(cfg.stop_at) and step == cfg.stop_at and step < cfg.steps
                if reached and not stop:
                    stopped = "stop_at"
                final = step == cfg.steps or reached or (stop and not interrupted)

                if step % cfg.log_every == 0 or final or stop:
                    values = _mean_over_ranks(logged.pop())
                    elapsed = time.monotonic() - t_log
                    t_log, n_steps, steps_since_log = time.monotonic(), steps_since_log, 0
                    if master:
                        record = {"step": step, "split": "train", **values, "lr": lr,
                                  "grad_norm": float(norm), "step_time_s": elapsed / max(n_steps, 1),
                                  "samples_per_s": sampler.global_batch * n_steps / max(elapsed, 1e-9)}
                        log(record)
                        if pbar is not None:
                            pbar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr:.2e}", refresh=False)
                        else:
                            say(f"step {step}/{cfg.steps} " + " ".join(
                                f"{k}={v:.4g}" for k, v in record.items() if k not in ("step", "split")))
                if pbar is not None:
                    pbar.update(1)

                if master and val_loader is not None and not interrupted and (
                        final or (cfg.eval_every and step % cfg.eval_every == 0)):
                    last_metrics = evaluate()
                    log({"step": step, "split": "val", **last_metrics})
                    value = last_metrics[cfg.best_metric]
                    if _is_better(value, best_metric, cfg.best_mode):
                        best_metric, best_step = value, step
                        save_checkpoint(best_dir, model=raw_model, config=checkpoint_config(last_metrics),
                                        ema=ema,
                                        write_extra=lambda d: task.on_checkpoint(d, raw_model, "best"))
                    best_note = "" if best_metric is None else \
                        f" (best {cfg.best_metric}={best_metric:.4g} at step {best_step})"
                    say(f"step {step} eval " + " ".join(f"{k}={v:.4g}" for k, v in last_metrics.items())
                        + best_note)

                if final or stop or (cfg.save_every and step % cfg.save_every == 0):
                    save_last()
                if interrupted:
                    raise KeyboardInterrupt
                if time_up:
                    if master:
                        say(f"time budget of {cfg.max_minutes:g} min used: stopped at step {step}, "
                            f"saved {last_dir}")
                    break
    except KeyboardInterrupt:
        # a stop requested by Ctrl-C was saved above; a hard interrupt in one process is saved
        # here when it did not land inside the weight update (state consistent with `step`)
        if not interrupted and not in_update and not info.is_distributed and step > 0:
            save_last()
            say(f"interrupted: saved {last_dir} at step {step}")
        raise
    finally:
        if pbar is not None:
            pbar.close()
        if writer is not None:
            writer.close()
        if master:
            _clean_run_folder(out)
    barrier()  # leave together: rank 0 may still be evaluating or saving
    return TrainResult(step=step, best_metric=best_metric, best_step=best_step, stopped=stopped,
                       out=out, last=last_dir, best=best_dir if best_step is not None else None,
                       model=raw_model, ema=ema, metrics=last_metrics)


def _json_safe_record(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in record.items()}


__all__ = [
    "EMA", "StepBatchSampler", "Task", "TrainConfig", "TrainError", "TrainResult", "build_optimizer",
    "lr_factor", "read_run_config", "to_device", "train",
]
