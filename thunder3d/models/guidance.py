"""Listener guidance: steer sampling with a frozen M2S that hears the face (beyond the paper).

THUNDER uses the mesh-to-speech listener as a training loss. The same listener can act at inference:

- **guided sampling** (:class:`ListenerGuide`): at every DDIM step the clean estimate ``x̂0`` is moved
  against the gradient of the listener's loss ``L = mel_loss(M2S(rig_features(x̂0)), log_mel(speech))``
  (no gradient through the denoiser, only through the rig and the listener)::

      g = ∂L/∂x̂0 restricted to the mouth coefficients,   x̂0 ← x̂0 − strength · g / rms(g)

  per sample, so ``strength`` is a step in the normalised coefficient space (units of a
  coefficient's training std) whatever the loss scale; DDIM then continues from the moved estimate.
- **re-ranking** (:func:`listener_scores`): sample more candidates and keep those the listener finds
  most in sync with the speech (the lowest loss over the whole animation, windowed).

Both compare the listener's prediction with the input speech exactly as its training did
(:meth:`~thunder3d.models.m2s.M2S.mel_loss`). Pure torch; the caller loads the listener.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from thunder3d.audio.features import log_mel
from thunder3d.constants import FPS, MELS_PER_FRAME, SAMPLES_PER_FRAME
from thunder3d.models.m2s import M2S, freeze, rig_features
from thunder3d.rigs import Rig

MOUTH_SHARE = 0.25
"""A coefficient is a mouth coefficient when at least this share of its displacement (summed vertex
offsets at a unit step from the rest pose) lies in the rig's ``mouth`` region."""


def mouth_coefficients(rig: Rig) -> np.ndarray:
    """``[C]`` bool: the rig's coefficients whose displacement lies mostly in its ``mouth`` region
    (:data:`MOUTH_SHARE`), measured at a unit step of each coefficient from the rest pose (so it also
    works for skinned rigs such as FLAME's jaw)."""
    with torch.no_grad():
        C = rig.num_coeffs
        rest = rig(torch.zeros(1, 1, C))[0, 0]  # [V, 3]
        moved = rig(torch.eye(C)[None])[0] - rest  # [C, V, 3]
        norms = moved.norm(dim=-1)  # [C, V]
        mouth = torch.zeros(rig.num_vertices, dtype=torch.bool)
        mouth[rig.region("mouth").cpu()] = True
        share = norms[:, mouth].sum(-1) / norms.sum(-1).clamp_min(1e-12)
    return (share >= MOUTH_SHARE).numpy()


class ListenerGuide:
    """Moves a clean estimate towards what the listener hears as the speech (module docstring).

    Args:
        m2s: the listener (frozen here).
        rig: the rig the talker's coefficients drive (the listener's rig).
        mean, std: ``[C]`` the talker's coefficient normalisation (its samples are normalised).
        strength: step size in normalised units (0 = off).
        mouth_only: move only the mouth coefficients (:func:`mouth_coefficients`).
        smooth: sigma in frames of a Gaussian smoothing of the gradient over time (0 = none): the
            raw gradient of a listener is frame-to-frame noisy, motion is not.
        t_max: guide only the steps with ``t <= t_max`` (None = every step).
    """

    def __init__(self, m2s: M2S, rig: Rig, mean: np.ndarray | Tensor, std: np.ndarray | Tensor,
                 strength: float, mouth_only: bool = True, smooth: float = 0.0, t_max: int | None = None) -> None:
        m2s.check_rig(rig)
        self.m2s, self.rig = freeze(m2s), rig
        self.mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        self.std = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        self.strength = float(strength)
        C = rig.num_coeffs
        self.keep = torch.as_tensor(mouth_coefficients(rig)) if mouth_only else torch.ones(C, dtype=torch.bool)
        self.smooth, self.t_max = float(smooth), t_max
        self.target: Tensor | None = None

    def set_speech(self, wav: Tensor) -> None:
        """The speech of the window to guide: ``[L * 640]`` samples (or ``[1, L * 640]``)."""
        wav = wav.reshape(1, -1).float()
        with torch.no_grad():
            self.target = log_mel(wav.cpu())  # [1, 4L, 80]

    def loss(self, raw: Tensor) -> Tensor:
        """``[S]`` the listener's loss of raw coefficients ``[S, L, C]`` against the set speech."""
        if self.target is None:
            raise RuntimeError("ListenerGuide.set_speech() first")
        m2s = self.m2s.to(raw.device)
        out = m2s(rig_features(self.rig.to(raw.device), raw, m2s.cfg.input))
        frames = min(out.mel.shape[1], self.target.shape[1])
        target = self.target[:, :frames].to(raw.device)
        return torch.stack([m2s.mel_loss(out.mel[i:i + 1, :frames], target) for i in range(raw.shape[0])])

    def __call__(self, x0: Tensor, t: Tensor) -> Tensor:
        """``x0 [S, L, C]`` normalised -> the moved estimate (same shape)."""
        if self.strength <= 0 or (self.t_max is not None and int(t.max()) > self.t_max):
            return x0
        mean, std = self.mean.to(x0.device), self.std.to(x0.device)
        with torch.enable_grad():
            x = x0.detach().float().requires_grad_(True)
            self.loss(x * std + mean).sum().backward()
            g = x.grad * self.keep.to(x0.device)
        if self.smooth > 0:
            g = _smooth_time(g, self.smooth)
        rms = g.square().mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
        return (x0 - self.strength * g / rms).to(x0.dtype)


def _smooth_time(x: Tensor, sigma: float) -> Tensor:
    """``[S, L, C]`` smoothed along L by a Gaussian of ``sigma`` frames (edges replicated)."""
    radius = max(1, int(round(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1).repeat(x.shape[-1], 1, 1)  # [C, 1, K]
    y = torch.nn.functional.pad(x.transpose(1, 2), (radius, radius), mode="replicate")
    return torch.nn.functional.conv1d(y, k, groups=x.shape[-1]).transpose(1, 2)


@torch.no_grad()
def listener_scores(m2s: M2S, rig: Rig, coeffs: Tensor, wav: Tensor, window: float = 8.0) -> Tensor:
    """How out of sync each animation sounds to the listener: ``[N]`` mean loss (lower = better).

    Args:
        coeffs: ``[N, T, C]`` raw coefficients of ``N`` animations of the same speech.
        wav: ``[T * 640]`` the speech (16 kHz).
        window: seconds per listener call (the loss is averaged over windows, weighted by length).
    """
    m2s = freeze(m2s)
    N, T, _ = coeffs.shape
    W = max(1, round(window * FPS))
    wav = wav.reshape(-1).float()
    if wav.numel() < T * SAMPLES_PER_FRAME:
        wav = torch.nn.functional.pad(wav, (0, T * SAMPLES_PER_FRAME - wav.numel()))
    total, weight = torch.zeros(N), 0
    for a in range(0, T, W):
        b = min(T, a + W)
        if b - a < 2:
            continue
        target = log_mel(wav[a * SAMPLES_PER_FRAME: b * SAMPLES_PER_FRAME][None])[:, :(b - a) * MELS_PER_FRAME]
        out = m2s(rig_features(rig, coeffs[:, a:b].float(), m2s.cfg.input))
        for i in range(N):
            total[i] += float(m2s.mel_loss(out.mel[i:i + 1], target)) * (b - a)
        weight += b - a
    return total / max(weight, 1)


__all__ = ["ListenerGuide", "MOUTH_SHARE", "listener_scores", "mouth_coefficients"]
