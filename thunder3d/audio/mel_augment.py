"""Training-time augmentation of log-mel features, in torch: vocal-tract-length warp and band masks.

The signal-level chain of :mod:`.augment` is applied once per clip when a corpus is made; these
two are drawn afresh for every training window inside the mel encoder (only in ``train()`` mode),
to make a model trained on a few synthetic voices less sensitive to the voice:

- :func:`warp_mel`: vocal-tract-length perturbation (VTLP, Jaitly & Hinton 2013). A talker with a
  shorter vocal tract has its formants at higher frequencies, roughly ``f -> alpha f``. The warped
  spectrum is ``S'(f) = S(f / alpha)``: each mel bin takes the value the input had at its centre
  frequency divided by ``alpha``, linearly interpolated between bin centres (bins whose source
  falls outside the mel range repeat the edge bin). Timing is untouched.
- :func:`mask_mel_bands`: one band of adjacent mel bins per item set to a constant (SpecAugment's
  frequency mask, Park et al. 2019), so that no single band is relied on. Never a time mask: the
  animation target is tied to every frame.

Both are deterministic given torch's global RNG (seeded per rank by the training loop).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from thunder3d.audio.features import _hz_to_mel, _mel_to_hz
from thunder3d.constants import F_MAX, F_MIN, N_MELS
from thunder3d.errors import AudioError


@functools.lru_cache(maxsize=1)
def _bin_centres_hz() -> tuple[np.ndarray, np.ndarray]:
    """Mel-scale positions and Hz of the ``N_MELS`` filter centres (see ``mel_filterbank``)."""
    mels = np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2)[1:-1]
    return mels, _mel_to_hz(mels)


def warp_mel(log_mel: Tensor, alpha: Tensor) -> Tensor:
    """Warp the frequency axis of log-mel features by ``alpha`` per item (VTLP).

    Args:
        log_mel: ``[B, M, 80]`` log-mel frames.
        alpha: ``[B]`` warp factors (> 0; 1 = unchanged, > 1 moves formants up).

    Returns:
        ``[B, M, 80]``, same dtype and device.
    """
    if log_mel.ndim != 3 or log_mel.shape[-1] != N_MELS:
        raise AudioError(f"warp_mel expects [B, M, {N_MELS}] log-mel, got {tuple(log_mel.shape)}")
    if alpha.shape != (log_mel.shape[0],) or not bool((alpha > 0).all()):
        raise AudioError(f"warp_mel expects [B] positive factors, got {tuple(alpha.shape)}")
    mels, hz = _bin_centres_hz()
    source_hz = hz[None, :] / alpha.detach().double().cpu().numpy()[:, None]  # [B, 80]
    # fractional bin index of each source frequency (bin centres are evenly spaced in mel)
    index = (_hz_to_mel(source_hz) - mels[0]) / (mels[1] - mels[0])
    index = torch.from_numpy(np.clip(index, 0.0, N_MELS - 1)).to(log_mel.device, log_mel.dtype)
    low = index.floor().long().clamp(max=N_MELS - 2)  # [B, 80]
    frac = (index - low.to(index.dtype))[:, None, :]  # [B, 1, 80]
    below = torch.gather(log_mel, 2, low[:, None, :].expand(-1, log_mel.shape[1], -1))  # [B, M, 80]
    above = torch.gather(log_mel, 2, (low + 1)[:, None, :].expand(-1, log_mel.shape[1], -1))
    return below * (1.0 - frac) + above * frac


def mask_mel_bands(mel: Tensor, max_width: int, value: float = 0.0) -> Tensor:
    """Set one random band of ``0..max_width`` adjacent bins per item to ``value``.

    Args:
        mel: ``[B, M, 80]`` (normalised) log-mel frames.
        max_width: widest band in bins (0 = no mask).
        value: what masked bins hold (0 = the mean of normalised features).

    Returns:
        ``[B, M, 80]``, a new tensor.
    """
    if max_width <= 0:
        return mel
    batch = mel.shape[0]
    width = torch.randint(0, max_width + 1, (batch,))
    start = (torch.rand(batch) * (N_MELS - width + 1).float()).long()
    bins = torch.arange(N_MELS)
    masked = (bins[None] >= start[:, None]) & (bins[None] < (start + width)[:, None])  # [B, 80]
    return mel.masked_fill(masked[:, None, :].to(mel.device), value)


__all__ = ["mask_mel_bands", "warp_mel"]
