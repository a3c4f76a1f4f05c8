"""Process-group setup for data-parallel training, read from the variables torchrun sets.

A plain ``python`` run is a single process (rank 0 of 1). Under ``torchrun`` each process reads
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT`` for the
rendezvous), joins a process group — ``nccl`` when it trains on CUDA, ``gloo`` on CPU — and, on
CUDA, uses GPU ``LOCAL_RANK`` of its node. See :mod:`thunder3d.train.loop` for launch commands.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.distributed as dist

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_owned_group = False  # True when setup_distributed created the process group (cleanup destroys it)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_master(self) -> bool:
        """True on global rank 0: the process that logs, evaluates and saves."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (GPU ``local_rank``) if available, else CPU; ``cpu``, ``cuda``, ``cuda:N``
    and ``mps`` are taken as given, with a clear error when that device is absent."""
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was asked for but is not available here")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available "
                             "(use --device cpu or auto)")
        index = local_rank if name == "cuda" else int(name.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise ValueError(f"device cuda:{index} was asked for but only "
                             f"{torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", index)
    raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICE_CHOICES)}")


def setup_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment, or run as a single process.

    With ``WORLD_SIZE`` > 1 the process group is initialised (``nccl`` for CUDA, ``gloo``
    otherwise) unless the caller did it already. Under torchrun, ``cuda`` means GPU ``LOCAL_RANK``.
    """
    global _owned_group
    if "RANK" not in os.environ:
        return DistInfo(device=resolve_device(device))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        # a generous timeout: ranks wait while rank 0 evaluates and saves
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=30))
        _owned_group = True
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup() -> None:
    """Leave the process group if :func:`setup_distributed` created it."""
    global _owned_group
    if _owned_group and dist.is_initialized():
        dist.destroy_process_group()
    _owned_group = False


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: Mapping[str, float]) -> dict[str, float]:
    """Mean of each value over all processes (identity in a single process).

    Every rank must call it with the same keys (they are sorted, so order does not matter).
    """
    if not is_distributed():
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def any_rank(*flags: bool) -> Any:
    """Each flag made true on every rank if it is true on any (one collective for all flags);
    returns a bool for one flag, a tuple for several. Used to stop all ranks together."""
    if is_distributed():
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flags = tuple(bool(v > 0) for v in t.tolist())
    else:
        flags = tuple(bool(f) for f in flags)
    return flags[0] if len(flags) == 1 else flags


def all_gather_objects(obj: object) -> list[object]:
    """``obj`` from every rank, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


__all__ = [
    "DistInfo", "all_gather_objects", "all_reduce_mean", "any_rank", "barrier", "cleanup",
    "is_distributed", "resolve_device", "setup_distributed",
]
