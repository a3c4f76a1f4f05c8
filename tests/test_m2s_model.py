"""The M2S model: input features from the rig, shapes, gradients through the rig, freezing, losses."""

import json

import pytest
import torch

from thunder3d.audio.phones import NUM_PHONES
from thunder3d.errors import ThunderError
from thunder3d.models import (
    M2S,
    ConformerConfig,
    M2S_INPUTS,
    M2SConfig,
    ModelConfigError,
    feature_dim,
    freeze,
    mel_l1,
    phone_ce,
    rig_features,
    spectral_convergence,
)
from thunder3d.rigs import load_rig

TINY = dict(dim=32, layers=1, heads=2, ff_mult=2, conv_kernel=5, dropout=0.0)


@pytest.fixture(scope="module")
def rig():
    return load_rig("builtin")


def coeffs(B=2, T=9, C=52, seed=0, requires_grad=False):
    c = torch.rand(B, T, C, generator=torch.Generator().manual_seed(seed)) * 0.6
    return c.requires_grad_(requires_grad)


def tiny_model(rig, variant, seed=0, **overrides):
    torch.manual_seed(seed)
    return M2S(M2SConfig.for_rig(rig, variant, **{**TINY, **overrides}))


# ---------------------------------------------------------------- features
def test_feature_dims(rig):
    assert feature_dim(rig, "mouth2s") == 3 * rig.region("mouth").numel()
    assert feature_dim(rig, "face2s") == 3 * rig.region("face").numel()
    assert feature_dim(rig, "exp2s") == rig.num_coeffs


@pytest.mark.parametrize("variant,region", [("mouth2s", "mouth"), ("face2s", "face")])
def test_vertex_features_are_region_offsets_in_mm(rig, variant, region):
    c = coeffs()
    feats = rig_features(rig, c, variant)
    idx = rig.region(region)
    expect = (rig(c)[..., idx, :] - rig.neutral[idx]).flatten(-2) * rig.mm_per_unit  # the general path
    assert feats.shape == (2, 9, feature_dim(rig, variant))
    torch.testing.assert_close(feats, expect, atol=1e-3, rtol=1e-4)
    assert (rig_features(rig, torch.zeros(1, 52), variant) == 0).all()  # neutral face -> zeros
    assert 1.0 < feats.abs().max() < 100.0  # millimetres: lips move a few mm to a few cm


def test_exp2s_features_are_the_coefficients(rig):
    c = coeffs()
    assert torch.equal(rig_features(rig, c, "exp2s"), c)


def test_unknown_variant_lists_valid_ones(rig):
    with pytest.raises(ModelConfigError, match="mouth2s.*face2s.*exp2s"):
        rig_features(rig, coeffs(), "lips2s")
    with pytest.raises(ThunderError, match="valid"):
        M2SConfig.from_dict(dict(input="jaw2s", in_dim=10))


# ---------------------------------------------------------------- model
@pytest.mark.parametrize("variant", M2S_INPUTS)
def test_output_shapes(rig, variant):
    model = tiny_model(rig, variant).eval()
    out = model.from_rig_coeffs(rig, coeffs(B=3, T=11))
    assert out.mel.shape == (3, 44, 80)
    assert out.phone_logits.shape == (3, 11, NUM_PHONES)
    assert out.hidden.shape == (3, 11, 32)
    assert model.cfg.region == {"mouth2s": "mouth", "face2s": "face", "exp2s": None}[variant]


def test_phone_head_is_optional(rig):
    model = tiny_model(rig, "exp2s", phone_head=False)
    assert model.from_rig_coeffs(rig, coeffs()).phone_logits is None


def test_padding_does_not_change_valid_outputs(rig):
    model = tiny_model(rig, "mouth2s").eval()
    c = coeffs(B=1, T=10)
    ref = model.from_rig_coeffs(rig, c).mel
    padded = torch.cat([c, torch.rand(1, 6, 52)], 1)
    mask = torch.tensor([[True] * 10 + [False] * 6])
    out = model.from_rig_coeffs(rig, padded, mask).mel
    torch.testing.assert_close(out[:, :40], ref, atol=1e-4, rtol=1e-4)


