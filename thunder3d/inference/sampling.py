"""Sampling a trained talker for speech of any length: overlapping windows with continuous seams.

:func:`generate` turns a wav (or precomputed frame-aligned audio features) into ``N`` animations
``[N, T, C]`` of rig coefficients, one window at a time, so memory does not grow with the length.

Windows of ``W = window * 25`` frames start every ``W - O`` frames (``O = overlap * 25``); the last
one is moved back to end at the last frame, so every window has the length the model was trained
on (a sequence shorter than one window is one window). A window starting at ``s`` whose first
``O' = done - s`` frames were already generated (``O' >= O``) treats them in two parts::

    [s, s + O' - F)      known: imposed by inpainting (RePaint without resampling): at every DDIM step
                         they are replaced by the previous output noised to the step's level, so the
                         new frames are generated *around* them and end exactly on them (a model that
                         reads given frames, ``TalkerModel.continues``, also gets them as an input);
    [s + O' - F, done)   fade: generated anew by this window, then cross-faded linearly from the
                         previous window's output to this one's (weights 1/(F+1) .. F/(F+1));
    [done, e)            new frames.

``F = fade * 25`` (default half the overlap). Deterministic models (the regressor) cannot
inpaint: their whole overlap is cross-faded. Either way the seam is a blend of two trajectories that
agree on the known part, so no frame-to-frame jump exceeds the motion of the trajectories
themselves plus ``|difference| / (F + 1)``.

Audio features are computed per window from the window's audio plus ``context`` seconds on each
side (cropped afterwards), so the encoder's receptive field sees the same audio for a frame in
every window that contains it: no edge effects at seams (exactly so for encoders with a finite
receptive field shorter than the context, like the default mel encoder). Frozen pretrained
features (the ``whisper`` encoder) are computed for the whole input once, in the encoder's fixed
chunks, and sliced per window, as training slices the corpus's cached ones. Encoders that read
recognised phones (``hybrid``, ``phonetic``) get them from one recognition of the whole input
(:func:`~thunder3d.audio.align.recognize_frame_labels`: 5 s chunks decoded by worker processes
in parallel), sliced per window.

Randomness: sample ``i`` uses its own generator seeded with ``seed + i`` (initial noise, inpainting
noise and ``eta`` noise, in a fixed order), so the same seed gives the same output on any device and
sample ``i`` does not depend on how many samples are drawn together.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from thunder3d.constants import FPS, SAMPLES_PER_FRAME
from thunder3d.data.dataset import Normalizer
from thunder3d.conditions import emotion_id, intensity_id, style_id
from thunder3d.errors import ThunderError
from thunder3d.models.diffusion import DEFAULT_STEPS, DDIMSampler, sample
from thunder3d.models.talker import TalkerModel

if TYPE_CHECKING:
    from thunder3d.models.guidance import ListenerGuide


@dataclass(frozen=True)
class Window:
    """One window of a plan (frame indices into the whole sequence).

    Attributes:
        start, end: the window is frames ``[start, end)``.
        known: frames ``[start, start + known)`` are imposed from earlier windows (inpainting).
        fade: the next ``fade`` frames are cross-faded from the earlier output to this window's.
    """

    start: int
    end: int
    known: int = 0
    fade: int = 0

    @property
    def new_from(self) -> int:
        """First frame no earlier window produced."""
        return self.start + self.known + self.fade


def plan_windows(num_frames: int, window: int, overlap: int, fade: int | None = None,
                 inpaint: bool = True) -> list[Window]:
    """The windows that cover ``num_frames`` frames (module docstring).

    Args:
        num_frames: ``T``.
        window: ``W`` frames per window (>= 1).
        overlap: ``O`` frames shared by consecutive windows (``0 <= O < W``).
        fade: cross-faded frames at the end of each overlap (default ``O // 2``; all of it when
            ``inpaint`` is False).
        inpaint: whether the rest of the overlap is imposed by inpainting (False for the regressor).
    """
    if window < 1 or not 0 <= overlap < window:
        raise ThunderError(f"need window >= 1 frame and 0 <= overlap < window, got window {window}, "
                           f"overlap {overlap} frames")
    if num_frames <= 0:
        return []
    if num_frames <= window:
        return [Window(0, num_frames)]
    fade_frames = overlap if not inpaint else (overlap // 2 if fade is None else int(fade))
    if not 0 <= fade_frames <= overlap:
        raise ThunderError(f"fade must be between 0 and the overlap ({overlap} frames), got {fade_frames}")
    plan, done, start = [Window(0, window)], window, window - overlap
    while done < num_frames:
        start = min(start, num_frames - window)  # the last window ends at the last frame
        shared = done - start
        f = shared if not inpaint else min(fade_frames, shared)
        plan.append(Window(start, start + window, known=shared - f, fade=f))
        done, start = start + window, start + window - overlap
    return plan


# --------------------------------------------------------------------------- audio
def _as_input(audio: Any, audio_dim: int) -> tuple[Tensor, bool]:
    """``(tensor, is_features)``: a path or 1-D wav -> float32 ``[N]``; ``[T, D_a]`` -> features."""
    if isinstance(audio, (str, os.PathLike)):
        from thunder3d.audio.io import load_audio

        audio = load_audio(audio)
    x = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio)
    if x.ndim == 1:
        return x.detach().float().cpu(), False
    if x.ndim == 2 and x.shape[1] == audio_dim:
        return x.detach().float().cpu(), True
    raise ThunderError(f"audio must be 16 kHz samples [N] or features [T, {audio_dim}], got shape "
                       f"{tuple(x.shape)}")


def window_features(model: TalkerModel, source: Tensor, is_features: bool, total: int, start: int,
                     end: int, context: int, device: torch.device, phones: Tensor | None = None,
                     pretrained: Tensor | None = None) -> Tensor:
    """Features ``[1, end - start, D_a]`` of frames ``[start, end)``, computed with ``context``
    frames of audio on each side where the sequence has them (``phones [total]``: the recognised
    phones of the whole input, for encoders that read them; ``pretrained [total, F]``: its frozen
    features, for encoders that take them)."""
    if is_features:
        return source[start:end].to(device)[None]
    lo, hi = max(0, start - context), min(total, end + context)
    wav = source[lo * SAMPLES_PER_FRAME: hi * SAMPLES_PER_FRAME]
    need = (hi - lo) * SAMPLES_PER_FRAME
    if wav.shape[0] < need:  # the last partial frame: zero-padded
        wav = torch.nn.functional.pad(wav, (0, need - wav.shape[0]))
    labels = None if phones is None else phones[lo:hi].to(device)[None]
    frozen = None if pretrained is None else pretrained[lo:hi].to(device)[None]
    feats = model.encode_audio(wav.to(device)[None], hi - lo, labels, frozen)  # [1, hi - lo, D_a]
    return feats[:, start - lo: end - lo]


# --------------------------------------------------------------------------- generation
@torch.no_grad()
def generate(model: TalkerModel, audio: Any, *, normalizer: Normalizer | None = None, samples: int = 1,
             seed: int = 0, emotion: str | int | None = None, intensity: int | str | None = None,
             style: str | int | None = None, steps: int | None = None, audio_scale: float | None = None,
             cond_scale: float = 1.0, mode: str = "nested", eta: float = 0.0, window: float = 4.0,
             overlap: float = 1.0, fade: float | None = None, context: float = 1.0,
             device: str | torch.device | None = None, guide: ListenerGuide | None = None) -> np.ndarray:
    """Sample ``samples`` animations for speech of any length (module docstring).

    Args:
        model: a :class:`~thunder3d.models.talker.TalkerModel` (from
            :func:`~thunder3d.checkpoints.load_talker`), diffusion or deterministic.
        audio: 16 kHz mono samples ``[N]`` (numpy/torch), an audio file path, or precomputed
            features ``[T, D_a]`` of the model's audio encoder.
        normalizer: de-normalises the output (default ``model.normalizer``; with neither, the
            output stays in the model's normalised space).
        samples: ``N``.
        seed: sample ``i`` is seeded with ``seed + i``.
        emotion: a name of :data:`~thunder3d.conditions.EMOTIONS` (or alias), an index, or None.
        intensity: 1, 2, 3 or None.
        style: a style name of ``model.styles``, an index, or None.
        steps: DDIM steps (None: the model's ``default_steps``, what its checkpoint recommends).
        audio_scale, cond_scale, mode: classifier-free guidance
            (:meth:`~thunder3d.models.denoiser.Denoiser.guided`); ``cond_scale=0`` ignores
            emotion, intensity and style; ``audio_scale=None`` takes the model's
            ``default_guidance`` (what its checkpoint recommends, else 1).
        eta: DDIM stochasticity (0 = deterministic given the initial noise).
        window, overlap, fade, context: seconds (see the module docstring).
        device: where to run (default: the model's device).
        guide: listener guidance (:class:`~thunder3d.models.guidance.ListenerGuide`, diffusion models
            and audio input only): each window's speech is set on it and every DDIM step's clean
            estimate is moved by it.
    Returns:
        ``[N, T, C]`` float32 coefficients, ``T = ceil(N_samples / 640)`` for audio input.
    """
    if samples < 1:
        raise ThunderError(f"samples must be >= 1, got {samples}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if audio_scale is None:
        audio_scale = float(getattr(model, "default_guidance", 1.0))
    if steps is None:
        steps = int(getattr(model, "default_steps", DEFAULT_STEPS))
    normalizer = normalizer if normalizer is not None else getattr(model, "normalizer", None)
    source, is_features = _as_input(audio, model.audio_dim)
    if guide is not None and (is_features or model.deterministic):
        raise ThunderError("listener guidance needs a diffusion model and audio input (not features)")
    total = source.shape[0] if is_features else math.ceil(source.shape[0] / SAMPLES_PER_FRAME)
    C = model.coeff_dim
    e = emotion_id(emotion)
    i = intensity_id(intensity)
    s = style_id(style, tuple(getattr(model, "styles", ()) or ()))
    deterministic = model.deterministic
    W, O = round(window * FPS), round(overlap * FPS)
    plan = plan_windows(total, W, O, None if fade is None else round(fade * FPS),
                        inpaint=not deterministic)
    ctx = max(0, round(context * FPS))
    phones = None  # an encoder that reads phones: recognise the whole input once, not every window
    if model.uses_phones and not is_features:
        from thunder3d.audio.align import recognize_frame_labels

        phones = torch.from_numpy(recognize_frame_labels(source.numpy(), total,
                                                         method=model.audio_encoder.recognizer))
    pretrained = None  # frozen pretrained features: the whole input once, in the encoder's fixed chunks
    if getattr(model, "uses_pretrained", False) and not is_features:
        pretrained = model.audio_encoder.pretrained_features(source.to(device)[None], total)[0]  # [T, F]
    out = torch.zeros(samples, total, C)  # normalised, on the CPU
    generators = [torch.Generator().manual_seed(int(seed) + k) for k in range(samples)]

    def noise(frames: int) -> Tensor:
        return torch.stack([torch.randn(frames, C, generator=g) for g in generators]).to(device)

    was_training = model.training
    model.eval()
    try:
        if not deterministic:
            sampler = DDIMSampler(model.schedule)
            sampler.set_timesteps(int(steps))
        for win in plan:
            length = win.end - win.start
            feats = window_features(model, source, is_features, total, win.start, win.end, ctx, device,
                                     phones, pretrained)
            feats = feats.expand(samples, -1, -1)
            labels = {"emotion": torch.full((samples,), e, device=device),
                      "intensity": torch.full((samples,), i, device=device),
                      "style": torch.full((samples,), s, device=device)}
            scales = {"audio_scale": audio_scale, "cond_scale": cond_scale, "mode": mode}
            if guide is not None:
                wav = source[win.start * SAMPLES_PER_FRAME: win.end * SAMPLES_PER_FRAME]
                guide.set_speech(torch.nn.functional.pad(wav, (0, length * SAMPLES_PER_FRAME - wav.numel())))
            x = sample_window(model, feats, labels, scales, out[:, win.start: win.start + win.known],
                              None if deterministic else sampler, lambda: noise(length), eta=eta, guide=guide)
            a, b = win.start + win.known, win.new_from  # the cross-faded frames [a, b)
            if b > a:
                alpha = torch.arange(1, b - a + 1, dtype=torch.float32)[None, :, None] / (b - a + 1)
                out[:, a:b] = (1 - alpha) * out[:, a:b] + alpha * x[:, a - win.start: b - win.start]
            out[:, b: win.end] = x[:, b - win.start:]
    finally:
        model.train(was_training)
    result = out.numpy()
    if normalizer is not None:
        result = normalizer.denormalize(result)
    return np.ascontiguousarray(result, dtype=np.float32)


def sample_window(model: TalkerModel, feats: Tensor, labels: dict[str, Tensor], scales: dict[str, Any],
                  known: Tensor, sampler: DDIMSampler | None, noise, eta: float = 0.0,
                  guide: ListenerGuide | None = None) -> Tensor:
    """One window of ``S`` samples, ``[S, L, C]`` normalised on the CPU: the one step that
    :func:`generate` and the streaming animator repeat.

    Args:
        feats: ``[S, L, D_a]`` audio features of the window.
        labels: ``emotion``, ``intensity``, ``style``, each ``[S]``.
        scales: ``audio_scale``, ``cond_scale``, ``mode`` (classifier-free guidance).
        known: ``[S, K, C]`` the window's first ``K`` frames, already generated (imposed by
            inpainting, and given to the denoiser as an input when it reads them,
            :attr:`~thunder3d.models.talker.TalkerModel.continues`; ``K`` may be 0).
        sampler: the DDIM sampler with its timesteps set (None for a deterministic model).
        noise: draws ``[S, L, C]`` standard normal noise.
        guide: moves each step's clean estimate (listener guidance; its speech already set).
    """
    S, L = feats.shape[:2]
    if sampler is None:
        return model.predict(feats, None, **labels, **scales).float().cpu()
    device, K, C = feats.device, known.shape[1], model.coeff_dim
    imposed = mask = None
    if K:
        imposed = torch.zeros(S, L, C, device=device)
        imposed[:, :K] = known.to(device)
        mask = torch.zeros(S, L, dtype=torch.bool, device=device)
        mask[:, :K] = True
    given = {"known": imposed, "known_mask": mask} if K and model.continues else {}
    x = sample(lambda x_t, t: model.predict(feats, None, **labels, x_t=x_t, t=t, **scales, **given), (S, L, C),
               sampler, known=imposed, known_mask=mask, eta=eta, device=device, noise=noise, guide=guide)
    return x.float().cpu()


def seam_frames(plan: Sequence[Window]) -> list[int]:
    """Frame-difference indices ``d`` (``x[d + 1] - x[d]``) touched by a seam: from the last known
    frame of each later window through its first new frame."""
    seams: list[int] = []
    for win in plan[1:]:
        seams.extend(range(max(win.start + win.known - 1, 0), win.new_from))
    return sorted(set(seams))


__all__ = ["Window", "generate", "plan_windows", "sample_window", "seam_frames", "window_features"]
