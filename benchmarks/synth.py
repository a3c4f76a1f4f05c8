"""Synthetic corpus throughput: generate N minutes of corpus and report hours per 5 minutes.

    python benchmarks/synth.py [--minutes 10] [--workers 2] [--seed 0] [--out DIR] [--keep]
                               [--no-augment] [--voices en-us,festival:cmu_us_slt_arctic_hts]
                               [--json out.json]

The corpus goes to a temporary folder (removed afterwards unless --out/--keep). Wall time covers
everything `thunder3d data synth` does: planning, speech synthesis, augmentation, articulation,
expression, writing clips and the manifest. The target of issue 3 is >= 1 hour of corpus in
<= 5 minutes on 2 cores, i.e. "hours per 5 min" >= 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from thunder3d.audio.augment import AugmentConfig
from thunder3d.data.synth import synthesize_corpus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of speech to plan")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="corpus folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary corpus")
    ap.add_argument("--no-augment", action="store_true", help="clean speech (no augmentation)")
    ap.add_argument("--voices", default=None, help="comma-separated voices (default: espeak English)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="thunder3d-synth-bench-"))
    voices = args.voices.split(",") if args.voices else None
    t0 = time.perf_counter()
    report = synthesize_corpus(out, hours=args.minutes / 60.0, seed=args.seed, workers=args.workers,
                               augment=AugmentConfig.none() if args.no_augment else None,
                               voices=voices, progress=False)
    wall = time.perf_counter() - t0
    hours = report.generated_seconds / 3600.0
    result = {
        "clips": report.generated, "skipped": report.skipped, "failed": len(report.failed),
        "audio_hours": round(hours, 4), "wall_seconds": round(wall, 2),
        "hours_per_5min": round(hours / wall * 300.0, 2) if wall > 0 else None,
        "clips_per_second": round(report.generated / wall, 2) if wall > 0 else None,
        "workers": args.workers, "augment": not args.no_augment,
        "splits": report.splits, "cpu_count": os.cpu_count(), "python": platform.python_version(),
    }
    rows = [("clips", result["clips"]), ("audio hours", f"{hours:.4f}"),
            ("wall seconds", f"{wall:.1f}"), ("hours per 5 min", result["hours_per_5min"]),
            ("clips per second", result["clips_per_second"]), ("workers", args.workers),
            ("splits", " ".join(f"{k}={v}" for k, v in report.splits.items()))]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if report.failed:
        print(f"failed clips: {report.failed[:5]}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.out is None and not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    elif args.out is None:
        print(f"corpus kept in {out}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
