"""The ``thunder3d`` command: a thin layer over the library.

Every subcommand takes ``--seed`` and ``--device``; errors that come from bad input
(:class:`thunder3d.errors.ThunderError`) are printed as one line, without a traceback, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from thunder3d.errors import ThunderError


def _parse_coeffs(items: list[str]) -> dict[str, float]:
    """``["jawOpen=1", "mouthSmileLeft=0.5"]`` -> dict; bare names mean 1."""
    values: dict[str, float] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            try:
                values[name.strip()] = float(value) if sep else 1.0
            except ValueError:
                raise ThunderError(f"--coeff {part!r}: expected NAME=NUMBER") from None
    return values


def _train_args(p: argparse.ArgumentParser) -> None:
    """Options of the shared training loop (thunder3d.train.loop.TrainConfig)."""
    p.add_argument("--out", type=Path, required=True, help="run folder (never deleted; use --resume to continue)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16, help="per process")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay (0 = off)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop cleanly after this many minutes")
    p.add_argument("--stop-at", type=int, default=0,
                   help="stop cleanly at this step; the schedule still spans --steps (continue with --resume)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--resume", action="store_true", help="continue OUT/last")
    p.add_argument("--init", type=Path, default=None,
                   help="fine-tune: start from this checkpoint's weights (same task, rig and data statistics; "
                        "fresh optimizer and schedule)")
    p.add_argument("--no-progress", action="store_true")
    _common(p)


def _float_pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LO,HI, got {text!r}") from None
    return lo, hi


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0 = torch's choice, one per core; on a busy machine 1 "
                        "is often much faster)")


# ----------------------------------------------------------------------------- rig
def cmd_rig_info(args: argparse.Namespace) -> int:
    from thunder3d.rigs import load_rig

    rig = load_rig(args.spec)
    info = rig.describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"rig          {info['name']}  ({info['spec']})")
    print(f"units        {info['units']}")
    print(f"vertices     {info['vertices']}")
    print(f"triangles    {info['triangles']}")
    print(f"shape coeffs {info['shape_coefficients']}")
    print(f"coefficients {info['coefficients']}:")
    names = info["coeff_names"]
    for i in range(0, len(names), 4):
        print("  " + "".join(f"{n:<22}" for n in names[i:i + 4]))
    print("regions:")
    for name, size in info["regions"].items():
        print(f"  {name:<12} {size} vertices")
    print("lip landmarks: " + ", ".join(f"{k}={v}" for k, v in info["lip_landmarks"].items()))
    return 0


def cmd_rig_show(args: argparse.Namespace) -> int:
    import torch

    from thunder3d.render import render_still, save_png
    from thunder3d.rigs import load_rig

    torch.manual_seed(args.seed)
    rig = load_rig(args.spec).to(args.device)
    coeffs = rig.coeffs(_parse_coeffs(args.coeff))[0]
    with torch.no_grad():
        vertices = rig(coeffs[None])[0]
    image = render_still(rig, vertices, views=args.view, size=args.size)
    save_png(args.output, image)
    print(f"wrote {args.output}")
    return 0


def cmd_rig_import_ict(args: argparse.Namespace) -> int:
    from thunder3d.rigs.ict import convert_ict

    out = convert_ict(args.path, args.output)
    print(f"wrote {out}  (use it as --rig ict:{out})")
    return 0


# ----------------------------------------------------------------------------- data
def cmd_data_align(args: argparse.Namespace) -> int:
    from thunder3d.audio.align import align_file
    from thunder3d.audio.phones import phones_to_json
    from thunder3d.utils.io import atomic_write_text

    phones = align_file(args.wav, text=args.text)
    text = phones_to_json(phones)
    if args.output:
        atomic_write_text(args.output, text)
        mode = "forced alignment" if args.text else "phone recognition"
        print(f"wrote {len(phones)} phones ({mode}) to {args.output}")
    else:
        print(text)
    return 0


def cmd_data_recognize(args: argparse.Namespace) -> int:
    from thunder3d.data.recognized import recognize_corpus, recognized_dir

    report = recognize_corpus(args.corpus, args.split, recognizer=args.recognizer, overwrite=args.overwrite,
                              progress=not args.no_progress)
    print(f"{report.summary()} -> {recognized_dir(args.corpus, args.recognizer)}")
    return 0


def cmd_data_from_audio(args: argparse.Namespace) -> int:
    from thunder3d.data.real import from_audio

    report = from_audio(args.src, args.out, skip_bad=args.skip_bad, seed=args.seed)
    print(report.summary())
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    from thunder3d.data.importers import import_corpus

    options = {} if args.fps is None else {"fps": args.fps}
    report = import_corpus(args.format, args.src, args.out, skip_bad=args.skip_bad,
                           split_by=args.split_by, **options)
    print(report.summary())
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from thunder3d.audio.augment import AugmentConfig
    from thunder3d.data.synth import synthesize_corpus

    report = synthesize_corpus(args.out, hours=args.hours, seed=args.seed, workers=args.workers,
                               voices=args.voices.split(",") if args.voices else None,
                               augment=AugmentConfig.none() if args.no_augment else None,
                               progress=not args.no_progress)
    print(report.summary())
    return 1 if report.failed else 0


# ----------------------------------------------------------------------------- train / eval / speak
def _train_config(args: argparse.Namespace, best_metric: str):
    from thunder3d.train.loop import TrainConfig

    return TrainConfig(
        out=str(args.out), steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lr=args.lr, warmup_steps=args.warmup, ema_decay=args.ema, eval_every=args.eval_every,
        save_every=args.save_every, seed=args.seed, device=args.device, resume=args.resume,
        best_metric=best_metric, max_minutes=args.max_minutes, stop_at=args.stop_at,
        num_workers=args.workers, init=str(args.init) if args.init else "",
        progress=not args.no_progress)


def cmd_train_m2s(args: argparse.Namespace) -> int:
    from thunder3d.train.loop import train
    from thunder3d.train.m2s import M2SData, M2STask

    data = M2SData(corpus=str(args.corpus), rig=args.rig, input=args.input,
                   window_seconds=args.window, phone_weight=args.phone_weight, sc_weight=args.sc_weight,
                   still_prob=args.still_prob, still_seconds=args.still_seconds)
    model = dict(dim=args.dim, layers=args.layers, heads=args.heads, conv_kernel=args.conv_kernel,
                 dropout=args.dropout, loss_scales=args.loss_scales)
    result = train(M2STask(data, model), _train_config(args, "val_mel_l1"))
    if result.best_metric is None:  # not rank 0 under torchrun
        return 0
    print(f"stopped at step {result.step} ({result.stopped}); best val_mel_l1 {result.best_metric} "
          f"at step {result.best_step}; checkpoints in {result.out}")
    return 0


def cmd_eval_m2s(args: argparse.Namespace) -> int:
    import torch

    from thunder3d.data.clip import corpus_clips, load_clip
    from thunder3d.eval.m2s import evaluate_m2s, format_report
    from thunder3d.train.m2s import load_m2s
    from thunder3d.utils.io import atomic_write_text

    torch.manual_seed(args.seed)
    model, rig = load_m2s(args.checkpoint, device=args.device)
    ids = corpus_clips(args.corpus, None if args.split == "all" else args.split)[: args.clips or None]
    clips = [load_clip(args.corpus, cid) for cid in ids]
    result = evaluate_m2s(model, rig, clips, device=args.device)
    result.update(checkpoint=str(args.checkpoint), corpus=str(args.corpus), split=args.split,
                  input=model.cfg.input, rig=rig.spec)
    print(format_report(result))
    if args.output:
        atomic_write_text(args.output, json.dumps(result, indent=2))
        print(f"wrote {args.output}")
    return 0 if result["criterion_met"] else 1


def cmd_eval_talker(args: argparse.Namespace) -> int:
    import torch

    from thunder3d.data.clip import corpus_clips, load_clip, read_manifest
    from thunder3d.eval.talker import (add_system, check_clips, evaluate_animations, format_markdown,
                                       ground_truth_predictions, read_results)
    from thunder3d.inference.predictors import (Predictions, checkpoint_predictions, folder_predictions,
                                                rulebased_predictions)
    from thunder3d.rigs import load_rig
    from thunder3d.train.m2s import load_m2s
    from thunder3d.utils.io import atomic_write_text

    torch.manual_seed(args.seed)
    if args.checkpoint and args.rig:
        raise ThunderError("--rig does not go with --checkpoint: the checkpoint's rig is used")
    if args.checkpoint:
        run = args.checkpoint.resolve()
        name = run.parent.name if run.name in ("best", "last") else run.name
    else:
        name = args.predictions.resolve().name if args.predictions else (
            "rule-based" if args.rule_based else "ground truth")
    name = args.name or name
    systems = read_results(args.output) if args.output else {}
    ids = corpus_clips(args.corpus, None if args.split == "all" else args.split)
    if args.voice:
        voices = {e["id"]: str(e.get("voice") or "") for e in read_manifest(args.corpus)}
        ids = [i for i in ids if voices.get(i, "").startswith(args.voice)]
        if not ids:
            known = sorted({v.split("+")[0] for v in voices.values() if v})
            raise ThunderError(f"no {args.split} clip of {args.corpus} has a voice starting with {args.voice!r}; "
                               f"voices: {', '.join(known) or 'none recorded'}")
    ids = ids[: args.clips or None]
    check_clips(systems, name, ids)
    clips = [load_clip(args.corpus, cid) for cid in ids]
    m2s, m2s_rig = load_m2s(args.m2s, device=args.device) if args.m2s else (None, None)
    if args.checkpoint:
        preds = checkpoint_predictions(args.checkpoint, clips, args.samples, args.seed, args.steps,
                                       device=args.device, audio_scale=args.audio_scale)
    else:
        rig = load_rig(args.rig) if args.rig else (m2s_rig or load_rig("builtin"))
        if args.predictions:
            preds = folder_predictions(args.predictions, clips, rig)
        elif args.rule_based:
            preds = rulebased_predictions(clips, rig)
        else:
            preds = Predictions(rig, ground_truth_predictions(clips, rig), "ground truth")
    result = evaluate_animations(preds.rig, clips, preds.arrays, m2s=m2s, m2s_rig=m2s_rig,
                                 progress=not args.no_progress)
    result.update(source=preds.source, corpus=str(args.corpus), split=args.split, seed=args.seed,
                  steps=args.steps if args.checkpoint else None, m2s=str(args.m2s) if args.m2s else None,
                  audio_scale=preds.settings.get("audio_scale"))
    systems = add_system(systems, name, result)
    table = format_markdown(systems)
    print(table, end="")
    if args.output:
        atomic_write_text(args.output, json.dumps({"systems": systems}, indent=2, ensure_ascii=False))
        print(f"wrote {args.output} ({len(systems)} system(s))")
    if args.markdown:
        atomic_write_text(args.markdown, table)
        print(f"wrote {args.markdown}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from thunder3d.train.checkpoint import pack_checkpoint

    src = args.checkpoint
    if (src / "last" / "config.json").is_file() and not (src / "config.json").is_file():
        src = src / "last"
    out = pack_checkpoint(src, args.output, ema=False if args.no_ema else None,
                          sampling=None if args.guidance is None else {"guidance": args.guidance})
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB)")
    return 0


def cmd_speak(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from thunder3d.audio.io import save_audio
    from thunder3d.audio.vocoder import vocode
    from thunder3d.models.m2s import rig_features
    from thunder3d.train.m2s import load_m2s

    model, rig = load_m2s(args.m2s, device=args.device)
    try:
        with np.load(args.animation, allow_pickle=False) as data:
            coeffs = np.asarray(data["coeffs"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ThunderError(f"{args.animation}: not an animation npz with 'coeffs' ({exc})") from None
    if coeffs.ndim != 2 or coeffs.shape[1] != rig.num_coeffs or not np.isfinite(coeffs).all():
        raise ThunderError(f"{args.animation}: coeffs must be finite [T, {rig.num_coeffs}] for rig "
                           f"{rig.spec!r}, got {coeffs.shape}")
    with torch.no_grad():
        x = torch.from_numpy(coeffs).to(args.device)[None]
        mel = model.audible(model(rig_features(rig, x, model.cfg.input)).mel[0]).cpu()
    wav = vocode(mel, n_iter=args.iterations, seed=args.seed)
    save_audio(args.output, wav)
    print(f"wrote {args.output} ({len(wav) / 16000:.2f} s, Griffin-Lim from the predicted log-mel)")
    return 0


def _oversample(specs: list[str] | None) -> dict[str, int] | None:
    """``["festival:=3", ...]`` -> ``{"festival:": 3}`` (``--oversample PREFIX=K``)."""
    out: dict[str, int] = {}
    for spec in specs or []:
        prefix, sep, count = spec.rpartition("=")
        if not sep or not prefix or not count.isdigit() or int(count) < 1:
            raise ThunderError(f"--oversample {spec!r}: expected VOICE_PREFIX=K with an integer K >= 1")
        out[prefix] = int(count)
    return out or None


def cmd_train_talker(args: argparse.Namespace) -> int:
    from thunder3d.train.loop import train
    from thunder3d.train.talker import TalkerData, TalkerTask

    mel = args.audio in ("mel", "hybrid")  # encoders with the learned mel branch
    audio = {"kind": args.audio, "out_dim": args.audio_dim} if mel else {"kind": args.audio}
    if args.audio_cmn:  # only when asked: runs started without the option stay resumable
        audio["cmn"] = True
    if args.audio_warp or args.audio_band_mask:
        if not mel:
            raise ThunderError(f"--audio-warp/--audio-band-mask need the mel or hybrid encoder, not {args.audio!r}")
        audio.update(warp=args.audio_warp, band_mask=args.audio_band_mask)
    for option in ("mel_dropout", "phone_scale", "mel_gain", "recognizer"):
        if getattr(args, option) is not None:
            allowed = ("hybrid", "phonetic") if option == "recognizer" else ("hybrid",)
            if args.audio not in allowed:
                raise ThunderError(f"--{option.replace('_', '-')} needs the {' or '.join(allowed)} encoder, "
                                   f"not {args.audio!r}")
            audio[option] = getattr(args, option)
    if args.audio_path:
        audio["path"] = str(args.audio_path)
    data = TalkerData(
        corpus=str(args.corpus), rig=args.rig, window_seconds=args.window, audio=audio,
        deterministic=args.deterministic, w_coeff=args.w_coeff, coeff_loss=args.coeff_loss,
        w_vertex=args.w_vertex, mouth_weight=args.mouth_weight, w_velocity=args.w_velocity,
        lambda_m2s=args.lambda_m2s, m2s=str(args.m2s) if args.m2s else None,
        m2s_weighting=args.m2s_weighting, m2s_t_max=args.m2s_t_max, phone_weight=args.phone_weight,
        eval_steps=args.eval_steps, eval_samples=args.eval_samples, eval_windows=args.eval_windows,
        oversample=_oversample(args.oversample), clean_phone_prob=args.clean_phone_prob)
    model = dict(dim=args.dim, layers=args.layers, heads=args.heads, conv_kernel=args.conv_kernel,
                 dropout=args.dropout, audio_conditioning=args.audio_conditioning)
    diffusion = dict(num_train_timesteps=args.timesteps, schedule=args.noise_schedule)
    result = train(TalkerTask(data, model, diffusion), _train_config(args, "val_lve"))
    if result.best_metric is not None:  # rank 0 only under torchrun
        print(f"stopped at step {result.step} ({result.stopped}); best val_lve {result.best_metric:.3f} mm "
              f"at step {result.best_step}; checkpoints in {result.out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from thunder3d.audio.io import load_audio
    from thunder3d.constants import FPS
    from thunder3d.inference import generate, load_talker
    from thunder3d.utils.io import atomic_path

    model, rig, _, _ = load_talker(args.talker, args.device)
    wav = load_audio(args.wav)
    coeffs = generate(model, wav, samples=args.samples, seed=args.seed, emotion=args.emotion,
                      intensity=args.intensity, style=args.style, steps=args.steps,
                      audio_scale=args.audio_scale, cond_scale=args.cond_scale, window=args.window,
                      overlap=args.overlap)  # [N, T, C]
    with atomic_path(args.output) as tmp:
        np.savez(tmp, coeffs=coeffs, fps=np.float32(FPS), rig=np.str_(rig.spec),
                 coeff_names=np.asarray(rig.coeff_names), seed=np.int64(args.seed))
    print(f"wrote {args.output}: {coeffs.shape[0]} sample(s) x {coeffs.shape[1]} frames "
          f"({coeffs.shape[1] / FPS:.2f} s) of {coeffs.shape[2]} {rig.name} coefficients")
    return 0


# ----------------------------------------------------------------------------- animate / demo
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
DEMO_TEXT = "Hello! I am a talking head, and I can speak along with any voice."
DEMO_FORMATS = ("mp4", "glb", "npz")


def _audio_jobs(source: Path) -> list[tuple[Path, str | None]]:
    """``(audio file, result subfolder)`` pairs: a file alone (no subfolder) or every audio file of a
    folder, each into ``<stem>/`` (``<name>_<ext>/`` when two files share a stem)."""
    if not source.is_dir():
        return [(source, None)]
    files = sorted(f for f in source.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ThunderError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {source}")
    stems = [f.stem for f in files]
    return [(f, f.stem if stems.count(f.stem) == 1 else f.name.replace(".", "_")) for f in files]


class _WarningsToStderr:
    """Library warnings as one ``thunder3d: warning: ...`` line each, for the duration of a command."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *_args, **_kw: print(f"thunder3d: warning: {message}",
                                                                    file=sys.stderr)
        return self

    def __exit__(self, *exc) -> None:
        self._catcher.__exit__(*exc)


