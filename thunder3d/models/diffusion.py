"""Diffusion noise math, the DDIM sampler, inpainting, and the short sampling loop.

Three parts, apart as in diffusers:

- :class:`DiffusionSchedule` knows the forward process: the noise levels ``alpha_bar[t]`` of the
  ``num_train_timesteps`` training steps, :meth:`~DiffusionSchedule.add_noise`, the SNR, and how a
  model output of its ``prediction`` type converts to a clean-sample estimate and back.
- :class:`DDIMSampler` knows the reverse process: which timesteps a few-step run visits
  (:meth:`~DDIMSampler.set_timesteps`) and one update (:meth:`~DDIMSampler.step`, returning a
  :class:`SamplerStep`), plus :meth:`~DDIMSampler.inpaint_step` for known frames.
- :func:`sample` is the loop joining a model function and the sampler. Guidance is the caller's
  business: it happens inside ``model_fn`` (see ``Denoiser.guided``).

The forward process (``a_t = alpha_bar[t]``)::

    x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps,           eps ~ N(0, I)

and the deterministic (``eta = 0``) DDIM update from ``t`` to ``s < t``, given an estimate ``x0``::

    eps  = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)
    x_s  = sqrt(a_s) x0 + sqrt(1 - a_s - sigma^2) eps + sigma z
    sigma = eta sqrt((1 - a_s) / (1 - a_t)) sqrt(1 - a_t / a_s)

The last step goes to ``s = -1`` where ``a_s = 1``: the sample becomes the estimate itself.

Shapes: ``B`` batch, then any trailing shape (``[B, T, C]`` for motion). Timesteps are ints or
``[B]`` long tensors. Noise tables are kept in float64 and cast to the sample's dtype per use.
"""

from __future__ import annotations

from thunder3d.errors import ModelConfigError
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


SCHEDULES = ("cosine", "linear")
"""Noise schedules: ``cosine`` (Nichol & Dhariwal, 2021) and ``linear`` betas (Ho et al., 2020)."""

PREDICTIONS = ("x0", "epsilon", "v")
"""What a model predicts: the clean sample, the noise, or ``v = sqrt(a) eps - sqrt(1 - a) x0``."""

SPACINGS = ("trailing", "linspace")
"""How a few-step run picks its timesteps. ``trailing`` always starts at the last training step
(pure noise), so even one or two steps work; ``linspace`` spreads them over ``[0, T - 1]``."""

COSINE_OFFSET = 0.008  # the small offset s of the cosine schedule, so beta_0 is not vanishingly small
MAX_BETA = 0.999  # cosine betas are clipped here (the last one would otherwise be 1)
DEFAULT_STEPS = 10
"""DDIM steps of a sampler whose caller gives none and whose checkpoint recommends none (``sampling.steps``)."""


def _check_option(value: str, valid: Sequence[str], what: str) -> str:
    if value not in valid:
        raise ModelConfigError(f"unknown {what} {value!r}; valid: {list(valid)}")
    return value


def cosine_betas(num_steps: int, offset: float = COSINE_OFFSET) -> Tensor:
    """Betas ``[num_steps]`` (float64) of the cosine schedule: ``alpha_bar(t) ~ cos^2``."""
    s = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2  # [T + 1], f(0) = 1 after division
    return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)


def linear_betas(num_steps: int) -> Tensor:
    """Betas ``[num_steps]`` (float64) rising linearly; the DDPM range 1e-4..0.02 at 1000 steps,
    rescaled so that other step counts reach a similar final noise level."""
    scale = 1000 / num_steps
    return torch.linspace(1e-4 * scale, 0.02 * scale, num_steps, dtype=torch.float64).clamp(max=MAX_BETA)


