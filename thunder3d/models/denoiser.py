"""The THUNDER denoiser: a conditioned conformer over frames that predicts clean motion ``x0``.

Inputs per frame: the noisy coefficients ``x_t [B, T, C]`` and frame-aligned audio features
``[B, T, D_a]`` (25 fps, from an audio encoder); with ``known_input``, also the frames a continuation
is given (``known [B, T, C]``, ``known_mask [B, T]``). Inputs per sequence: the diffusion timestep and
the conditions emotion, intensity and speaking style. The shared trunk (:class:`ConditionedConformer`,
also the backbone of the deterministic :class:`~thunder3d.models.regressor.Regressor`) is::

    h  = Linear(x_t)                                     (denoiser only)
       + Linear([known * m, m])                          (known_input only; m = known_mask, zero-initialised)
       + AudioMLP(audio)                                 ("add" conditioning)
    c  = MLP(sinusoid(t)) + E_emo[e] + E_int[i] + E_sty[s]
    for each conformer block k:
        h = h * (1 + scale_k(c)) + shift_k(c)            FiLM, zero-initialised (starts as identity)
        h = ConformerBlock_k(h)                          rotary self-attention over frames + conv
        h = h + LocalCrossAttention_k(h, audio)          ("cross" conditioning: frames within +-k)
    x0 = Linear(LayerNorm(h))

Classifier-free guidance: every condition has a learned "null" (an extra embedding row, a learned
null audio frame) used when it is absent (label -1), dropped on purpose (``drop_audio`` /
``drop_cond``), or dropped at random in training mode with the configured probabilities (the global
torch RNG, so a training loop that restores RNG state stays reproducible). :meth:`Denoiser.guided`
combines up to three predictions, with one scale for audio and one for the other conditions.

Padding: invalid frames (``mask`` False) are zeroed on input, are never attended to and never reach
a valid frame through the convolution; their outputs are zero.

Shapes: ``B`` batch, ``T`` frames, ``C`` coefficients, ``D_a`` audio features, ``D`` model width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thunder3d.conditions import EMOTIONS, INTENSITIES
from thunder3d.config import Config
from thunder3d.models.conformer import (
    CONFORMER_KEYS,
    Conformer,
    ConformerConfig,
    ModelConfigError,
    RotaryEmbedding,
    apply_rotary,
)

AUDIO_CONDITIONING = ("add", "cross")
"""How audio enters: ``add`` sums projected features into each frame; ``cross`` attends from each
frame to the audio frames within ``audio_window`` frames in every block."""

GUIDANCE_MODES = ("nested", "independent")
"""How :meth:`Denoiser.guided` combines predictions (``u`` unconditional, ``a`` audio only, ``ac``
audio and conditions, ``c`` conditions only)::

    nested:       u + s_a (a - u) + s_c (ac - a)     conditions guided given the audio
    independent:  u + s_a (a - u) + s_c (c - u)      each scale alone switches its input off
