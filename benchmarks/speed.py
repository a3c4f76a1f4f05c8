"""Speed and memory of thunder3d on this machine: inference real-time factor, training step time,
M2S cost, peak memory and render speed.

    python benchmarks/speed.py [--threads 2] [--checkpoint RUN] [--json F] [--markdown docs/results/speed.md]

- **Inference**: the real-time factor (wall time / audio duration; below 1 is faster than real
  time) of sampling one animation with :func:`thunder3d.inference.generate` (4 s windows, 1 s
  overlap, as :class:`~thunder3d.Animator` samples), for each number of DDIM steps and each length.
  The talker is of the default size (dim 192, 4 layers, mel encoder 128), built untrained unless
  ``--checkpoint`` is given: the time depends on the sizes, not on the weights. The audio is real
  espeak-ng speech, repeated to the length.
- **Training**: one optimizer step (forward, loss, backward, AdamW) of the talker on a fixed batch,
  diffusion and regressor, with and without the THUNDER loss (``benchmarks/train.py``'s
  ``step_ms`` on a small synthetic corpus; the M2S is of the default size with random weights).
- **M2S**: forward alone (no gradient), training forward+backward and the frozen M2S as a loss
  (gradient to the coefficients through the rig), per input variant (``benchmarks/m2s.py``).
- **Peak memory**: the high-water mark of the resident set (``VmHWM``, see :func:`peak_rss_mb`)
  of a fresh Python process that does one thing: import torch + thunder3d only, sample 60 s, or
  take training steps.
- **Render**: frames per second of :func:`thunder3d.export.write_mp4` (rig forward, headless
  OpenGL, h264 + AAC through ffmpeg) with the built-in rig, per frame size.

Every figure is a median over ``--repeats`` timed runs after a warm-up (for inference the fastest
run is reported too). The machine facts (cores, load average before and after, torch version and threads) are
recorded with the figures: on a shared machine the numbers are upper bounds for an idle one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_table, timed

from thunder3d.constants import FPS, SAMPLE_RATE
from thunder3d.data.dataset import Normalizer
from thunder3d.rigs import load_rig

HERE = Path(__file__).resolve().parent
SPEECH = ("He was not an ill disposed young man. Bob bought a big map of Paris, and the moon "
          "shone over the quiet village while we waited for the morning train.")


# --------------------------------------------------------------------------- shared helpers
def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of real espeak-ng speech at 16 kHz (one utterance repeated, cut to length)."""
    from thunder3d.audio.tts import synthesize

    wav = synthesize(SPEECH, voice="en-us", seed=seed).wav
    n = round(seconds * SAMPLE_RATE)
    return np.tile(wav, -(-n // wav.size))[:n].astype(np.float32)


def talker_config(dim: int = 192, layers: int = 4, audio_dim: int = 128,
                  deterministic: bool = False, audio: str = "mel") -> dict:
    """The ``model`` entry of a talker checkpoint for the built-in rig (CLI defaults otherwise)."""
    from thunder3d.models.encoders import build_audio_encoder
    from thunder3d.models.denoiser import DenoiserConfig
    from thunder3d.models.diffusion import DiffusionSchedule
    from thunder3d.models.regressor import RegressorConfig

    rig = load_rig("builtin")
    encoder = build_audio_encoder({"kind": audio, "out_dim": audio_dim})
    net = (RegressorConfig if deterministic else DenoiserConfig).from_dict(
        {"coeff_dim": rig.num_coeffs, "audio_dim": encoder.out_dim, "dim": dim, "layers": layers})
    return {"kind": "regressor" if deterministic else "denoiser", "net": net.to_dict(),
            "audio": encoder.config(), "diffusion": None if deterministic else DiffusionSchedule().to_dict()}


def untrained_talker(dim: int = 192, layers: int = 4, audio_dim: int = 128, deterministic: bool = False,
                     seed: int = 0, audio: str = "mel"):
    """A :class:`~thunder3d.models.talker.TalkerModel` with random weights (eval mode) and a
    normalizer that keeps its output near the rest pose."""
    from thunder3d.models.talker import TalkerModel

    torch.manual_seed(seed)
    model = TalkerModel(talker_config(dim, layers, audio_dim, deterministic, audio)).eval()
    rig = load_rig("builtin")
    model.normalizer = Normalizer(np.full(rig.num_coeffs, 0.1, np.float32),
                                  np.full(rig.num_coeffs, 0.05, np.float32), tuple(rig.coeff_names))
    return model


def save_untrained_talker(path: Path, dim: int = 192, layers: int = 4, audio_dim: int = 128,
                          seed: int = 0, audio: str = "mel") -> Path:
    """An inference checkpoint (``config.json`` + ``model.safetensors``) of :func:`untrained_talker`
    that :func:`~thunder3d.checkpoints.load_talker` and ``Animator.from_pretrained`` read."""
    from thunder3d.checkpoints import save_checkpoint

    model = untrained_talker(dim, layers, audio_dim, seed=seed, audio=audio)
    config = {"task": "talker", "model": model.config, "rig": load_rig("builtin").config(),
              "normalizer": model.normalizer.to_dict(), "styles": [],
              "data": {"window_seconds": 4.0}, "note": "untrained: random weights (benchmark)"}
    return save_checkpoint(path, model=model, config=config)


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's resident-set high-water mark in MB: ``VmHWM`` of ``/proc/PID/status`` (this
    process by default).

    Not ``ru_maxrss``: on Linux a process started by fork + exec keeps the ``ru_maxrss`` of the
    forked copy of its parent, so a child of a large process (a benchmark, pytest) reports at least
    the parent's size. ``VmHWM`` belongs to the new program's memory alone. ``ru_maxrss`` is the
    fallback where there is no ``/proc``.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if pid != "self":
        return 0.0  # gone, or no /proc
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """Sum of the ``VmHWM`` of this process's running child processes in MB (helpers such as the
    speech recognition workers; 0 without ``/proc``)."""
    pids = set()
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids.update(children.read_text().split())
        except OSError:
            pass
    return sum(peak_rss_mb(pid) for pid in pids)


def machine(threads: int) -> dict:
    """Facts about this machine that the figures depend on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "usable_cores": usable,
            "torch": torch.__version__, "torch_threads": threads, "python": platform.python_version(),
            "platform": platform.platform(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "loadavg_start": [round(v, 2) for v in os.getloadavg()]}


def gl_renderer() -> str:
    """The OpenGL renderer string of the headless context (e.g. llvmpipe), or why there is none."""
    try:
        from thunder3d.render.gl import create_context

        ctx = create_context()
        try:
            return str(ctx.info.get("GL_RENDERER", "?"))
        finally:
            ctx.release()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"unavailable ({exc})"


# --------------------------------------------------------------------------- inference
def bench_inference(model, lengths: list[float], steps_list: list[int], repeats: int) -> list[dict]:
    """Real-time factor of one sample per (length, steps): ``repeats`` timed runs each after one
    warm-up of the whole path (a seam included); the median and the fastest run are reported."""
    from thunder3d.inference import generate

    rows = []
    wav_all = speech(max(max(lengths), 8.0))
    generate(model, wav_all[: 8 * SAMPLE_RATE], steps=2)  # warm-up: a seam (inpainting) included
    for seconds in lengths:
        wav = wav_all[: round(seconds * SAMPLE_RATE)]
        for steps in steps_list:
            times = []
            for _ in range(max(repeats, 1)):
                t0 = time.perf_counter()
                generate(model, wav, steps=steps, seed=0)
                times.append(time.perf_counter() - t0)
            median, best = statistics.median(times), min(times)
            rows.append({"model": "regressor" if model.deterministic else "diffusion",
                         "seconds": seconds, "steps": steps if not model.deterministic else "-",
                         "wall_s": round(median, 3), "rtf": round(median / seconds, 4),
                         "best_rtf": round(best / seconds, 4), "runs_s": [round(t, 3) for t in times]})
            if model.deterministic:
                break
    return rows


# --------------------------------------------------------------------------- training + M2S
def bench_training(corpus: Path, m2s: Path, batch: int, window: float, repeats: int, dim: int,
                   layers: int, audio_dim: int) -> list[dict]:
    """``benchmarks/train.py``'s step timing for the four talker variants."""
    from train import step_ms

    from thunder3d.train.talker import TalkerData, TalkerTask

    model = dict(dim=dim, layers=layers)
    base = dict(corpus=str(corpus), window_seconds=window, m2s=str(m2s), audio={"kind": "mel", "out_dim": audio_dim})
    rows = []
    for label, extra in (("diffusion", dict(lambda_m2s=0.0)),
                         ("diffusion + THUNDER loss", dict(lambda_m2s=0.1)),
                         ("regressor", dict(lambda_m2s=0.0, deterministic=True)),
                         ("regressor + THUNDER loss", dict(lambda_m2s=0.1, deterministic=True))):
        task = TalkerTask(TalkerData(**base, **extra), model)
        data = task.train_dataset()
        items = [data[i % len(data)] for i in range(batch)]
        ms = step_ms(task, task.collate(items), repeats)
        rows.append({"model": label, "batch": f"{batch} x {window:g} s", "step_ms": round(ms, 1),
                     "windows_per_s": round(batch / (ms / 1e3), 2)})
    return rows


def bench_m2s(dim: int, layers: int, batch: int, frames: int, repeats: int) -> list[dict]:
    """``benchmarks/m2s.py``'s forward+backward timings, plus the forward alone."""
    from m2s import bench_variant

    from thunder3d.models.m2s import M2S, M2S_INPUTS, M2SConfig, freeze, rig_features

    rig = load_rig("builtin")
    rows = []
    for variant in M2S_INPUTS:
        row = bench_variant(rig, variant, dim, layers, batch, frames, repeats)
        torch.manual_seed(0)
        model = freeze(M2S(M2SConfig.for_rig(rig, variant, dim=dim, layers=layers))).eval()
        coeffs = torch.rand(batch, frames, rig.num_coeffs) * 0.5

        def forward(model=model, coeffs=coeffs, variant=variant):
            with torch.no_grad():
                model(rig_features(rig, coeffs, variant))

        rows.append({"input": variant, "params_M": row["params_M"], "batch": f"{batch} x {frames} frames",
                     "forward_ms": round(timed(forward, repeats), 1),
                     "train_fwd_bwd_ms": row["train_fwd_bwd_ms"],
                     "as_loss_fwd_bwd_ms": row["frozen_loss_fwd_bwd_ms"]})
    return rows


# --------------------------------------------------------------------------- peak memory (children)
def _child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints ``{"peak_rss_mb": ...}``."""
    torch.set_num_threads(args.threads)
    info: dict = {}
    if args.child == "inference":
        from thunder3d.inference import generate

        if args.checkpoint:
            from thunder3d.checkpoints import load_talker

            model = load_talker(args.checkpoint)[0]
        else:
            model = untrained_talker(args.dim, args.layers, args.audio_dim)
        wav = speech(args.memory_seconds)
        out = generate(model, wav, steps=args.memory_steps)
        info = {"frames": int(out.shape[1])}
    elif args.child == "train":
        from train import step_ms

        from thunder3d.train.talker import TalkerData, TalkerTask

        task = TalkerTask(TalkerData(corpus=str(args.corpus), window_seconds=args.window, m2s=str(args.m2s),
                                     lambda_m2s=0.1, audio={"kind": "mel", "out_dim": args.audio_dim}),
                          dict(dim=args.dim, layers=args.layers))
        data = task.train_dataset()
        batch = task.collate([data[i % len(data)] for i in range(args.batch)])
        step_ms(task, batch, 2)
    else:  # baseline: the interpreter with torch and thunder3d imported
        import importlib

        for module in ("thunder3d.inference", "thunder3d.train.talker"):
            importlib.import_module(module)
    info["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(info))


def peak_rss(what: str, args: argparse.Namespace, corpus: Path | None, m2s: Path | None) -> dict:
    """Run ``--child what`` in a fresh interpreter and read its peak RSS."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what, "--threads", str(args.threads),
           "--dim", str(args.dim), "--layers", str(args.layers), "--audio-dim", str(args.audio_dim),
           "--memory-seconds", str(args.memory_seconds), "--memory-steps", str(args.memory_steps),
           "--batch", str(args.batch), "--window", str(args.window)]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    if corpus is not None:
        cmd += ["--corpus", str(corpus), "--m2s", str(m2s)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if out.returncode != 0:
        raise RuntimeError(f"peak-memory child {what!r} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


# --------------------------------------------------------------------------- render
def bench_render(sizes: list[int], frames: int, folder: Path) -> list[dict]:
    """Frames per second of write_mp4 on the built-in rig (coefficients of a speaking corpus-like
    motion: a jaw and lip pattern), with audio."""
    from thunder3d.export import write_mp4

    rig = load_rig("builtin")
    t = np.arange(frames, dtype=np.float32) / FPS
    coeffs = np.zeros((frames, rig.num_coeffs), np.float32)
    names = list(rig.coeff_names)
    coeffs[:, names.index("jawOpen")] = 0.3 + 0.3 * np.sin(2 * np.pi * 3 * t)
    coeffs[:, names.index("mouthFunnel")] = 0.2 + 0.2 * np.sin(2 * np.pi * 1.3 * t)
    wav = speech(frames / FPS)
    rows = []
    write_mp4(folder / "warmup.mp4", rig, coeffs[: min(frames, 10)], audio=wav, size=min(sizes))
    for size in sizes:
        t0 = time.perf_counter()
        path = write_mp4(folder / f"render_{size}.mp4", rig, coeffs, audio=wav, size=size)
        sec = time.perf_counter() - t0
        rows.append({"size": f"{size}x{size}", "frames": frames, "wall_s": round(sec, 2),
                     "fps": round(frames / sec, 1), "x_real_time": round(frames / FPS / sec, 2),
                     "mp4_kB": round(path.stat().st_size / 1024, 1)})
    return rows


# --------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    m = result["machine"]
    a = result["args"]
    lines = [
        "# Speed and memory",
        "",
        f"Measured by `{result['command']}` on {m['date']}.",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), torch {m['torch']} "
        f"with {m['torch_threads']} thread(s), Python {m['python']}, {m['platform']}; OpenGL: "
        f"{result.get('gl_renderer', '?')}.",
        "",
        f"**Load:** load average {m['loadavg_start']} (1, 5, 15 min) at the start and "
        f"{m['loadavg_end']} at the end. "
        + (f"The machine was shared: other jobs (trainings) were running on its {m['cores']} cores during "
           "the measurements, so these figures are slower than an idle machine would give — read them "
           "as upper bounds." if max(m["loadavg_start"][0], m["loadavg_end"][0]) > 0.5 else
           "The machine was otherwise idle."),
        "",
    ]
    if a.get("note"):
        lines += [f"**Note:** {a['note']}", ""]
    if result.get("inference"):
        rows = [r for r in result["inference"] if r["model"] == "diffusion"]
        lengths = sorted({r["seconds"] for r in rows})
        steps = sorted({r["steps"] for r in rows})
        src = a["checkpoint"] or f"untrained, dim {a['dim']}, {a['layers']} layers, mel encoder {a['audio_dim']}"
        lines += [
            "## Inference: real-time factor",
            "",
            f"Wall time / audio duration of one diffusion sample (DDIM, 4 s windows, 1 s overlap, "
            f"as `Animator` samples; talker: {src}), median of {a['repeats']} runs. Below 1 is faster "
            "than real time.",
            "",
            "| DDIM steps | " + " | ".join(f"{s:g} s" for s in lengths) + " |",
            "|---:|" + "---:|" * len(lengths),
        ]
        for k in steps:
            cells = [next((f"{r['rtf']:.3f}" for r in rows if r["steps"] == k and r["seconds"] == s), "–")
                     for s in lengths]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines += ["", f"The fastest of the {a['repeats']} runs (closer to what an idle machine gives):", "",
                  "| DDIM steps | " + " | ".join(f"{s:g} s" for s in lengths) + " |",
                  "|---:|" + "---:|" * len(lengths)]
        for k in steps:
            cells = [next((f"{r['best_rtf']:.3f}" for r in rows if r["steps"] == k and r["seconds"] == s), "–")
                     for s in lengths]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        reg = [r for r in result["inference"] if r["model"] == "regressor"]
        if reg:
            lines += ["", "Regressor baseline (one network pass per window): " + ", ".join(
                f"{r['seconds']:g} s: RTF {r['rtf']:.4f} (fastest {r['best_rtf']:.4f})" for r in reg) + "."]
        lines.append("")
    if result.get("training"):
        lines += ["## Training step", "",
                  f"One optimizer step (forward, loss, backward, AdamW) of the talker (dim {a['dim']}, "
                  f"{a['layers']} layers) on a fixed batch of synthetic-corpus windows; the THUNDER loss runs "
                  f"a frozen M2S of dim {a['m2s_dim']}, {a['m2s_layers']} layers (random weights) through "
                  f"the rig (median of {a['repeats']}).", "",
                  "| model | batch | step ms | windows/s |", "|---|---|---:|---:|"]
        lines += [f"| {r['model']} | {r['batch']} | {r['step_ms']:.0f} | {r['windows_per_s']:.2f} |"
                  for r in result["training"]]
        lines.append("")
    if result.get("m2s"):
        lines += ["## M2S cost", "",
                  f"dim {a['m2s_dim']}, {a['m2s_layers']} layers, built-in rig, random coefficients "
                  f"(median of {a['repeats']}). *As a loss*: the frozen M2S on coefficients that need a "
                  "gradient (rig included), as inside the THUNDER loss.", "",
                  "| input | params (M) | batch | forward ms | train fwd+bwd ms | as a loss fwd+bwd ms |",
                  "|---|---:|---|---:|---:|---:|"]
        lines += [f"| {r['input']} | {r['params_M']} | {r['batch']} | {r['forward_ms']:.1f} | "
                  f"{r['train_fwd_bwd_ms']:.1f} | {r['as_loss_fwd_bwd_ms']:.1f} |" for r in result["m2s"]]
        lines.append("")
    if result.get("memory"):
        labels = {"baseline": "import torch + thunder3d (nothing else)",
                  "inference": f"sample {a['memory_seconds']:g} s of speech ({a['memory_steps']} DDIM steps)",
                  "train": f"talker training steps + THUNDER loss (batch {a['batch']} x {a['window']:g} s)"}
        lines += ["## Peak memory", "",
                  "High-water mark of the resident set (`VmHWM`) of a fresh Python process that does only "
                  "this (torch and the interpreter included).", "",
                  "| process | peak RSS MB |", "|---|---:|"]
        lines += [f"| {labels[k]} | {v['peak_rss_mb']:.0f} |" for k, v in result["memory"].items()]
        lines.append("")
    if result.get("render"):
        lines += ["## Render", "",
                  "`thunder3d.export.write_mp4` on the built-in rig: rig forward, headless OpenGL "
                  "(no MSAA), h264 (x264 `medium`, crf 20) + AAC through ffmpeg, one view.", "",
                  "| size | frames | wall s | frames/s | × real time |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['size']} | {r['frames']} | {r['wall_s']:.2f} | {r['fps']:.1f} | {r['x_real_time']:.2f} |"
                  for r in result["render"]]
        lines.append("")
    lines += [f"Total benchmark wall time: {result['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--checkpoint", type=Path, help="talker run/checkpoint to time (default: untrained)")
    ap.add_argument("--dim", type=int, default=192, help="talker width (untrained talker)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--audio-dim", type=int, default=128)
    ap.add_argument("--m2s-dim", type=int, default=192)
    ap.add_argument("--m2s-layers", type=int, default=4)
    ap.add_argument("--lengths", type=float, nargs="+", default=[5, 10, 30, 60], help="seconds of speech")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10, 25], help="DDIM steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="training batch (windows)")
    ap.add_argument("--window", type=float, default=4.0, help="training window seconds")
    ap.add_argument("--m2s-batch", type=int, default=16)
    ap.add_argument("--m2s-frames", type=int, default=100)
    ap.add_argument("--clips", type=int, default=16, help="clips of the temporary training corpus")
    ap.add_argument("--memory-seconds", type=float, default=60.0)
    ap.add_argument("--memory-steps", type=int, default=10)
    ap.add_argument("--memory-probes", default="baseline,inference,train",
                    help="comma-separated peak-memory processes: baseline, inference, train")
    ap.add_argument("--render-sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--render-frames", type=int, default=250)
    ap.add_argument("--sections", default="inference,training,m2s,memory,render",
                    help="comma-separated subset of inference,training,m2s,memory,render")
    ap.add_argument("--note", default="", help="a sentence for the markdown (e.g. why these threads)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--from-json", type=Path, help="only write --markdown from an earlier --json")
    ap.add_argument("--child", choices=("baseline", "inference", "train"), help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--m2s", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    if args.from_json:  # the markdown of an earlier measurement, nothing measured
        if not args.markdown:
            ap.error("--from-json needs --markdown")
        args.markdown.write_text(markdown(json.loads(args.from_json.read_text())))
        print(f"wrote {args.markdown} from {args.from_json}")
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    valid = ("inference", "training", "m2s", "memory", "render")
    bad = [s for s in sections if s not in valid]
    if bad:
        ap.error(f"unknown sections {bad}; valid: {', '.join(valid)}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result: dict = {"command": "python benchmarks/speed.py " + shlex.join(sys.argv[1:] if argv is None else argv),
                    "machine": machine(args.threads),
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                             if k not in ("child", "corpus", "m2s", "json", "markdown", "from_json")}}
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch "
          f"{torch.__version__}, {args.threads} threads, load average {result['machine']['loadavg_start']}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "inference" in sections:
            if args.checkpoint:
                from thunder3d.checkpoints import load_talker

                model = load_talker(args.checkpoint)[0]
            else:
                model = untrained_talker(args.dim, args.layers, args.audio_dim)
            rows = bench_inference(model, args.lengths, args.steps, args.repeats)
            reg = untrained_talker(args.dim, args.layers, args.audio_dim, deterministic=True)
            rows += bench_inference(reg, [max(args.lengths)], [1], args.repeats)
            result["inference"] = rows
            print("\ninference: one sample (real-time factor = wall / audio seconds)")
            print_table([{k: v for k, v in r.items() if k != "runs_s"} for r in rows])
        corpus = m2s = None
        if "training" in sections or ("memory" in sections and "train" in args.memory_probes):
            from train import random_m2s

            from thunder3d.data.synth import synthesize_corpus
            from thunder3d.models.m2s import M2S, M2SConfig
            from thunder3d.checkpoints import save_checkpoint

            corpus = tmp / "corpus"
            synthesize_corpus(corpus, hours=0.05, seed=0, workers=1, progress=False, max_clips=args.clips)
            if (args.m2s_dim, args.m2s_layers) == (192, 4):
                m2s = random_m2s(tmp / "m2s")
            else:
                rig = load_rig("builtin")
                cfg = M2SConfig.for_rig(rig, "mouth2s", dim=args.m2s_dim, layers=args.m2s_layers)
                m2s = save_checkpoint(tmp / "m2s", model=M2S(cfg),
                                      config={"task": "m2s", "model": cfg.to_dict(), "rig": rig.config()})
        if "training" in sections:
            result["training"] = bench_training(corpus, m2s, args.batch, args.window, args.repeats,
                                                args.dim, args.layers, args.audio_dim)
            print(f"\ntraining step (median of {args.repeats})")
            print_table(result["training"])
        if "m2s" in sections:
            result["m2s"] = bench_m2s(args.m2s_dim, args.m2s_layers, args.m2s_batch, args.m2s_frames, args.repeats)
            print(f"\nM2S (median of {args.repeats})")
            print_table(result["m2s"])
        if "memory" in sections:
            probes = [p.strip() for p in args.memory_probes.split(",") if p.strip()]
            bad = [p for p in probes if p not in ("baseline", "inference", "train")]
            if bad:
                ap.error(f"unknown --memory-probes {bad}; valid: baseline, inference, train")
            result["memory"] = {what: peak_rss(what, args, corpus, m2s) for what in probes}
            print("\npeak RSS of a fresh process")
            print_table([{"process": k, **v} for k, v in result["memory"].items()])
        if "render" in sections:
            result["gl_renderer"] = gl_renderer()
            result["render"] = bench_render(args.render_sizes, args.render_frames, tmp)
            print(f"\nrender (write_mp4, builtin rig, {result['gl_renderer']})")
            print_table(result["render"])
    result["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"\nload average at the end {result['machine']['loadavg_end']}; {result['wall_s']:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(result))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
