"""``thunder3d animate`` (speech files of any length -> exports) and ``thunder3d demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thunder3d.cli.options import add_common, add_output, opt
from thunder3d.conditions import EMOTIONS, INTENSITIES
from thunder3d.errors import ThunderError

DEMO_TEXT = "Hello! I am a talking head, and I can speak along with any voice."


def _export(animator, animations, out_dir: Path, stem: str, formats, size: int, label: str | None = None) -> None:
    import numpy as np

    from thunder3d.export import export_animation, written_summary

    first = animations[0]
    written = export_animation(out_dir, animator.rig, np.stack([a.coeffs for a in animations]), names=animator.names,
                               fps=first.fps, audio=first.audio, formats=formats, stem=stem, size=size)
    print(f"{label or first.source or stem}: {len(animations)} sample(s) x {first.num_frames} frames "
          f"({first.duration:.2f} s) on {animator.rig.spec} -> {out_dir}", *written_summary(written), sep="\n")


def cmd_animate(args: argparse.Namespace) -> int:
    from thunder3d.errors import AudioError
    from thunder3d.export import check_export_options
    from thunder3d.export.common import ensure_folder
    from thunder3d.export.livelink import check_arkit_names
    from thunder3d.inference import Animator, audio_inputs

    formats = check_export_options(args.format, args.size)
    if args.listener is not None or args.listener_strength or args.candidates != 1:
        from thunder3d.errors import ThunderError
        from thunder3d.inference.listening import check_listening

        check_listening(args.listener_strength, args.candidates)
        if args.listener is None:
            raise ThunderError("--listener-strength and --candidates need --listener (builtin or an M2S run)")
    jobs, skipped = audio_inputs(args.input, args.output, skip_bad=args.skip_bad)  # every header before any work
    out = ensure_folder(args.output)
    animator = Animator.from_pretrained(args.model, device=args.device, rig=args.rig, recognizer=args.recognizer,
                                        mel_gain=args.mel_gain)
    if "csv" in formats:
        check_arkit_names(animator.rig.coeff_names)
    for path, sub in jobs:
        try:
            animations = animator.animate(path, samples=args.samples, emotion=args.emotion, intensity=args.intensity,
                                          style=args.style, steps=args.steps, guidance=args.guidance,
                                          cond_guidance=args.cond_guidance, seed=args.seed, window=args.window,
                                          overlap=args.overlap, progress=not args.no_progress,
                                          listener=args.listener, listener_strength=args.listener_strength,
                                          candidates=args.candidates)
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
    from thunder3d.audio.tts import synthesize
    from thunder3d.export import check_export_options
    from thunder3d.export.common import ensure_folder
    from thunder3d.inference import Animator

    formats = check_export_options("mp4,glb,npz", args.size)
    out = ensure_folder(args.output)
    # synthetic speech: the settings for voices like the training corpus's, before any recogniser starts
    animator = Animator.from_pretrained(args.model, device=args.device, synthetic_speech=args.wav is None)
    if args.text is not None and not args.text.strip():
        raise ThunderError("--text is empty; give a sentence, or leave it out for the default one")
    text = args.text or DEMO_TEXT
    audio = args.wav if args.wav is not None else synthesize(text, voice=args.voice, seed=args.seed).wav
    animations = animator.animate(audio, steps=args.steps, seed=args.seed, progress=not args.no_progress)
    label = None if args.wav else f"{text!r} (espeak-ng {args.voice})"
    _export(animator, animations, out, "demo", formats, args.size, label)
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    opt(p, ("--model", "--talker", "--checkpoint"), None, "talker run folder or checkpoint (default: shipped model)")
    opt(p, "--steps", None, "DDIM sampling steps (default: the model's, else 10)", type=int)
    opt(p, "--size", 512, "MP4 pixels per sample")


def register(sub) -> None:
    p = sub.add_parser("animate", help="animate speech (a file or a folder of them) and export it "
                                       "(npz, obj, ply, csv, glb, mp4)")
    p.add_argument("input", type=Path, help="speech file of any length and format, or a folder of them (one result "
                                            "folder per file: OUTPUT/<stem>/)")
    add_output(p, "output folder (created if needed)", required=True)
    _model_options(p)
    opt(p, "--rig", None, "animate this ARKit rig instead of the model's: builtin | ict:PATH | blendshapes:PATH")
    opt(p, "--samples", 1, "number of samples; sample i uses seed + i")
    opt(p, "--emotion", None, " | ".join(EMOTIONS) + " (default: none)")
    opt(p, "--intensity", None, "emotion intensity (default: none)", type=int, choices=INTENSITIES)
    opt(p, "--style", None, "a speaking style seen in training")
    opt(p, "--format", "npz", "comma-separated: npz,obj,ply,csv,glb,mp4")
    opt(p, ("--guidance", "--audio-scale"), None, "audio guidance scale (default: the model's, else 1)", type=float)
    opt(p, ("--cond-guidance", "--cond-scale"), 1.0, "emotion/intensity/style guidance scale (0 ignores them)")
    opt(p, "--window", None, "sampling window in seconds (default: the model's training window)", type=float)
    opt(p, "--overlap", None, "overlap of consecutive windows in seconds (default: a quarter window)", type=float)
    opt(p, "--recognizer", None, "phone-reading models: words (accurate) or phones (faster) (default: the model's)",
        choices=("words", "phones"))
    opt(p, "--mel-gain", None, "hybrid models: weight of the mel features, 0-1 (default: the model's)", type=float)
    opt(p, "--listener", None, "sample with a mesh-to-speech listener: builtin or an M2S run (default: none)")
    opt(p, "--listener-strength", 0.0, "listener guidance step per DDIM step (0 = none)", type=float)
    opt(p, "--candidates", 1, "draws per sample, the listener keeps the most in sync (1 = none)", type=int)
    opt(p, "--skip-bad", False, "skip and list unreadable audio files instead of stopping")
    add_common(p, progress=True)
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("demo", help="speak a sentence (or --wav) with the shipped model: MP4 with sound, GLB, npz")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--text", default=None, help=f"sentence to synthesise (default: {DEMO_TEXT!r})")
    source.add_argument("--wav", type=Path, default=None, help="animate this speech file instead of TTS")
    opt(p, "--voice", "en-us", "espeak-ng voice of the synthesised speech")
    add_output(p, "output folder", default=Path("thunder3d-demo"))
    _model_options(p)
    add_common(p, progress=True)
    p.set_defaults(func=cmd_demo)
