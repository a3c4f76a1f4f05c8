"""The one training loop shared by every task: checkpoints, resume, DDP, logging, progress.

- :mod:`~thunder3d.train.loop`: :class:`Task` (what to train), :class:`TrainConfig` (how),
  :func:`train` (runs it; launch docs for ``torchrun`` in its module docstring).
- :mod:`~thunder3d.checkpoints`: safetensors + JSON checkpoint directories, written
  atomically; :func:`load_checkpoint` with ``expect=`` checks.
- :mod:`~thunder3d.train.distributed`: process-group setup from torchrun's environment.
"""

from thunder3d.train.distributed import DistInfo, all_reduce_mean, cleanup, setup_distributed
from thunder3d.train.loop import (
    EMA,
    StepBatchSampler,
    Task,
    TrainConfig,
    TrainError,
    TrainResult,
    read_run_config,
    train,
)

__all__ = [
    "DistInfo", "EMA", "StepBatchSampler", "Task", "TrainConfig", "TrainError", "TrainResult",
    "all_reduce_mean", "cleanup", "read_run_config", "setup_distributed", "train",
]