def randn(shape: Sequence[int], generator: torch.Generator | None = None,
          device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn on the generator's own device.

    A seeded CPU generator therefore gives the same noise whatever device the sample lives on.
    """
    where = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=where, dtype=dtype).to(device)


# --------------------------------------------------------------------------- schedule
class DiffusionSchedule:
    """The forward noising process over ``num_train_timesteps`` steps.

    Args:
        num_train_timesteps: ``T``; training timesteps are ``0 .. T - 1``.
        schedule: one of :data:`SCHEDULES`.
        prediction: one of :data:`PREDICTIONS`: what the model outputs.

    Attributes:
        betas, alphas_cumprod: ``[T]`` float64 tensors (CPU); ``alphas_cumprod`` decreases from
            nearly 1 to nearly 0.
    """

    def __init__(self, num_train_timesteps: int = 1000, schedule: str = "cosine",
                 prediction: str = "x0") -> None:
        if not isinstance(num_train_timesteps, int) or isinstance(num_train_timesteps, bool) \
                or num_train_timesteps < 2:
            raise ModelConfigError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}")
        self.num_train_timesteps = num_train_timesteps
        self.schedule = _check_option(schedule, SCHEDULES, "noise schedule")
        self.prediction = _check_option(prediction, PREDICTIONS, "prediction type")
        self.betas = cosine_betas(num_train_timesteps) if schedule == "cosine" else linear_betas(num_train_timesteps)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)
        self._tables: dict[torch.device, Tensor] = {}

    def __repr__(self) -> str:
        return (f"DiffusionSchedule(num_train_timesteps={self.num_train_timesteps}, "
                f"schedule={self.schedule!r}, prediction={self.prediction!r})")

    # ------------------------------------------------------------------ config
    def to_dict(self) -> dict:
        """A JSON-able dict; :meth:`from_dict` rebuilds the schedule."""
        return {"num_train_timesteps": self.num_train_timesteps, "schedule": self.schedule,
                "prediction": self.prediction}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiffusionSchedule:
        """Rebuild from :meth:`to_dict`; unknown keys raise :class:`ModelConfigError`."""
        valid = ["num_train_timesteps", "schedule", "prediction"]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ModelConfigError(f"unknown diffusion schedule keys {unknown}; valid: {valid}")
        return cls(**dict(data))

    # ------------------------------------------------------------------ lookups
    def alpha_bar(self, t: int | Tensor, like: Tensor) -> Tensor:
        """``alpha_bar[t]`` shaped to broadcast against ``like [B, ...]``, in its dtype and device.

        ``t`` is an int or a ``[B]`` tensor; ``t < 0`` means "no noise" (``alpha_bar = 1``), the
        destination of the last sampling step.
        """
        table = self._tables.get(like.device)
        if table is None:  # one copy per device; MPS has no float64
            dtype = torch.float32 if like.device.type == "mps" else torch.float64
            table = self._tables[like.device] = torch.cat(
                [self.alphas_cumprod, self.alphas_cumprod.new_ones(1)]).to(like.device, dtype)
        t = torch.as_tensor(t, device=like.device).long()
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != like.shape[0]):
            raise ValueError(f"timesteps must be an int or [B] = [{like.shape[0]}], got {tuple(t.shape)}")
        # index T (one past the end) holds alpha_bar = 1 for every negative t
        a = table[torch.where(t < 0, self.num_train_timesteps, t)]
        return a.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)

    def snr(self, t: int | Tensor) -> Tensor:
        """Signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)`` at ``t`` (float64, shape of ``t``)."""
        a = self.alphas_cumprod[torch.as_tensor(t).long().cpu()]
        return a / (1 - a)

    # ------------------------------------------------------------------ forward process
    def add_noise(self, x0: Tensor, noise: Tensor, t: int | Tensor) -> Tensor:
        """``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise``.

        Args:
            x0: ``[B, ...]`` clean samples.
            noise: standard normal, shaped like ``x0``.
            t: int or ``[B]`` timesteps (negative: return ``x0``).
        Returns:
            ``[B, ...]`` noised samples.
        """
        a = self.alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: Tensor, noise: Tensor, t: int | Tensor) -> Tensor:
        """What a model of this schedule's ``prediction`` type should output for ``x_t``."""
        if self.prediction == "x0":
            return x0
        if self.prediction == "epsilon":
            return noise
        a = self.alpha_bar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def pred_x0(self, output: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        """The clean-sample estimate ``[B, ...]`` from a model ``output`` at ``x_t``, timestep ``t``."""
        if self.prediction == "x0":
            return output
        a = self.alpha_bar(t, x_t)
        if self.prediction == "epsilon":
            return (x_t - (1 - a).sqrt() * output) / a.sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * output

    def pred_noise(self, x0: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        """The noise implied by an estimate ``x0`` at ``x_t``: ``(x_t - sqrt(a) x0) / sqrt(1 - a)``."""
        a = self.alpha_bar(t, x_t)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


# --------------------------------------------------------------------------- sampler
@dataclass
class SamplerStep:
    """One reverse step.

    Attributes:
        prev_sample: ``[B, ...]`` the sample at the previous (less noisy) timestep.
        pred_x0: ``[B, ...]`` the clean-sample estimate the step used.
    """

    prev_sample: Tensor
    pred_x0: Tensor


class DDIMSampler:
    """DDIM (Song et al., 2021) over a :class:`DiffusionSchedule`, with any number of steps.

    Args:
        schedule: the forward process.
        spacing: one of :data:`SPACINGS`.

    Attributes:
        timesteps: ``[S]`` long, decreasing: the timesteps a run visits (after :meth:`set_timesteps`).
        prev_timesteps: ``[S]`` long: where each step goes; the last is ``-1`` (clean).
    """

    def __init__(self, schedule: DiffusionSchedule, spacing: str = "trailing") -> None:
        self.schedule = schedule
        self.spacing = _check_option(spacing, SPACINGS, "timestep spacing")
        self.timesteps = torch.empty(0, dtype=torch.long)
        self.prev_timesteps = torch.empty(0, dtype=torch.long)

    def set_timesteps(self, num_steps: int) -> None:
        """Choose ``num_steps`` evenly spaced timesteps (1 .. ``num_train_timesteps``)."""
        T = self.schedule.num_train_timesteps
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or not 1 <= num_steps <= T:
            raise ValueError(f"number of sampling steps must be an integer in 1..{T}, got {num_steps!r}")
        if self.spacing == "trailing":  # T-1, T-1-T/n, ...: the first step always sees pure noise
            steps = torch.round(torch.arange(T, 0, -T / num_steps, dtype=torch.float64)) - 1
        else:
            steps = torch.round(torch.linspace(T - 1, 0, num_steps, dtype=torch.float64))
        self.timesteps = steps.long()
        self.prev_timesteps = torch.cat([self.timesteps[1:], self.timesteps.new_full((1,), -1)])

    def step(self, x0_pred: Tensor, t: int | Tensor, t_prev: int | Tensor, x_t: Tensor, eta: float = 0.0,
             generator: torch.Generator | None = None, noise: Tensor | None = None) -> SamplerStep:
        """One DDIM update from ``t`` to ``t_prev`` given a clean-sample estimate.

        Args:
            x0_pred: ``[B, ...]`` the model's clean-sample estimate at ``x_t``
                (:meth:`DiffusionSchedule.pred_x0` converts other prediction types).
            t, t_prev: current and next timestep (ints or ``[B]``); ``t_prev = -1`` ends the run.
            x_t: ``[B, ...]`` current sample.
            eta: 0 is deterministic DDIM, 1 has the DDPM posterior's variance.
            generator: for the fresh noise when ``eta > 0``.
            noise: that noise, given instead of drawn.
        Returns:
            :class:`SamplerStep`.
        """
        a_t = self.schedule.alpha_bar(t, x_t)
        a_s = self.schedule.alpha_bar(t_prev, x_t)
        eps = self.schedule.pred_noise(x0_pred, x_t, t)
        sigma = eta * ((1 - a_s) / (1 - a_t)).sqrt() * (1 - a_t / a_s).clamp(min=0).sqrt()
        prev = a_s.sqrt() * x0_pred + (1 - a_s - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            if noise is None:
                noise = randn(x_t.shape, generator, x_t.device, x_t.dtype)
            prev = prev + sigma * noise
        return SamplerStep(prev_sample=prev, pred_x0=x0_pred)

    def inpaint_step(self, x_prev: Tensor, known: Tensor, known_mask: Tensor, t_prev: int | Tensor,
                     noise: Tensor) -> Tensor:
        """Overwrite the known frames of a sample with the known values noised to ``t_prev``.

        RePaint-style conditioning (without resampling): the unknown frames are generated
        around known ones at the same noise level, and at ``t_prev = -1`` the known frames are
        exactly the known values.

        Args:
            x_prev: ``[B, T, C]`` sample at ``t_prev``.
            known: ``[B, T, C]`` known clean values (anything where ``known_mask`` is False).
            known_mask: ``[B, T]`` bool, True where a frame is known.
            t_prev: int or ``[B]``.
            noise: ``[B, T, C]`` standard normal.
        Returns:
            ``[B, T, C]``.
        """
        if known.shape != x_prev.shape or known_mask.shape != x_prev.shape[:2]:
            raise ValueError(f"known {tuple(known.shape)} and known_mask {tuple(known_mask.shape)} must be "
                             f"{tuple(x_prev.shape)} and {tuple(x_prev.shape[:2])}")
        noised = self.schedule.add_noise(known.to(x_prev.dtype), noise, t_prev)
        return torch.where(known_mask.to(torch.bool)[..., None], noised, x_prev)


# --------------------------------------------------------------------------- loop
@torch.no_grad()
def sample(model_fn: Callable[[Tensor, Tensor], Tensor], shape: Sequence[int], sampler: DDIMSampler,
           steps: int | None = None, generator: torch.Generator | None = None, *,
           known: Tensor | None = None, known_mask: Tensor | None = None, eta: float = 0.0,
           device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
           noise: Callable[[], Tensor] | None = None,
           guide: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """Run the reverse process from pure noise.

    Args:
        model_fn: ``(x_t [B, T, C], t [B] long) -> output`` of the schedule's prediction type
            (the clean sample for ``x0``); guidance belongs inside it.
        shape: ``(B, T, C)``.
        sampler: the :class:`DDIMSampler`.
        steps: number of steps (calls ``sampler.set_timesteps``); None keeps the sampler's.
        generator: seeds every draw (initial noise, inpainting noise, ``eta`` noise).
        known, known_mask: ``[B, T, C]`` and ``[B, T]`` bool; known frames are imposed at every step
            (windowed continuation) and equal ``known`` in the result.
        eta: DDIM stochasticity (0: deterministic given the initial noise).
        device, dtype: of the sample (``known``'s device by default).
        noise: draws one standard normal ``shape`` tensor per call, instead of ``generator`` (e.g.
            a generator per batch item, so that item ``i`` does not depend on the batch size).
            Draws happen in a fixed order: ``x_T``, the first inpainting, then per step the
            ``eta`` noise (``eta > 0``) and the inpainting noise (with ``known``).
        guide: ``(x̂0 [B, T, C], t [B]) -> x̂0``: moves each step's clean estimate before the DDIM
            update (e.g. :class:`~thunder3d.models.guidance.ListenerGuide`); None leaves it.
    Returns:
        ``[B, T, C]`` the sample.
    """
    if steps is not None:
        sampler.set_timesteps(steps)
    if sampler.timesteps.numel() == 0:
        raise ValueError("call sampler.set_timesteps(num_steps) or pass steps")
    if (known is None) != (known_mask is None):
        raise ValueError("known and known_mask go together")
    if device is None and known is not None:
        device = known.device
    if noise is None:
        def noise() -> Tensor:
            return randn(shape, generator, device, dtype)
    x = noise()  # x_T
    if known is not None:
        known, known_mask = known.to(x.device), known_mask.to(x.device)
        x = sampler.inpaint_step(x, known, known_mask, int(sampler.timesteps[0]), noise())
    for t, t_prev in zip(sampler.timesteps.tolist(), sampler.prev_timesteps.tolist()):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = sampler.schedule.pred_x0(model_fn(x, t_batch), x, t_batch)
        if guide is not None:
            x0 = guide(x0, t_batch)
        x = sampler.step(x0, t, t_prev, x, eta=eta, noise=noise() if eta > 0 else None).prev_sample
        if known is not None:
            x = sampler.inpaint_step(x, known, known_mask, t_prev, noise())
    return x
