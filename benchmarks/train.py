"""Talker training step time with and without the THUNDER loss (and for the regressor baseline).

    python benchmarks/train.py [--threads 2] [--batch 8] [--window 4] [--m2s RUN] [--json F]

A small corpus is synthesised into a temporary folder. Without ``--m2s``, an M2S of the default
size with random weights stands in for the frozen listener: the cost depends on its size, not its
values. One step = forward, loss, backward, AdamW update, on a fixed batch (median of repeats).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from common import print_table, timed

from thunder3d.data.synth import synthesize_corpus
from thunder3d.models.m2s import M2S, M2SConfig
from thunder3d.rigs import load_rig
from thunder3d.checkpoints import save_checkpoint
from thunder3d.train.talker import TalkerData, TalkerTask


def random_m2s(path: Path) -> Path:
    """An M2S checkpoint of the default training size (dim 192, 4 layers) with random weights."""
    rig = load_rig("builtin")
    cfg = M2SConfig.for_rig(rig, "mouth2s", dim=192, layers=4)
    save_checkpoint(path, model=M2S(cfg), config={"task": "m2s", "model": cfg.to_dict(),
                                                  "rig": rig.config()})
    return path


def step_ms(task: TalkerTask, batch: dict, repeats: int) -> float:
    torch.manual_seed(0)
    model = task.build_model().train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss, _ = task.loss(model, batch, 0)
        loss.backward()
        opt.step()

    return timed(step, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--window", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--m2s", type=Path, help="a trained M2S run (default: random weights, same size)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        synthesize_corpus(corpus, hours=0.05, seed=0, workers=1, progress=False, max_clips=40)
        m2s = str(args.m2s or random_m2s(Path(tmp) / "m2s"))
        base = dict(corpus=str(corpus), window_seconds=args.window, m2s=m2s)
        rows = []
        for label, extra in (("diffusion, no M2S loss", dict(lambda_m2s=0.0)),
                             ("diffusion + THUNDER loss", dict(lambda_m2s=0.1)),
                             ("regressor, no M2S loss", dict(lambda_m2s=0.0, deterministic=True)),
                             ("regressor + THUNDER loss", dict(lambda_m2s=0.1, deterministic=True))):
            task = TalkerTask(TalkerData(**base, **extra))
            items = [task.train_dataset()[i] for i in range(args.batch)]
            batch = task.collate(items)
            rows.append({"model": label, "step_ms": round(step_ms(task, batch, args.repeats), 1)})
    print(f"talker training step, batch {args.batch} x {args.window:g} s, builtin rig, "
          f"{args.threads} threads (median of {args.repeats})")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
