"""Noise math, DDIM, inpainting and the sampling loop (no model: oracles and simple functions)."""

import json

import pytest
import torch

from thunder3d.models import ModelConfigError
from thunder3d.models.diffusion import (
    PREDICTIONS,
    SCHEDULES,
    DDIMSampler,
    DiffusionSchedule,
    SamplerStep,
    sample,
)


def randn(*shape, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedule_is_monotonic_from_clean_to_noise(kind):
    s = DiffusionSchedule(1000, kind)
    a = s.alphas_cumprod
    assert a.shape == (1000,) and ((s.betas > 0) & (s.betas < 1)).all()
    assert (a[1:] < a[:-1]).all() and a[0] > 0.999 and a[-1] < 1e-4
    snr = s.snr(torch.arange(1000))
    assert (snr[1:] < snr[:-1]).all()


@pytest.mark.parametrize("kind", SCHEDULES)
def test_add_noise_ends(kind):
    s = DiffusionSchedule(1000, kind)
    x0, noise = randn(3, 10, 4), randn(3, 10, 4, seed=2)
    torch.testing.assert_close(s.add_noise(x0, noise, 0), x0, atol=0.05, rtol=0)
    torch.testing.assert_close(s.add_noise(x0, noise, 999), noise, atol=0.05, rtol=0)
    assert torch.equal(s.add_noise(x0, noise, -1), x0)  # "no noise" is exact
    per_item = s.add_noise(x0, noise, torch.tensor([0, 500, 999]))
    torch.testing.assert_close(per_item[1], s.add_noise(x0[1:2], noise[1:2], 500)[0])


def test_options_are_validated_and_listed():
    with pytest.raises(ModelConfigError, match="cosine"):
        DiffusionSchedule(schedule="quadratic")
    with pytest.raises(ModelConfigError, match="epsilon"):
        DiffusionSchedule(prediction="eps")
    with pytest.raises(ModelConfigError, match="trailing"):
        DDIMSampler(DiffusionSchedule(), spacing="leading")
    with pytest.raises(ModelConfigError, match="num_train_timesteps"):
        DiffusionSchedule(num_train_timesteps=1)


def test_schedule_config_round_trip():
    s = DiffusionSchedule(200, "linear", "v")
    again = DiffusionSchedule.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.to_dict() == s.to_dict() and torch.equal(again.alphas_cumprod, s.alphas_cumprod)
    with pytest.raises(ModelConfigError, match="unknown"):
        DiffusionSchedule.from_dict({**s.to_dict(), "beta_max": 0.02})


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_prediction_types_convert_back_to_x0(prediction):
    s = DiffusionSchedule(1000, "cosine", prediction)
    x0, noise = randn(3, 6, 4), randn(3, 6, 4, seed=2)
    t = torch.tensor([10, 400, 900])
    x_t = s.add_noise(x0, noise, t)
    torch.testing.assert_close(s.pred_x0(s.target(x0, noise, t), x_t, t), x0, atol=1e-4, rtol=1e-4)


def test_trailing_timesteps_start_at_pure_noise():
    sampler = DDIMSampler(DiffusionSchedule(1000))
    for n in (1, 2, 7, 50, 1000):
        sampler.set_timesteps(n)
        ts, prev = sampler.timesteps, sampler.prev_timesteps
        assert len(ts) == n and ts[0] == 999 and prev[-1] == -1 and ts.min() >= 0
        assert (ts[1:] < ts[:-1]).all() and torch.equal(prev[:-1], ts[1:])
    sampler.set_timesteps(10)
    assert sampler.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    for bad in (0, 1001, 2.5):
        with pytest.raises(ValueError, match="1..1000"):
            sampler.set_timesteps(bad)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("steps", [1, 2, 5, 50, 1000])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_a_perfect_oracle_returns_x0_exactly(kind, steps, eta):
    sampler = DDIMSampler(DiffusionSchedule(1000, kind))
    x0 = randn(2, 9, 5)
    out = sample(lambda x, t: x0, x0.shape, sampler, steps, torch.Generator().manual_seed(0), eta=eta)
    assert torch.equal(out, x0)


def test_step_returns_a_dataclass_and_is_deterministic_at_eta_0():
    s = DiffusionSchedule()
    sampler = DDIMSampler(s)
    x_t, x0 = randn(2, 4, 3), randn(2, 4, 3, seed=5)
    a = sampler.step(x0, 500, 400, x_t)
    b = sampler.step(x0, 500, 400, x_t, generator=torch.Generator().manual_seed(9))
    assert isinstance(a, SamplerStep) and torch.equal(a.prev_sample, b.prev_sample)
    assert torch.equal(a.pred_x0, x0)
    # the deterministic step lands on the forward process of the same x0 and the implied noise
    torch.testing.assert_close(a.prev_sample, s.add_noise(x0, s.pred_noise(x0, x_t, 500), 400))


def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for a model: shrinks the sample towards a smooth pattern."""
    pattern = torch.linspace(-1, 1, x.shape[1])[None, :, None]
    return 0.5 * x + pattern


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_same_seed_same_sample_different_seed_different(eta):
    sampler = DDIMSampler(DiffusionSchedule())
    run = lambda seed: sample(drift, (2, 12, 3), sampler, 8, torch.Generator().manual_seed(seed), eta=eta)
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_inpainting_keeps_the_known_frames():
    sampler = DDIMSampler(DiffusionSchedule())
    known = randn(2, 12, 3, seed=7)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, :4] = True  # the end of the previous window
    mask[1, 10:] = True
    out = sample(drift, (2, 12, 3), sampler, 6, torch.Generator().manual_seed(0), known=known, known_mask=mask)
    assert torch.equal(out[mask], known[mask])
    assert not torch.allclose(out[~mask], known[~mask])
    free = sample(drift, (2, 12, 3), sampler, 6, torch.Generator().manual_seed(0))
    assert not torch.allclose(free[mask], known[mask])


def test_inpaint_step_noises_known_values_to_the_target_level():
    s = DiffusionSchedule()
    sampler = DDIMSampler(s)
    x, known, noise = randn(1, 5, 2), randn(1, 5, 2, seed=2), randn(1, 5, 2, seed=3)
    mask = torch.tensor([[True, True, False, False, False]])
    out = sampler.inpaint_step(x, known, mask, 300, noise)
    torch.testing.assert_close(out[:, :2], s.add_noise(known, noise, 300)[:, :2])
    assert torch.equal(out[:, 2:], x[:, 2:])
    with pytest.raises(ValueError, match="known"):
        sampler.inpaint_step(x, known[:, :3], mask, 300, noise)


def test_sample_needs_timesteps():
    with pytest.raises(ValueError, match="set_timesteps"):
        sample(drift, (1, 3, 2), DDIMSampler(DiffusionSchedule()))
