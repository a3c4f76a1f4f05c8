"""The talking head as one module: audio encoder + diffusion denoiser (or the deterministic regressor).

:class:`TalkerModel` is what training optimises (and DDP wraps) and what inference samples; it is
rebuilt from a :class:`TalkerConfig`, the ``model`` entry of a talker checkpoint. Shapes: ``B``
batch, ``T`` frames (25 fps), ``C`` coefficients, ``D_a`` audio features, ``N = T * 640`` samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from thunder3d.config import Config
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.data.dataset import Normalizer
from thunder3d.errors import ModelConfigError
from thunder3d.models.denoiser import Denoiser, DenoiserConfig, Labels
from thunder3d.models.diffusion import DEFAULT_STEPS, DiffusionSchedule
from thunder3d.models.encoders import build_audio_encoder
from thunder3d.models.regressor import Regressor, RegressorConfig

MODEL_KINDS = ("denoiser", "regressor")


@dataclass
class TalkerConfig(Config):
    """Everything that rebuilds a :class:`TalkerModel`.

    Args:
        kind: ``denoiser`` (diffusion) or ``regressor`` (deterministic baseline).
        net: the network's config (:class:`DenoiserConfig`, :class:`RegressorConfig` for the regressor).
        audio: the audio encoder's config (:func:`~thunder3d.models.encoders.build_audio_encoder`).
        diffusion: :class:`DiffusionSchedule` options (None for the regressor).
    """

    error = ModelConfigError
    label = "talker model config"

    kind: str
    net: DenoiserConfig
    audio: dict
    diffusion: dict | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ModelConfigError(f"unknown talker model kind {self.kind!r}; valid: {', '.join(MODEL_KINDS)}")
        if isinstance(self.net, Mapping):
            self.net = (RegressorConfig if self.kind == "regressor" else DenoiserConfig).from_dict(self.net)
        if self.kind == "regressor":
            self.diffusion = None
        self.audio = dict(self.audio or {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TalkerConfig:
        data = dict(data)
        if data.get("kind") not in MODEL_KINDS:
            raise ModelConfigError(f"unknown talker model kind {data.get('kind')!r}; "
                                   f"valid: {', '.join(MODEL_KINDS)}")
        if isinstance(data.get("net"), Mapping):
            data["net"] = (RegressorConfig if data["kind"] == "regressor" else DenoiserConfig).from_dict(data["net"])
        return super().from_dict(data)


class TalkerModel(nn.Module):
    """Audio encoder + denoiser (or regressor): the one module the loop trains and DDP wraps.

    Built from a :class:`TalkerConfig` (or its dict, the ``model`` entry of a talker checkpoint).

    Attributes (plain, not weights): ``schedule`` (:class:`DiffusionSchedule`, None for the regressor),
    ``normalizer`` (set by the task and :func:`load_talker`; the model works in normalised
    coefficients), ``styles`` (the style vocabulary: style id ``i`` is ``styles[i]``).
    """

    def __init__(self, cfg: TalkerConfig | Mapping[str, Any]) -> None:
        super().__init__()
        cfg = cfg if isinstance(cfg, TalkerConfig) else TalkerConfig.from_dict(cfg)
        self.talker_config = cfg
        self.audio_encoder = build_audio_encoder(cfg.audio)
        self.cfg: DenoiserConfig = cfg.net
        if cfg.kind == "regressor":
            self.net: nn.Module = Regressor(cfg.net)
            self.schedule: DiffusionSchedule | None = None
        else:
            self.net = Denoiser(cfg.net)
            self.schedule = DiffusionSchedule.from_dict(cfg.diffusion or {})
        if self.audio_encoder.out_dim != self.cfg.audio_dim:
            raise ModelConfigError(f"audio encoder gives {self.audio_encoder.out_dim} features per frame, "
                                   f"the {cfg.kind} expects {self.cfg.audio_dim}")
        self.normalizer: Normalizer | None = None
        self.styles: tuple[str, ...] = ()
        self.default_guidance = 1.0  # audio guidance when a caller gives none (checkpoint "sampling")
        self.default_steps = DEFAULT_STEPS  # DDIM steps when a caller gives none (checkpoint "sampling")

    @property
    def config(self) -> dict[str, Any]:
        """The JSON model config (``config.json["model"]`` of a talker checkpoint)."""
        return self.talker_config.to_dict()

    @property
    def deterministic(self) -> bool:
        return self.schedule is None

    @property
    def continues(self) -> bool:
        """True when the denoiser reads the frames a continuation is given (``known_input``)."""
        return not self.deterministic and bool(getattr(self.cfg, "known_input", False))

    @property
    def coeff_dim(self) -> int:
        return self.cfg.coeff_dim

    @property
    def audio_dim(self) -> int:
        return self.cfg.audio_dim

    @property
    def uses_phones(self) -> bool:
        """True when the audio encoder reads recognised phones (``phones=`` of :meth:`encode_audio`)."""
        return self.audio_encoder.uses_phones

    @property
    def uses_pretrained(self) -> bool:
        """True when the audio encoder takes precomputed frozen features (``pretrained=``)."""
        return self.audio_encoder.uses_pretrained

    def encode_audio(self, wav: Tensor, num_frames: int | None = None, phones: Tensor | None = None,
                     pretrained: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        """``wav [B, N]`` (16 kHz) -> frame-aligned features ``[B, T, D_a]``; ``phones [B, T]``:
        recognised phone labels for encoders that read them (else they recognise the audio);
        ``pretrained [B, T, F]``: precomputed frozen features for encoders that take them;
        ``context [B, A * 640]``: speech just before ``wav`` that the encoder hears too (its ``A``
        frames of features are computed, then cropped; not with ``phones`` or ``pretrained``)."""
        if context is not None and context.shape[1]:
            if phones is not None and self.uses_phones or pretrained is not None and self.uses_pretrained:
                raise ValueError("audio context is heard from the speech: not with cached phones or features")
            if context.shape[1] % SAMPLES_PER_FRAME:
                raise ValueError(f"audio context must be whole frames of {SAMPLES_PER_FRAME} samples, got "
                                 f"{context.shape[1]}")
            A = context.shape[1] // SAMPLES_PER_FRAME
            T = num_frames if num_frames is not None else -(-wav.shape[1] // SAMPLES_PER_FRAME)
            return self.audio_encoder(torch.cat([context, wav], dim=1), A + T, None, None)[:, A:]
        return self.audio_encoder(wav, num_frames, phones if self.uses_phones else None,
                                  pretrained if self.uses_pretrained else None)

    def forward(self, wav: Tensor, mask: Tensor, emotion: Labels = None, intensity: Labels = None,
                style: Labels = None, x_t: Tensor | None = None, t: Tensor | None = None,
                phones: Tensor | None = None, pretrained: Tensor | None = None,
                context: Tensor | None = None, known: Tensor | None = None,
                known_mask: Tensor | None = None) -> Tensor:
        """The training forward pass (all trainable computation, so DDP synchronises it).

        Args:
            wav: ``[B, T * 640]`` speech.
            mask: ``[B, T]`` bool, True on valid frames.
            emotion, intensity, style: ``[B]`` labels (see :class:`~thunder3d.models.denoiser.Denoiser`).
            x_t, t: ``[B, T, C]`` noisy normalised coefficients and ``[B]`` timesteps (denoiser only).
            phones: ``[B, T]`` recognised phones (the batch's ``heard``) for encoders that read them.
            pretrained: ``[B, T, F]`` cached frozen features (the batch's ``pretrained``) for encoders
                that take them.
            context: ``[B, A * 640]`` speech before the window the encoder also hears (the batch's
                ``audio_context``; :meth:`encode_audio`).
            known, known_mask: ``[B, T, C]`` and ``[B, T]``: frames given to a continuation
                (:attr:`continues` models only).
        Returns:
            ``[B, T, C]`` the network output (the x0 estimate for an ``x0`` schedule; the regressor's
            prediction), zero on padded frames.
        """
        features = self.encode_audio(wav, mask.shape[1], phones, pretrained, context)
        return self.predict(features, mask, emotion, intensity, style, x_t=x_t, t=t, known=known,
                            known_mask=known_mask)

    def predict(self, features: Tensor, mask: Tensor | None = None, emotion: Labels = None,
                intensity: Labels = None, style: Labels = None, *, x_t: Tensor | None = None,
                t: Tensor | int | None = None, audio_scale: float = 1.0, cond_scale: float = 1.0,
                mode: str = "nested", known: Tensor | None = None, known_mask: Tensor | None = None) -> Tensor:
        """Network output from precomputed audio ``features [B, T, D_a]``, with guidance scales
        (scales of 1 are one plain conditional pass); ``known``/``known_mask``: frames given to a
        continuation (:attr:`continues` models only)."""
        guided = not (audio_scale == 1.0 and cond_scale == 1.0)
        if self.deterministic:
            if guided:
                return self.net.guided(features, emotion, intensity, style, mask, audio_scale=audio_scale,
                                       cond_scale=cond_scale, mode=mode)
            return self.net(features, emotion, intensity, style, mask)
        if x_t is None or t is None:
            raise ValueError("the diffusion talker needs x_t and t")
        net = self.__dict__.get("_runtime_net") if not self.training else None
        net = net if net is not None and x_t.device.type == "cpu" else self.net
        if guided:
            return net.guided(x_t, t, features, emotion, intensity, style, mask, audio_scale=audio_scale,
                              cond_scale=cond_scale, mode=mode, known=known, known_mask=known_mask)
        return net(x_t, t, features, emotion, intensity, style, mask, known=known, known_mask=known_mask)

    def use_onnx(self, enabled: bool = True) -> bool:
        """Run the denoiser, and a frozen Whisper backbone, with onnxruntime when on the CPU in eval mode
        (:mod:`thunder3d.models.onnx`: about twice as fast; the graphs are exported on first use and
        cached). Returns whether it is on (False without onnxruntime, and for the regressor)."""
        from thunder3d.models import onnx

        self.__dict__["_runtime_net"] = None
        if hasattr(self.audio_encoder, "use_onnx"):
            self.audio_encoder.use_onnx(enabled)
        on_cpu = all(p.device.type == "cpu" for p in self.parameters())
        if not enabled or self.deterministic or not on_cpu or not onnx.available():
            return False
        self.__dict__["_runtime_net"] = onnx.onnx_denoiser(self.net)
        return True


__all__ = ["MODEL_KINDS", "TalkerConfig", "TalkerModel"]