"""

Labels = Tensor | int | None


# --------------------------------------------------------------------------- config
@dataclass
class DenoiserConfig(Config):
    """Everything that rebuilds a :class:`Denoiser` (stored as JSON in checkpoints).

    Args:
        coeff_dim: motion coefficients per frame ``C``.
        audio_dim: audio features per frame ``D_a`` (the audio encoder's output width).
        conformer: the trunk's sizes (:class:`ConformerConfig`; width 192 by default).
        num_emotions: emotion classes (labels ``0 .. n-1``, :data:`~thunder3d.conditions.EMOTIONS`).
        num_intensities: intensity levels (labels ``1 .. n``, as in the clip format; ``<= 0`` is none).
        num_styles: speaking-style ids (labels ``0 .. n-1``); 0 = no style embedding.
        audio_conditioning: one of :data:`AUDIO_CONDITIONING`.
        audio_window: ``k`` of the ``cross`` conditioning: frame ``i`` attends to audio ``i-k .. i+k``.
        audio_drop_prob: training probability of dropping the audio of a sequence (guidance).
        cond_drop_prob: training probability of dropping emotion, intensity and style together
            (the "no condition" branch of guidance).
        cond_part_drop_prob: training probability of dropping each of them on its own, so that a
            partial condition (an emotion, no style) is something the model has seen.
        known_input: the denoiser also reads the frames a continuation is given (their clean values
            and a flag per frame), so it learns to continue them instead of being steered onto them
            by inpainting alone (streaming; trained with ``TalkerData.continue_prob``). Stored only
            when set, so earlier models' configs are unchanged.
    """

    coeff_dim: int
    audio_dim: int
    conformer: ConformerConfig = field(default_factory=lambda: ConformerConfig(dim=192))
    num_emotions: int = len(EMOTIONS)
    num_intensities: int = len(INTENSITIES)
    num_styles: int = 0
    audio_conditioning: str = "add"
    audio_window: int = 6
    audio_drop_prob: float = 0.1
    cond_drop_prob: float = 0.1
    cond_part_drop_prob: float = 0.1
    known_input: bool = False

    error = ModelConfigError

    def __post_init__(self) -> None:
        what = type(self).__name__
        for name in ("coeff_dim", "audio_dim", "num_emotions", "num_intensities"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelConfigError(f"{what} {name} must be a positive integer, got {value!r}")
        for name in ("num_styles", "audio_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ModelConfigError(f"{what} {name} must be an integer >= 0, got {value!r}")
        if self.audio_conditioning not in AUDIO_CONDITIONING:
            raise ModelConfigError(f"unknown audio_conditioning {self.audio_conditioning!r}; "
                                   f"valid: {list(AUDIO_CONDITIONING)}")
        for name in ("audio_drop_prob", "cond_drop_prob", "cond_part_drop_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ModelConfigError(f"{what} {name} must be in [0, 1), got {value!r}")
        if not isinstance(self.known_input, bool):
            raise ModelConfigError(f"{what} known_input must be true or false, got {self.known_input!r}")
        if isinstance(self.conformer, Mapping):
            self.conformer = ConformerConfig.from_dict(self.conformer)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if not self.known_input:  # only when set: earlier models' configs (and graph cache keys) stay as they were
            del data["known_input"]
        return data

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Configs saved before the conformer sizes were nested: ``dim``, ``layers``... at the top."""
        flat = {k: data.pop(k) for k in CONFORMER_KEYS if k in data}
        if flat:
            data["conformer"] = {"dim": 192, **(data.get("conformer") or {}), **flat}
        return data


# --------------------------------------------------------------------------- parts
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding ``[B, dim]`` of timesteps ``t [B]`` (cosines then sines, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs  # [B, half]
    emb = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))  # odd dim: one zero channel


