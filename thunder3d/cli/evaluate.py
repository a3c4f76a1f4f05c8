"""``thunder3d eval m2s|talker``, ``thunder3d speak`` and ``thunder3d pack``: models after training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from thunder3d.cli.options import add_common, add_output, opt

def _write_json(path: Path | None, data: dict, what: str = "") -> None:
    from thunder3d.utils.io import atomic_write_text

    if path:
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False))
        print(f"wrote {path}{what}")


def cmd_eval_m2s(args: argparse.Namespace) -> int:
    from thunder3d.checkpoints import load_m2s
    from thunder3d.data.clip import load_clip
    from thunder3d.eval.m2s import evaluate_m2s, format_report
    from thunder3d.scoring import select_clips

    model, rig = load_m2s(args.model, device=args.device)
    clips = [load_clip(args.corpus, cid) for cid in select_clips(args.corpus, args.split, limit=args.clips)]
    result = evaluate_m2s(model, rig, clips, device=args.device)
    result.update(checkpoint=str(args.model), corpus=str(args.corpus), split=args.split, input=model.cfg.input,
                  rig=rig.spec)
    print(format_report(result))
    _write_json(args.output, result)
    return 0 if result["criterion_met"] else 1


def cmd_eval_talker(args: argparse.Namespace) -> int:
    from thunder3d.scoring import add_system, format_markdown, read_results, score_talker
    from thunder3d.utils.io import atomic_write_text

    kind = "model" if args.model else "predictions" if args.predictions else \
        "rule-based" if args.rule_based else "ground-truth"
    systems = read_results(args.output) if args.output else {}
    name, result = score_talker(kind, args.corpus, source=args.model or args.predictions, name=args.name,
                                results=systems, split=args.split, voice=args.voice, clips=args.clips,
                                samples=args.samples, seed=args.seed, steps=args.steps, guidance=args.guidance,
                                rig=args.rig, m2s=args.m2s, listener=args.listener,
                                listener_strength=args.listener_strength, candidates=args.candidates,
                                device=args.device, progress=not args.no_progress)
    systems = add_system(systems, name, result)
    print(table := format_markdown(systems), end="")
    _write_json(args.output, {"systems": systems}, f" ({len(systems)} system(s))")
    if args.markdown:
        atomic_write_text(args.markdown, table)
        print(f"wrote {args.markdown}")
    return 0


def format_audit(report: dict) -> str:
    terms = "  ".join(f"{k} {'–' if v is None else f'{v:.2f}'}" for k, v in report["terms"].items())
    lines = [f"score {report['score']:.3f}   ({terms})"]
    for name, check in report["checks"].items():
        if check["segments"]:
            lines.append(f"  {name:9s} {check['hits']}/{check['segments']} segments pass")
    sync = report["sync"]
    if sync["lag_ms"] is not None:
        lines.append(f"  sync      lips {sync['lag_ms']:+.0f} ms behind the audio (peak corr {sync['peak_corr']:.2f})")
    if report["listener"]:
        lines.append(f"  listener  agreement {report['listener']['agreement']:.3f} (loss {report['listener']['loss']:.3f} "
                     f"vs still face {report['listener']['still_loss']:.3f})")
    for w in report["worst_moments"][:3]:
        what = ", ".join(f"{f['check']} {f['phone']} at {f['time']:.2f} s" for f in w.get("failed", [])) \
            if "ratio" in w else f"{w['check']} {w['phone']}"
        lines.append(f"  worst {w['time']:.2f}-{w['end']:.2f} s" + (f" (listener ratio {w['ratio']:.2f})" if w.get("ratio") else "")
                     + (f": {what}" if what else ""))
    return "\n".join(lines)


def cmd_audit(args: argparse.Namespace) -> int:
    from thunder3d.scoring import audit_files

    listener = None if str(args.listener).lower() == "none" else args.listener
    report = audit_files(args.speech, args.track, text=args.text, rig=args.rig, listener=listener, fps=args.fps,
                         sample=args.sample, device=args.device)
    print(format_audit(report))
    _write_json(args.json, report)
    return 0


def cmd_speak(args: argparse.Namespace) -> int:
    from thunder3d.audio.io import save_audio
    from thunder3d.checkpoints import load_m2s
    from thunder3d.eval.m2s import hear

    output = args.output or args.animation.with_suffix(".heard.wav")
    model, rig = load_m2s(args.m2s, device=args.device)
    save_audio(output, wav := hear(model, rig, args.animation, iterations=args.iterations, seed=args.seed,
                                        device=args.device))
    print(f"wrote {output} ({len(wav) / 16000:.2f} s, Griffin-Lim from the predicted log-mel)")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from thunder3d.checkpoints import pack_checkpoint

    out = pack_checkpoint(args.checkpoint, args.output, ema=False if args.no_ema else None,
                          sampling={key: value for key, value in (("guidance", args.guidance), ("steps", args.steps))
                                    if value is not None} or None, half=args.half)
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB) from "
          f"{json.loads((out / 'config.json').read_text())['packed_from']['source']}")
    return 0


def _clips(p: argparse.ArgumentParser) -> None:
    opt(p, "--corpus", None, "corpus folder", type=Path, required=True)
    opt(p, "--split", "test", "clips of this split", choices=("train", "val", "test", "all"))
    opt(p, "--clips", 0, "evaluate the first N clips (0 = all)")


def register(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate trained models and other systems")
    commands = ev.add_subparsers(dest="eval_command", required=True, metavar="{m2s,talker}")
    p = commands.add_parser("m2s", help="mel accuracy and the sync-sensitivity curve of an M2S listener")
    opt(p, ("--model", "--checkpoint"), None, "M2S run folder or checkpoint", type=Path, required=True)
    _clips(p)
    add_output(p, "write the result as JSON")
    add_common(p)
    p.set_defaults(func=cmd_eval_m2s)

    p = commands.add_parser("talker", help="lip accuracy, dynamics, diversity and grounded lip-sync of a system")
    system = p.add_mutually_exclusive_group(required=True)
    opt(system, ("--model", "--checkpoint"), None, "system: a talker run folder or checkpoint, sampled", type=Path)
    opt(system, "--predictions", None, "system: a folder of <clip_id>.npz: coeffs [N,T,C] or vertices [N,T,V,3]",
        type=Path)
    opt(system, "--rule-based", False, "system: pocketsphinx phone recognition + the corpus articulation model")
    opt(system, "--ground-truth", False, "system: the clips' own motion")
    _clips(p)
    opt(p, "--voice", None, "only clips whose manifest voice starts with this (e.g. festival:ked_diphone)")
    opt(p, "--samples", 5, "samples per clip of --model (S-DIV needs 2+)")
    opt(p, "--steps", None, "DDIM steps of --model (default: the checkpoint's, else 10)", type=int)
    opt(p, ("--guidance", "--audio-scale"), None, "audio guidance of --model (default: the checkpoint's, else 1)",
        type=float)
    opt(p, "--listener", None, "sample --model with this M2S listener (a run, or builtin): guidance and/or re-ranking")
    opt(p, "--listener-strength", 0.0, "listener guidance step per DDIM step (0 = none)", type=float)
    opt(p, "--candidates", 1, "draws per kept sample, re-ranked by the listener (1 = none)", type=int)
    opt(p, "--rig", None, "rig of the other systems (default: the M2S's rig, else builtin)")
    opt(p, "--m2s", None, "M2S run: add the audio-consistency figure", type=Path)
    opt(p, "--name", None, "system name in the table (default: run/folder name)")
    add_output(p, "results JSON; systems accumulate under their --name (same clips required)")
    opt(p, "--markdown", None, "write the table of every system in -o", type=Path)
    add_common(p, progress=True)
    p.set_defaults(func=cmd_eval_talker)

    p = sub.add_parser("audit", help="reference-free lip-sync score of any face track, given its speech")
    p.add_argument("speech", type=Path, help="the speech (any format load_audio reads)")
    p.add_argument("track", type=Path, help="the track: npz with coeffs [T, C] (+ coeff_names, fps) or a Live Link CSV")
    opt(p, "--json", None, "write the full report (score, checks, failures, worst moments) here", type=Path)
    opt(p, "--text", None, "transcript of the speech (default: SPEECH.txt beside it, else word recognition)")
    opt(p, "--rig", "builtin", "rig the track's coefficients drive (its lips are measured)")
    opt(p, "--listener", "builtin", "M2S listener of that rig: builtin, a run folder, or none")
    opt(p, "--fps", None, "frame rate of the track (default: the file's, else 25)", type=float)
    opt(p, "--sample", 0, "which sample of an [N, T, C] track")
    add_common(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("speak", help="hear a face: vocode what a trained M2S hears in an animation")
    p.add_argument("animation", type=Path, help="npz with coeffs [T, C] or [N, T, C] (a clip, or an animation: "
                                                "its first sample)")
    opt(p, "--m2s", None, "M2S run folder or checkpoint", type=Path, required=True)
    opt(p, "--iterations", 60, "Griffin-Lim iterations")
    add_output(p, "wav file (default: ANIMATION with .heard.wav)")
    add_common(p)
    p.set_defaults(func=cmd_speak)

    p = sub.add_parser("pack", help="inference-only copy of a checkpoint (e.g. to ship a model)")
    p.add_argument("checkpoint", type=Path, help="run folder (its best/, else last/: what --model loads) or "
                                                 "checkpoint directory")
    add_output(p, "new checkpoint directory (not an existing folder other than a checkpoint)", required=True)
    opt(p, "--no-ema", False, "pack the raw weights, not the EMA ones")
    opt(p, "--half", False, "store the weights as float16 (half the size)")
    opt(p, "--guidance", None, "audio guidance scale that samplers use by default with this model", type=float)
    opt(p, "--steps", None, "DDIM steps that samplers use by default with this model", type=int)
    add_common(p)
    p.set_defaults(func=cmd_pack)
