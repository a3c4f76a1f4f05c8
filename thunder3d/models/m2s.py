"""Mesh-to-speech (M2S): regress the log-mel spectrogram (and optionally phones) from a face animation.

The model listens to a face. Its input is one of three per-frame feature variants
(:data:`M2S_INPUTS`, named as in the method), computed differentiably from rig coefficients by
:func:`rig_features`:

=========  =====================================================================================
mouth2s    vertices of the rig's ``mouth`` region minus the neutral's, in mm, flattened (3 R)
face2s     the same over the ``face`` region
exp2s      the coefficients themselves (C)
=========  =====================================================================================

Architecture: input normalisation (training statistics, persistent buffers) -> per-frame MLP
encoder -> :class:`~thunder3d.models.conformer.Conformer` -> heads. The mel head projects every
animation frame to its 4 mel frames (``dim -> 4 * 80``, the timing contract of
:mod:`thunder3d.constants`), lays them out on the 4T mel axis and smooths them with a residual 1D
convolution; it predicts normalised log-mel, which :class:`M2S` de-normalises with the mel
statistics. An optional phone head classifies each animation frame into
:data:`~thunder3d.audio.phones.PHONES`.

Trained first on (animation, audio) pairs, then :func:`freeze`-d and used as a lip-sync loss:
gradients reach the coefficients through the rig, no parameter of the M2S gets one.

Loss helpers (:func:`mel_l1`, :func:`spectral_convergence`, :func:`phone_ce`) are pure functions
that respect frame masks. Pure torch, no file I/O: checkpoints are written by ``thunder3d.train``
from :meth:`M2SConfig.to_dict` and ``state_dict()``.

Shapes: ``B`` batch, ``T`` animation frames, ``M = 4 T`` mel frames, ``F`` features per frame,
``C`` rig coefficients, ``P`` phones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thunder3d.audio.phones import NUM_PHONES
from thunder3d.config import Config
from thunder3d.constants import MELS_PER_FRAME, N_MELS
from thunder3d.errors import ModelConfigError
from thunder3d.models.conformer import CONFORMER_KEYS, Conformer, ConformerConfig
from thunder3d.rigs.base import LinearBlendshapeRig, Rig

M2S_INPUTS = ("mouth2s", "face2s", "exp2s")
"""Input variants: mouth-region vertices, face vertices, coefficients."""

INPUT_REGION: dict[str, str | None] = {"mouth2s": "mouth", "face2s": "face", "exp2s": None}

M2S_TARGETS = ("peak", "cmn_target", "cmn", "log_mel")
"""What the model predicts from the real log-mel and how the two are compared.

- ``peak`` (default): the real log-mel minus its mean per mel bin over the utterance's loudest
  :data:`PEAK_FRACTION` of (valid) frames: blind to recording gain and channel colouring, while
  pauses stay *below* the speech, so a face that does not move must predict silence.
