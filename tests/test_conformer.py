"""The conformer encoder: shapes at any length, padding invariance, rotary relative positions."""

import pytest
import torch

from thunder3d.models import Conformer, ConformerConfig, ModelConfigError
from thunder3d.models.conformer import apply_rotary, rotary_tables


def tiny(seed: int = 0, **overrides) -> Conformer:
    torch.manual_seed(seed)
    cfg = dict(dim=32, layers=2, heads=4, ff_mult=2, conv_kernel=5, dropout=0.1)
    cfg.update(overrides)
    return Conformer(ConformerConfig(**cfg)).eval()


def randn(*shape, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("T", [1, 7, 301])
def test_shapes_any_length(T):
    model = tiny()
    y = model(randn(2, T, 32))
    assert y.shape == (2, T, 32) and torch.isfinite(y).all()


def test_rotary_cache_grows_on_demand_and_is_not_saved():
    model = tiny()
    start = model.rotary.cos.shape[0]
    model(randn(1, start + 3, 32))
    assert model.rotary.cos.shape[0] >= start + 3
    assert not any("rotary" in k for k in model.state_dict())


def test_padding_does_not_change_valid_outputs():
    model = tiny()
    x = randn(2, 20, 32)
    ref = model(x)
    padded = torch.cat([x, 100 * randn(2, 9, 32, seed=2)], dim=1)  # loud junk in the padding
    padded[1, 20:] = float("nan")  # even NaN padding stays out
    mask = torch.zeros(2, 29, dtype=torch.bool)
    mask[:, :20] = True
    out = model(padded, mask)
    torch.testing.assert_close(out[:, :20], ref, atol=1e-5, rtol=1e-4)
    assert (out[:, 20:] == 0).all()


def test_mixed_lengths_in_a_batch_match_single_runs():
    model = tiny()
    a, b = randn(1, 12, 32, seed=3), randn(1, 5, 32, seed=4)
    batch = torch.cat([a, torch.cat([b, torch.zeros(1, 7, 32)], 1)])
    mask = torch.tensor([[True] * 12, [True] * 5 + [False] * 7])
    out = model(batch, mask)
    torch.testing.assert_close(out[0:1], model(a), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[1:2, :5], model(b), atol=1e-5, rtol=1e-4)


def test_all_padding_row_gives_zeros_not_nan():
    model = tiny()
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = model(randn(2, 3, 32), mask)
    assert torch.isfinite(out).all() and (out[1] == 0).all()


def test_eval_is_deterministic_and_train_uses_dropout():
    model = tiny()
    x = randn(2, 16, 32)
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_rotary_scores_depend_only_on_distance():
    cos, sin = rotary_tables(64, 8)
    q, k = randn(8, seed=5), randn(8, seed=6)
    qr, kr = apply_rotary(q.expand(64, 8), cos, sin), apply_rotary(k.expand(64, 8), cos, sin)
    scores = qr @ kr.T  # [m, n]
    for d in (-5, 0, 3, 17):
        diag = torch.diagonal(scores, offset=d)
        torch.testing.assert_close(diag, diag[0].expand_as(diag), atol=1e-4, rtol=1e-4)


def test_shifting_the_sequence_does_not_change_outputs():
    """Left-padding moves every valid frame to a later absolute position: only distances matter."""
    model = tiny()
    x = randn(2, 25, 32)
    ref = model(x)
    for shift in (1, 13, 200):
        shifted = torch.cat([randn(2, shift, 32, seed=7), x], dim=1)
        mask = torch.ones(2, shift + 25, dtype=torch.bool)
        mask[:, :shift] = False
        out = model(shifted, mask)
        torch.testing.assert_close(out[:, shift:], ref, atol=1e-4, rtol=1e-4)


def test_gradients_reach_input_and_every_parameter():
    model = tiny().train()
    x = randn(2, 9, 32).requires_grad_()
    model(x, torch.ones(2, 9, dtype=torch.bool)).square().sum().backward()
    assert x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("bad", [dict(dim=30, heads=4), dict(dim=12, heads=4), dict(conv_kernel=4),
                                 dict(layers=0), dict(dropout=1.0)])
def test_bad_config_is_refused(bad):
    cfg = dict(dim=32, heads=4)
    cfg.update(bad)
    with pytest.raises(ModelConfigError):
        ConformerConfig(**cfg)


def test_wrong_input_width_is_refused():
    with pytest.raises(ValueError, match="32"):
        tiny()(randn(1, 4, 16))
