"""Assemble docs/results/m2s.md from ``thunder3d eval m2s -o`` JSON files and the runs' metrics.

    python docs/results/make_m2s_table.py EVAL_mouth2s.json EVAL_face2s.json EVAL_exp2s.json \\
        --runs RUN_mouth2s RUN_face2s RUN_exp2s -o docs/results/m2s.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CURVE = ("0", "±1", "±2", "±4", "±8", "mismatched", "neutral")


def run_summary(run: Path) -> dict:
    """Steps, training minutes (sum of logged step times) and best validation figures of a run."""
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    elapsed, prev = 0.0, 0
    for r in rows:
        if "step_time_s" in r:
            elapsed += r["step_time_s"] * (r["step"] - prev)
            prev = r["step"]
    evals = [r for r in rows if "val_mel_l1" in r]
    best = min(evals, key=lambda r: r["val_mel_l1"]) if evals else {}
    return {"steps": prev, "minutes": elapsed / 60, "best_step": best.get("step"),
            "val_mel_l1": best.get("val_mel_l1"), "val_margin": best.get("val_sync_margin")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("evals", type=Path, nargs="+")
    ap.add_argument("--runs", type=Path, nargs="*", default=[])
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--header", type=Path, help="markdown to put above the tables")
    args = ap.parse_args()
    results = [json.loads(p.read_text()) for p in args.evals]
    runs = {str(r): run_summary(r) for r in args.runs}
    lines = [args.header.read_text().rstrip() + "\n"] if args.header else []
    lines += ["| input | steps | train min | test mel L1 | cosine | phone acc | "
              + " | ".join(f"loss({c})" for c in CURVE) + " | criterion |",
              "|" + "---|" * (7 + len(CURVE))]
    for res in results:
        run = next((v for k, v in runs.items() if Path(k).name in res["checkpoint"]), {})
        curve = res["sync_curve"]
        ok = sum(res["criterion"].values())
        lines.append(
            f"| {res['input']} | {run.get('steps', '?')} | {run.get('minutes', float('nan')):.0f} | "
            f"{res['mel_l1']:.3f} | {res['cosine']:.3f} | {res['phone_accuracy'] or float('nan'):.3f} | "
            + " | ".join(f"{curve[c]:.3f}" for c in CURVE)
            + f" | {ok}/{len(res['criterion'])} |")
    lines.append("")
    lines.append("Criterion checks per model (issue 4): " + "; ".join(
        f"{res['input']}: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in res["criterion"].items())
        for res in results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(args.output.read_text())


if __name__ == "__main__":
    main()