def test_stats_normalise_input_and_denormalise_mel(rig):
    model = tiny_model(rig, "exp2s").eval()
    feats = rig_features(rig, coeffs(), "exp2s")
    before = model(feats).mel
    model.set_mel_stats(torch.full((80,), -4.0), torch.full((80,), 2.0))
    torch.testing.assert_close(model(feats).mel, before * 2.0 - 4.0)
    model.set_input_stats(torch.full((52,), 0.3), torch.zeros(52))  # zero std is floored, not divided by
    assert torch.isfinite(model(feats).mel).all()
    keys = model.state_dict().keys()
    assert {"feat_mean", "feat_std", "mel_mean", "mel_std"} <= set(keys)
    assert not any("rotary" in k for k in keys)
    with pytest.raises(ValueError, match=r"\[80\]"):
        model.set_mel_stats(torch.zeros(79), torch.ones(79))


def test_wrong_rig_or_width_is_refused(rig):
    model = tiny_model(rig, "mouth2s")
    with pytest.raises(ValueError, match="4224|features"):
        model(torch.zeros(1, 3, 10))
    model.cfg.in_dim += 3  # pretend it was built for another rig
    with pytest.raises(ModelConfigError, match="builtin"):
        model.from_rig_coeffs(rig, coeffs())


# ---------------------------------------------------------------- gradients and freezing
@pytest.mark.parametrize("variant", ["mouth2s", "face2s"])
def test_gradient_reaches_coefficients_through_the_rig(rig, variant):
    model = tiny_model(rig, variant).train()
    c = coeffs(requires_grad=True)
    out = model.from_rig_coeffs(rig, c, torch.ones(2, 9, dtype=torch.bool))
    mel_l1(out.mel, torch.randn(2, 36, 80)).backward()
    assert torch.isfinite(c.grad).all()
    assert c.grad[..., rig.coeff_index("jawOpen")].abs().min() > 0  # every frame's jaw gets a signal
    mel_path = [p for n, p in model.named_parameters() if not n.startswith("phone_head")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mel_path)


def test_gradient_through_the_general_rig_path(rig):
    """The blendshape fast path of rig_features gives the same gradient as going through rig.forward."""
    model = tiny_model(rig, "mouth2s")
    c = coeffs(requires_grad=True)
    feats = rig_features(rig, c, "mouth2s")
    idx = rig.region("mouth")
    general = (rig(c)[..., idx, :] - rig.neutral[idx]).flatten(-2) * rig.mm_per_unit
    model(general).mel.sum().backward()
    g_general = c.grad.clone()
    c.grad = None
    model(feats).mel.sum().backward()
    torch.testing.assert_close(c.grad, g_general, atol=1e-3, rtol=1e-3)


def test_frozen_m2s_passes_gradient_to_input_only(rig):
    model = freeze(tiny_model(rig, "mouth2s", dropout=0.3).train())
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    c = coeffs(requires_grad=True)
    out = model.from_rig_coeffs(rig, c)
    (mel_l1(out.mel, torch.randn(2, 36, 80)) + phone_ce(out.phone_logits, torch.zeros(2, 9))).backward()
    assert c.grad is not None and c.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(model.from_rig_coeffs(rig, c).mel, out.mel)  # no dropout once frozen


# ---------------------------------------------------------------- config
def test_config_json_round_trip(rig):
    cfg = M2SConfig.for_rig(rig, "face2s", dim=64, layers=2, phone_head=False)
    data = json.loads(json.dumps(cfg.to_dict()))
    back = M2SConfig.from_dict(data)
    assert back == cfg and back.rig == {"spec": "builtin", "options": {}} and back.region == "face"
    model = M2S(back)
    assert model.cfg.in_dim == feature_dim(rig, "face2s")


def test_config_refuses_unknown_and_missing_keys(rig):
    data = M2SConfig.for_rig(rig, "exp2s").to_dict()
    with pytest.raises(ModelConfigError, match="unknown.*'widht'.*valid"):
        M2SConfig.from_dict({**data, "widht": 3})
    del data["in_dim"]
    with pytest.raises(ModelConfigError, match="in_dim"):
        M2SConfig.from_dict(data)
    with pytest.raises(ModelConfigError, match="odd"):
        M2SConfig.from_dict(dict(input="exp2s", in_dim=52, conv_kernel=4))


