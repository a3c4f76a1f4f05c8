"""M2S cost: forward+backward for a batch of 16 x 100 frames (rig included), per input variant,
and the time a training run took to meet the sync criterion (read from its metrics).

    python benchmarks/m2s.py [--threads 2] [--dim 192 --layers 4] [--runs runs/m2s_mouth2s ...] [--json F]

The forward+backward figure uses the built-in rig and random coefficients (timing depends on sizes,
not values). For ``--runs``, the time to criterion is the wall time of the first evaluation whose
checkpoint met it, as recorded in ``metrics.jsonl`` (run ``thunder3d eval m2s`` on the checkpoint to
confirm it on the test split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import print_table, timed

from thunder3d.audio.features import log_mel
from thunder3d.models.m2s import M2S, M2S_INPUTS, M2SConfig, freeze, rig_features
from thunder3d.rigs import load_rig


def bench_variant(rig, variant: str, dim: int, layers: int, batch: int, frames: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = M2S(M2SConfig.for_rig(rig, variant, dim=dim, layers=layers))
    coeffs = torch.rand(batch, frames, rig.num_coeffs) * 0.5
    target = log_mel(torch.randn(batch, frames * 640) * 0.1)

    def train_step():
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            feats = rig_features(rig, coeffs, variant)
        model.mel_loss(model(feats).mel, target).backward()

    frozen = freeze(M2S(M2SConfig.for_rig(rig, variant, dim=dim, layers=layers)))
    x = coeffs.clone().requires_grad_()

    def loss_step():  # the frozen M2S as a loss: gradient to the coefficients through the rig
        x.grad = None
        frozen.mel_loss(frozen(rig_features(rig, x, variant)).mel, target).backward()

    return {"input": variant, "params_M": round(model.num_parameters() / 1e6, 2),
            "train_fwd_bwd_ms": round(timed(train_step, repeats), 1),
            "frozen_loss_fwd_bwd_ms": round(timed(loss_step, repeats), 1)}


def time_to_criterion(run: Path) -> dict:
    """Best validation evaluation of a run and the training time to reach it (from ``metrics.jsonl``:
    the sum of the logged per-step times; evaluation time is not counted)."""
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    elapsed, prev_step, at_step = 0.0, 0, {}
    for r in rows:
        if "step_time_s" in r:
            elapsed += r["step_time_s"] * (r["step"] - prev_step)
            prev_step = r["step"]
        at_step[r["step"]] = elapsed
    evals = [r for r in rows if "val_mel_l1" in r]
    out = {"run": str(run), "evaluations": len(evals)}
    if evals:
        best = min(evals, key=lambda r: r["val_mel_l1"])
        out.update(best_step=best["step"], best_val_mel_l1=round(best["val_mel_l1"], 4),
                   best_val_sync_margin=round(best.get("val_sync_margin", float("nan")), 4),
                   train_minutes_to_best=round(at_step.get(best["step"], elapsed) / 60, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs", type=Path, nargs="*", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rig = load_rig("builtin")
    rows = [bench_variant(rig, v, args.dim, args.layers, args.batch, args.frames, args.repeats)
            for v in M2S_INPUTS]
    print(f"M2S forward+backward, batch {args.batch} x {args.frames} frames, builtin rig, "
          f"dim {args.dim}, {args.layers} layers, {args.threads} threads (median of {args.repeats})")
    print_table(rows)
    runs = [time_to_criterion(r) for r in args.runs]
    if runs:
        print()
        print_table(runs)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "variants": rows, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
