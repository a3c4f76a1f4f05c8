"""Trained models from checkpoint folders: :func:`load_talker`, :func:`load_m2s`, :func:`resolve_run`.

Below both training (which writes and resumes these checkpoints) and inference (which samples
them), so that neither imports the other. The folder format itself is :mod:`.format`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from thunder3d.checkpoints.format import check_sampling, load_checkpoint, resolve_run
from thunder3d.data.dataset import Normalizer
from thunder3d.errors import CheckpointError, ModelConfigError
from thunder3d.models.m2s import M2S, M2SConfig
from thunder3d.models.talker import TalkerConfig, TalkerModel
from thunder3d.rigs import Rig, load_rig


def load_talker(path: str | Path, device: str | torch.device = "cpu", *,
                ema: bool = True) -> tuple[TalkerModel, Rig, Normalizer, dict[str, Any]]:
    """A trained talker from ``RUN``, ``RUN/best`` or ``RUN/last``: ``(model, rig, normalizer, config)``.

    The model is in eval mode on ``device`` with EMA weights when the checkpoint has them (and
    ``ema``); ``model.normalizer``, ``model.styles`` and ``model.default_guidance`` (the audio
    guidance scale its config recommends under ``sampling.guidance``, 1 without) and ``model.default_steps``
    (``sampling.steps``, else :data:`~thunder3d.models.diffusion.DEFAULT_STEPS`) are set. ``config`` is the checkpoint's
    ``config.json``. Raises :class:`~thunder3d.errors.CheckpointError` for anything but a talker
    checkpoint, or weights that do not fit the saved model config.
    """
    path = resolve_run(path)
    ckpt = load_checkpoint(path, expect={"task": "talker"}, training_state=False)
    config = ckpt.config
    try:
        model = TalkerModel(TalkerConfig.from_dict(config["model"]))
    except ModelConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    weights = ckpt.ema_state_dict if (ema and ckpt.ema_state_dict is not None) else ckpt.state_dict
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the saved model config ({exc})") from None
    normalizer = Normalizer.from_dict(config["normalizer"])
    model.normalizer, model.styles = normalizer, tuple(config.get("styles") or ())
    sampling = check_sampling(config.get("sampling"), f"{path}: sampling")
    model.default_guidance = float(sampling["guidance"])
    model.default_steps = int(sampling.get("steps", model.default_steps))
    rig = load_rig(config["rig"])
    if tuple(rig.coeff_names) != tuple(normalizer.coeff_names):
        raise CheckpointError(f"{path}: rig {rig.spec!r} coefficients differ from the normalizer's")
    return model.to(device).eval(), rig.to(device), normalizer, config


def load_m2s(path: str | Path, *, rig: str | Rig | None = None, input: str | None = None,
             device: str | torch.device = "cpu", ema: bool = True) -> tuple[M2S, Rig]:
    """A trained M2S and its rig from a checkpoint directory (``RUN``, ``RUN/best`` or ``RUN/last``).

    ``rig`` / ``input``, when given, must match what the checkpoint was trained for; a mismatch is a
    :class:`~thunder3d.errors.CheckpointError` naming both. EMA weights are used when present.
    """
    path = resolve_run(path)
    ckpt = load_checkpoint(path, expect={"task": "m2s"})
    cfg = M2SConfig.from_dict(ckpt.config["model"])
    trained_rig = ckpt.config.get("rig") or cfg.rig
    if rig is not None:
        wanted = rig.config() if isinstance(rig, Rig) else load_rig(rig).config()
        if wanted["spec"] != trained_rig["spec"]:
            raise CheckpointError(f"{path}: this M2S was trained for rig {trained_rig['spec']!r}, "
                                  f"not {wanted['spec']!r}")
    if input is not None and input != cfg.input:
        raise CheckpointError(f"{path}: this M2S was trained with input {cfg.input!r}, not {input!r}")
    model = M2S(cfg)
    state = dict(ckpt.ema_state_dict if (ema and ckpt.ema_state_dict) else ckpt.state_dict)
    state.setdefault("mel_level", model.mel_level)  # checkpoints from before the buffer existed
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the saved model config ({exc})") from None
    the_rig = rig if isinstance(rig, Rig) else load_rig(trained_rig)
    return model.to(device).eval(), the_rig.to(device)


LISTENER_NAMES = ("builtin", "listener-builtin")
LISTENER_DIR = Path(__file__).resolve().parents[1] / "assets" / "pretrained" / "listener-builtin"
"""The M2S listener shipped inside the package (mouth2s, built-in rig)."""


def load_listener(spec: str | Path | None = "builtin", *, rig: str | Rig | None = None,
                  device: str | torch.device = "cpu") -> tuple[M2S, Rig]:
    """An M2S listener: ``"builtin"`` (or None) for the one shipped in the package, else a run
    folder or checkpoint (:func:`load_m2s`)."""
    if spec is None or str(spec) in LISTENER_NAMES:
        if not (LISTENER_DIR / "config.json").is_file():
            raise CheckpointError(f"the built-in listener is missing from this installation ({LISTENER_DIR}); "
                                  "pass a trained M2S run instead")
        spec = LISTENER_DIR
    return load_m2s(spec, rig=rig, device=device)


__all__ = ["LISTENER_DIR", "LISTENER_NAMES", "load_listener", "load_m2s", "load_talker"]
