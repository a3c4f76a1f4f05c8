"""Denoiser and regressor: shapes, padding, conditions and guidance, dropout, configs, learning."""

import json

import pytest
import torch

from thunder3d.data.expression import EMOTIONS, INTENSITIES
from thunder3d.models import ModelConfigError
from thunder3d.models.denoiser import Denoiser, DenoiserConfig, guidance_weights
from thunder3d.models.diffusion import DDIMSampler, DiffusionSchedule, sample
from thunder3d.models.regressor import Regressor, RegressorConfig

C, DA = 6, 8


def config(cls=DenoiserConfig, **overrides):
    cfg = {"coeff_dim": C, "audio_dim": DA, "dim": 32, "layers": 2, "heads": 4, "ff_mult": 2, "conv_kernel": 5,
           "dropout": 0.1, "num_styles": 5, "audio_window": 3}
    cfg.update(overrides)
    return cls.from_dict(cfg)


def tiny(seed: int = 0, **overrides) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(config(**overrides)).eval()


def randn(*shape, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def inputs(B=3, T=11, seed=1):
    return {"x_t": randn(B, T, C, seed=seed), "t": torch.arange(B) * 300, "audio": randn(B, T, DA, seed=seed + 1),
            "emotion": torch.arange(B) % 8, "intensity": torch.arange(B) % 3 + 1, "style": torch.arange(B) % 5}


MODES = ["add", "cross"]


def test_defaults_follow_the_data_vocabulary():
    cfg = DenoiserConfig.from_dict(dict(coeff_dim=52, audio_dim=128))
    assert cfg.num_emotions == len(EMOTIONS) and cfg.num_intensities == len(INTENSITIES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("T", [1, 7, 300])
def test_shapes_any_length(mode, T):
    model = tiny(audio_conditioning=mode)
    with torch.no_grad():
        y = model(**inputs(2, T))
    assert y.shape == (2, T, C) and torch.isfinite(y).all()


@pytest.mark.parametrize("mode", MODES)
def test_padding_does_not_change_valid_frames(mode):
    model = tiny(audio_conditioning=mode)
    batch = inputs(2, 20)
    with torch.no_grad():
        ref = model(**batch)
        padded = dict(batch)
        padded["x_t"] = torch.cat([batch["x_t"], 100 * randn(2, 9, C, seed=5)], 1)
        padded["audio"] = torch.cat([batch["audio"], 100 * randn(2, 9, DA, seed=6)], 1)
        padded["audio"][1, 20:] = float("nan")  # even NaN padding stays out
        padded["x_t"][0, 22:] = float("nan")
        mask = torch.zeros(2, 29, dtype=torch.bool)
        mask[:, :20] = True
        out = model(**padded, mask=mask)
    torch.testing.assert_close(out[:, :20], ref, atol=1e-5, rtol=1e-4)
    assert (out[:, 20:] == 0).all()


@pytest.mark.parametrize("mode", MODES)
def test_mixed_lengths_match_single_runs(mode):
    model = tiny(audio_conditioning=mode)
    a, b = inputs(1, 12, seed=3), inputs(1, 5, seed=4)
    b["emotion"], b["style"] = torch.tensor([4]), torch.tensor([2])
    batch = {k: torch.cat([a[k], torch.nn.functional.pad(b[k], (0, 0, 0, 7)) if b[k].ndim == 3 else b[k]])
             for k in a}
    mask = torch.tensor([[True] * 12, [True] * 5 + [False] * 7])
    with torch.no_grad():
        out = model(**batch, mask=mask)
        torch.testing.assert_close(out[0:1], model(**a), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out[1:2, :5], model(**b), atol=1e-5, rtol=1e-4)


def test_conditions_matter_and_absent_labels_are_the_nulls():
    model = tiny()
    # a trained model would use its conditions; make the untrained FiLM non-zero so they show
    torch.nn.init.normal_(model.trunk.film.weight, std=0.1)
    batch = inputs()
    with torch.no_grad():
        base = model(**batch)
        other = model(**{**batch, "emotion": (batch["emotion"] + 1) % 8})
        none = model(**{**batch, "emotion": None, "intensity": None, "style": None})
        dropped = model(**batch, drop_cond=True)
        minus = model(**{**batch, "emotion": torch.full((3,), -1), "intensity": torch.zeros(3, dtype=torch.long),
                         "style": -1})
        no_audio = model(**batch, drop_audio=True)
        other_audio = model(**{**batch, "audio": randn(3, 11, DA, seed=9)}, drop_audio=True)
    assert not torch.allclose(base, other)
    assert torch.equal(none, dropped) and torch.equal(minus, dropped)
    assert torch.equal(no_audio, other_audio)
    with pytest.raises(ValueError, match="out of range"):
        model(**{**batch, "emotion": torch.tensor([0, 8, 1])})
    with pytest.raises(ValueError, match="out of range"):
        model(**{**batch, "intensity": torch.tensor([1, 4, 1])})


@pytest.mark.parametrize("mode", MODES)
def test_cond_scale_zero_ignores_the_conditions(mode):
    model = tiny(audio_conditioning=mode)
    torch.nn.init.normal_(model.trunk.film.weight, std=0.1)
    batch = inputs()
    with torch.no_grad():
        a = model.guided(**batch, audio_scale=2.5, cond_scale=0.0)
        b = model.guided(**{**batch, "emotion": torch.tensor([5, 6, 7]), "intensity": torch.tensor([3, 3, 1]),
                            "style": None}, audio_scale=2.5, cond_scale=0.0)
        c = model.guided(**batch, audio_scale=2.5, cond_scale=2.0)
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("mode", MODES)
def test_audio_scale_zero_ignores_the_audio(mode):
    model = tiny(audio_conditioning=mode)
    torch.nn.init.normal_(model.trunk.film.weight, std=0.1)
    batch = inputs()
    other = {**batch, "audio": randn(3, 11, DA, seed=42)}
    with torch.no_grad():
        # nested: with both scales 0 the prediction is the unconditional one
        assert torch.equal(model.guided(**batch, audio_scale=0, cond_scale=0),
                           model.guided(**other, audio_scale=0, cond_scale=0))
        # independent: the audio scale alone switches the audio off, the conditions stay
        a = model.guided(**batch, audio_scale=0, cond_scale=3.0, mode="independent")
        assert torch.equal(a, model.guided(**other, audio_scale=0, cond_scale=3.0, mode="independent"))
        assert not torch.equal(a, model.guided(**{**batch, "emotion": torch.tensor([7, 7, 7])},
                                               audio_scale=0, cond_scale=3.0, mode="independent"))
        # and with audio guidance on, the audio matters
        assert not torch.allclose(model.guided(**batch, audio_scale=2.0), model.guided(**other, audio_scale=2.0))


def test_guidance_combines_the_right_predictions_in_one_batch():
    model = tiny()
    torch.nn.init.normal_(model.trunk.film.weight, std=0.1)
    batch = inputs()
    s_a, s_c = 2.0, 1.5
    calls = []
    hook = model.x_proj.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        got = model.guided(**batch, audio_scale=s_a, cond_scale=s_c)
        assert calls == [9]  # 3 predictions x B=3 in one pass
        u = model(**batch, drop_audio=True, drop_cond=True)
        a = model(**batch, drop_cond=True)
        ac = model(**batch)
        plain = model.guided(**batch, audio_scale=1.0, cond_scale=1.0)
    hook.remove()
    torch.testing.assert_close(got, u + s_a * (a - u) + s_c * (ac - a), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plain, ac, atol=1e-6, rtol=1e-5)
    assert calls[-1] == 3  # scales of 1 need the conditional prediction only
    assert guidance_weights(1.0, 0.0) == {(False, True): 1.0}
    with pytest.raises(ValueError, match="nested"):
        guidance_weights(1.0, 1.0, "joint")


def test_condition_dropout_only_in_training_mode():
    model = tiny(dropout=0.0, audio_drop_prob=0.999, cond_drop_prob=0.999)
    torch.nn.init.normal_(model.trunk.film.weight, std=0.1)
    batch = inputs()
    with torch.no_grad():
        dropped = model(**batch, drop_audio=True, drop_cond=True)
        conditional = model(**batch)
        assert torch.equal(conditional, model(**batch))  # eval: no randomness
        model.train()
        torch.manual_seed(3)
        train_a = model(**batch)
        torch.manual_seed(3)
        train_b = model(**batch)
    torch.testing.assert_close(train_a, dropped)  # with p = 0.999 everything was dropped
    assert torch.equal(train_a, train_b)  # drawn from the global RNG: reseeding reproduces it
    assert not torch.allclose(conditional, dropped)


def test_config_round_trip_and_validation():
    for cls, model_cls in ((DenoiserConfig, Denoiser), (RegressorConfig, Regressor)):
        cfg = config(cls, audio_conditioning="cross")
        again = cls.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg
        torch.manual_seed(0)
        a = model_cls(cfg)
        b = model_cls(again)
        b.load_state_dict(a.state_dict(), strict=True)
        assert not any("band" in k or "rotary" in k for k in a.state_dict())
        with pytest.raises(ModelConfigError, match="unknown"):
            cls.from_dict({**cfg.to_dict(), "depth": 3})
        with pytest.raises(ModelConfigError, match="lacks"):
            cls.from_dict({k: v for k, v in cfg.to_dict().items() if k != "coeff_dim"})
    with pytest.raises(ModelConfigError, match=r"\['add', 'cross'\]"):
        config(audio_conditioning="concat")
    with pytest.raises(ModelConfigError, match="cond_drop_prob"):
        config(cond_drop_prob=1.0)
    with pytest.raises(ModelConfigError, match="even width"):
        config(dim=30, heads=4)


@pytest.mark.parametrize("mode", MODES)
def test_regressor_shapes_and_padding(mode):
    torch.manual_seed(0)
    model = Regressor(config(RegressorConfig, audio_conditioning=mode)).eval()
    audio = randn(2, 13, DA)
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[:, 13:] = False
    with torch.no_grad():
        y = model(audio, emotion=torch.tensor([1, 2]), intensity=2)
        padded = model(torch.cat([audio, randn(2, 4, DA, seed=3)], 1), torch.tensor([1, 2]), 2, mask=mask)
        g = model.guided(audio, torch.tensor([1, 2]), 2, audio_scale=1.0, cond_scale=0.0)
    assert y.shape == (2, 13, C) and g.shape == (2, 13, C)
    torch.testing.assert_close(padded[:, :13], y, atol=1e-5, rtol=1e-4)
    assert not hasattr(model, "x_proj") and not hasattr(model, "time_mlp")


def toy_batch(B=4, T=16):
    """Motion that is a fixed smooth function of the audio, plus an emotion offset."""
    audio = randn(B, T, DA, seed=11)
    kernel = torch.tensor([0.25, 0.5, 0.25])
    proj = randn(DA, C, seed=12) / DA**0.5
    x0 = audio @ proj
    x0 = torch.nn.functional.conv1d(x0.transpose(1, 2), kernel.repeat(C, 1, 1), padding=1, groups=C).transpose(1, 2)
    emotion = torch.arange(B) % 3
    return audio, x0 + 0.5 * emotion[:, None, None], emotion


def test_a_few_adam_steps_reduce_the_denoising_loss():
    torch.manual_seed(0)
    model = Denoiser(config(dropout=0.0))
    schedule = DiffusionSchedule(1000)
    audio, x0, emotion = toy_batch()
    g = torch.Generator().manual_seed(5)
    eval_t = torch.randint(0, 1000, (8, 4), generator=g)
    eval_noise = torch.randn(8, *x0.shape, generator=g)

    def held_loss():
        model.eval()
        with torch.no_grad():
            losses = [((model(schedule.add_noise(x0, n, t), t, audio, emotion) - x0) ** 2).mean()
                      for t, n in zip(eval_t, eval_noise)]
        return float(torch.stack(losses).mean())

    before = held_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(25):
        t = torch.randint(0, 1000, (4,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss = ((model(schedule.add_noise(x0, noise, t), t, audio, emotion) - x0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_loss()
    assert after < 0.5 * before, (before, after)


def test_a_few_adam_steps_reduce_the_regressor_loss():
    torch.manual_seed(0)
    model = Regressor(config(RegressorConfig, dropout=0.0)).train()
    audio, x0, emotion = toy_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = ((model(audio, emotion) - x0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("mode", MODES)
def test_guided_sampling_is_seeded_and_inpaints(mode):
    model = tiny(audio_conditioning=mode)
    sampler = DDIMSampler(DiffusionSchedule())
    batch = inputs(2, 10)
    fn = lambda x, t: model.guided(x, t, batch["audio"], batch["emotion"], batch["intensity"], batch["style"],
                                   audio_scale=2.0, cond_scale=1.5)
    run = lambda seed, **kw: sample(fn, (2, 10, C), sampler, 4, torch.Generator().manual_seed(seed), **kw)
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    known = randn(2, 10, C, seed=8)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, :3] = True
    d = run(0, known=known, known_mask=mask)
    assert torch.equal(d[:, :3], known[:, :3]) and torch.isfinite(d).all()
