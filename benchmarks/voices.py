"""Lip-sync across kinds of voices: one table of talkers on espeak, festival ``ked``, held-out Kokoro
voices and real recordings (the "hear human voices" acceptance figures), resumable.

    python benchmarks/voices.py --corpus runs/corpus_human --real runs/real \\
        --model v5=thunder3d/assets/pretrained/thunder-builtin --model whisper=runs/whisper \\
        --work runs/voices --json docs/results/voices.json --markdown docs/results/voices.md

Sets (``--sets``, default all that the corpora hold):

========  =================================================================================
espeak    the corpus's ``--split`` clips spoken by espeak voices (held-out timbres)
ked       its clips of festival's ``ked_diphone`` (held out: bind it with ``@test`` when synthesising)
kokoro    its clips of Kokoro voices (held-out voicepacks: bind them with ``@val``/``@test``)
real      every clip of ``--real`` (``thunder3d data from-audio`` of recordings with transcripts, e.g.
          the LibriVox ones of Debian's pocketsphinx-testdata): only the ground-truth-free columns count
========  =================================================================================

Each cell is one ``thunder3d eval talker`` run (:func:`thunder3d.scoring.score_talker`): ``--samples``
samples with the model's own DDIM steps and guidance unless ``--steps`` / ``--guidance``, seeded with
``--seed``. Results are cached in ``WORK/<model>/<set>.json`` and reused when the model's files and
the settings are unchanged. The table gives closure, open-vowel rate and sync lag for every set, LVE
and L-PCC where there is ground truth (synthetic sets), and the clip count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

SETS = {"espeak": ("corpus", "espeak"), "ked": ("corpus", "festival:ked_diphone"), "kokoro": ("corpus", "kokoro:"),
        "real": ("real", None)}
COLUMNS = (("closure", "closure ↑"), ("open_vowel", "open-vowel ↑"), ("lag_ms", "lag ms"), ("lve", "LVE mm ↓"),
           ("lpcc", "L-PCC ↑"))
NO_GROUND_TRUTH = ("lve", "lpcc")  # pseudo ground truth on real recordings: not reported


def _fingerprint(model: Path) -> str:
    from thunder3d.checkpoints import resolve_run

    config = resolve_run(model) / "config.json"
    return hashlib.sha256(config.read_bytes()).hexdigest()[:16]


def _figure(result: dict, key: str):
    return (result.get("mean") or {}).get(key)


def evaluate(name: str, model: Path, set_name: str, corpus: Path, args: argparse.Namespace) -> dict | None:
    from thunder3d.errors import ThunderError
    from thunder3d.scoring import score_talker

    kind, voice = SETS[set_name]
    key = {"model": _fingerprint(model), "set": set_name, "corpus": str(corpus), "samples": args.samples,
           "steps": args.steps, "seed": args.seed, "guidance": args.guidance, "split": args.split}
    cache = args.work / name / f"{set_name}.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["result"]
    split = "all" if kind == "real" else args.split
    try:
        _, result = score_talker("model", corpus, source=model, split=split, voice=voice, samples=args.samples,
                                 seed=args.seed, steps=args.steps, guidance=args.guidance, device=args.device,
                                 progress=False)
    except ThunderError as exc:  # e.g. a corpus without that kind of voice
        print(f"{name} / {set_name}: skipped ({exc})", file=sys.stderr)
        return None
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "result": result}, indent=1, default=str))
    return result


def cell(value: float | None, key: str) -> str:
    """One table cell: ``–`` when missing, the lag in whole ms with its sign, else three decimals."""
    return "–" if value is None else f"{value:+.0f}" if key == "lag_ms" else f"{value:.3f}"


def table(results: dict[str, dict[str, dict | None]], sets: list[str]) -> str:
    head = "| model | " + " | ".join(f"{s} {label}" for s in sets for key, label in COLUMNS
                                     if not (s == "real" and key in NO_GROUND_TRUTH)) + " |"
    head += " clips |"
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for name, per_set in results.items():
        cells = []
        for s in sets:
            for key, _ in COLUMNS:
                if s == "real" and key in NO_GROUND_TRUTH:
                    continue
                value = _figure(per_set.get(s) or {}, key)
                cells.append(cell(value, key))
        clips = [str((per_set.get(s) or {}).get("mean", {}).get("clips", "–")) for s in sets]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'/'.join(clips)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="a talker (repeatable)")
    p.add_argument("--corpus", type=Path, help="synthetic corpus with espeak, festival and Kokoro voices")
    p.add_argument("--real", type=Path, help="corpus of real recordings (thunder3d data from-audio)")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--split", default="test", help="split of the synthetic corpus (default test)")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--steps", type=int, default=None, help="default: each model's own")
    p.add_argument("--guidance", type=float, default=None, help="default: each model's own")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, default=Path("runs/voices"))
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args(argv)
    models = dict(item.split("=", 1) for item in args.model)
    corpora = {"corpus": args.corpus, "real": args.real}
    sets = [s for s in args.sets if corpora[SETS[s][0]] is not None]
    results = {name: {s: evaluate(name, Path(path), s, corpora[SETS[s][0]], args) for s in sets}
               for name, path in models.items()}
    text = table(results, sets)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