# ---------------------------------------------------------------- losses
def test_mel_l1_respects_the_mask():
    pred, target = torch.zeros(2, 12, 80), torch.ones(2, 12, 80)
    target[0, 8:] = 50.0  # frame 2 of clip 0 is padding
    target[1, 4:] = -7.0  # frames 1.. of clip 1 are padding
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert mel_l1(pred, target, mask).item() == pytest.approx(1.0)
    assert mel_l1(pred, target).item() > 1.0
    with pytest.raises(ValueError):
        mel_l1(pred, target, torch.ones(2, 5, dtype=torch.bool))


def test_spectral_convergence_and_phone_ce():
    target = torch.randn(2, 8, 80)
    mask = torch.tensor([[True, True], [True, False]])
    assert spectral_convergence(target, target, mask).item() == pytest.approx(0.0, abs=1e-3)
    noisy = target.clone()
    noisy[1, 4:] += 5.0  # only padding differs
    assert spectral_convergence(noisy, target, mask).item() == pytest.approx(0.0, abs=1e-3)
    assert spectral_convergence(target - 1.0, target, mask).item() > 0.3

    logits = torch.zeros(1, 3, NUM_PHONES)
    logits[0, 0, 5] = 20.0
    labels = torch.tensor([[5, -100, 7]])
    mask = torch.tensor([[True, True, False]])
    assert phone_ce(logits, labels, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert phone_ce(logits, labels).item() > 1.0
    assert phone_ce(logits, torch.full((1, 3), -100)).item() == 0.0


# ---------------------------------------------------------------- learning
def test_tiny_model_overfits_one_batch(rig):
    torch.manual_seed(0)
    model = tiny_model(rig, "mouth2s", dim=48)
    c = coeffs(B=4, T=16, seed=3)
    feats = rig_features(rig, c, "mouth2s")
    # a target the face determines: a fixed random map of the coefficients, smoothed over mel frames
    mixing = torch.randn(52, 4 * 80, generator=torch.Generator().manual_seed(4))
    target = (c @ mixing).reshape(4, 64, 80) - 6.0
    model.set_input_stats(feats.mean((0, 1)), feats.std((0, 1)))
    model.set_mel_stats(target.mean((0, 1)), target.std((0, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = mel_l1(model(feats).mel, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.5 * losses[0], losses[::10]


def test_cmn_target_ignores_level_and_channel():
    """Utterance-normalised targets: the real speech's gain/EQ offsets do not count. ``cmn`` also
    forgives the prediction's level; ``cmn_target`` (default) does not, so "silence throughout"
    costs more than the truth."""
    from thunder3d.models.m2s import utterance_normalize

    def model(target):
        return M2S(M2SConfig.from_dict(dict(input="exp2s", in_dim=52, dim=16, layers=1, heads=2, target=target)))

    torch.manual_seed(0)
    target = torch.randn(2, 8, 80)
    mask = torch.tensor([[True, True], [True, False]])
    offset = torch.randn(2, 1, 80) * 3  # a per-utterance, per-bin level (gain + colouring)
    assert M2SConfig.from_dict(dict(input="exp2s", in_dim=52)).target == "peak"
    assert float(model("cmn").mel_loss(target + offset, target, mask)) < 1e-5
    assert float(model("log_mel").mel_loss(target + offset, target, mask)) > 1.0
    normed = utterance_normalize(target, mask)
    default = model("cmn_target")
    # the same real speech recorded louder/coloured has the same target
    assert float(default.mel_loss(normed, target + offset, mask)) < 1e-5
    # a prediction 3 nats below the utterance everywhere (a still face heard as silence)
    assert float(default.mel_loss(normed - 3, target, mask)) == pytest.approx(3.0, abs=1e-4)
    assert float(model("cmn").mel_loss(normed - 3, target, mask)) < 1e-5
    # padding does not enter the mean
    assert torch.allclose(normed[1, :4].mean(0), torch.zeros(80), atol=1e-5)
    # ``peak``: the level is the mean of the loudest 10% of frames, per bin; pauses stay below it
    from thunder3d.models.m2s import peak_normalize

    mel = torch.zeros(1, 20, 80)
    mel[0, :2] = 5.0  # two loud frames (10%), the rest silence at 0
    mel[0, 2:4, 0] = 7.0  # louder only in bin 0 (mean over bins decides loudness: 7/80 < 5)
    peak = model("peak")
    out = peak_normalize(mel)
    assert torch.allclose(out[0, :2], torch.zeros(2, 80)) and torch.allclose(out[0, 4:], torch.full((16, 80), -5.0))
    assert float(peak.mel_loss(out, mel + offset[:1])) < 1e-5  # gain/colouring do not count
    # a flat prediction ("no speech", or the speech's level everywhere) is not forgiven
    assert float(peak.mel_loss(torch.zeros_like(mel), mel)) > 3.0
    # padding: frames masked out never count as loud
    padded = torch.cat([mel, torch.full((1, 4, 80), 100.0)], 1)
    assert torch.allclose(peak_normalize(padded, torch.tensor([[True] * 5 + [False]]))[0, :20], out[0], atol=1e-5)
    # audible() puts the training level back for vocoding
    default.set_mel_stats(torch.zeros(80), torch.ones(80), level=torch.full((80,), -4.0))
    assert torch.allclose(default.audible(normed), normed - 4.0)
    assert torch.equal(model("log_mel").audible(normed), normed)
    with pytest.raises(Exception, match="valid"):
        M2SConfig.from_dict(dict(input="exp2s", in_dim=52, target="mfcc"))


def test_multiscale_mel_l1_by_hand():
    """Scale 1 is the plain L1; a coarse scale compares window means; padded frames never count;
    old configs keep the plain L1."""
    from thunder3d.models.m2s import mel_l1, multiscale_mel_l1

    pred = torch.zeros(1, 8, 80)
    target = torch.zeros(1, 8, 80)
    target[0, :4] = 2.0  # 4 loud mel frames, then 4 silent ones
    shifted = torch.roll(target, 1, dims=1)
    assert float(multiscale_mel_l1(shifted, target, scales=(1,))) == pytest.approx(float(mel_l1(shifted, target)))
    # scale 1: 2 of 8 frames wrong by 2 -> 0.5
    assert float(multiscale_mel_l1(shifted, target, scales=(1,))) == pytest.approx(0.5)
    # scale 4, stride 2, windows [0:4] [2:6] [4:8]: means target 2, 1, 0; shifted 1.5, 1.5, 0.5
    assert float(multiscale_mel_l1(shifted, target, scales=(4,))) == pytest.approx(0.5)
    # scale 2, stride 1, 7 windows: target 2 2 2 1 0 0 0; shifted 1 2 2 2 1 0 0 -> errors 1 0 0 1 1 0 0
    assert float(multiscale_mel_l1(shifted, target, scales=(2,))) == pytest.approx(3 / 7)
    assert float(multiscale_mel_l1(shifted, target, scales=(1, 2))) == pytest.approx((0.5 + 3 / 7) / 2)
    # a flat prediction is not forgiven at any scale
    assert float(multiscale_mel_l1(pred, target, scales=(8,))) == pytest.approx(1.0)
    # padding: 2 valid animation frames (8 mel frames) of 3; garbage in the padded frames is ignored
    padded_t = torch.cat([target, torch.full((1, 4, 80), 50.0)], 1)
    padded_p = torch.cat([shifted, torch.full((1, 4, 80), -50.0)], 1)
    mask = torch.tensor([[True, True, False]])
    clean_t = torch.cat([target, torch.zeros(1, 4, 80)], 1)
    clean_p = torch.cat([shifted, torch.zeros(1, 4, 80)], 1)
    assert float(multiscale_mel_l1(padded_p, padded_t, mask, (1, 4))) == pytest.approx(
        float(multiscale_mel_l1(clean_p, clean_t, mask, (1, 4))), abs=1e-5)
    cfg = M2SConfig(input="exp2s", in_dim=52, conformer=ConformerConfig(dim=16, layers=1, heads=2))
    assert cfg.loss_scales == (1, 8, 32)
    old = {k: v for k, v in cfg.to_dict().items() if k != "loss_scales"}
    assert M2SConfig.from_dict(old).loss_scales == (1,)
    assert M2SConfig.from_dict(cfg.to_dict()).loss_scales == (1, 8, 32)
    with pytest.raises(Exception, match="loss_scales"):
        M2SConfig.from_dict(dict(input="exp2s", in_dim=52, loss_scales=(0,)))
