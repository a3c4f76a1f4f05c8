"""The one config base: plain JSON out, checked JSON in, nested configs, older layouts upgraded."""

import json

import pytest

from thunder3d.audio.augment import AugmentConfig
from thunder3d.config import field_docs
from thunder3d.errors import AudioError, ConfigError, ModelConfigError, TrainError
from thunder3d.models import ConformerConfig, DenoiserConfig, M2SConfig, RegressorConfig
from thunder3d.models.talker import TalkerConfig
from thunder3d.train.loop import TrainConfig
from thunder3d.train.talker import TalkerData


@pytest.mark.parametrize("config", [
    TrainConfig(steps=7, betas=(0.8, 0.9)), AugmentConfig.none(), ConformerConfig(dim=32, heads=2),
    DenoiserConfig(coeff_dim=5, audio_dim=8, conformer=ConformerConfig(dim=16, layers=1, heads=2)),
    RegressorConfig(coeff_dim=5, audio_dim=8), M2SConfig(input="exp2s", in_dim=52), TalkerData(corpus="c"),
    TalkerConfig(kind="regressor", net=RegressorConfig(coeff_dim=3, audio_dim=4), audio={"kind": "mel"}),
])
def test_round_trip_through_json(config):
    text = json.dumps(config.to_dict())  # plain JSON: no tuples, no dataclasses
    again = type(config).from_dict(json.loads(text))
    assert again == config and type(again) is type(config)


@pytest.mark.parametrize("cls, error, data", [
    (TrainConfig, TrainError, {"stepz": 3}), (AugmentConfig, AudioError, {"p_sped": 0.1}),
    (DenoiserConfig, ModelConfigError, {"coeff_dim": 3, "audio_dim": 4, "widht": 5}),
    (ConformerConfig, ModelConfigError, {"dim": 32, "layer": 2}),
])
def test_unknown_keys_are_named_with_the_valid_ones(cls, error, data):
    with pytest.raises(error) as info:
        cls.from_dict(data)
    bad = [k for k in data if k not in {f for f in cls.__dataclass_fields__}][0]
    assert bad in str(info.value) and "valid:" in str(info.value)
    assert isinstance(info.value, ConfigError) or cls is AugmentConfig  # audio settings stay AudioErrors


def test_missing_required_keys_are_named():
    with pytest.raises(ModelConfigError, match=r"lacks required keys \['audio_dim'\]"):
        DenoiserConfig.from_dict({"coeff_dim": 3})
    with pytest.raises(ModelConfigError, match="'in_dim'"):
        M2SConfig.from_dict({"input": "exp2s"})


def test_nested_conformer_and_the_flat_layout_of_older_checkpoints():
    flat = {"coeff_dim": 52, "audio_dim": 128, "dim": 64, "layers": 2, "heads": 4, "ff_mult": 4, "conv_kernel": 15,
            "dropout": 0.1, "num_styles": 3}
    cfg = DenoiserConfig.from_dict(flat)
    assert cfg.conformer == ConformerConfig(dim=64, layers=2, heads=4) and cfg.num_styles == 3
    assert cfg.to_dict()["conformer"]["dim"] == 64 and "dim" not in cfg.to_dict()
    assert DenoiserConfig.from_dict({"coeff_dim": 1, "audio_dim": 1}).conformer.dim == 192  # the denoiser's width
    old_m2s = M2SConfig.from_dict({"input": "exp2s", "in_dim": 52, "dim": 16, "layers": 1, "heads": 2})
    assert old_m2s.conformer.dim == 16 and old_m2s.loss_scales == (1,)  # saved before loss_scales: plain L1
    with pytest.raises(ModelConfigError, match="even width"):
        DenoiserConfig.from_dict({**flat, "dim": 30, "heads": 4})


def test_the_shipped_models_saved_config_rebuilds():
    from thunder3d.checkpoints import load_checkpoint
    from thunder3d.inference.animator import PRETRAINED_DIR

    config = load_checkpoint(PRETRAINED_DIR, training_state=False).config["model"]
    talker = TalkerConfig.from_dict(config)
    assert talker.kind == "denoiser" and talker.net.coeff_dim == 52
    assert talker.net.conformer.dim == config["net"].get("dim", talker.net.conformer.dim)


def test_talker_config_checks_its_kind():
    with pytest.raises(ModelConfigError, match="valid: denoiser, regressor"):
        TalkerConfig.from_dict({"kind": "gan", "net": {}, "audio": {}})


def test_field_docs_are_plain_text():
    docs = field_docs(TrainConfig)
    assert docs["lr"].startswith("peak learning rate") and "``" not in "".join(docs.values())
    assert field_docs(TalkerData)["m2s_t_max"].startswith("apply the THUNDER loss only")
