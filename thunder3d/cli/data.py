"""``thunder3d data synth|align|recognize|from-audio|import``: make, import and align corpora."""

from __future__ import annotations

import argparse
from pathlib import Path

from thunder3d.cli.options import add_common, add_output, opt


def cmd_data_synth(args: argparse.Namespace) -> int:
    from thunder3d.audio.augment import AugmentConfig
    from thunder3d.data.synth import synthesize_corpus

    report = synthesize_corpus(args.output, hours=args.hours, seed=args.seed, workers=args.workers,
                               voices=args.voices.split(",") if args.voices else None,
                               augment=AugmentConfig.none() if args.no_augment else None, progress=not args.no_progress)
    print(report.summary())
    return 1 if report.failed else 0


def cmd_data_align(args: argparse.Namespace) -> int:
    from thunder3d.audio.align import align_file
    from thunder3d.audio.phones import phones_to_json
    from thunder3d.utils.io import atomic_write_text

    phones = align_file(args.wav, text=args.text)
    if not args.output:
        print(phones_to_json(phones))
        return 0
    atomic_write_text(args.output, phones_to_json(phones))
    print(f"wrote {len(phones)} phones ({'forced alignment' if args.text else 'phone recognition'}) to {args.output}")
    return 0


def cmd_data_recognize(args: argparse.Namespace) -> int:
    from thunder3d.data.recognized import recognize_corpus, recognized_dir

    report = recognize_corpus(args.corpus, args.split, recognizer=args.recognizer, overwrite=args.overwrite,
                              progress=not args.no_progress)
    print(f"{report.summary()} -> {recognized_dir(args.corpus, args.recognizer)}")
    return 0


def cmd_data_features(args: argparse.Namespace) -> int:
    from thunder3d.data.pretrained import cache_pretrained, pretrained_dir

    report = cache_pretrained(args.corpus, args.split, name=args.name, overwrite=args.overwrite,
                              progress=not args.no_progress)
    print(f"{report.summary()} -> {pretrained_dir(args.corpus, args.name)}")
    return 0


def cmd_data_from_audio(args: argparse.Namespace) -> int:
    from thunder3d.data.real import from_audio

    print(from_audio(args.src, args.output, skip_bad=args.skip_bad, seed=args.seed,
                     progress=not args.no_progress).summary())
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    from thunder3d.data.importers import import_corpus

    options = {} if args.fps is None else {"fps": args.fps}
    print(import_corpus(args.format, args.src, args.output, skip_bad=args.skip_bad, split_by=args.split_by,
                        progress=not args.no_progress, **options).summary())
    return 0


def register(sub) -> None:
    data = sub.add_parser("data", help="make, import and align talking-head corpora")
    commands = data.add_subparsers(dest="data_command", required=True,
                                   metavar="{synth,align,recognize,features,from-audio,import}")
    p = commands.add_parser("synth", help="generate the synthetic audio-visual corpus (TTS + articulation)")
    add_output(p, "corpus folder (resumable: more hours with the same seed extend it)", required=True)
    opt(p, "--hours", 1.0, "hours of speech")
    opt(p, "--workers", 2, "worker processes")
    opt(p, "--voices", None, "comma-separated espeak accents, festival:VOICE and kokoro:VOICE (blends: kokoro:A+B), "
        "each optionally @train|val|test (default: every English espeak accent)")
    opt(p, "--no-augment", False, "clean speech (no noise/reverb/EQ/speed)")
    add_common(p, progress=True)
    p.set_defaults(func=cmd_data_synth)

    p = commands.add_parser("align", help="phones of a recording: forced alignment with --text, else recognition")
    p.add_argument("wav", type=Path, help="speech recording")
    opt(p, "--text", None, "transcript for forced alignment")
    add_output(p, "phones JSON (default: print)")
    add_common(p)
    p.set_defaults(func=cmd_data_align)

    p = commands.add_parser("recognize", help="recognise every clip's phones once (hybrid/phonetic audio encoders)")
    p.add_argument("corpus", type=Path, help="corpus folder")
    opt(p, "--split", None, "only this split (default: all)", choices=("train", "val", "test"))
    opt(p, "--recognizer", "phones", "phone loop -> CORPUS/recognized/, or words -> CORPUS/recognized-words/",
        choices=("phones", "words"))
    opt(p, "--overwrite", False, "recognise clips that already have phones again")
    add_common(p, progress=True)
    p.set_defaults(func=cmd_data_recognize)

    p = commands.add_parser("features", help="compute frozen pretrained speech features of every clip once (the "
                                             "whisper audio encoder) -> CORPUS/features-NAME/")
    p.add_argument("corpus", type=Path, help="corpus folder")
    opt(p, "--split", None, "only this split (default: all)", choices=("train", "val", "test"))
    opt(p, "--name", "whisper-tiny.en", "which features: whisper-MODEL")
    opt(p, "--overwrite", False, "compute clips that already have features again")
    add_common(p, progress=True)
    p.set_defaults(func=cmd_data_features)

    p = commands.add_parser("from-audio", help="recordings (+ <name>.txt transcripts) -> pseudo-ground-truth clips")
    p.add_argument("src", type=Path, help="folder of recordings, searched recursively")
    add_output(p, "corpus folder", required=True)
    opt(p, "--skip-bad", False, "skip and list bad recordings instead of stopping")
    add_common(p, progress=True)
    p.set_defaults(func=cmd_data_from_audio)

    p = commands.add_parser("import", help="import captured data (FLAME parameters, Live Link Face CSV)")
    p.add_argument("src", type=Path, help="file or folder of captures")
    opt(p, "--format", None, "capture format: flame | livelink", required=True)
    add_output(p, "corpus folder", required=True)
    opt(p, "--fps", None, "source frame rate when the files do not say (default 25)", type=float)
    opt(p, "--split-by", "auto", "train/val/test split: auto | speaker | clip")
    opt(p, "--skip-bad", False, "skip and list bad clips instead of stopping")
    add_common(p, progress=True)
    p.set_defaults(func=cmd_data_import)