def band_mask(length: int, window: int, device: torch.device | str | None = None) -> Tensor:
    """``[length, length]`` bool, True where ``|i - j| <= window``."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window


class LocalCrossAttention(nn.Module):
    """Frames attend to the audio frames within ``+-window`` of themselves (rotary relative positions).

    LayerNorm(h) -> queries; audio -> keys, values; the mask (:meth:`ConditionedConformer.audio_mask`)
    limits each frame to its window and to valid audio frames.
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.heads = cfg.conformer.heads
        self.window = cfg.audio_window
        self.dropout = cfg.conformer.dropout
        self.norm = nn.LayerNorm(cfg.conformer.dim)
        self.q = nn.Linear(cfg.conformer.dim, cfg.conformer.dim)
        self.kv = nn.Linear(cfg.conformer.dim, 2 * cfg.conformer.dim)
        self.out = nn.Linear(cfg.conformer.dim, cfg.conformer.dim)
        self.out_dropout = nn.Dropout(cfg.conformer.dropout)

    def forward(self, h: Tensor, audio: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor) -> Tensor:
        """Attend from frames to nearby audio.

        Args:
            h: ``[B, T, D]`` frame states.
            audio: ``[B, T, D]`` projected audio (padding already zeroed).
            cos, sin: rotary tables ``[T, Dh/2]``.
            attn_mask: ``[T, T]`` or ``[B, 1, T, T]`` bool, True where frame ``i`` may see audio ``j``.
        Returns:
            ``[B, T, D]`` (dropout applied).
        """
        B, T, D = h.shape
        q = self.q(self.norm(h)).view(B, T, self.heads, D // self.heads).transpose(1, 2)  # [B, H, T, Dh]
        k, v = self.kv(audio).view(B, T, 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_dropout(self.out(y.transpose(1, 2).reshape(B, T, D)))


def condition_drops(cfg: DenoiserConfig, batch: int,
                    device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Training's random condition dropout (global torch RNG): ``[B]`` drop all three conditions
    (``cond_drop_prob``) and ``[3, B]`` drop emotion / intensity / style each (``cond_part_drop_prob``)."""
    every = torch.rand(batch, device=device) < cfg.cond_drop_prob
    return every, torch.rand(3, batch, device=device) < cfg.cond_part_drop_prob


def _as_flags(flag: bool | Tensor, batch: int, device: torch.device) -> Tensor:
    """``bool`` or ``[B]`` -> ``[B]`` bool tensor on ``device``."""
    flags = torch.as_tensor(flag, device=device).to(torch.bool)
    if flags.ndim == 0:
        return flags.expand(batch)
    if flags.shape != (batch,):
        raise ValueError(f"drop flags must be a bool or [B] = [{batch}], got {tuple(flags.shape)}")
    return flags


def _labels(labels: Labels, batch: int, device: torch.device) -> Tensor:
    """``None``, an int or ``[B]`` -> ``[B]`` long (``-1`` for None)."""
    if labels is None:
        return torch.full((batch,), -1, dtype=torch.long, device=device)
    labels = torch.as_tensor(labels, device=device).long()
    if labels.ndim == 0:
        return labels.expand(batch)
    if labels.shape != (batch,):
        raise ValueError(f"condition labels must be an int or [B] = [{batch}], got {tuple(labels.shape)}")
    return labels


class ConditionedConformer(nn.Module):
    """The trunk shared by :class:`Denoiser` and the regressor: audio, conditions, conformer, output.

    Args:
        cfg: :class:`DenoiserConfig` (or a subclass).
        has_input: whether a per-frame input (the denoiser's projected ``x_t``) is added to ``h``;
            without one (the regressor), ``h`` starts from the audio (``add``) or a learned frame
            (``cross``).
    """

    def __init__(self, cfg: DenoiserConfig, has_input: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.conformer.dim
        self.audio_proj = nn.Sequential(nn.LayerNorm(cfg.audio_dim), nn.Linear(cfg.audio_dim, D), nn.GELU(),
                                        nn.Linear(D, D))
        self.null_audio = nn.Parameter(torch.randn(D) * 0.02)  # a learned "no audio" frame
        self.start = None if has_input or cfg.audio_conditioning == "add" else nn.Parameter(torch.randn(D) * 0.02)
        # one extra row per table: the learned null, index n
        self.emotion = nn.Embedding(cfg.num_emotions + 1, D)
        self.intensity = nn.Embedding(cfg.num_intensities + 1, D)
        self.style = nn.Embedding(cfg.num_styles + 1, D) if cfg.num_styles else None
        self.conformer = Conformer(cfg.conformer)  # its rotary table and blocks; the loop is below
        self.film = nn.Linear(D, 2 * D * cfg.conformer.layers)
        nn.init.zeros_(self.film.weight)  # every block starts unmodulated
        nn.init.zeros_(self.film.bias)
        self.cross = None
        if cfg.audio_conditioning == "cross":
            self.cross = nn.ModuleList(LocalCrossAttention(cfg) for _ in range(cfg.conformer.layers))
            # grown on demand; the top-left corner of a band is the band of any shorter length
            self.register_buffer("band", band_mask(256, cfg.audio_window), persistent=False)
        self.out_norm = nn.LayerNorm(D)
        self.out = nn.Linear(D, cfg.coeff_dim)

    @property
    def rotary(self) -> RotaryEmbedding:
        return self.conformer.rotary

    def audio_mask(self, length: int, valid: Tensor | None, device: torch.device) -> Tensor:
        """Cross-attention mask: ``[T, T]`` band, or ``[B, 1, T, T]`` with padded audio left out.

        A padded frame may always see itself, so no row is empty (a softmax over nothing is NaN).
        """
        if self.band.shape[0] < length or self.band.device != device:
            size = max(self.band.shape[0], 1 << max(length - 1, 1).bit_length())  # next power of two
            with torch.inference_mode(False):  # a plain tensor even when first grown under inference_mode
                self.band = band_mask(size, self.cfg.audio_window, device)
        band = self.band[:length, :length]
        if valid is None:
            return band
        eye = torch.eye(length, dtype=torch.bool, device=device)
        return band & (valid[:, None, None, :] | eye)  # [B, 1, T, T]

    def condition_indices(self, emotion: Labels, intensity: Labels, style: Labels, batch: int,
                          device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Embedding rows ``[B]`` of the labels; absent labels (emotion/style < 0, intensity <= 0)
        map to the null row; labels past the table raise ``ValueError``."""
        cfg = self.cfg
        e = _labels(emotion, batch, device)
        i = _labels(intensity, batch, device) - 1  # levels 1..n -> rows 0..n-1
        s = _labels(style, batch, device)
        bad = (e >= cfg.num_emotions) | (i >= cfg.num_intensities)
        if self.style is not None:
            bad = bad | (s >= cfg.num_styles)
        if bool(bad.any()):
            raise ValueError(f"condition labels out of range: emotion {e.tolist()} (valid 0..{cfg.num_emotions - 1}), "
                             f"intensity {(i + 1).tolist()} (valid 1..{cfg.num_intensities}), style {s.tolist()} "
                             f"(valid 0..{cfg.num_styles - 1}; -1/0 = none)")
        e = torch.where(e < 0, cfg.num_emotions, e)
        i = torch.where(i < 0, cfg.num_intensities, i)
        s = torch.where(s < 0, cfg.num_styles, s)
        return e, i, s

    def forward(self, audio: Tensor, emotion: Labels = None, intensity: Labels = None, style: Labels = None,
                mask: Tensor | None = None, drop_audio: bool | Tensor = False, drop_cond: bool | Tensor = False,
                frames: Tensor | None = None, extra: Tensor | None = None) -> Tensor:
        """Predict coefficients ``[B, T, C]``.

        Args:
            audio: ``[B, T, D_a]`` frame-aligned audio features.
            emotion, intensity, style: ``[B]`` labels (or an int for all, or None for none).
            mask: ``[B, T]`` bool, True for valid frames, or None.
            drop_audio, drop_cond: bool or ``[B]``: replace the audio / all conditions by their nulls.
            frames: ``[B, T, D]`` a per-frame input added to the state (the denoiser's ``x_t``).
            extra: ``[B, D]`` a per-sequence input added to the condition vector (the timestep).
        Returns:
            ``[B, T, C]``; padded frames are zero.
        """
        cfg = self.cfg
        if audio.ndim != 3 or audio.shape[-1] != cfg.audio_dim:
            raise ValueError(f"audio features must be [B, T, {cfg.audio_dim}], got {tuple(audio.shape)}")
        B, T, _ = audio.shape
        device = audio.device
        valid = None
        if mask is not None:
            if mask.shape != (B, T):
                raise ValueError(f"mask must be [B, T] = {(B, T)}, got {tuple(mask.shape)}")
            valid = mask.to(device=device, dtype=torch.bool)
            audio = audio.masked_fill(~valid[..., None], 0.0)  # NaN or junk in the padding stops here

        drop_audio = _as_flags(drop_audio, B, device)
        drop_cond = _as_flags(drop_cond, B, device)
        e, i, s = self.condition_indices(emotion, intensity, style, B, device)
        if self.training:  # random dropout for guidance, from the global RNG
            drop_audio = drop_audio | (torch.rand(B, device=device) < cfg.audio_drop_prob)
            every, part = condition_drops(cfg, B, device)
            drop_cond = drop_cond | every
            e = torch.where(part[0], cfg.num_emotions, e)
            i = torch.where(part[1], cfg.num_intensities, i)
            s = torch.where(part[2], cfg.num_styles, s)
        e = torch.where(drop_cond, cfg.num_emotions, e)
        i = torch.where(drop_cond, cfg.num_intensities, i)
        s = torch.where(drop_cond, cfg.num_styles, s)

        # 1. per-frame audio, or the null frame where dropped
        a = torch.where(drop_audio[:, None, None], self.null_audio.to(audio.dtype), self.audio_proj(audio))
        if valid is not None:
            a = a.masked_fill(~valid[..., None], 0.0)
        # 2. the initial state
        if cfg.audio_conditioning == "add":
            h = a if frames is None else frames + a
        else:
            h = frames if frames is not None else self.start.to(a.dtype).expand(B, T, -1)
        # 3. the condition vector and its per-block FiLM
        c = self.emotion(e) + self.intensity(i)  # [B, D]
        if self.style is not None:
            c = c + self.style(s)
        if extra is not None:
            c = c + extra
        film = self.film(F.silu(c)).view(B, cfg.conformer.layers, 2, 1, cfg.conformer.dim)  # [B, L, 2, 1, D]
        # 4. the conformer blocks (masks exactly as Conformer.forward prepares them)
        cos, sin = self.rotary(T, device)
        key_mask = frame_mask = None
        if valid is not None:
            key_mask = (valid | ~valid.any(-1, keepdim=True))[:, None, None, :]  # [B, 1, 1, T]
            frame_mask = valid[..., None].to(h.dtype)  # [B, T, 1]
            h = h.masked_fill(~valid[..., None], 0.0)
        cross_mask = self.audio_mask(T, valid, device) if self.cross is not None else None
        for k, block in enumerate(self.conformer.blocks):
            h = h * (1 + film[:, k, 0]) + film[:, k, 1]
            h = block(h, cos, sin, key_mask, frame_mask)
            if self.cross is not None:
                h = h + self.cross[k](h, a, cos, sin, cross_mask)
        out = self.out(self.out_norm(h))
        return out if frame_mask is None else out * frame_mask


# --------------------------------------------------------------------------- guidance
def guidance_weights(audio_scale: float, cond_scale: float, mode: str = "nested") -> dict[tuple[bool, bool], float]:
    """Weights of the predictions ``(drop_audio, drop_cond) -> weight`` that :data:`GUIDANCE_MODES`
    combine; predictions of weight 0 are left out (and never computed)."""
    if mode not in GUIDANCE_MODES:
        raise ValueError(f"unknown guidance mode {mode!r}; valid: {list(GUIDANCE_MODES)}")
    s_a, s_c = float(audio_scale), float(cond_scale)
    if mode == "nested":  # u + s_a (a - u) + s_c (ac - a)
        weights = {(True, True): 1 - s_a, (False, True): s_a - s_c, (False, False): s_c}
    else:  # u + s_a (a - u) + s_c (c - u)
        weights = {(True, True): 1 - s_a - s_c, (False, True): s_a, (True, False): s_c}
    return {key: w for key, w in weights.items() if w != 0.0}


def guided_forward(forward, batch: Mapping[str, Any], audio_scale: float, cond_scale: float,
                   mode: str = "nested") -> Tensor:
    """Classifier-free guidance around ``forward(**batch, drop_audio=[nB], drop_cond=[nB])``.

    The ``n`` predictions needed (at most 3) run as one forward pass of ``n B`` sequences: tensors in
    ``batch`` with a leading batch dimension are repeated ``n`` times, everything else is passed on.
    """
    weights = guidance_weights(audio_scale, cond_scale, mode)
    audio = batch["audio"]
    B, device = audio.shape[0], audio.device
    if not weights:  # every weight is zero: the combination is zero
        return forward(**batch) * 0.0
    keys = list(weights)
    n = len(keys)
    repeated = {name: value.repeat(n, *([1] * (value.ndim - 1)))
                if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == B else value
                for name, value in batch.items()}
    drop_audio = torch.tensor([k[0] for k in keys], device=device).repeat_interleave(B)  # [n B]
    drop_cond = torch.tensor([k[1] for k in keys], device=device).repeat_interleave(B)
    preds = forward(**repeated, drop_audio=drop_audio, drop_cond=drop_cond).chunk(n)  # n x [B, T, C]
    out = preds[0] * weights[keys[0]]
    for key, pred in zip(keys[1:], preds[1:]):
        out = out + weights[key] * pred
    return out


def guided_denoise(forward, x_t: Tensor, t: Tensor | int, audio: Tensor, emotion: Labels = None,
                   intensity: Labels = None, style: Labels = None, mask: Tensor | None = None,
                   audio_scale: float = 1.0, cond_scale: float = 1.0, mode: str = "nested",
                   known: Tensor | None = None, known_mask: Tensor | None = None) -> Tensor:
    """:meth:`Denoiser.guided` around any callable with the denoiser's signature (a module or a graph)."""
    B = x_t.shape[0]
    t = torch.as_tensor(t, device=x_t.device)
    batch = {"x_t": x_t, "t": t.expand(B) if t.ndim == 0 else t, "audio": audio, "emotion": emotion,
             "intensity": intensity, "style": style, "mask": mask}
    if known is not None or known_mask is not None:
        batch.update(known=known, known_mask=known_mask)
    return guided_forward(forward, batch, audio_scale, cond_scale, mode)


def known_features(known: Tensor | None, known_mask: Tensor | None, like: Tensor) -> Tensor:
    """The known-frames input ``[B, T, C + 1]``: the given values where known (zero elsewhere) and the
    flag; ``known`` and ``known_mask`` None mean no frame is known. ``like``: ``x_t [B, T, C]``."""
    B, T, C = like.shape
    if known_mask is None:
        if known is not None:
            raise ValueError("known frames need their known_mask")
        return like.new_zeros(B, T, C + 1)
    flag = known_mask.to(device=like.device, dtype=like.dtype)
    if flag.shape != (B, T):
        raise ValueError(f"known_mask must be [B, T] = {(B, T)}, got {tuple(flag.shape)}")
    values = like.new_zeros(B, T, C) if known is None else known.to(like.dtype)
    if values.shape != (B, T, C):
        raise ValueError(f"known must be [B, T, C] = {(B, T, C)}, got {tuple(values.shape)}")
    return torch.cat([values * flag[..., None], flag[..., None]], dim=-1)


# --------------------------------------------------------------------------- denoiser
class Denoiser(nn.Module):
    """Predicts clean coefficients ``x0 [B, T, C]`` from ``x_t``, the timestep, audio and conditions.

    Args:
        cfg: :class:`DenoiserConfig`.
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.conformer.dim
        self.x_proj = nn.Linear(cfg.coeff_dim, D)
        self.known_proj = None
        if cfg.known_input:
            self.known_proj = nn.Linear(cfg.coeff_dim + 1, D)
            nn.init.zeros_(self.known_proj.weight)  # starts as the model without it (fine-tuning)
            nn.init.zeros_(self.known_proj.bias)
            self.init_optional = ("known_proj",)  # --init from a model without it
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.trunk = ConditionedConformer(cfg, has_input=True)

    def forward(self, x_t: Tensor, t: Tensor | int, audio: Tensor, emotion: Labels = None,
                intensity: Labels = None, style: Labels = None, mask: Tensor | None = None,
                drop_audio: bool | Tensor = False, drop_cond: bool | Tensor = False,
                known: Tensor | None = None, known_mask: Tensor | None = None) -> Tensor:
        """One prediction.

        Args:
            x_t: ``[B, T, C]`` noisy coefficients.
            t: ``[B]`` timesteps (or an int for all).
            audio: ``[B, T, D_a]`` audio features aligned with the frames.
            emotion: ``[B]`` index into the emotions, ``-1`` none.
            intensity: ``[B]`` level ``1 .. num_intensities``, ``0`` (or ``-1``) none.
            style: ``[B]`` style id, ``-1`` none (ignored when ``num_styles`` is 0).
            mask: ``[B, T]`` bool, True for valid frames, or None.
            drop_audio, drop_cond: bool or ``[B]``: use the null audio / null conditions.
            known, known_mask: ``[B, T, C]`` clean (normalised) values and ``[B, T]`` bool, True on the
                frames a continuation is given (``known_input`` models only; None: no frame is known).
        Returns:
            ``[B, T, C]`` the ``x0`` estimate; padded frames are zero.
        """
        if x_t.ndim != 3 or x_t.shape[-1] != self.cfg.coeff_dim or x_t.shape[:2] != audio.shape[:2]:
            raise ValueError(f"x_t must be [B, T, {self.cfg.coeff_dim}] with the audio's B, T "
                             f"{tuple(audio.shape[:2])}, got {tuple(x_t.shape)}")
        B = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(B) if t.ndim == 0 else t
        if mask is not None:
            x_t = x_t.masked_fill(~mask.to(device=x_t.device, dtype=torch.bool)[..., None], 0.0)
        t_emb = self.time_mlp(timestep_embedding(t, self.cfg.conformer.dim).to(x_t.dtype))  # [B, D]
        frames = self.x_proj(x_t)
        if self.known_proj is not None:
            frames = frames + self.known_proj(known_features(known, known_mask, x_t))
        elif known is not None or known_mask is not None:
            raise ValueError("this denoiser has no known-frames input (known_input is off)")
        return self.trunk(audio, emotion, intensity, style, mask, drop_audio, drop_cond,
                          frames=frames, extra=t_emb)

    def guided(self, x_t: Tensor, t: Tensor | int, audio: Tensor, emotion: Labels = None,
               intensity: Labels = None, style: Labels = None, mask: Tensor | None = None,
               audio_scale: float = 1.0, cond_scale: float = 1.0, mode: str = "nested",
               known: Tensor | None = None, known_mask: Tensor | None = None) -> Tensor:
        """Classifier-free guided ``x0 [B, T, C]`` (see :data:`GUIDANCE_MODES`).

        ``nested``: ``x0(0,0) + s_a (x0(a,0) - x0(0,0)) + s_c (x0(a,c) - x0(a,0))``. Scales of 1 give
        the plain conditional prediction (one pass); ``cond_scale = 0`` gives an output independent of
        emotion, intensity and style; ``audio_scale = cond_scale = 0`` the unconditional one. In
        ``independent`` mode ``audio_scale = 0`` alone makes the output independent of the audio.
        Use in eval mode (training mode would add random dropout). Known frames (``known_input``) are
        given to every prediction alike.
        """
        return guided_denoise(self.forward, x_t, t, audio, emotion, intensity, style, mask,
                              audio_scale, cond_scale, mode, known, known_mask)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
