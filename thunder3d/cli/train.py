"""``thunder3d train m2s|talker``: the shared training loop, its options built from the config dataclasses."""

from __future__ import annotations

import argparse

from thunder3d.cli.options import add_common, add_config, add_output, config_values, opt
from thunder3d.models.conformer import ConformerConfig
from thunder3d.models.denoiser import DenoiserConfig
from thunder3d.models.m2s import M2SConfig
from thunder3d.train.loop import TrainConfig
from thunder3d.train.m2s import M2SData
from thunder3d.train.talker import TalkerData

LOOP = ("steps", "batch_size", "grad_accum", "lr", "warmup_steps", "ema_decay", "eval_every", "save_every",
        "max_minutes", "stop_at", "num_workers", "resume", "init")
SIZES = ("dim", "layers", "heads", "conv_kernel", "dropout")
M2S_DATA = ("corpus", "rig", "input", "window_seconds", "phone_weight", "sc_weight", "still_prob", "still_seconds",
            "degrade")
TALKER_DATA = ("corpus", "m2s", "lambda_m2s", "m2s_weighting", "m2s_t_max", "phone_weight", "deterministic", "rig",
               "window_seconds", "clean_phone_prob", "w_coeff", "coeff_loss", "w_vertex", "mouth_weight",
               "w_velocity", "eval_steps", "eval_samples", "eval_windows", "m2s_ramp", "m2s_coeffs", "degrade",
               "train_fraction", "audio_context", "continue_prob", "distill", "distill_guidance")
ENCODER = (  # (option, key in the audio encoder config, default, help): stored only when given
    ("--audio-dim", "out_dim", None, "features per frame of the mel/hybrid encoder (default 128)", int),
    ("--audio-cmn", "cmn", False, "mel: subtract each window's mean log-mel per bin (blind to mic colour)", None),
    ("--audio-warp", "warp", 0.0, "mel, training only: vocal-tract-length warp of up to +-this (0 = off)", float),
    ("--audio-band-mask", "band_mask", 0, "mel, training only: mask one band of up to this many mel bins", int),
    ("--mel-dropout", "mel_dropout", None, "hybrid, training only: probability of zeroing the mel branch", float),
    ("--phone-scale", "phone_scale", None, "hybrid: input scale (learning speed) of the phone branch", float),
    ("--mel-gain", "mel_gain", None, "hybrid, outside training: weight of the mel branch (default 1)", float),
    ("--recognizer", "recognizer", None, "hybrid/phonetic: phone loop or words (default phones)", str),
    ("--audio-path", "path", None, "local model folder of the wav2vec2/hubert encoder", str))


def _train_config(args: argparse.Namespace, best_metric: str) -> TrainConfig:
    return TrainConfig(**{**config_values(args, LOOP), "init": str(args.init or "")}, out=str(args.output),
                       seed=args.seed, device=args.device, best_metric=best_metric, progress=not args.no_progress)


def _report(result, metric: str) -> int:
    if result.best_metric is not None:  # rank 0 only under torchrun
        print(f"stopped at step {result.step} ({result.stopped}); best {metric} {result.best_metric:.4g} at step "
              f"{result.best_step}; checkpoints in {result.out}")
    return 0


def cmd_train_m2s(args: argparse.Namespace) -> int:
    from thunder3d.train.loop import train
    from thunder3d.train.m2s import M2STask

    model = {**config_values(args, SIZES), "loss_scales": args.loss_scales}
    return _report(train(M2STask(M2SData(**config_values(args, M2S_DATA)), model),
                         _train_config(args, "val_mel_l1")), "val_mel_l1")


def audio_config(args: argparse.Namespace) -> dict:
    """The audio encoder config: the kind plus the options given (the encoder checks that they fit it)."""
    audio = {"kind": args.audio, **({"out_dim": 128} if args.audio in ("mel", "hybrid", "whisper") else {})}
    for flag, key, default, _, _ in ENCODER:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value != default:
            audio[key] = value
    if "warp" in audio or "band_mask" in audio:  # stored together
        audio = {**audio, "warp": args.audio_warp, "band_mask": args.audio_band_mask}
    return audio


def cmd_train_talker(args: argparse.Namespace) -> int:
    from thunder3d.train.loop import train
    from thunder3d.train.talker import TalkerTask

    data = TalkerData(**config_values(args, TALKER_DATA), audio=audio_config(args), oversample=args.oversample)
    model = {**config_values(args, SIZES), "audio_conditioning": args.audio_conditioning}
    diffusion = {"num_train_timesteps": args.timesteps, "schedule": args.noise_schedule}
    return _report(train(TalkerTask(data, model, diffusion), _train_config(args, "val_lve")), "val_lve")


def _loop(p: argparse.ArgumentParser, dim: int) -> None:
    add_config(p, ConformerConfig, SIZES, defaults={"dim": dim})
    add_output(p, "run folder (never deleted; --resume continues it)", required=True)
    add_config(p, TrainConfig, LOOP, flags={"warmup_steps": "--warmup", "ema_decay": "--ema",
                                            "num_workers": "--workers"})
    add_common(p, progress=True)


def register(sub) -> None:
    tr = sub.add_parser("train", help="train models on the shared loop (resume, DDP via torchrun)")
    commands = tr.add_subparsers(dest="train_command", required=True, metavar="{m2s,talker}")
    p = commands.add_parser("m2s", help="train a mesh-to-speech listener")
    add_config(p, M2SData, M2S_DATA, flags={"window_seconds": "--window"})
    opt(p, "--loss-scales", (1, 8, 32), "mel-frame widths of the multi-scale mel L1 (default 1,8,32; 1 = plain L1)",
        type=lambda t: tuple(int(v) for v in t.split(",")), metavar="K,K,...")
    _loop(p, dim=M2SConfig(input="exp2s", in_dim=1).conformer.dim)
    p.set_defaults(func=cmd_train_m2s)

    p = commands.add_parser("talker", help="train the speech-driven talking head (THUNDER diffusion or regressor)")
    add_config(p, TalkerData, TALKER_DATA, flags={"window_seconds": "--window"},
               helps={"m2s": "frozen M2S run for the THUNDER loss (its rig is the default rig)"})
    opt(p, "--audio", "mel", "audio encoder: mel, hybrid (mel + recognised phones), whisper (pretrained; run `data "
        "features` first), phonetic, wav2vec2, hubert", choices=("mel", "hybrid", "whisper", "phonetic", "wav2vec2",
                                                                 "hubert"))
    for flag, _, default, text, kind in ENCODER:
        opt(p, flag, default, text, **({"type": kind} if kind and default is None else {}))
    opt(p, "--oversample", None, "clips whose voice starts with VOICE_PREFIX count K times per epoch (repeatable)",
        action="append", metavar="VOICE_PREFIX=K")
    add_config(p, DenoiserConfig, ("audio_conditioning",),
               helps={"audio_conditioning": "how audio enters the denoiser: add (per frame) or cross (local attention)"})
    opt(p, "--timesteps", 1000, "diffusion training timesteps")
    opt(p, "--noise-schedule", "cosine", "diffusion noise schedule", choices=("cosine", "linear"))
    _loop(p, dim=DenoiserConfig(coeff_dim=1, audio_dim=1).conformer.dim)
    p.set_defaults(func=cmd_train_talker)
