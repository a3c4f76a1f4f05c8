"""Does ``thunder3d audit`` rank tracks as it should? True motion vs the same motion late vs a still face.

    python benchmarks/audit_check.py --corpus runs/corpus_human --split test --clips 60 --json audit_check.json

For each of the first ``--clips`` clips of ``--split`` (their phones are the corpus's aligned ones), the
audit of its ground-truth track, of that track shifted by ``--late-ms`` (the first frame held) and of a
still face at rest, with the shipped listener (or ``--listener``). Prints the mean score and each term,
and how often the true track scores above the two others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _ids(corpus: Path, split: str) -> list[str]:
    from thunder3d.data.clip import corpus_clips
    from thunder3d.errors import DataError

    try:
        return corpus_clips(corpus, split)
    except DataError:  # a corpus without that split
        return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="test", help="train, val, test or all")
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--late-ms", type=float, default=240.0)
    ap.add_argument("--listener", default="builtin")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    from thunder3d.checkpoints import load_listener
    from thunder3d.data.clip import load_clip
    from thunder3d.eval.audit import audit_track

    listener, rig = load_listener(a.listener)
    shift = max(1, round(a.late_ms / 40.0))
    splits = ("train", "val", "test") if a.split == "all" else (a.split,)
    ids = [c for split in splits for c in _ids(a.corpus, split)][: a.clips or None]
    reports: dict[str, list[dict]] = {"true": [], "late": [], "still": []}
    for cid in ids:
        clip = load_clip(a.corpus, cid)
        gt = clip.coeffs
        tracks = {"true": gt, "late": np.concatenate([np.repeat(gt[:1], shift, axis=0), gt[:-shift]]),
                  "still": np.zeros_like(gt)}
        for name, track in tracks.items():
            reports[name].append(audit_track(rig, track, clip.audio, clip.phones, listener=listener))
    summary = {}
    for name, rs in reports.items():
        terms = {k: float(np.mean([r["terms"][k] for r in rs if r["terms"][k] is not None]))
                 for k in rs[0]["terms"]}
        summary[name] = {"score": float(np.mean([r["score"] for r in rs])), **terms}
    wins = {other: float(np.mean([t["score"] > o["score"] for t, o in zip(reports["true"], reports[other])]))
            for other in ("late", "still")}
    print(f"{'track':6s} {'score':>6s} " + " ".join(f"{k:>9s}" for k in summary["true"] if k != "score"))
    for name, row in summary.items():
        print(f"{name:6s} {row['score']:6.3f} " + " ".join(f"{v:9.3f}" for k, v in row.items() if k != "score"))
    print(f"true scores above late in {wins['late']:.0%} of {len(ids)} clips, above still in {wins['still']:.0%}")
    if a.json is not None:
        a.json.write_text(json.dumps({"corpus": str(a.corpus), "split": a.split, "clips": len(ids),
                                      "late_ms": shift * 40.0, "listener": a.listener, "mean": summary,
                                      "true_wins": wins}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
