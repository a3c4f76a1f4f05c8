"""Two DDP processes on CPU (gloo) end with identical weights, equal to one process on the
doubled batch; the collectives of thunder3d.train.distributed work across ranks."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_loop import Regression, cfg  # noqa: E402  (the tiny task, shared)

from thunder3d.checkpoints import load_checkpoint  # noqa: E402
from thunder3d.train import all_reduce_mean, setup_distributed, train  # noqa: E402
from thunder3d.train.distributed import any_rank  # noqa: E402


def free_ports() -> int:
    """A port p such that p and p + 1 are free (two rendezvous in a row)."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two adjacent free ports")


def worker(rank: int, world_size: int, port: int, out: str) -> None:
    """One rank, as torchrun would start it: the environment says who it is."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    run = Path(out)
    task = Regression()
    result = train(task, cfg(run / "ddp", steps=4, batch_size=2, grad_accum=2, eval_every=2))
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
              str(run / f"rank{rank}.safetensors"))
    # the helpers, in a group of the caller's own (train() leaves such a group alone)
    os.environ["MASTER_PORT"] = str(port + 1)
    info = setup_distributed("cpu")
    mean = all_reduce_mean({"x": float(rank), "y": 10.0 * rank})
    flags = any_rank(rank == 1, False)
    (run / f"rank{rank}.json").write_text(json.dumps(
        {"mean": mean, "flags": flags, "rank": info.rank, "world": info.world_size,
         "seen": {str(k): v for k, v in task.seen.items()}}))
    from thunder3d.train import cleanup

    cleanup()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    mp.spawn(worker, args=(2, free_ports(), str(tmp_path)), nprocs=2, join=True)
    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k

    # each rank saw its own half of every global batch
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for step in map(str, range(4)):
        assert len(r0["seen"][step]) == 4 and not set(r0["seen"][step]) & set(r1["seen"][step])
    assert r0["mean"] == r1["mean"] == {"x": 0.5, "y": 5.0}
    assert r0["flags"] == r1["flags"] == [True, False]
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)

    # only rank 0 wrote the run; its checkpoint records the world size and global batch
    last = load_checkpoint(tmp_path / "ddp" / "last")
    assert last.step == 4 and last.config["world_size"] == 2 and last.config["global_batch"] == 8
    assert len(last.training_state["state"]["rng"]) == 2  # every rank's RNG state

    # one process with the doubled batch sees the same samples per step and ends at the same weights
    single = train(Regression(), cfg(tmp_path / "single", steps=4, batch_size=4, grad_accum=2,
                                     eval_every=2))
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(w0[k], v, rtol=0, atol=1e-6)
