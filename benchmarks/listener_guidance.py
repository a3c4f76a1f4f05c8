"""Sampling with the listener against plain sampling and classifier-free guidance: lip metrics,
diversity and time on held-out clips (``docs/results/thunder_effect.md``, "Beyond the paper").

    python benchmarks/listener_guidance.py --corpus runs/corpus_human --clips 40 \\
        --json docs/results/listener_guidance.json

Each row is one :func:`thunder3d.scoring.score_talker` run of ``--model`` (default: the shipped model)
on the first ``--clips`` clips of ``--split`` with ``--samples`` samples, seeded with ``--seed``:

=================  ==============================================================================
plain              the model's own defaults (its recommended audio guidance and DDIM steps)
cfg g=G            classifier-free audio guidance G instead (``--cfg``)
guided s=S         listener guidance, step S per DDIM step (``--strengths``)
guided s=S sm t    the same with the gradient smoothed over ``--smooth`` frames and only at t <= ``--t-max``
best of K          K draws per sample, the listener keeps the most in sync (``--candidates``)
=================  ==============================================================================

The listener is ``--listener`` (default: the one shipped in the package). It also judges the
re-ranking, so a separate held-out judgement is given by the grounded closure rate and the metrics
against ground truth (LVE, L-PCC), which the listener never sees. Time is the wall time per second
of speech per sample (2 cores, 1 thread per the machine's load).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--model", default=None, help="talker (default: the shipped model)")
    ap.add_argument("--listener", default="builtin", help="M2S listener (default: the shipped one)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cfg", type=float, nargs="*", default=[1.0, 2.5])
    ap.add_argument("--strengths", type=float, nargs="*", default=[0.05, 0.15, 0.4])
    ap.add_argument("--candidates", type=int, nargs="*", default=[4])
    ap.add_argument("--smooth", type=float, default=3.0)
    ap.add_argument("--t-max", type=int, default=300)
    ap.add_argument("--smoothed-strengths", type=float, nargs="*", default=[0.02, 0.05])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    import torch

    from thunder3d.inference.animator import PRETRAINED_DIR
    from thunder3d.scoring import score_talker

    torch.set_num_threads(a.threads)
    model = a.model or str(PRETRAINED_DIR)
    rows = [("plain", {})]
    rows += [(f"cfg g={g:g}", {"guidance": g}) for g in a.cfg]
    rows += [(f"guided s={s:g}", {"listener": a.listener, "listener_strength": s}) for s in a.strengths]
    rows += [(f"guided s={s:g} sm{a.smooth:g} t<={a.t_max}",
              {"listener": a.listener, "listener_strength": s, "guide_options": {"smooth": a.smooth, "t_max": a.t_max}})
             for s in a.smoothed_strengths]
    rows += [(f"best of {k}", {"listener": a.listener, "candidates": k}) for k in a.candidates]
    results = []
    print(f"{'system':28s} {'LVE mm':>8s} {'L-PCC':>7s} {'S-DIV-U':>8s} {'closure':>8s} {'s/s':>6s}")
    for name, options in rows:
        t0 = time.perf_counter()
        _, result = score_talker("model", a.corpus, source=model, split=a.split, clips=a.clips, samples=a.samples,
                                 seed=a.seed, m2s=None, progress=False, **options)
        took = time.perf_counter() - t0
        mean = result["mean"]
        seconds = mean["frames"] / 25.0 if mean.get("frames") else float("nan")
        row = {"system": name, **options, "lve_mm": mean["lve"], "lpcc": mean["lpcc"], "sdiv_u_mm": mean["sdiv_u"],
               "closure": mean.get("closure"), "clips": mean["clips"], "samples": a.samples,
               "seconds_per_speech_second": took / (seconds * a.samples) if seconds else None}
        results.append(row)
        print(f"{name:28s} {row['lve_mm']:8.3f} {row['lpcc']:7.3f} {row['sdiv_u_mm']:8.4f} "
              f"{row['closure'] or float('nan'):8.3f} {row['seconds_per_speech_second']:6.3f}", flush=True)
    if a.json is not None:
        a.json.write_text(json.dumps({"model": model, "listener": a.listener, "corpus": str(a.corpus),
                                      "split": a.split, "clips": a.clips, "samples": a.samples, "seed": a.seed,
                                      "rows": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
