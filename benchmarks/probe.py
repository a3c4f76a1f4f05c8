"""How well frozen audio features tell mouth shapes apart on real speech: a linear probe.

    python benchmarks/probe.py --train runs/corpus_human --voices kokoro: --test runs/real [--json F]

A logistic-regression classifier (one linear layer, full batch, L2) over each frame's features with
``--context`` frames on each side learns five classes that lip-sync depends on, from the synthetic
corpus's frames (labels: the clips' own phone timings), and is scored on real recordings (labels:
forced alignment of their transcripts, what ``thunder3d data from-audio`` stores) by balanced recall:

    bilabial (P B M) · open (AA AE AO AW AY) · rounded (UW UH OW OY W) · other phones · silence

Features (``--features``): ``whisper`` (Whisper tiny.en's frozen encoder, 768 per frame) and
``logmel`` (the 80-bin log-mel, 4 frames stacked, 320 per frame, standardised). Training frames come
from the clips whose manifest voice starts with ``--voices`` (default: all), at most ``--clips``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

CLASSES = ("bilabial", "open", "rounded", "other", "silence")
_GROUPS = {"bilabial": {"P", "B", "M"}, "open": {"AA", "AE", "AO", "AW", "AY"},
           "rounded": {"UW", "UH", "OW", "OY", "W"}}


def frame_classes(clip) -> np.ndarray:
    """``[T]`` class index of each frame from the clip's phones (the phone at the frame centre)."""
    from thunder3d.audio.phones import to_frame_labels
    from thunder3d.audio.phones import PHONES

    labels = to_frame_labels(clip.phones, clip.num_frames, fps=25)
    out = np.full(clip.num_frames, CLASSES.index("other"))
    for t, k in enumerate(labels):
        phone = PHONES[k] if 0 <= k < len(PHONES) else "SIL"
        if phone == "SIL":
            out[t] = CLASSES.index("silence")
        for name, group in _GROUPS.items():
            if phone in group:
                out[t] = CLASSES.index(name)
    return out


def features(clip, kind: str) -> np.ndarray:
    """``[T, F]`` frame features of a clip."""
    if kind == "whisper":
        from thunder3d.audio.whisper import whisper_features

        with torch.no_grad():
            return whisper_features(clip.audio, clip.num_frames).numpy()
    from thunder3d.audio.features import log_mel

    mel = log_mel(np.pad(clip.audio, (0, max(0, clip.num_frames * 640 - clip.audio.size)))).numpy()
    mel = mel[: clip.num_frames * 4].reshape(clip.num_frames, -1)
    return (mel - mel.mean(0)) / (mel.std(0) + 1e-3)  # per-utterance standardisation


def with_context(x: np.ndarray, k: int) -> np.ndarray:
    """``[T, F]`` -> ``[T, (2k + 1) F]``: each frame with its ``k`` neighbours on each side (edges repeated)."""
    padded = np.pad(x, ((k, k), (0, 0)), mode="edge")
    return np.concatenate([padded[i: i + len(x)] for i in range(2 * k + 1)], axis=1)


def dataset(corpus: Path, kind: str, voices: str | None, limit: int, context: int, split: str | None):
    from thunder3d.data.clip import corpus_clips, load_clip, read_manifest

    ids = corpus_clips(corpus, split)
    if voices:
        by_id = {e["id"]: str(e.get("voice") or "") for e in read_manifest(corpus)}
        ids = [i for i in ids if by_id.get(i, "").startswith(voices)]
    xs, ys = [], []
    for cid in ids[: limit or None]:
        clip = load_clip(corpus, cid)
        xs.append(with_context(features(clip, kind), context))
        ys.append(frame_classes(clip))
    if not xs:
        raise SystemExit(f"no clips in {corpus} (voices {voices!r})")
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def fit(x: np.ndarray, y: np.ndarray, steps: int = 300, weight_decay: float = 1e-3, seed: int = 0):
    """A class-balanced linear classifier (LBFGS on the full batch); returns ``(mean, std, layer)``."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y).long()
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float32)
    weights = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / len(CLASSES))
    layer = torch.nn.Linear(x.shape[1], len(CLASSES))
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xt), yt, weight=weights)
        loss = loss + weight_decay * layer.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, layer


def balanced_recall(model, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    mean, std, layer = model
    with torch.no_grad():
        pred = layer(torch.from_numpy((x - mean) / std)).argmax(-1).numpy()
    recalls = {c: float((pred[y == i] == i).mean()) for i, c in enumerate(CLASSES) if (y == i).any()}
    return float(np.mean(list(recalls.values()))), recalls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, required=True, help="synthetic corpus the probe learns from")
    p.add_argument("--voices", default=None, help="only its clips whose voice starts with this (e.g. kokoro:)")
    p.add_argument("--split", default="train", help="split of the training corpus (default train)")
    p.add_argument("--clips", type=int, default=80, help="at most this many training clips (default 80)")
    p.add_argument("--test", type=Path, required=True, help="corpus of real recordings (data from-audio)")
    p.add_argument("--features", nargs="+", default=["whisper", "logmel"], choices=("whisper", "logmel"))
    p.add_argument("--context", type=int, default=2, help="neighbouring frames on each side (default 2)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    rows = {}
    for kind in args.features:
        x, y = dataset(args.train, kind, args.voices, args.clips, args.context, args.split)
        xt, yt = dataset(args.test, kind, None, 0, args.context, None)
        score, per_class = balanced_recall(fit(x, y), xt, yt)
        rows[kind] = {"balanced_recall": score, "recall": per_class, "train_frames": int(len(y)),
                      "test_frames": int(len(yt))}
        print(f"{kind:8s} balanced recall on {args.test.name}: {score:.3f}  "
              + "  ".join(f"{c} {r:.2f}" for c, r in per_class.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "results": rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
