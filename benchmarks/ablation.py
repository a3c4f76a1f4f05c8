"""The method's comparison table (THUNDER against its ablations and baselines), CPU-budgeted and resumable.

    python benchmarks/ablation.py --corpus corpus1h --work runs/ablation --seeds 0 1 --steps 4000 \\
        --stop-at 1000 --m2s mouth2s=runs/m2s_mouth2s --talker-args "--batch-size 8 --ema 0.999" \\
        --max-minutes 240

Systems (``--systems``, default all):

=====================  ==========================================================================
diffusion              the diffusion talker without an M2S loss
diffusion+exp2s        + THUNDER loss through an M2S that hears coefficients
diffusion+face2s       + THUNDER loss through an M2S that hears the face vertices
diffusion+mouth2s      THUNDER: + THUNDER loss through the mouth-vertex M2S (``--lambda-m2s``)
regressor              the deterministic baseline (``--deterministic``)
regressor+mouth2s      the deterministic baseline + THUNDER loss
rule-based             pocketsphinx phone recognition -> the corpus articulation model
ground truth           the clips' own motion (upper bound; pseudo ground truth on real speech)
=====================  ==========================================================================

Every step is a ``thunder3d`` command (printed, logged under ``WORK/logs/``, and listed in the
table's header), run as a subprocess with ``OMP_NUM_THREADS=--threads``:

1. M2S listeners the systems need and ``--m2s`` does not name: ``thunder3d train m2s --input V
   --out WORK/m2s_V --steps M2S_STEPS`` (``--m2s-args`` appended).
2. Real speech (``--real DIR``, default Debian's pocketsphinx-testdata LibriVox recordings when
   installed): converted once by ``thunder3d data from-audio`` into ``WORK/real_corpus`` (a sphinx
   ``transcription`` file is split into ``<name>.txt`` transcripts first, so the recordings are
   force-aligned). Its ground truth is a pseudo ground truth made by the aligner and the same
   articulation model as the synthetic corpus, so only the ground-truth-free columns are reported.
3. Per seed, per trained system: ``thunder3d train talker ... --steps STEPS --stop-at STOP --seed
   SEED --threads T --no-progress`` into ``WORK/<system>_s<SEED>`` (``+`` -> ``_``); ``--resume``
   when the folder exists, so a later call with a larger ``--stop-at`` continues the same schedule
   exactly, and a run already at ``STOP`` is not started at all.
4. Evaluation of ``RUN/last`` (the state at the budget, the same step for every system; not
   ``best/``, which validation picks at a different step per run) with ``thunder3d eval talker``
   on ``--split`` of the synthetic corpus and on every clip of the real corpus (one call per split
   there, pooled here), ``--samples`` samples at ``--eval-steps`` DDIM steps, seeded with the run's
   seed, with the ``--judge`` M2S for the audio-consistency column.

**Resumable.** Results are cached in ``WORK/eval/<corpus>/<name>.json`` with a key file (checkpoint
step, samples, steps, seed, judge, clips); work whose result is cached is skipped, anything else is
(re)done. Interrupt it at any time and call it again with the same arguments.

**Budget.** ``--max-minutes`` bounds the whole call: trainings get the time left as their own
``--max-minutes`` (they stop cleanly, saving ``last/``, and continue on the next call), and no new
work starts once it is spent. The table is written with whatever is finished; runs short of
``STOP`` are listed as pending, never evaluated.

**Table.** One row per system, columns LVE, L-PCC, L-CCC, DTW, S-DIV-U, FDD, closure, sync lag and
M2S L1 (when judged): with several seeds ``mean ± half-range``; the per-seed values are in the
JSON. A second table gives the ground-truth-free columns on real speech. A claim check line is
computed from the per-seed figures: does diffusion+mouth2s beat diffusion on L-PCC and LVE for every
seed, and does its S-DIV-U stay within ``--sdiv-tolerance`` of diffusion's?
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
M2S_VARIANTS = ("mouth2s", "face2s", "exp2s")


@dataclass(frozen=True)
class System:
    """A row of the table: how it is made."""

    name: str
    kind: str  # "train" or "fixed"
    m2s: str | None = None  # M2S input variant of the THUNDER loss
    deterministic: bool = False
    flag: str | None = None  # eval talker flag of a fixed system

    @property
    def folder(self) -> str:
        return self.name.replace("+", "_").replace(" ", "_").replace("-", "_")


SYSTEMS = (
    System("diffusion", "train"),
    System("diffusion+exp2s", "train", m2s="exp2s"),
    System("diffusion+face2s", "train", m2s="face2s"),
    System("diffusion+mouth2s", "train", m2s="mouth2s"),
    System("regressor", "train", deterministic=True),
    System("regressor+mouth2s", "train", m2s="mouth2s", deterministic=True),
    System("rule-based", "fixed", flag="--rule-based"),
    System("ground truth", "fixed", flag="--ground-truth"),
)
PAIR = ("diffusion", "diffusion+mouth2s")  # the method's claim: THUNDER against the same model without M2S
BY_KEY = {re.sub(r"[\s_\-]", "", s.name): s for s in SYSTEMS}

COLUMNS = (("lve", "LVE mm ↓", "{:.3f}"), ("lpcc", "L-PCC ↑", "{:.3f}"), ("lccc", "L-CCC ↑", "{:.3f}"),
           ("dtw", "DTW mm ↓", "{:.3f}"), ("sdiv_u", "S-DIV-U mm", "{:.3f}"), ("fdd", "FDD mm ↓", "{:.3f}"),
           ("closure", "closure ↑", "{:.3f}"), ("lag_ms", "lag ms", "{:+.0f}"),
           ("m2s_mel_l1", "M2S L1 ↓", "{:.4f}"))
REAL_COLUMNS = (("closure", "closure ↑", "{:.3f}"), ("open_vowel", "open-vowel ↑", "{:.3f}"),
                ("lag_ms", "lag ms", "{:+.0f}"), ("sync_corr", "sync corr ↑", "{:.3f}"),
                ("m2s_mel_l1", "M2S L1 ↓", "{:.4f}"))
SUMMARY_KEYS = ("lve", "lpcc", "lccc", "dtw", "fdd", "sdiv_u", "sdiv_l", "closure", "open_vowel", "lag_ms",
                "sync_corr", "m2s_mel_l1", "clips", "frames", "samples")


def parse_systems(names: list[str]) -> list[System]:
    out = []
    for name in names:
        key = re.sub(r"[\s_\-]", "", name.lower())
        if key in ("gt", "groundtruth"):
            key = "groundtruth"
        if key not in BY_KEY:
            raise SystemExit(f"ablation.py: unknown system {name!r}; valid: "
                             + ", ".join(s.name for s in SYSTEMS))
        out.append(BY_KEY[key])
    return [s for s in SYSTEMS if s in out]  # table order


def parse_m2s(spec: str | None) -> dict[str, Path]:
    runs: dict[str, Path] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        variant, sep, path = part.partition("=")
        if not sep or variant.strip() not in M2S_VARIANTS:
            raise SystemExit(f"ablation.py: --m2s {part!r}: expected VARIANT=RUN with VARIANT one of "
                             + ", ".join(M2S_VARIANTS))
        runs[variant.strip()] = Path(path.strip())
    return runs


# --------------------------------------------------------------------------- the runner
@dataclass
class Runner:
    """Runs ``thunder3d`` commands (subprocess, or this process with ``in_process``), logs them and
    keeps the overall time budget."""

    work: Path
    threads: int
    max_minutes: float
    dry_run: bool = False
    in_process: bool = False
    started: float = field(default_factory=time.monotonic)
    commands: list[str] = field(default_factory=list)  # every command the results come from
    executed: list[str] = field(default_factory=list)  # those run by this call
    failures: list[str] = field(default_factory=list)

    def minutes_left(self) -> float | None:
        if self.max_minutes <= 0:
            return None
        return self.max_minutes - (time.monotonic() - self.started) / 60

    def out_of_time(self) -> bool:
        left = self.minutes_left()
        return left is not None and left <= 0

    @staticmethod
    def shown(argv: list[str]) -> str:
        return "thunder3d " + " ".join(shlex.quote(a) for a in argv)

    def note(self, argv: list[str]) -> None:
        """Record a command whose result is already there (listed in the table, not run)."""
        self.commands.append(self.shown(argv))

    def run(self, argv: list[str], log_name: str) -> bool:
        """Run ``thunder3d ARGV``; True when it exited 0."""
        shown = self.shown(argv)
        self.commands.append(shown)
        self.executed.append(shown)
        print(("[dry-run] " if self.dry_run else "") + shown, flush=True)
        if self.dry_run:
            return False
        t0 = time.monotonic()
        if self.in_process:
            import torch

            from thunder3d.cli import main as cli

            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                code = cli(argv)
            finally:
                torch.set_num_threads(threads)
            tail = ""
        else:
            logs = self.work / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            log = logs / f"{log_name}.log"
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"\n$ {shown}\n")
                f.flush()
                code = subprocess.run([sys.executable, "-m", "thunder3d", *argv], stdout=f,
                                      stderr=subprocess.STDOUT, env=env).returncode
            tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-8:])
        took = (time.monotonic() - t0) / 60
        if code != 0:
            self.failures.append(f"{shown} (exit {code})")
            print(f"  FAILED (exit {code}) after {took:.1f} min" + (f":\n{tail}" if tail else ""), flush=True)
            return False
        print(f"  done in {took:.1f} min", flush=True)
        return True


# --------------------------------------------------------------------------- runs
def run_step(run: Path) -> int | None:
    """The step of ``RUN/last`` (None when there is none)."""
    try:
        return int(json.loads((run / "last" / "config.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_config(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "last" / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def ensure_trained(runner: Runner, argv: list[str], run: Path, steps: int, stop: int, label: str) -> bool:
    """Train ``run`` to ``stop`` of a ``steps`` schedule (resuming it); True when it is there."""
    step = run_step(run)
    if step is not None:
        saved = (run_config(run).get("train") or {}).get("steps")
        if saved is not None and int(saved) != steps:
            raise SystemExit(f"ablation.py: {run} was trained on a {saved}-step schedule, not --steps {steps}: "
                             "pass the same --steps to continue it, or use another --work")
        if step >= stop:
            print(f"{label}: {run} is at step {step} (>= {stop}): nothing to train", flush=True)
            runner.note(argv + (["--stop-at", str(stop)] if stop < steps else []))
            return True
    if runner.out_of_time():
        print(f"{label}: time budget spent, not started", flush=True)
        return False
    argv = list(argv)
    if stop < steps:
        argv += ["--stop-at", str(stop)]
    if run.exists():
        argv.append("--resume")
    left = runner.minutes_left()
    if left is not None:
        argv += ["--max-minutes", f"{max(left, 0.1):.1f}"]
    runner.run(argv, run.name)
    if runner.dry_run:
        return False
    step = run_step(run)
    if step is None or step < stop:
        print(f"{label}: {run} stopped at step {step} of {stop} (pending; run again to continue)", flush=True)
        return False
    return True


# --------------------------------------------------------------------------- evaluation cache
def cached_eval(runner: Runner, argv: list[str], out: Path, key: dict[str, Any], label: str) -> dict | None:
    """The result of ``thunder3d eval talker ARGV -o OUT`` for ``key``: cached or computed."""
    key_file = out.with_suffix(".key.json")
    if out.is_file() and key_file.is_file():
        try:
            if json.loads(key_file.read_text()) == key:
                runner.note([*argv, "-o", str(out)])
                return next(iter(json.loads(out.read_text())["systems"].values()))
        except (OSError, ValueError, KeyError, StopIteration):
            pass
    if runner.out_of_time():
        print(f"{label}: time budget spent, not evaluated", flush=True)
        return None
    for stale in (out, key_file):
        if stale.exists() and not runner.dry_run:
            stale.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not runner.run([*argv, "-o", str(out)], f"eval_{out.parent.name}_{out.stem}") or not out.is_file():
        return None
    key_file.write_text(json.dumps(key, indent=1))
    return next(iter(json.loads(out.read_text())["systems"].values()))


def pooled(results: list[dict]) -> dict:
    """One evaluation over several splits' results (their clips together), as eval talker would
    summarise them in one call."""
    if len(results) == 1:
        return results[0]
    from thunder3d.eval.talker import summarize

    clips = [c for r in results for c in r["clips"]]
    return {**results[0], "clips": clips, "mean": summarize(clips)}


def summary(result: dict) -> dict:
    return {k: result["mean"].get(k) for k in SUMMARY_KEYS}


# --------------------------------------------------------------------------- real corpus
def prepare_real(runner: Runner, src: Path, work: Path) -> Path | None:
    """``WORK/real_corpus`` from ``src`` (once); None when it cannot be made."""
    corpus = work / "real_corpus"
    if (corpus / "manifest.jsonl").is_file():
        return corpus
    if not src.is_dir():
        raise SystemExit(f"ablation.py: --real {src}: no such folder (pass --real none to skip real speech)")
    if runner.out_of_time():
        return None
    source = src
    transcription = src / "transcription"
    if transcription.is_file() and not any(src.glob("*.txt")):
        # sphinx layout: "<s> words </s> (file_id)" lines -> <file_id>.wav + <file_id>.txt
        source = work / "real_src"
        if not runner.dry_run:
            source.mkdir(parents=True, exist_ok=True)
            for line in transcription.read_text(encoding="utf-8", errors="replace").splitlines():
                m = re.match(r"\s*(.*?)\s*\(([^()]+)\)\s*$", line)
                if not m:
                    continue
                text = re.sub(r"</?s>", "", m.group(1)).strip()
                wav = next(iter(sorted(src.rglob(f"{m.group(2)}.wav"))), None)
                if wav is None or not text:
                    continue
                link = source / wav.name
                if not link.exists():
                    link.symlink_to(wav.resolve())
                (source / f"{wav.stem}.txt").write_text(text + "\n", encoding="utf-8")
    tmp = work / "real_corpus.partial"
    if tmp.exists() and not runner.dry_run:
        shutil.rmtree(tmp)
    if not runner.run(["data", "from-audio", str(source), "--out", str(tmp), "--skip-bad"], "real_corpus"):
        return None
    tmp.rename(corpus)
    return corpus


def corpus_splits(corpus: Path) -> dict[str, int]:
    """Clips per split of a corpus (from its manifest)."""
    counts: dict[str, int] = {}
    for line in (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            split = json.loads(line).get("split") or "?"
            counts[split] = counts.get(split, 0) + 1
    return counts


def corpus_hours(corpus: Path) -> dict[str, float]:
    hours: dict[str, float] = {}
    for line in (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            split = entry.get("split") or "?"
            hours[split] = hours.get(split, 0.0) + float(entry.get("duration") or 0.0) / 3600
    return hours


# --------------------------------------------------------------------------- aggregation
def spread(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """``(mean, half-range, n)`` over the defined values."""
    good = [float(v) for v in values if v is not None]
    if not good:
        return None, None, 0
    return sum(good) / len(good), (max(good) - min(good)) / 2, len(good)


def cell(values: list[float | None], fmt: str) -> str:
    mean, half, n = spread(values)
    if mean is None:
        return "–"
    if n == 1:
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format(half).lstrip('+')}"


def table(rows: dict[str, dict[int | str, dict]], columns) -> list[str]:
    present = [c for c in columns if c[0] != "m2s_mel_l1"
               or any(s.get("m2s_mel_l1") is not None for per in rows.values() for s in per.values())]
    header = ["system", "seeds"] + [title for _, title, _ in present] + ["clips"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 2)]
    for name, per_seed in rows.items():
        if not per_seed:
            continue
        seeds = [k for k in per_seed if k != "-"]
        cells = [name, ", ".join(str(s) for s in seeds) if seeds else "–"]
        for key, _, fmt in present:
            cells.append(cell([s.get(key) for s in per_seed.values()], fmt))
        clips = sorted({s.get("clips") for s in per_seed.values()})
        cells.append("/".join(str(c) for c in clips))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def claim_check(synth: dict[str, dict], tolerance: float) -> str:
    base, thunder = synth.get("diffusion", {}), synth.get("diffusion+mouth2s", {})
    seeds = sorted(set(base) & set(thunder))
    if not seeds:
        return ("**Claim check (computed):** not checked — diffusion and diffusion+mouth2s have no "
                "evaluated seed in common yet.")
    parts, verdicts = [], []
    for key, better, word in (("lpcc", lambda a, b: a > b, "higher L-PCC"), ("lve", lambda a, b: a < b, "lower LVE")):
        pairs = [(thunder[s].get(key), base[s].get(key)) for s in seeds]
        wins = sum(1 for a, b in pairs if a is not None and b is not None and better(a, b))
        verdicts.append(wins == len(seeds))
        parts.append(f"{word} in {wins}/{len(seeds)} seeds ("
                     + ", ".join("–" if a is None or b is None else f"{a:.4f} vs {b:.4f}" for a, b in pairs) + ")")
    pairs = [(thunder[s].get("sdiv_u"), base[s].get("sdiv_u")) for s in seeds]
    within = sum(1 for a, b in pairs if a is not None and b not in (None, 0) and abs(a - b) / b <= tolerance)
    verdicts.append(within == len(seeds))
    parts.append(f"S-DIV-U within {tolerance:.0%} of diffusion's in {within}/{len(seeds)} seeds ("
                 + ", ".join("–" if a is None or b is None else f"{a:.4f} vs {b:.4f}" for a, b in pairs) + ")")
    holds = all(verdicts)
    return (f"**Claim check (computed, seeds {', '.join(map(str, seeds))}):** diffusion+mouth2s vs diffusion: "
            + "; ".join(parts) + f". → the claim {'holds' if holds else 'does NOT hold'} on this budget"
            + ("" if len(seeds) > 1 else " (one seed only)") + ".")


def machine(threads: int) -> dict:
    import torch

    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": threads, "loadavg": [round(v, 2) for v in os.getloadavg()],
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="synthetic corpus (train/val/test)")
    ap.add_argument("--work", type=Path, required=True, help="folder of every run, log and evaluation")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every trained system")
    ap.add_argument("--pair-seeds", type=int, nargs="+", default=None,
                    help="seeds of the claim pair (diffusion, diffusion+mouth2s) when it gets more than the "
                         "others (default: --seeds)")
    ap.add_argument("--steps", type=int, default=4000, help="schedule length of the talker trainings")
    ap.add_argument("--stop-at", type=int, default=0, help="steps actually trained (default: --steps)")
    ap.add_argument("--systems", nargs="+", default=[s.name for s in SYSTEMS],
                    help="subset of: " + ", ".join(s.name for s in SYSTEMS) + " (ground truth: ground-truth)")
    ap.add_argument("--lambda-m2s", type=float, default=0.1, help="THUNDER loss weight (default 0.1)")
    ap.add_argument("--m2s", default=None, help="existing M2S runs: mouth2s=RUN,exp2s=RUN,face2s=RUN")
    ap.add_argument("--m2s-steps", type=int, default=3000, help="steps of M2S runs trained here")
    ap.add_argument("--m2s-args", default="", help="extra arguments of `thunder3d train m2s`")
    ap.add_argument("--talker-args", default="", help="extra arguments of every `thunder3d train talker`")
    ap.add_argument("--judge", default="mouth2s",
                    help="M2S variant (or run path) for the M2S L1 column, or none (default mouth2s)")
    ap.add_argument("--real", default=str(LIBRIVOX) if LIBRIVOX.is_dir() else "none",
                    help="folder of real recordings (+ transcripts), or none (default: pocketsphinx's "
                         "LibriVox test recordings when installed)")
    ap.add_argument("--split", default="test", help="split of the synthetic corpus evaluated (default test)")
    ap.add_argument("--clips", type=int, default=0, help="evaluate the first N clips of the split (0 = all)")
    ap.add_argument("--samples", type=int, default=5, help="samples per clip (default 5)")
    ap.add_argument("--eval-steps", type=int, default=10, help="DDIM steps at evaluation (default 10)")
    ap.add_argument("--sdiv-tolerance", type=float, default=0.2, help="claim check: S-DIV-U tolerance")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per command (default 1)")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="overall budget (0 = none)")
    ap.add_argument("--note", action="append", default=[],
                    help="a line for the table's header (how the inputs were made; repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--in-process", action="store_true",
                    help="run the thunder3d commands in this process (tests; no per-command logs)")
    ap.add_argument("--markdown", type=Path, default=ROOT / "docs" / "results" / "ablation.md",
                    help="the table (default docs/results/ablation.md)")
    ap.add_argument("--json", type=Path, default=None, help="default: the markdown's path with .json")
    args = ap.parse_args(argv)

    systems = parse_systems(args.systems)
    pair_seeds = args.pair_seeds or args.seeds
    all_seeds = sorted(set(args.seeds) | set(pair_seeds))

    def seeds_of(system: System) -> list[int]:
        return pair_seeds if system.name in PAIR else args.seeds
    stop = min(args.stop_at or args.steps, args.steps)
    work, corpus = args.work, args.corpus
    if not (corpus / "manifest.jsonl").is_file():
        raise SystemExit(f"ablation.py: {corpus} is not a corpus (no manifest.jsonl)")
    splits = corpus_splits(corpus)
    if args.split not in splits:
        raise SystemExit(f"ablation.py: {corpus} has no {args.split!r} split (it has {sorted(splits)}); "
                         "choose one with --split")
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work, args.threads, args.max_minutes, dry_run=args.dry_run, in_process=args.in_process)
    m2s_runs = parse_m2s(args.m2s)

    # ---- 1. M2S listeners
    judge = None if args.judge.lower() == "none" else args.judge
    needed = sorted({s.m2s for s in systems if s.m2s} | ({judge} if judge in M2S_VARIANTS else set()))
    m2s_ready: dict[str, Path] = {}
    for variant in needed:
        if variant in m2s_runs:
            m2s_ready[variant] = m2s_runs[variant]
            continue
        run = work / f"m2s_{variant}"
        argv_m2s = ["train", "m2s", "--corpus", str(corpus), "--input", variant, "--out", str(run),
                    "--steps", str(args.m2s_steps), "--seed", "0", "--threads", str(args.threads),
                    "--no-progress", *shlex.split(args.m2s_args)]
        if ensure_trained(runner, argv_m2s, run, args.m2s_steps, args.m2s_steps, f"M2S {variant}") \
                or args.dry_run:
            m2s_ready[variant] = run
    judge_run = m2s_ready.get(judge) if judge in M2S_VARIANTS else (Path(judge) if judge else None)

    # ---- 2. real speech
    real = None
    if args.real.lower() != "none":
        real = prepare_real(runner, Path(args.real), work)
    real_splits = corpus_splits(real) if real is not None and (real / "manifest.jsonl").is_file() else {}

    # ---- evaluation of one system on the synthetic split and on all real clips
    synth_rows: dict[str, dict] = {s.name: {} for s in systems}
    real_rows: dict[str, dict] = {s.name: {} for s in systems}
    pending: list[str] = []

    def evaluate(system: System, label: str, seed: int | None, source: list[str], step: int | None,
                 stem: str) -> None:
        key_base = {"source": source, "step": step, "samples": args.samples, "eval_steps": args.eval_steps,
                    "seed": seed, "judge": str(judge_run) if judge_run else None}
        tail = ["--samples", str(args.samples), "--steps", str(args.eval_steps), "--seed", str(seed or 0),
                "--name", label, "--no-progress"]
        if judge_run is not None:
            tail += ["--m2s", str(judge_run)]
        argv = ["eval", "talker", *source, "--corpus", str(corpus), "--split", args.split, *tail]
        if args.clips:
            argv += ["--clips", str(args.clips)]
        result = cached_eval(runner, argv, work / "eval" / f"synth_{args.split}" / f"{stem}.json",
                             {**key_base, "corpus": str(corpus), "split": args.split, "clips": args.clips},
                             label)
        if result is not None:
            synth_rows[system.name][seed if seed is not None else "-"] = summary(result)
        parts = []
        for split in sorted(real_splits):
            argv = ["eval", "talker", *source, "--corpus", str(real), "--split", split, *tail]
            parts.append(cached_eval(runner, argv, work / "eval" / f"real_{split}" / f"{stem}.json",
                                     {**key_base, "corpus": str(real), "split": split}, f"{label} (real {split})"))
        if parts and all(p is not None for p in parts):
            real_rows[system.name][seed if seed is not None else "-"] = summary(pooled(parts))

    # ---- 3. fixed systems (no training)
    for system in systems:
        if system.kind == "fixed":
            evaluate(system, system.name, None, [system.flag], None, system.folder)

    # ---- 4. trained systems, seed by seed
    for seed in all_seeds:
        for system in systems:
            if system.kind != "train" or seed not in seeds_of(system):
                continue
            label = f"{system.name} s{seed}"
            run = work / f"{system.folder}_s{seed}"
            argv_t = ["train", "talker", "--corpus", str(corpus), "--out", str(run), "--steps", str(args.steps),
                      "--seed", str(seed), "--threads", str(args.threads), "--no-progress"]
            if system.deterministic:
                argv_t.append("--deterministic")
            if system.m2s:
                if system.m2s not in m2s_ready:
                    pending.append(f"{label}: waits for the {system.m2s} M2S")
                    continue
                argv_t += ["--m2s", str(m2s_ready[system.m2s]), "--lambda-m2s", str(args.lambda_m2s)]
            argv_t += shlex.split(args.talker_args)
            if not ensure_trained(runner, argv_t, run, args.steps, stop, label):
                if args.dry_run:  # list the evaluation commands too
                    evaluate(system, label, seed, ["--checkpoint", str(run / "last")], None, run.name)
                else:
                    pending.append(f"{label}: at step {run_step(run)} of {stop}")
                continue
            evaluate(system, label, seed, ["--checkpoint", str(run / "last")], run_step(run), f"{run.name}")

    # ---- 5. the tables
    if args.dry_run:
        print(f"dry run: {len(runner.commands)} command(s) listed, nothing run")
        return 0
    first_run = next((work / f"{s.folder}_s{seed}" for seed in all_seeds for s in systems
                      if s.kind == "train" and run_step(work / f"{s.folder}_s{seed}") is not None), None)
    cfg = run_config(first_run) if first_run else {}
    train_cfg = cfg.get("train") or {}
    data_cfg = cfg.get("data") or {}
    model_cfg = ((cfg.get("model") or {}).get("net") or {})
    facts = machine(args.threads)
    hours = corpus_hours(corpus)
    lines = [
        "# Ablation: THUNDER against its ablations and baselines",
        "",
        f"Made by `python benchmarks/ablation.py {' '.join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))}`"
        f" on {facts['date']}.",
        "",
        f"- **Corpus:** `{corpus}`: " + ", ".join(f"{k} {splits[k]} clips ({hours.get(k, 0):.2f} h)" for k in sorted(splits))
        + f"; evaluated on `{args.split}`" + (f" (first {args.clips} clips)" if args.clips else "")
        + " (held-out voices and sentences).",
        f"- **Budget:** {stop} steps trained of a {args.steps}-step schedule (`--stop-at {stop}`), batch "
        f"{train_cfg.get('batch_size', '?')} x {data_cfg.get('window_seconds', '?')} s windows, lr "
        f"{train_cfg.get('lr', '?')} (warm-up {train_cfg.get('warmup_steps', '?')}), EMA {train_cfg.get('ema_decay', '?')}; "
        f"talker dim {model_cfg.get('dim', '?')}, {model_cfg.get('layers', '?')} layers; THUNDER loss weight "
        f"{args.lambda_m2s}; M2S listeners: "
        + (", ".join(f"{k} `{v}`" for k, v in m2s_ready.items()) or "none") + ".",
        f"- **Evaluation:** `RUN/last` (the state at the budget, same step for every system), {args.samples} "
        f"samples per clip at {args.eval_steps} DDIM steps, seeded with the run's seed; figures against "
        "ground truth are means over samples, S-DIV-U is across them (0 for the regressor, – for single-sample "
        "systems)." + (f" M2S L1: audio consistency heard by `{judge_run}`"
                       + (" — the listener the +mouth2s systems were trained against, so it favours them."
                          if judge == "mouth2s" else ".") if judge_run else ""),
        f"- **Seeds:** {', '.join(map(str, args.seeds))}"
        + (f" (the claim pair diffusion / diffusion+mouth2s: {', '.join(map(str, pair_seeds))})"
           if pair_seeds != args.seeds else "")
        + "; with several, a cell is mean ± half-range over the seeds (per-seed values in the JSON).",
        f"- **Machine:** {facts['cpu']}, {facts['cores']} cores, torch {facts['torch']}, {args.threads} "
        f"thread(s) per command; load average {facts['loadavg']} when the table was written.",
        *(f"- **Note:** {note}" for note in args.note),
        "",
        f"## Synthetic speech (`{args.split}` split)",
        "",
        *table(synth_rows, COLUMNS),
        "",
        claim_check(synth_rows, args.sdiv_tolerance),
        "",
    ]
    if real is not None:
        lines += [
            "## Real speech (ground-truth-free checks)",
            "",
            f"Every clip of `{real}` ({sum(real_splits.values())} recordings, force-aligned with their "
            "transcripts by pocketsphinx). Their motion is a pseudo ground truth (the aligner and the "
            "articulation model), so figures against it are left out; closure and open-vowel rates use "
            "the aligned phones, the lag compares lip aperture with the audio envelope.",
            "",
            *table(real_rows, REAL_COLUMNS),
            "",
        ]
    if pending:
        lines += ["## Not finished", "", *[f"- {p}" for p in pending], ""]
    if runner.failures:
        lines += ["## Failed commands (see WORK/logs)", "", *[f"- `{f}`" for f in runner.failures], ""]
    lines += ["## Commands", "", "The commands behind these results, in order (run by this script as "
              "`python -m thunder3d ...`; `--resume` is added when a run exists and `--max-minutes` when a "
              f"budget is set; {len(runner.executed)} of them ran in this call, the others' results were "
              f"cached in `{work}`):", "", "```"]
    shown = []
    for c in runner.commands:
        generic = re.sub(r" --resume\b| --max-minutes \S+", "", c)
        if generic not in shown:
            shown.append(generic)
    lines += shown
    lines += ["```", ""]
    text = "\n".join(lines)
    md = args.markdown
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text, encoding="utf-8")
    out_json = args.json or md.with_suffix(".json")
    out_json.write_text(json.dumps({
        "corpus": str(corpus), "split": args.split, "steps": args.steps, "stop_at": stop, "seeds": args.seeds,
        "pair_seeds": pair_seeds,
        "lambda_m2s": args.lambda_m2s, "samples": args.samples, "eval_steps": args.eval_steps,
        "m2s": {k: str(v) for k, v in m2s_ready.items()}, "judge": str(judge_run) if judge_run else None,
        "train": train_cfg, "machine": facts, "synthetic": synth_rows, "real": real_rows if real else None,
        "real_corpus": str(real) if real else None, "claim_check": claim_check(synth_rows, args.sdiv_tolerance),
        "pending": pending, "failures": runner.failures, "commands": runner.commands,
        "executed": runner.executed,
    }, indent=2, default=str), encoding="utf-8")
    print(text)
    print(f"wrote {md} and {out_json}")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
