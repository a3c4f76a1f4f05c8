"""A small conformer sequence encoder with rotary positions and padding-safe masking.

One conformer block (Gulati et al., 2020) is, with residual connections around each part::

    x = x + 1/2 FF(x)          macaron half-step feed-forward
    x = x + MHSA(x)            multi-head self-attention, rotary positions on queries and keys
    x = x + Conv(x)            pointwise -> GLU -> depthwise -> LayerNorm -> SiLU -> pointwise
    x = x + 1/2 FF(x)
    x = LayerNorm(x)

Positions enter only through rotary embeddings, so attention scores depend on the distance between
two frames, never on where they are: any length works and shifting a whole sequence leaves the
output unchanged. Padding never reaches a valid output: padded frames are zeroed before the
depthwise convolution (which then sees exactly what a sequence boundary looks like), masked out
as attention keys, and the only normalisations are per-frame LayerNorms. Padded outputs are zero.

Shapes: ``B`` batch, ``T`` frames, ``D`` model width, ``H`` heads, ``Dh = D / H``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thunder3d.config import Config
from thunder3d.errors import ModelConfigError

ROTARY_BASE = 10_000.0  # wavelength scale of the rotary frequencies (as in RoFormer)




@dataclass
class ConformerConfig(Config):
    """Sizes of a :class:`Conformer`.

    Args:
        dim: model width ``D``.
        layers: number of conformer blocks.
        heads: attention heads; ``dim / heads`` must be an even integer (rotary pairs channels).
        ff_mult: feed-forward hidden width is ``ff_mult * dim``.
        conv_kernel: depthwise convolution kernel over frames; odd, so the output stays aligned.
        dropout: dropout rate inside every block (attention weights included).
    """

    error = ModelConfigError
    label = "conformer config"

    dim: int = 256
    layers: int = 4
    heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("dim", "layers", "heads", "ff_mult", "conv_kernel"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelConfigError(f"conformer {name} must be a positive integer, got {value!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ModelConfigError(f"conformer dim {self.dim} must split into {self.heads} heads of an "
                                   "even width (rotary embeddings rotate channel pairs)")
        if self.conv_kernel % 2 == 0:
            raise ModelConfigError(f"conformer conv_kernel must be odd, got {self.conv_kernel}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ModelConfigError(f"conformer dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


CONFORMER_KEYS: tuple[str, ...] = ("dim", "layers", "heads", "ff_mult", "conv_kernel", "dropout")
"""The fields of :class:`ConformerConfig` (configs saved before nesting had them at the top)."""


# --------------------------------------------------------------------------- rotary positions
def rotary_tables(length: int, head_dim: int, *, device: torch.device | str | None = None,
                  base: float = ROTARY_BASE) -> tuple[Tensor, Tensor]:
    """Cosine and sine of the rotary angles: two ``[length, head_dim / 2]`` float32 tensors.

    Channel pair ``i`` of position ``p`` is rotated by ``p * base ** (-2 i / head_dim)``.
    Computed in float64 so that long sequences keep accurate angles.
    """
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float64, device=device) / half)  # [half]
    angles = torch.arange(length, dtype=torch.float64, device=device)[:, None] * inv_freq  # [L, half]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs ``(i, i + Dh/2)`` of ``x [..., T, Dh]`` by the angles of ``cos/sin [T, Dh/2]``.

    For a query at position ``m`` and a key at ``n`` the dot product of the rotated vectors depends
    only on ``m - n``.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class RotaryEmbedding(nn.Module):
    """Caches the rotary tables as non-persistent buffers and grows them when a longer input comes.

    Args:
        head_dim: per-head width ``Dh`` (even).
        initial_length: positions tabulated up front.
    """

    def __init__(self, head_dim: int, initial_length: int = 512) -> None:
        super().__init__()
        self.head_dim = head_dim
        cos, sin = rotary_tables(initial_length, head_dim)
        self.register_buffer("cos", cos, persistent=False)  # [L, Dh/2]
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(cos, sin)``, each ``[length, Dh/2]``, on ``device``."""
        if self.cos.shape[0] < length or self.cos.device != device:
            size = max(self.cos.shape[0], 1 << max(length - 1, 1).bit_length())  # next power of two
            # plain tensors even when first reached under inference_mode, so autograd can save them
            with torch.inference_mode(False):
                self.cos, self.sin = rotary_tables(size, self.head_dim, device=device)
        return self.cos[:length], self.sin[:length]