def _print_written(written: dict[str, list[Path]]) -> None:
    """One line per format: the file, or the folder and file count of a mesh sequence."""
    for fmt, paths in written.items():
        if len(paths) > 4 and len({p.parent for p in paths}) <= 4:
            folders = ", ".join(str(d) + "/" for d in dict.fromkeys(p.parent for p in paths))
            print(f"  {fmt:<4} {folders} ({len(paths)} files)")
        else:
            for path in paths:
                print(f"  {fmt:<4} {path}")


def _export(animator, animations, out_dir: Path, stem: str, formats, size: int,
            label: str | None = None) -> dict[str, list[Path]]:
    """Write the samples of one input with thunder3d.export and print what was written."""
    import numpy as np

    from thunder3d.export import export_animation

    coeffs = np.stack([a.coeffs for a in animations])  # [N, T, C]
    first = animations[0]
    written = export_animation(out_dir, animator.rig, coeffs, names=animator.names, fps=first.fps,
                               audio=first.audio, formats=formats, stem=stem, size=size)
    print(f"{label or first.source or stem}: {len(animations)} sample(s) x {first.num_frames} frames "
          f"({first.duration:.2f} s) on {animator.rig.spec} -> {out_dir}")
    _print_written(written)
    return written


def cmd_animate(args: argparse.Namespace) -> int:
    from thunder3d.audio.io import audio_info
    from thunder3d.errors import AudioError
    from thunder3d.export import parse_formats
    from thunder3d.export.common import ensure_folder
    from thunder3d.export.livelink import check_arkit_names
    from thunder3d.inference import Animator

    formats = parse_formats(args.format)
    jobs, skipped = [], []
    for path, sub in _audio_jobs(args.input):  # every header before any work
        try:
            audio_info(path)
            jobs.append((path, sub))
        except AudioError as exc:
            if not args.skip_bad:
                raise
            skipped.append(str(exc))
    out = ensure_folder(args.output)
    for path, sub in jobs:  # the exported <stem>.wav must not replace the input
        if (out / (sub or "") / f"{path.stem}.wav").resolve() == path.resolve():
            raise ThunderError(f"writing into {out} would overwrite the input {path} with its 16 kHz "
                               "copy; choose another output folder")
    animator = Animator.from_pretrained(args.model, device=args.device, rig=args.rig, recognizer=args.recognizer,
                                        mel_gain=args.mel_gain)
    if "csv" in formats:
        check_arkit_names(animator.rig.coeff_names)
    with _WarningsToStderr():
        for path, sub in jobs:
            try:
                animations = animator.animate(
                    path, samples=args.samples, emotion=args.emotion, intensity=args.intensity,
                    style=args.style, steps=args.steps, guidance=args.guidance,
                    cond_guidance=args.cond_guidance, seed=args.seed, progress=not args.no_progress)
            except AudioError as exc:
                if not args.skip_bad:
                    raise
                skipped.append(str(exc))
                continue
            _export(animator, animations, out / sub if sub else out, path.stem, formats, args.size)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from thunder3d.export.common import ensure_folder
    from thunder3d.inference import Animator

    out = ensure_folder(args.output)
    animator = Animator.from_pretrained(args.model, device=args.device)
    if args.wav is not None:
        audio, label = args.wav, None
    else:
        encoder = animator.model.audio_encoder
        if hasattr(encoder, "mel_gain"):  # synthetic speech: the settings for the training corpus's voices
            encoder.mel_gain, encoder.recognizer = 1.0, "phones"
        from thunder3d.audio.tts import synthesize

        text = args.text or DEMO_TEXT
        audio = synthesize(text, voice=args.voice, seed=args.seed).wav
        label = f"{text!r} (espeak-ng {args.voice})"
    with _WarningsToStderr():
        animations = animator.animate(audio, steps=args.steps, seed=args.seed,
                                      progress=not args.no_progress)
        _export(animator, animations, out, "demo", DEMO_FORMATS, args.size, label)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thunder3d", description=__doc__.splitlines()[0])
    from thunder3d import __version__

    parser.add_argument("--version", action="version", version=f"thunder3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    rig = sub.add_parser("rig", help="inspect, render and import face rigs")
    rig_sub = rig.add_subparsers(dest="rig_command", required=True)

    p = rig_sub.add_parser("info", help="print a rig's sizes, units, coefficients and regions")
    p.add_argument("spec", nargs="?", default="builtin",
                   help="builtin | ict:PATH | flame:PATH | blendshapes:PATH (default builtin)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p.set_defaults(func=cmd_rig_info)

    p = rig_sub.add_parser("show", help="render a still of a rig to PNG (headless)")
    p.add_argument("spec", nargs="?", default="builtin")
    p.add_argument("--coeff", action="append", default=[], metavar="NAME=VALUE",
                   help="coefficient value, repeatable or comma-separated (e.g. jawOpen=1)")
    p.add_argument("--view", default="front,three_quarter",
                   help="comma-separated views: front, three_quarter, side (default both first)")
    p.add_argument("--size", type=int, default=512, help="pixels per view (default 512)")
    p.add_argument("-o", "--output", type=Path, default=Path("rig.png"))
    _common(p)
    p.set_defaults(func=cmd_rig_show)

    p = rig_sub.add_parser("import-ict", help="convert an ICT-FaceKit folder into a compact rig file")
    p.add_argument("path", type=Path, help="ICT-FaceKit folder (holding FaceXModel/) or FaceXModel itself")
    p.add_argument("-o", "--output", type=Path, default=Path("ict_facekit.npz"))
    _common(p)
    p.set_defaults(func=cmd_rig_import_ict)

    data = sub.add_parser("data", help="make, import and align talking-head corpora")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    p = data_sub.add_parser("synth", help="generate the synthetic audio-visual corpus (TTS + articulation)")
    p.add_argument("--out", type=Path, required=True, help="corpus folder (resumable)")
    p.add_argument("--hours", type=float, default=1.0, help="hours of speech (default 1)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--voices", help="comma-separated espeak accents and/or festival:VOICE[@train|val|test] (default: espeak English)")
    p.add_argument("--no-augment", action="store_true", help="clean speech (no noise/reverb/EQ/speed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=cmd_data_synth)

    p = data_sub.add_parser("align", help="phones of a recording: forced alignment with --text, else recognition")
    p.add_argument("wav", type=Path)
    p.add_argument("--text", help="transcript for forced alignment")
    p.add_argument("-o", "--output", type=Path, help="phones JSON (default: print)")
    _common(p)
    p.set_defaults(func=cmd_data_align)

    p = data_sub.add_parser("recognize", help="recognise every clip's phones once (for the hybrid/phonetic "
                                              "audio encoders) -> CORPUS/recognized/")
    p.add_argument("corpus", type=Path)
    p.add_argument("--split", choices=("train", "val", "test"), help="only this split (default: all)")
    p.add_argument("--recognizer", choices=("phones", "words"), default="phones",
                   help="phones: pocketsphinx's phone loop -> CORPUS/recognized/; words: word recognition + the "
                        "phones of the hypothesis -> CORPUS/recognized-words/ (default phones)")
    p.add_argument("--overwrite", action="store_true", help="recognise clips that already have phones again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=cmd_data_recognize)

    p = data_sub.add_parser("from-audio", help="real recordings (+ <name>.txt transcripts) -> pseudo-ground-truth clips")
    p.add_argument("src", type=Path, help="folder of recordings, searched recursively")
    p.add_argument("--out", type=Path, required=True, help="corpus folder")
    p.add_argument("--skip-bad", action="store_true", help="skip and list bad recordings instead of stopping")
    _common(p)
    p.set_defaults(func=cmd_data_from_audio)

    p = data_sub.add_parser("import", help="import captured data (FLAME parameters, Live Link Face CSV)")
    p.add_argument("src", type=Path)
    p.add_argument("--format", required=True, help="flame | livelink")
    p.add_argument("--out", type=Path, required=True, help="corpus folder")
    p.add_argument("--fps", type=float, help="source frame rate when the files do not say (default 25)")
    p.add_argument("--split-by", default="auto", help="auto | speaker | clip (default auto)")
    p.add_argument("--skip-bad", action="store_true", help="skip and list bad clips instead of stopping")
    _common(p)
    p.set_defaults(func=cmd_data_import)

    tr = sub.add_parser("train", help="train models on the shared loop (resume, DDP via torchrun)")
    tr_sub = tr.add_subparsers(dest="train_command", required=True)
    p = tr_sub.add_parser("m2s", help="train a mesh-to-speech model")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--rig", default="builtin", help="rig spec the animation is rendered with (default builtin)")
    p.add_argument("--input", default="mouth2s", help="mouth2s | face2s | exp2s (default mouth2s)")
    p.add_argument("--window", type=float, default=4.0, help="training window in seconds (2-8)")
    p.add_argument("--phone-weight", type=float, default=0.2, help="phone cross-entropy weight (0 = off)")
    p.add_argument("--sc-weight", type=float, default=0.0, help="spectral convergence weight")
    p.add_argument("--loss-scales", type=_int_list, default=(1, 8, 32), metavar="K,K,...",
                   help="mel-frame widths of the multi-resolution mel L1 (default 1,8,32; 1 = plain L1)")
    p.add_argument("--still-prob", type=float, default=0.7,
                   help="probability of a still-face span with background audio per window (default 0.7)")
    p.add_argument("--still-seconds", type=_float_pair, default=(0.4, 3.5), metavar="LO,HI",
                   help="length range of a still span in seconds (default 0.4,3.5)")
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--conv-kernel", type=int, default=15)
    p.add_argument("--dropout", type=float, default=0.1)
    _train_args(p)
    p.set_defaults(func=cmd_train_m2s)

    p = tr_sub.add_parser("talker", help="train the speech-driven talking head (THUNDER diffusion or regressor)")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--m2s", type=Path, help="frozen M2S run for the THUNDER loss (its rig is the default rig)")
    p.add_argument("--lambda-m2s", type=float, default=0.0, help="THUNDER loss weight (0 = off; needs --m2s)")
    p.add_argument("--m2s-weighting", default="none", help="none | tmax | snr (timestep weighting of the THUNDER loss)")
    p.add_argument("--m2s-t-max", type=int, default=0, help="apply the THUNDER loss only for t <= this (0 = all)")
    p.add_argument("--phone-weight", type=float, default=0.0, help="M2S phone cross-entropy in the THUNDER loss")
    p.add_argument("--deterministic", action="store_true", help="train the regressor baseline (no diffusion)")
    p.add_argument("--rig", default=None, help="rig spec (default: the M2S's rig, else builtin)")
    p.add_argument("--window", type=float, default=4.0, help="training window in seconds (2-8)")
    p.add_argument("--audio", default="mel",
                   help="audio encoder: mel | hybrid (mel + recognised phones; run `data recognize` first) "
                        "| wav2vec2 | hubert | phonetic")
    p.add_argument("--audio-path", type=Path, help="local model folder for wav2vec2/hubert")
    p.add_argument("--audio-dim", type=int, default=128, help="features per frame of the mel/hybrid encoder")
    p.add_argument("--clean-phone-prob", type=float, default=0.0,
                   help="hybrid/phonetic encoders, training only: probability that an item gets its clip's true "
                        "phones instead of the recognised ones (0 = off)")
    p.add_argument("--mel-dropout", type=float, default=None,
                   help="hybrid encoder, training only: probability of zeroing an item's mel branch (default 0)")
    p.add_argument("--phone-scale", type=float, default=None,
                   help="hybrid encoder: input scale of the phone projection, i.e. how fast it learns (default 100)")
    p.add_argument("--mel-gain", type=float, default=None,
                   help="hybrid encoder, outside training: weight of the mel branch (default 1)")
    p.add_argument("--recognizer", choices=("phones", "words"), default=None,
                   help="hybrid/phonetic encoders: how phones are recognised, phone loop or words (default phones; "
                        "training reads the matching `data recognize --recognizer` cache)")
    p.add_argument("--audio-cmn", action="store_true",
                   help="mel encoder: subtract each window's mean log-mel per bin (blind to microphone/room colour)")
    p.add_argument("--oversample", action="append", default=None, metavar="VOICE_PREFIX=K",
                   help="training clips whose voice starts with VOICE_PREFIX count K times per epoch "
                        "(e.g. festival:=3; repeatable)")
    p.add_argument("--audio-warp", type=float, default=0.0,
                   help="mel encoder, training only: vocal-tract-length warp of up to +-this (e.g. 0.12; 0 = off)")
    p.add_argument("--audio-band-mask", type=int, default=0,
                   help="mel encoder, training only: mask one band of up to this many mel bins (0 = off)")
    p.add_argument("--w-coeff", type=float, default=1.0)
    p.add_argument("--coeff-loss", default="l2", help="l2 | l1")
    p.add_argument("--w-vertex", type=float, default=0.1, help="vertex loss weight (mm^2)")
    p.add_argument("--mouth-weight", type=float, default=4.0, help="weight of mouth vertices in the vertex loss")
    p.add_argument("--w-velocity", type=float, default=1.0)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--conv-kernel", type=int, default=15)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--audio-conditioning", default="add", help="add | cross")
    p.add_argument("--timesteps", type=int, default=1000, help="diffusion training timesteps")
    p.add_argument("--noise-schedule", default="cosine", help="cosine | linear")
    p.add_argument("--eval-steps", type=int, default=10, help="DDIM steps of the validation samples")
    p.add_argument("--eval-samples", type=int, default=2, help="samples per validation window (S-DIV-U)")
    p.add_argument("--eval-windows", type=int, default=64, help="validation windows evaluated")
    _train_args(p)
    p.set_defaults(func=cmd_train_talker)

    p = sub.add_parser("sample", help="animate speech with a trained talker -> npz of coefficients")
    p.add_argument("wav", type=Path, help="speech recording (any length; resampled to 16 kHz mono)")
    p.add_argument("--talker", type=Path, required=True, help="talker run folder or checkpoint")
    p.add_argument("-o", "--output", type=Path, default=Path("out.npz"))
    p.add_argument("--samples", type=int, default=1, help="number of samples (sample i uses seed + i)")
    p.add_argument("--emotion", default=None,
                   help="neutral | happy | sad | surprised | fear | disgusted | angry | contempt")
    p.add_argument("--intensity", type=int, default=None, help="1 | 2 | 3")
    p.add_argument("--style", default=None, help="a speaking style seen in training")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps")
    p.add_argument("--audio-scale", type=float, default=None,
                   help="audio guidance scale (default: what the checkpoint recommends, else 1)")
    p.add_argument("--cond-scale", type=float, default=1.0, help="emotion/intensity/style guidance scale")
    p.add_argument("--window", type=float, default=4.0, help="window seconds")
    p.add_argument("--overlap", type=float, default=1.0, help="overlap seconds between windows")
    _common(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("animate", help="animate speech (a file or a folder of them) and export it "
                                       "(npz, obj, ply, csv, glb, mp4)")
    p.add_argument("input", type=Path, help="speech file (any length), or a folder of them: one result "
                                            "folder per file (OUT/<stem>/)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("--model", default=None,
                   help="talker run folder or checkpoint (default: the model shipped with thunder3d)")
    p.add_argument("--rig", default=None,
                   help="animate this ARKit rig instead of the model's: builtin | ict:PATH | "
                        "blendshapes:PATH")
    p.add_argument("--samples", type=int, default=1, help="number of samples (sample i uses seed + i)")
    p.add_argument("--emotion", default=None,
                   help="neutral | happy | sad | surprised | fear | disgusted | angry | contempt")
    p.add_argument("--intensity", default=None, help="1 | 2 | 3")
    p.add_argument("--style", default=None, help="a speaking style seen in training")
    p.add_argument("--format", default="npz", help="comma-separated: npz,obj,ply,csv,glb,mp4 (default npz)")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps (default 10)")
    p.add_argument("--guidance", type=float, default=None,
                   help="audio guidance scale (default: what the model recommends, else 1)")
    p.add_argument("--recognizer", choices=("words", "phones"), default=None,
                   help="models that read recognised phones: words (accurate, the shipped model's) or phones "
                        "(faster, about 0.1 s less per second of speech); default: the model's")
    p.add_argument("--mel-gain", type=float, default=None,
                   help="hybrid models: weight of the mel features, 0-1 (default: the model's; the shipped model "
                        "uses 0.25 for human voices; for espeak/festival speech --mel-gain 1 --recognizer phones)")
    p.add_argument("--cond-guidance", type=float, default=1.0,
                   help="emotion/intensity/style guidance scale (default 1; 0 ignores them)")
    p.add_argument("--size", type=int, default=512, help="MP4 pixels per sample (default 512)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip and list unreadable audio files instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("demo", help="speak a sentence (or --wav) with the shipped model: MP4 with sound, "
                                    "GLB, npz")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--text", default=None, help=f"sentence to synthesise (default: {DEMO_TEXT!r})")
    source.add_argument("--wav", type=Path, default=None, help="animate this speech file instead of TTS")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice of the synthesised speech (default en-us)")
    p.add_argument("-o", "--output", type=Path, default=Path("thunder3d-demo"),
                   help="output folder (default ./thunder3d-demo)")
    p.add_argument("--model", default=None, help="talker run folder or checkpoint (default: the shipped model)")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps (default 10)")
    p.add_argument("--size", type=int, default=512, help="video pixels (default 512)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=cmd_demo)

    ev = sub.add_parser("eval", help="evaluate trained models")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    p = ev_sub.add_parser("m2s", help="mel accuracy and the sync-sensitivity curve of an M2S")
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder or checkpoint directory")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=0, help="evaluate the first N clips (0 = all)")
    p.add_argument("-o", "--output", type=Path, help="write the result as JSON")
    _common(p)
    p.set_defaults(func=cmd_eval_m2s)
    p = ev_sub.add_parser("talker", help="lip accuracy, dynamics, diversity and grounded lip-sync checks "
                          "of a talking-head system on corpus clips")
    system = p.add_mutually_exclusive_group(required=True)
    system.add_argument("--checkpoint", type=Path, help="talker run folder or checkpoint: sample it")
    system.add_argument("--predictions", type=Path,
                        help="folder of <clip_id>.npz with coeffs [N,T,C]/[T,C] or vertices [N,T,V,3]/[T,V,3]")
    system.add_argument("--rule-based", action="store_true",
                        help="baseline: pocketsphinx phone recognition + the corpus articulation model")
    system.add_argument("--ground-truth", action="store_true", help="score the clips' own motion")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--split", default="test", help="train | val | test | all (default test)")
    p.add_argument("--clips", type=int, default=0, help="evaluate the first N clips (0 = all)")
    p.add_argument("--voice", default=None,
                   help="only clips whose manifest voice starts with this (e.g. festival:ked_diphone)")
    p.add_argument("--samples", type=int, default=5, help="samples per clip (--checkpoint; S-DIV needs 2+)")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps (--checkpoint)")
    p.add_argument("--audio-scale", type=float, default=None,
                   help="audio classifier-free guidance scale (--checkpoint; 1 = plain conditional; "
                        "default: what the checkpoint recommends, else 1)")
    p.add_argument("--rig", default=None, help="rig of --predictions/--rule-based/--ground-truth "
                   "(default: the M2S's rig, else builtin)")
    p.add_argument("--m2s", type=Path, default=None, help="M2S run: add the audio-consistency figure")
    p.add_argument("--name", default=None, help="system name in the table (default: run/folder name)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="results JSON; systems accumulate under their --name (same clips required)")
    p.add_argument("--markdown", type=Path, default=None, help="write the table of every system in -o")
    p.add_argument("--no-progress", action="store_true")
    _common(p)
    p.set_defaults(func=cmd_eval_talker)

    p = sub.add_parser("speak", help="hear a face: vocode what a trained M2S hears in an animation")
    p.add_argument("animation", type=Path, help="npz with coeffs [T, C] (a clip or an exported animation)")
    p.add_argument("--m2s", type=Path, required=True, help="M2S run folder or checkpoint")
    p.add_argument("--iterations", type=int, default=60, help="Griffin-Lim iterations")
    p.add_argument("-o", "--output", type=Path, default=Path("speech.wav"))
    _common(p)
    p.set_defaults(func=cmd_speak)

    p = sub.add_parser("pack", help="inference-only copy of a checkpoint (weights for use + config, no "
                                    "training state), e.g. to ship a model")
    p.add_argument("checkpoint", type=Path, help="run folder (its last/) or checkpoint directory")
    p.add_argument("-o", "--output", type=Path, required=True, help="new checkpoint directory")
    p.add_argument("--no-ema", action="store_true", help="pack the raw weights, not the EMA ones")
    p.add_argument("--guidance", type=float, default=None,
                   help="audio guidance scale that samplers use by default with this model (sampling.guidance)")
    p.set_defaults(func=cmd_pack)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "threads", 0):
            if args.threads < 0:
                raise ThunderError(f"--threads must be >= 0, got {args.threads}")
            import torch

            torch.set_num_threads(args.threads)
        return int(args.func(args) or 0)
    except ThunderError as exc:
        print(f"thunder3d: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thunder3d: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
