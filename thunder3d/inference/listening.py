"""Sampling with a listener: M2S-guided DDIM and best-of-N re-ranking (beyond the paper).

:func:`listen_generate` wraps :func:`~thunder3d.inference.sampling.generate` with the two uses of a frozen
mesh-to-speech listener at inference (:mod:`thunder3d.models.guidance`):

- ``strength > 0``: every DDIM step's clean estimate is moved against the gradient of the listener's
  loss on the window's speech (mouth coefficients only);
- ``candidates = K > 1``: ``K * samples`` animations are drawn (seeds ``seed .. seed + K*samples - 1``)
  and the ``samples`` the listener hears as most in sync with the speech are kept, in seed order.

Both cost time: guidance one listener forward and backward per window step, re-ranking ``K`` times the
sampling plus one listener pass per candidate. ``benchmarks/listener_guidance.py`` measures lip metrics,
diversity and time against plain sampling and classifier-free guidance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from thunder3d.errors import ThunderError
from thunder3d.inference.sampling import generate
from thunder3d.models.guidance import ListenerGuide, listener_scores
from thunder3d.models.m2s import M2S
from thunder3d.models.talker import TalkerModel
from thunder3d.rigs import Rig


def check_listening(strength: float, candidates: int) -> None:
    """Refuse a negative or non-finite strength and a candidate count below 1."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not np.isfinite(strength) or strength < 0:
        raise ThunderError(f"listener strength must be a finite number >= 0, got {strength!r}")
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) or candidates < 1:
        raise ThunderError(f"candidates must be an integer >= 1, got {candidates!r}")


def listen_generate(model: TalkerModel, wav: np.ndarray | torch.Tensor, listener: M2S, rig: Rig, *,
                    samples: int = 1, seed: int = 0, strength: float = 0.0, candidates: int = 1,
                    smooth: float = 0.0, t_max: int | None = None,
                    **options: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``generate`` steered and/or re-ranked by ``listener`` (module docstring).

    Args:
        model: a diffusion talker whose coefficients drive ``rig`` (the listener's rig).
        wav: ``[N]`` 16 kHz speech.
        listener: the frozen M2S.
        samples, seed: as :func:`generate`.
        strength: guidance step (0 = none).
        candidates: draws per kept sample (1 = no re-ranking).
        smooth, t_max: the guide's gradient smoothing (frames) and noise cut-off
            (:class:`~thunder3d.models.guidance.ListenerGuide`).
        options: further :func:`generate` options (``steps``, ``audio_scale``, ``emotion``, ...).

    Returns:
        ``([samples, T, C] raw coefficients, [K * samples] listener scores of the candidates or None)``.
    """
    check_listening(strength, candidates)
    if model.deterministic:
        raise ThunderError("listener guidance and re-ranking need a diffusion talker, not the regressor")
    listener.check_rig(rig)
    wav = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1)
    guide = None
    if strength > 0:
        normalizer = options.get("normalizer") or model.normalizer
        guide = ListenerGuide(listener, rig, normalizer.mean, normalizer.std, strength, smooth=smooth, t_max=t_max)
    n = samples * candidates
    out = generate(model, wav, samples=n, seed=seed, guide=guide, **options)  # [n, T, C]
    if candidates == 1:
        return out, None
    scores = listener_scores(listener, rig, torch.from_numpy(out), wav).numpy()
    keep = np.sort(np.argsort(scores, kind="stable")[:samples])
    return np.ascontiguousarray(out[keep]), scores


__all__ = ["check_listening", "listen_generate"]
