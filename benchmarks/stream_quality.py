"""Lip-sync of streamed animation against the offline model's, on the same clips (choose stream settings).

    python benchmarks/stream_quality.py [--model RUN] --corpus runs/real [--split all] \\
        --configs "lookahead_ms=120,block=2,steps=4" "lookahead_ms=80,block=4,steps=4" [--samples 3] [--json F] \\
        [--stream-model NAME=RUN ...]

For each stream configuration every clip is streamed through :class:`thunder3d.inference.streaming.Stream`
(in-process, 20 ms chunks: the frames the server would send) with ``--samples`` seeds, written as
``<clip_id>.npz`` predictions and scored by ``thunder3d eval talker``'s code (closure, open-vowel rate,
sync lag; LVE and L-PCC where the clips have ground truth); the offline model (``Animator.animate``,
the model's own guidance, ``--steps``) is scored on the same clips. ``--stream-model NAME=RUN`` streams
other talkers too (e.g. a streaming variant), each with every configuration, against the same offline
reference. CPU is the stream's compute time per
second of audio (one thread unless ``--threads``). The acceptance line: streamed closure within 0.05 of
the offline closure on held-out real speech.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_table


def parse_config(text: str) -> dict:
    values = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        values[key.strip()] = float(value) if key.strip() in ("lookahead_ms", "guidance") else int(value)
    return values


def stream_predictions(animator, clips, config, samples: int, folder: Path) -> float:
    """Write each clip's streamed samples to ``folder/<id>.npz``; the compute seconds per audio second."""
    from thunder3d.inference.streaming import Stream

    folder.mkdir(parents=True, exist_ok=True)
    busy = audio = 0.0
    for clip in clips:
        runs = []
        for seed in range(samples):
            stream = Stream(animator, config, seed=seed)
            t0 = time.process_time()
            parts = [stream.push(clip.audio[i:i + 320]) for i in range(0, clip.audio.size, 320)]
            parts.append(stream.end())
            busy += time.process_time() - t0
            audio += clip.audio.size / 16000
            x = np.concatenate(parts)[: clip.num_frames]
            runs.append(np.pad(x, ((0, clip.num_frames - len(x)), (0, 0)), mode="edge"))  # within one frame
        np.savez(folder / f"{clip.id}.npz", coeffs=np.stack(runs), coeff_names=np.array(animator.names))
    return busy / audio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin", help="a talker that reads no recognised phones (default: the shipped model)")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--split", default="all")
    p.add_argument("--voice", default=None, help="only clips of this voice (prefix), e.g. kokoro:")
    p.add_argument("--clips", type=int, default=0, help="at most this many clips (0: all)")
    p.add_argument("--configs", nargs="+", default=["lookahead_ms=120,block=2,steps=4"])
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="DDIM steps of the offline reference (default: the model's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stream-model", action="append", default=[], metavar="NAME=RUN",
                   help="also stream this talker with every configuration (repeatable)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    bad = [item for item in args.stream_model if not item.partition("=")[0] or not item.partition("=")[2]]
    if bad:
        p.error(f"--stream-model takes NAME=RUN, got {bad[0]!r}")
    stream_models = dict(item.split("=", 1) for item in args.stream_model)
    if len(stream_models) != len(args.stream_model):
        p.error(f"--stream-model names must differ, got {[item.split('=', 1)[0] for item in args.stream_model]}")
    torch.set_num_threads(args.threads)

    from thunder3d.data.clip import load_clip
    from thunder3d.inference import Animator
    from thunder3d.inference.streaming import StreamConfig
    from thunder3d.scoring import score_talker, select_clips

    animator = Animator.from_pretrained(args.model, device="cpu")
    ids = select_clips(args.corpus, args.split, voice=args.voice, limit=args.clips)
    clips = [load_clip(args.corpus, i) for i in ids]
    keys = ("closure", "open_vowel", "lag_ms", "lve", "lpcc")

    def row(name: str, result: dict, cpu: float | None) -> dict:
        mean = result["mean"]
        out = {"system": name}
        out.update({k: (None if mean.get(k) is None else round(float(mean[k]), 3)) for k in keys})
        out["cpu_s_per_s"] = None if cpu is None else round(cpu, 3)
        return out

    rows = []
    steps = animator.default_steps if args.steps is None else args.steps
    _, offline = score_talker("model", args.corpus, source=animator.path, split=args.split, voice=args.voice,
                              clips=args.clips, samples=args.samples, steps=steps, progress=False)
    rows.append(row(f"offline (steps {steps}, guidance {animator.default_guidance:g})", offline, None))
    streamers = [("", animator)] + [(f"[{name}] ", Animator.from_pretrained(path, device="cpu"))
                                    for name, path in stream_models.items()]
    with tempfile.TemporaryDirectory() as tmp:
        for m, (label, streamer) in enumerate(streamers):
            for k, text in enumerate(args.configs):
                config = StreamConfig(**parse_config(text))
                folder = Path(tmp) / f"model{m}_config{k}"
                cpu = stream_predictions(streamer, clips, config, args.samples, folder)
                _, result = score_talker("predictions", args.corpus, source=folder, split=args.split,
                                         voice=args.voice, clips=args.clips, progress=False)
                rows.append(row(f"stream {label}{text}", result, cpu))
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "corpus": str(args.corpus), "split": args.split,
                                         "voice": args.voice, "clips": len(clips), "samples": args.samples,
                                         "stream_models": stream_models,
                                         "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