# --------------------------------------------------------------------------- block parts
class FeedForward(nn.Module):
    """LayerNorm -> Linear(D, ff_mult D) -> SiLU -> dropout -> Linear(ff_mult D, D) -> dropout."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(cfg.dim),
            nn.Linear(cfg.dim, cfg.ff_mult * cfg.dim),
            nn.SiLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ff_mult * cfg.dim, cfg.dim),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, D]`` -> ``[B, T, D]``."""
        return self.net(x)


class SelfAttention(nn.Module):
    """LayerNorm -> multi-head self-attention with rotary queries/keys -> dropout."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        self.norm = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.out_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, key_mask: Tensor | None) -> Tensor:
        """Attend over frames.

        Args:
            x: ``[B, T, D]``.
            cos, sin: rotary tables ``[T, Dh/2]``.
            key_mask: ``[B, 1, 1, T]`` bool, True where a frame may be attended to; None = all.
        Returns:
            ``[B, T, D]``.
        """
        B, T, D = x.shape
        qkv = self.qkv(self.norm(x)).view(B, T, 3, self.heads, D // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, T, Dh]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, T, Dh]
        y = y.transpose(1, 2).reshape(B, T, D)
        return self.out_dropout(self.out(y))


class ConvModule(nn.Module):
    """LayerNorm -> pointwise (D -> 2D) -> GLU -> depthwise conv over frames -> LayerNorm -> SiLU
    -> pointwise (D -> D) -> dropout.

    Padded frames are zeroed right before the depthwise convolution, so a valid frame next to
    padding sees the same zeros it would see at the end of an unpadded sequence. The norm after
    the depthwise convolution is a per-frame LayerNorm (a BatchNorm would mix padding statistics
    across the batch and make the output depend on the batch).
    """

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim)
        self.pointwise_in = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.depthwise = nn.Conv1d(cfg.dim, cfg.dim, cfg.conv_kernel, padding=cfg.conv_kernel // 2,
                                   groups=cfg.dim)
        self.depth_norm = nn.LayerNorm(cfg.dim)
        self.pointwise_out = nn.Linear(cfg.dim, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, frame_mask: Tensor | None) -> Tensor:
        """``x [B, T, D]``, ``frame_mask [B, T, 1]`` float (1 valid, 0 padding) or None -> ``[B, T, D]``."""
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1)  # [B, T, D]
        if frame_mask is not None:
            y = y * frame_mask
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)  # conv over T, channels first
        y = F.silu(self.depth_norm(y))
        return self.dropout(self.pointwise_out(y))


class ConformerBlock(nn.Module):
    """Macaron feed-forward, self-attention, convolution, feed-forward, LayerNorm (see module doc)."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.ff1 = FeedForward(cfg)
        self.attn = SelfAttention(cfg)
        self.conv = ConvModule(cfg)
        self.ff2 = FeedForward(cfg)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, key_mask: Tensor | None,
                frame_mask: Tensor | None) -> Tensor:
        """``[B, T, D]`` -> ``[B, T, D]``; masks as in :class:`SelfAttention` / :class:`ConvModule`."""
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, cos, sin, key_mask)
        x = x + self.conv(x, frame_mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    """A stack of :class:`ConformerBlock` sharing one rotary table.

    Args:
        cfg: sizes (:class:`ConformerConfig`).
    """

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rotary = RotaryEmbedding(cfg.head_dim)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.layers))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encode a batch of sequences.

        Args:
            x: ``[B, T, D]`` frame features.
            mask: ``[B, T]`` bool, True for valid frames, or None when every frame is valid.
        Returns:
            ``[B, T, D]``; valid frames do not depend on padded ones, padded frames are zero.
        """
        if x.ndim != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"conformer expects [B, T, {self.cfg.dim}], got {tuple(x.shape)}")
        B, T, _ = x.shape
        cos, sin = self.rotary(T, x.device)
        key_mask = frame_mask = None
        if mask is not None:
            if mask.shape != (B, T):
                raise ValueError(f"mask must be [B, T] = {(B, T)}, got {tuple(mask.shape)}")
            mask = mask.to(device=x.device, dtype=torch.bool)
            # a sequence with no valid frame would softmax over nothing (NaN): let it see itself;
            # its outputs are zeroed below anyway
            key_mask = (mask | ~mask.any(-1, keepdim=True))[:, None, None, :]  # [B, 1, 1, T]
            frame_mask = mask[..., None].to(x.dtype)  # [B, T, 1]
            x = x.masked_fill(~mask[..., None], 0.0)  # whatever sits in the padding (NaN too) stops here
        for block in self.blocks:
            x = block(x, cos, sin, key_mask, frame_mask)
        return x if frame_mask is None else x * frame_mask