- ``cmn_target``: minus the mean over all frames. Every target then has zero mean over the
  utterance, so the model learns zero-mean outputs and a still face predicts the average
  spectrum, which costs little (measured: neutral face 1.25 x the true animation's loss).
- ``cmn``: the mean is subtracted from the prediction too (forgives its level as well).
- ``log_mel``: compared as they are (gain, colouring and background level all count).
"""

LOSS_SCALES = (1, 8, 32)
"""Default widths (mel frames) of the multi-resolution mel L1: 10 ms detail, 80 ms (phones) and
320 ms (syllables). The coarse scales carry the speech's rhythm, which a face fully determines,
while the finest carries detail a face cannot know (pitch harmonics, noise); checkpoints saved
before this option compared at ``(1,)`` and keep doing so."""

PEAK_FRACTION = 0.1
"""Share of an utterance's frames (the loudest, by mean log-mel) that define its ``peak`` level."""

IGNORE_INDEX = -100  # phone label of frames without a target (as torch's cross_entropy)
STD_FLOOR_FRACTION = 0.05  # input std is floored at this fraction of its mean (see set_input_stats)


def check_input(variant: str) -> str:
    """Return ``variant`` if it is one of :data:`M2S_INPUTS`, else raise listing the valid ones."""
    if variant not in M2S_INPUTS:
        raise ModelConfigError(f"unknown M2S input {variant!r}; valid: {list(M2S_INPUTS)}")
    return variant


# --------------------------------------------------------------------------- input features
def feature_dim(rig: Rig, variant: str) -> int:
    """Features per frame ``F`` of ``variant`` on ``rig``: 3 x region vertices, or the coefficient count."""
    region = INPUT_REGION[check_input(variant)]
    return rig.num_coeffs if region is None else 3 * int(rig.region(region).numel())


def rig_features(rig: Rig, coeffs: Tensor, variant: str, shape: Tensor | None = None) -> Tensor:
    """The M2S input of an animation, differentiable with respect to ``coeffs``.

    Args:
        rig: the face rig the coefficients drive.
        coeffs: ``[..., T, C]`` rig coefficients.
        variant: one of :data:`M2S_INPUTS`.
        shape: optional identity coefficients (``[S]`` or ``[..., S]``) for rigs with a shape space.
            The identity offset stays in the vertex features (they are taken relative to the rig's
            generic neutral), so identity augmentation is visible to the model.
    Returns:
        ``[..., T, F]`` float features: for ``mouth2s``/``face2s`` the region's vertex offsets from
        the neutral in millimetres, flattened per frame as ``(x, y, z)`` per vertex; for ``exp2s``
        the coefficients.
    """
    region = INPUT_REGION[check_input(variant)]
    rig.check_coeffs(coeffs)
    if region is None:
        return coeffs
    idx = rig.region(region)  # [R]
    if isinstance(rig, LinearBlendshapeRig) and shape is None:
        # offsets are linear in the coefficients: blend only the region's deltas, not all V vertices
        # (about 10x less work for the builtin mouth); equal to rig(coeffs)[..., idx, :] - neutral[idx]
        deltas = rig.deltas[:, idx].reshape(rig.num_coeffs, -1)  # [C, 3 R]
        offsets = coeffs @ deltas  # [..., T, 3 R]
    else:
        verts = rig(coeffs, shape)  # [..., T, V, 3]
        offsets = (verts[..., idx, :] - rig.neutral[idx]).flatten(-2)  # [..., T, 3 R]
    return offsets * rig.mm_per_unit


# --------------------------------------------------------------------------- config
@dataclass
class M2SConfig(Config):
    """Everything that rebuilds an :class:`M2S` (stored as JSON in checkpoints).

    Args:
        input: input variant, one of :data:`M2S_INPUTS`.
        in_dim: features per frame ``F`` (:func:`feature_dim` of the rig and variant).
        conformer: the encoder's sizes (:class:`ConformerConfig`; width 192 by default).
        n_mels: mel bins of the target.
        mels_per_frame: mel frames per animation frame (4 by the timing contract).
        mel_smoothing: kernel of the residual convolution over the mel axis (odd; 0 disables it).
        phone_head: add a frame-wise phone classifier.
        num_phones: phone classes ``P``.
        rig: the rig's ``config()`` (``{"spec", "options"}``), so a checkpoint knows its rig.
        loss_scales: widths in mel frames (10 ms each) at which :meth:`M2S.mel_loss` compares
            prediction and target, averaged (:func:`multiscale_mel_l1`); ``(1,)`` is a plain L1.
        target: :data:`M2S_TARGETS`. ``peak`` (default), ``cmn_target`` and ``cmn`` make the
            comparison blind to what a face cannot show: recording gain, microphone/room colouring
            (a per-utterance, per-bin level is subtracted from the real log-mel); what remains is
            the speech's time course, which is what lip-sync is about.
    """

    error = ModelConfigError
    label = "M2S config"

    input: str
    in_dim: int
    conformer: ConformerConfig = field(default_factory=lambda: ConformerConfig(dim=192))
    n_mels: int = N_MELS
    mels_per_frame: int = MELS_PER_FRAME
    mel_smoothing: int = 5
    phone_head: bool = True
    num_phones: int = NUM_PHONES
    rig: dict | None = field(default=None)
    target: str = "peak"
    loss_scales: tuple[int, ...] = LOSS_SCALES

    def __post_init__(self) -> None:
        check_input(self.input)
        self.loss_scales = tuple(self.loss_scales)
        if not self.loss_scales or any(not isinstance(k, int) or isinstance(k, bool) or k < 1
                                       for k in self.loss_scales):
            raise ModelConfigError(f"M2S loss_scales must be positive integers (mel frames), "
                                   f"got {self.loss_scales!r}")
        if self.target not in M2S_TARGETS:
            raise ModelConfigError(f"unknown M2S target {self.target!r}; valid: {list(M2S_TARGETS)}")
        for name in ("in_dim", "n_mels", "mels_per_frame", "num_phones"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelConfigError(f"M2S {name} must be a positive integer, got {value!r}")
        if not isinstance(self.mel_smoothing, int) or self.mel_smoothing < 0 or (
                self.mel_smoothing and self.mel_smoothing % 2 == 0):
            raise ModelConfigError(
                f"M2S mel_smoothing must be 0 or an odd kernel size, got {self.mel_smoothing!r}")
        if not isinstance(self.phone_head, bool):
            raise ModelConfigError(f"M2S phone_head must be true or false, got {self.phone_head!r}")
        if self.rig is not None and (not isinstance(self.rig, dict) or "spec" not in self.rig):
            raise ModelConfigError(f"M2S rig must be a rig config {{'spec', 'options'}}, got {self.rig!r}")
        if isinstance(self.conformer, Mapping):
            self.conformer = ConformerConfig.from_dict(self.conformer)

    @property
    def region(self) -> str | None:
        """Rig region the input reads (``mouth``, ``face``), None for ``exp2s``."""
        return INPUT_REGION[self.input]

    @classmethod
    def for_rig(cls, rig: Rig, input: str = "mouth2s", **kwargs: Any) -> "M2SConfig":
        """A config for ``rig`` and ``input``: ``in_dim`` and ``rig`` filled in from the rig; ``kwargs``
        as in :meth:`from_dict` (conformer sizes may be given flat: ``dim=64, layers=2``)."""
        return cls.build(input=input, in_dim=feature_dim(rig, input), rig=rig.config(), **kwargs)

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Older layouts: no ``loss_scales`` (a plain L1), conformer sizes at the top level."""
        data.setdefault("loss_scales", (1,))
        flat = {k: data.pop(k) for k in CONFORMER_KEYS if k in data}
        if flat:
            data["conformer"] = {**(data.get("conformer") or {}), **flat}
        return data

    @classmethod
    def build(cls, **kwargs: Any) -> "M2SConfig":
        """A config from keyword arguments, conformer sizes allowed flat (``dim=64, layers=2``) on top of
        the default conformer; unlike :meth:`from_dict`, no older layout is assumed."""
        sizes = {k: kwargs.pop(k) for k in CONFORMER_KEYS if k in kwargs}
        conformer = kwargs.pop("conformer", None) or cls.__dataclass_fields__["conformer"].default_factory()
        if isinstance(conformer, Mapping):
            conformer = ConformerConfig.from_dict(conformer)
        return cls(**kwargs, conformer=ConformerConfig.from_dict({**conformer.to_dict(), **sizes}))


# --------------------------------------------------------------------------- model
@dataclass
class M2SOutput:
    """What :class:`M2S` hears.

    Attributes:
        mel: ``[B, 4T, n_mels]`` predicted log-mel (de-normalised: the units of ``log_mel``).
        phone_logits: ``[B, T, P]`` phone logits, or None without a phone head.
        hidden: ``[B, T, dim]`` conformer output.
    """

    mel: Tensor
    phone_logits: Tensor | None
    hidden: Tensor


class MelHead(nn.Module):
    """Per-frame projection to ``mels_per_frame`` mel frames, then a residual conv over the mel axis.

    ``[B, T, dim]`` -> ``[B, mels_per_frame * T, n_mels]`` (normalised log-mel).
    """

    def __init__(self, cfg: M2SConfig) -> None:
        super().__init__()
        self.mels_per_frame = cfg.mels_per_frame
        self.n_mels = cfg.n_mels
        self.proj = nn.Linear(cfg.conformer.dim, cfg.mels_per_frame * cfg.n_mels)
        self.smooth = None
        if cfg.mel_smoothing:
            self.smooth = nn.Conv1d(cfg.n_mels, cfg.n_mels, cfg.mel_smoothing, padding=cfg.mel_smoothing // 2)
            nn.init.zeros_(self.smooth.weight)  # starts as the identity: smoothing is learned
            nn.init.zeros_(self.smooth.bias)

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        """``h [B, T, dim]``, ``mask [B, T]`` bool or None -> ``[B, 4T, n_mels]``."""
        B, T, _ = h.shape
        # row t holds mel frames 4t..4t+3 in time order (as audio.features.mel_to_frames)
        mel = self.proj(h).reshape(B, T * self.mels_per_frame, self.n_mels)
        if self.smooth is None:
            return mel
        if mask is not None:  # padded mel frames must not bleed into valid ones through the conv
            mel = mel * expand_mask(mask, self.mels_per_frame)[..., None].to(mel.dtype)
        return mel + self.smooth(mel.transpose(1, 2)).transpose(1, 2)


class M2S(nn.Module):
    """Mesh-to-speech: per-frame face features ``[B, T, F]`` -> log-mel ``[B, 4T, 80]`` (+ phones).

    Normalisation statistics are persistent buffers (saved with the weights): ``feat_mean`` /
    ``feat_std`` ``[F]`` for the input (:meth:`set_input_stats`) and ``mel_mean`` / ``mel_std``
    ``[n_mels]`` for the target (:meth:`set_mel_stats`). Until set they are the identity. For the
    utterance-normalised targets ``mel_level`` ``[n_mels]`` is the training speech's mean log-mel,
    added back by :meth:`audible` to hear a prediction.

    Args:
        cfg: :class:`M2SConfig`.
    """

    def __init__(self, cfg: M2SConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feat_mean", torch.zeros(cfg.in_dim))
        self.register_buffer("feat_std", torch.ones(cfg.in_dim))
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        self.register_buffer("mel_level", torch.zeros(cfg.n_mels))
        # per-frame encoder; for face2s (F ~ 20k) the first Linear is the bottleneck to dim
        self.encoder = nn.Sequential(
            nn.Linear(cfg.in_dim, cfg.conformer.dim),
            nn.GELU(),
            nn.Dropout(cfg.conformer.dropout),
            nn.Linear(cfg.conformer.dim, cfg.conformer.dim),
        )
        self.conformer = Conformer(cfg.conformer)
        self.mel_head = MelHead(cfg)
        self.phone_head = nn.Linear(cfg.conformer.dim, cfg.num_phones) if cfg.phone_head else None

    # ------------------------------------------------------------------ statistics
    def set_input_stats(self, mean: Tensor | np.ndarray, std: Tensor | np.ndarray) -> None:
        """Set the input normalisation from training statistics (``[F]`` each).

        The std is floored at :data:`STD_FLOOR_FRACTION` of its mean, so vertices or coefficients
        that barely move in the training data are not amplified into noise.
        """
        mean, std = self._stat(mean, "input mean"), self._stat(std, "input std")
        floor = max(float(std.mean()) * STD_FLOOR_FRACTION, 1e-8)
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp(min=floor))

    def set_mel_stats(self, mean: Tensor | np.ndarray, std: Tensor | np.ndarray,
                      level: Tensor | np.ndarray | None = None) -> None:
        """Set the normalisation of the predicted targets (``[n_mels]`` each) from training targets,
        and for utterance-normalised targets the mean log-mel ``level`` that :meth:`audible` adds."""
        mean, std = self._stat(mean, "mel mean"), self._stat(std, "mel std")
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp(min=1e-5))
        if level is not None:
            self.mel_level.copy_(self._stat(level, "mel level"))

    def audible(self, mel: Tensor) -> Tensor:
        """A prediction ``[..., 4T, n_mels]`` as absolute log-mel to vocode (adds ``mel_level`` back
        for utterance-normalised targets; a plain log-mel model's output is returned as it is)."""
        return mel if self.cfg.target == "log_mel" else mel + self.mel_level

    def _stat(self, value: Tensor | np.ndarray, what: str) -> Tensor:
        value = torch.as_tensor(value, dtype=torch.float32).detach()
        size = self.cfg.in_dim if what.startswith("input") else self.cfg.n_mels
        if value.shape != (size,):
            raise ValueError(f"{what} must be [{size}], got {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"{what} has non-finite values")
        return value

    # ------------------------------------------------------------------ forward
    def forward(self, features: Tensor, mask: Tensor | None = None) -> M2SOutput:
        """Hear a batch of animations.

        Args:
            features: ``[B, T, F]`` from :func:`rig_features` (raw, not normalised).
            mask: ``[B, T]`` bool, True for valid frames, or None when all are valid.
        Returns:
            :class:`M2SOutput`; ``mel`` is ``[B, 4T, n_mels]``. Padded frames do not influence valid ones.
        """
        if features.ndim != 3 or features.shape[-1] != self.cfg.in_dim:
            raise ValueError(f"M2S ({self.cfg.input}) expects features [B, T, {self.cfg.in_dim}], "
                             f"got {tuple(features.shape)}")
        x = (features - self.feat_mean) / self.feat_std
        h = self.conformer(self.encoder(x), mask)  # the conformer zeroes padded frames first
        mel = self.mel_head(h, mask) * self.mel_std + self.mel_mean
        logits = self.phone_head(h) if self.phone_head is not None else None
        return M2SOutput(mel=mel, phone_logits=logits, hidden=h)

    def predict(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Log-mel ``[B, 4T, n_mels]`` (de-normalised) of ``features [B, T, F]``."""
        return self(features, mask).mel

    def mel_loss(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """L1 between predicted and real log-mel ``[B, 4T, n_mels]`` as this model compares them
        (``cfg.target``, see :data:`M2S_TARGETS`); the M2S and THUNDER loss."""
        if self.cfg.target == "cmn":
            pred = utterance_normalize(pred, mask)
        return multiscale_mel_l1(pred, self.target_mel(target, mask), mask, self.cfg.loss_scales)

    def target_mel(self, mel: Tensor, mask: Tensor | None = None) -> Tensor:
        """Real log-mel ``[B, 4T, n_mels]`` -> what this model predicts (``cfg.target``)."""
        if self.cfg.target == "peak":
            return peak_normalize(mel, mask)
        if self.cfg.target in ("cmn", "cmn_target"):
            return utterance_normalize(mel, mask)
        return mel

    def check_rig(self, rig: Rig) -> None:
        """Raise :class:`ModelConfigError` if ``rig`` does not give this model's input size."""
        got = feature_dim(rig, self.cfg.input)
        if got != self.cfg.in_dim:
            built = self.cfg.rig["spec"] if self.cfg.rig else "an unrecorded rig"
            raise ModelConfigError(
                f"this M2S ({self.cfg.input}) was built for {built!r} with {self.cfg.in_dim} features per "
                f"frame; rig {rig.spec!r} gives {got}"
            )

    def from_rig_coeffs(self, rig: Rig, coeffs: Tensor, mask: Tensor | None = None,
                        shape: Tensor | None = None) -> M2SOutput:
        """:func:`rig_features` then :meth:`forward`: coefficients ``[B, T, C]`` -> :class:`M2SOutput`."""
        self.check_rig(rig)
        return self(rig_features(rig, coeffs, self.cfg.input, shape), mask)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def freeze(model: nn.Module) -> nn.Module:
    """Freeze ``model`` for use as a loss: eval mode (no dropout), no parameter requires a gradient.

    Gradients still flow through it to its input. A later ``.train()`` on a parent module switches
    dropout back on: keep the frozen model outside the trained module, or call ``freeze`` again.
    Returns ``model``.
    """
    model.eval()
    model.requires_grad_(False)
    return model


# --------------------------------------------------------------------------- losses
def expand_mask(mask: Tensor, per: int = MELS_PER_FRAME) -> Tensor:
    """Frame mask ``[B, T]`` -> mel-frame mask ``[B, per * T]`` (each frame owns ``per`` mel frames)."""
    return mask.to(torch.bool).repeat_interleave(per, dim=-1)


def _mel_weights(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor | None:
    """Check shapes; ``[B, M, 1]`` float weights of the valid mel frames, or None."""
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"mel prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must both be [B, M, n_mels]")
    if mask is None:
        return None
    B, M, _ = pred.shape
    if mask.ndim != 2 or mask.shape[0] != B or mask.shape[1] == 0 or M % mask.shape[1]:
        raise ValueError(f"frame mask {tuple(mask.shape)} does not fit mel frames {tuple(pred.shape)}")
    return expand_mask(mask, M // mask.shape[1])[..., None].to(pred.dtype)  # [B, M, 1]


def utterance_normalize(mel: Tensor, mask: Tensor | None = None) -> Tensor:
    """``mel [B, M, n_mels]`` minus each sequence's mean per bin over its valid mel frames.

    ``mask`` is the ``[B, T]`` frame mask (expanded to mel frames) or None for all valid.
    """
    if mask is None:
        return mel - mel.mean(dim=1, keepdim=True)
    w = expand_mask(mask, mel.shape[1] // mask.shape[1])[..., None].to(mel.dtype)  # [B, M, 1]
    mean = (mel * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)
    return mel - mean


def peak_normalize(mel: Tensor, mask: Tensor | None = None, fraction: float = PEAK_FRACTION) -> Tensor:
    """``mel [B, M, n_mels]`` minus, per sequence and bin, its mean over the loudest ``fraction``
    of its valid mel frames (loudness = mean over bins; at least one frame).

    ``mask`` is the ``[B, T]`` frame mask (expanded to mel frames) or None for all valid.
    """
    B, M, _ = mel.shape
    valid = (expand_mask(mask, M // mask.shape[1]) if mask is not None
             else torch.ones(B, M, dtype=torch.bool, device=mel.device))
    loudness = mel.mean(-1).masked_fill(~valid, float("-inf"))  # [B, M]
    count = (valid.sum(1).float() * fraction).ceil().clamp(min=1).long()  # [B]
    order = loudness.argsort(dim=1, descending=True)  # [B, M]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(M, device=mel.device).expand(B, M))
    top = ((ranks < count[:, None]) & valid)[..., None].to(mel.dtype)  # [B, M, 1]
    level = (mel * top).sum(1, keepdim=True) / top.sum(1, keepdim=True).clamp(min=1.0)
    return mel - level


def mel_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute log-mel error over valid mel frames and bins.

    Args:
        pred, target: ``[B, 4T, n_mels]``.
        mask: ``[B, T]`` frame mask (expanded to the 4 mel frames of each frame) or None.
    Returns:
        scalar.
    """
    w = _mel_weights(pred, target, mask)
    err = (pred - target).abs()
    if w is None:
        return err.mean()
    return (err * w).sum() / (w.sum() * pred.shape[-1]).clamp(min=1.0)


def multiscale_mel_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None,
                      scales: tuple[int, ...] = LOSS_SCALES) -> Tensor:
    """Mean over ``scales`` of the L1 between ``pred`` and ``target`` ``[B, M, n_mels]`` averaged
    over windows of ``k`` mel frames (stride ``k // 2``, padded frames left out of each average;
    a window counts when at least half of it is valid; ``k`` is capped at the sequence length).
    ``k = 1`` is :func:`mel_l1`.

    Args:
        mask: ``[B, T]`` frame mask (expanded to mel frames) or None.
    Returns:
        scalar.
    """
    w = _mel_weights(pred, target, mask)
    if w is None:
        w = pred.new_ones(pred.shape[0], pred.shape[1], 1)
    total = pred.new_zeros(())
    for k in scales:
        k = min(k, pred.shape[1])  # a sequence shorter than the window: one window over all of it
        if k == 1:
            total = total + mel_l1(pred, target, mask)
            continue

        def pool(x: Tensor) -> Tensor:  # [B, M, F] -> [B, M', F]
            return F.avg_pool1d(x.transpose(1, 2), k, stride=max(1, k // 2), ceil_mode=True).transpose(1, 2)

        share = pool(w)  # [B, M', 1] valid fraction of each window
        denom = share.clamp(min=1e-6)
        err = (pool(pred * w) / denom - pool(target * w) / denom).abs()
        keep = (share >= 0.5).to(pred.dtype)
        total = total + (err * keep).sum() / (keep.sum() * pred.shape[-1]).clamp(min=1.0)
    return total / len(scales)


def spectral_convergence(pred: Tensor, target: Tensor, mask: Tensor | None = None,
                         eps: float = 1e-7) -> Tensor:
    """Spectral convergence ``||S - S'||_F / ||S||_F`` on mel magnitudes, averaged over the batch.

    The inputs are log mel power, so the magnitudes are ``S = exp(log_mel / 2)``; loud frames dominate,
    complementing the L1 on logs. Padded mel frames are left out of both norms.

    Args:
        pred, target: ``[B, 4T, n_mels]`` log-mel.
        mask: ``[B, T]`` frame mask or None.
    Returns:
        scalar.
    """
    w = _mel_weights(pred, target, mask)
    s_pred = torch.exp(0.5 * pred.clamp(max=30.0))  # clamp: an untrained model must not overflow
    s_true = torch.exp(0.5 * target)
    diff, ref = (s_true - s_pred).square(), s_true.square()
    if w is not None:
        diff, ref = diff * w, ref * w
    ratio = diff.sum((1, 2)).add(eps).sqrt() / ref.sum((1, 2)).add(eps).sqrt()  # [B]
    return ratio.mean()


def phone_ce(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Frame-wise phone cross-entropy.

    Args:
        logits: ``[B, T, P]``.
        labels: ``[B, T]`` phone indices; :data:`IGNORE_INDEX` (-100) frames are left out.
        mask: optional ``[B, T]`` frame mask; padded frames are left out too.
    Returns:
        scalar mean over the counted frames (0, still differentiable, when none counts).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"phone logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    labels = labels.long()
    if mask is not None:
        labels = labels.masked_fill(~mask.to(torch.bool), IGNORE_INDEX)
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    flat = logits.reshape(-1, logits.shape[-1])  # [B T, P]
    return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE_INDEX)
