"""Audio encoders: frame alignment, batching, gradients, config round-trips, and the pretrained path
exercised on tiny randomly initialised wav2vec2/HuBERT models saved here (never the network)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from thunder3d.models.encoders import (
    ENCODER_KINDS,
    AudioEncoderError,
    HFSpeechEncoder,
    MelEncoder,
    PhoneticEncoder,
    build_audio_encoder,
    conv_geometry,
)
from thunder3d.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.errors import AudioError, ThunderError

HIDDEN = 32


def noise(*shape, seed=0):
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def frame_diff(a, b):
    """Per-frame size of the change between two ``[1, T, D]`` feature tensors: ``[T]``."""
    return (a - b)[0].abs().amax(-1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly: encoders must work offline."""
    def refuse(*args, **kwargs):
        raise AssertionError("audio encoders must never touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- mel
@pytest.mark.parametrize("n", [300, 640, 1000, 3 * 640 + 1, SAMPLE_RATE, SAMPLE_RATE + 639])
def test_mel_shapes(n):
    enc = MelEncoder(out_dim=16, hidden=24).eval()
    t = n // SAMPLES_PER_FRAME
    assert enc(noise(2, n)).shape == (2, t, 16)
    assert enc(noise(n)).shape == (t, 16)
    assert enc(noise(2, n), num_frames=t + 1).shape == (2, t + 1, 16)
    if t:
        assert enc(noise(2, n), num_frames=t - 1).shape == (2, t - 1, 16)
    with pytest.raises(AudioError, match="at most one frame"):
        enc(noise(2, n), num_frames=t + 2)


def test_mel_rejects_bad_input():
    enc = MelEncoder()
    with pytest.raises(AudioError, match=r"\[B, N\]"):
        enc(torch.zeros(1, 1, 6400))
    with pytest.raises(AudioError, match=r"\[B, N\]"):
        enc(torch.zeros(2, 6400, dtype=torch.int16))


def click(n, at):
    wav = torch.zeros(1, n)
    wav[0, at] = 0.9
    return wav


def test_mel_click_at_one_second_lands_in_frame_25():
    n = 2 * SAMPLE_RATE
    silence, clicked = torch.zeros(1, n), click(n, SAMPLE_RATE)  # t = 1.0 s: first sample of frame 25
    # the stacked log-mel input: the click's window reaches frame 24's last mel frame a little
    no_context = MelEncoder(hidden=64, layers=1, kernel=1).eval()
    diff = frame_diff(no_context.mel_features(clicked, 50), no_context.mel_features(silence, 50))
    assert set(torch.nonzero(diff).flatten().tolist()) == {24, 25}
    assert diff.argmax() == 25
    with torch.no_grad():
        diff = frame_diff(no_context(clicked), no_context(silence))
    assert set(torch.nonzero(diff).flatten().tolist()) == {24, 25} and diff.argmax() == 25
    # the default encoder adds 2 frames of context each side, no more, peak within a frame of 25
    enc = MelEncoder().eval()
    with torch.no_grad():
        diff = frame_diff(enc(clicked), enc(silence))
    changed = torch.nonzero(diff > 1e-6).flatten().tolist()
    assert min(changed) >= 24 - 2 and max(changed) <= 25 + 2
    assert abs(int(diff.argmax()) - 25) <= 1


@pytest.mark.parametrize("t", [0, 7, 30, 49])
def test_mel_click_at_frame_centre_stays_in_its_frame(t):
    n = 50 * SAMPLES_PER_FRAME
    enc = MelEncoder(layers=1, kernel=1)
    at = t * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME // 2
    diff = frame_diff(enc.mel_features(click(n, at), 50), enc.mel_features(torch.zeros(1, n), 50))
    assert torch.nonzero(diff).flatten().tolist() == [t]


def test_mel_batch_equals_items_and_is_deterministic():
    enc = MelEncoder().eval()
    wav = noise(3, 5 * SAMPLES_PER_FRAME + 100)
    with torch.no_grad():
        batch = enc(wav)
        items = torch.cat([enc(w[None]) for w in wav])
        assert torch.allclose(batch, items, atol=1e-5)
        assert torch.equal(enc(wav), batch)


def test_mel_gradients_reach_audio_and_every_parameter():
    enc = MelEncoder(out_dim=8, hidden=16)
    wav = noise(2, 10 * SAMPLES_PER_FRAME).requires_grad_()
    enc(wav).square().mean().backward()
    assert enc.frozen is False
    assert wav.grad is not None and wav.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mel_input_stats_and_config_round_trip():
    enc = MelEncoder(out_dim=12, hidden=20, layers=3, kernel=5, cmn=True)
    enc.set_input_stats(np.linspace(-9, -4, 80), np.full(80, 2.5))
    config = json.loads(json.dumps(enc.config()))
    assert config == {"kind": "mel", "out_dim": 12, "hidden": 20, "layers": 3, "kernel": 5,
                      "dropout": 0.0, "cmn": True}
    again = build_audio_encoder(config)
    assert isinstance(again, MelEncoder) and again.config() == config
    again.load_state_dict(enc.state_dict())  # the stats are persistent buffers: they travel
    wav = noise(1, 8000)
    assert torch.equal(again.eval()(wav), enc.eval()(wav))
    assert isinstance(build_audio_encoder(None), MelEncoder)
    assert isinstance(build_audio_encoder("mel"), MelEncoder)


def test_mel_augmentation_acts_only_in_training_and_is_stored_only_when_set():
    plain = MelEncoder(out_dim=8, hidden=16)
    aug = MelEncoder(out_dim=8, hidden=16, warp=0.15, band_mask=10)
    assert "warp" not in plain.config()  # configs of models made before the option are unchanged
    assert aug.config()["warp"] == 0.15 and aug.config()["band_mask"] == 10
    assert build_audio_encoder(json.loads(json.dumps(aug.config()))).config() == aug.config()
    aug.load_state_dict(plain.state_dict())  # the option adds no weights
    wav = noise(2, 6400)
    assert torch.equal(aug.eval()(wav), plain.eval()(wav))  # evaluation sees exact features
    aug.train()
    torch.manual_seed(1)
    a = aug(wav)
    torch.manual_seed(1)
    assert torch.equal(aug(wav), a)  # a function of torch's RNG
    assert not torch.allclose(a, plain.train()(wav))
    for bad in ({"warp": 0.5}, {"warp": -0.1}, {"band_mask": 80}, {"band_mask": -1}):
        with pytest.raises(AudioEncoderError):
            MelEncoder(**bad)


# --------------------------------------------------------------------------- factory errors
def test_unknown_kind_and_options():
    with pytest.raises(AudioEncoderError, match="valid: .*'mel'.*'wav2vec2'.*'hubert'.*'phonetic'.*'whisper'"):
        build_audio_encoder({"kind": "whisperx"})
    with pytest.raises(AudioEncoderError, match=r"unknown option\(s\) \['hiden'\].*'hidden'"):
        build_audio_encoder({"kind": "mel", "hiden": 3})
    with pytest.raises(AudioEncoderError, match="odd"):
        build_audio_encoder({"kind": "mel", "kernel": 4})
    with pytest.raises(AudioEncoderError, match="needs 'path'"):
        build_audio_encoder({"kind": "hubert"})
    assert issubclass(AudioEncoderError, AudioError) and issubclass(AudioError, ThunderError)
    assert ENCODER_KINDS == ("mel", "wav2vec2", "hubert", "phonetic", "hybrid", "whisper")


# --------------------------------------------------------------------------- wav2vec2 / HuBERT
def tiny_config(kind):
    transformers = pytest.importorskip("transformers")
    config_class = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig}[kind]
    # default conv kernels/strides (field 400, stride 320: 50 Hz), everything else tiny. The
    # wav2vec2 one normalises conv features per frame (as the large models do), so its feature
    # encoder is local in time; HuBERT keeps the base models' group norm over the whole utterance.
    norm = {"wav2vec2": "layer", "hubert": "group"}[kind]
    return config_class(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                        num_conv_pos_embedding_groups=2, feat_extract_norm=norm, conv_bias=True)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A randomly initialised tiny wav2vec2 and HuBERT, each saved with ``save_pretrained``."""
    transformers = pytest.importorskip("transformers")
    folders = {}
    for kind, model_class in [("wav2vec2", transformers.Wav2Vec2Model), ("hubert", transformers.HubertModel)]:
        torch.manual_seed(1)
        folders[kind] = tmp_path_factory.mktemp(kind)
        model_class(tiny_config(kind)).save_pretrained(folders[kind])
    return folders


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_tiny_pretrained_loads_and_aligns(tiny_models, kind):
    enc = build_audio_encoder({"kind": kind, "path": str(tiny_models[kind])})
    assert isinstance(enc, HFSpeechEncoder) and enc.frozen and enc.out_dim == HIDDEN
    assert (enc.field, enc.stride) == (400, 320)
    for n in [640, 1000, 16000, 16000 + 639, 25 * 640 + 320]:
        out = enc(noise(2, n))
        assert out.shape == (2, n // SAMPLES_PER_FRAME, HIDDEN)
        assert torch.isfinite(out).all()
    assert enc(noise(2, 3000), num_frames=5).shape == (2, 5, HIDDEN)
    # the loaded weights are the saved ones (nothing re-initialised)
    saved = type(enc.backbone).from_pretrained(tiny_models[kind], local_files_only=True)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(),
                                                  enc.backbone.state_dict().values()))


def test_pretrained_frames_centred_on_animation_frames(tiny_models):
    """The 50 Hz conv features seen by frame t cover exactly the samples of animation frame t."""
    enc = HFSpeechEncoder("wav2vec2", tiny_models["wav2vec2"], normalize=False)
    grabbed = []
    enc.backbone.feature_extractor.register_forward_hook(lambda m, i, o: grabbed.append(o))
    n, t = 20 * SAMPLES_PER_FRAME, 7
    enc(torch.zeros(1, n))
    enc(click(n, t * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME // 2))
    silence, clicked = grabbed  # [1, C, 40]
    assert silence.shape[-1] == 2 * 20
    changed = torch.nonzero((clicked - silence)[0].abs().amax(0)).flatten().tolist()
    assert changed == [2 * t, 2 * t + 1]  # averaged into frame t by the 50 -> 25 Hz interpolation


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_pretrained_batch_equals_items(tiny_models, kind):
    enc = HFSpeechEncoder(kind, tiny_models[kind], layer="weighted", out_dim=8)
    wav = noise(3, 12 * SAMPLES_PER_FRAME)
    with torch.no_grad():
        batch = enc(wav)
        items = torch.cat([enc(w[None]) for w in wav])
    assert batch.shape == (3, 12, 8)
    assert torch.allclose(batch, items, atol=1e-4)


def test_frozen_pretrained_gets_no_gradient(tiny_models):
    enc = HFSpeechEncoder("wav2vec2", tiny_models["wav2vec2"], frozen=True, layer="weighted", out_dim=8)
    enc.train()
    assert not enc.backbone.training  # THUNDER-F stays in eval mode
    wav = noise(2, 10 * SAMPLES_PER_FRAME).requires_grad_()
    enc(wav).square().mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in enc.backbone.parameters())
    assert wav.grad is None  # features of a frozen encoder are constants
    for head in (enc.layer_weights, enc.proj.weight):  # the head learns
        assert head.grad is not None and torch.isfinite(head.grad).all() and head.grad.abs().sum() > 0
    plain = HFSpeechEncoder("wav2vec2", tiny_models["wav2vec2"])
    assert not plain(noise(1, 6400)).requires_grad


def test_trainable_pretrained_gets_gradient(tiny_models):
    enc = build_audio_encoder({"kind": "hubert", "path": str(tiny_models["hubert"]), "frozen": False})
    enc.train()
    assert enc.backbone.training and not enc.frozen
    enc(noise(2, 10 * SAMPLES_PER_FRAME)).square().mean().backward()
    layers = [p for n, p in enc.backbone.named_parameters() if ".layers." in n]
    assert layers and all(p.grad is not None and p.grad.abs().sum() > 0 for p in layers)
    # the conv feature encoder stays fixed by default (freeze_feature_encoder=True)
    assert all(p.grad is None for p in enc.backbone.feature_extractor.parameters())
    full = HFSpeechEncoder("hubert", tiny_models["hubert"], frozen=False, freeze_feature_encoder=False)
    wav = noise(1, 4 * SAMPLES_PER_FRAME).requires_grad_()
    out = full(wav)
    # a weighted sum: a plain sum of layer-normalised features is constant (zero gradient)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0
    for name, p in full.backbone.feature_extractor.named_parameters():  # the conv encoder trains too
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("layer", [-1, 0, 1, -2, "weighted"])
def test_pretrained_config_round_trip(tiny_models, layer):
    enc = HFSpeechEncoder("wav2vec2", tiny_models["wav2vec2"], layer=layer, out_dim=6).eval()
    config = json.loads(json.dumps(enc.config()))
    assert config["kind"] == "wav2vec2" and config["layer"] == layer and config["normalize"] is True
    again = build_audio_encoder(config).eval()
    again.load_state_dict(enc.state_dict())
    wav = noise(1, 5000)
    assert torch.allclose(again(wav), enc(wav), atol=1e-6)


def test_pretrained_folder_errors(tiny_models, tmp_path):
    with pytest.raises(AudioEncoderError, match="folder not found.*never downloads"):
        build_audio_encoder({"kind": "wav2vec2", "path": str(tmp_path / "missing")})
    with pytest.raises(AudioEncoderError, match="folder not found"):
        build_audio_encoder({"kind": "wav2vec2", "path": "facebook/wav2vec2-base-960h"})  # a hub id
    with pytest.raises(AudioEncoderError, match="no config.json"):
        build_audio_encoder({"kind": "hubert", "path": str(tmp_path)})
    with pytest.raises(AudioEncoderError, match="holds a 'hubert' model, not 'wav2vec2'"):
        build_audio_encoder({"kind": "wav2vec2", "path": str(tiny_models["hubert"])})
    (tmp_path / "config.json").write_text((tiny_models["hubert"] / "config.json").read_text())
    with pytest.raises(AudioEncoderError, match="no weights"):
        build_audio_encoder({"kind": "hubert", "path": str(tmp_path)})
    with pytest.raises(AudioEncoderError, match="layer must be"):
        HFSpeechEncoder("hubert", tiny_models["hubert"], layer=3)
    with pytest.raises(AudioEncoderError, match="unknown pretrained encoder kind"):
        HFSpeechEncoder("wavlm", tiny_models["hubert"])


def test_conv_geometry():
    assert conv_geometry((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == (400, 320)


# --------------------------------------------------------------------------- phonetic
def test_phonetic_encoder_matches_pocketsphinx():
    from thunder3d.audio.align import recognize_phones
    from thunder3d.audio.phones import PHONES, SIL, phone_index, to_frame_labels
    from thunder3d.audio.tts import synthesize

    utt = synthesize("Bob picked a map for the tall ship.", "en-us")
    wav = torch.from_numpy(utt.wav)
    enc = build_audio_encoder({"kind": "phonetic"})
    assert isinstance(enc, PhoneticEncoder) and enc.frozen and enc.out_dim == len(PHONES)
    feats = enc(wav[None].requires_grad_())
    t = len(utt.wav) // SAMPLES_PER_FRAME
    assert feats.shape == (1, t, len(PHONES)) and not feats.requires_grad
    expected = to_frame_labels(recognize_phones(utt.wav), t)
    feats = enc(wav[None].requires_grad_())
    assert np.array_equal(feats[0].argmax(-1).numpy(), expected)
    assert torch.allclose(feats.sum(-1), torch.ones(1, t))
    assert (expected != phone_index(SIL)).sum() > t // 2  # speech was recognised, not just silence
    assert feats.max() == 1.0 and feats[0].amax(-1).min() >= 0.6 - 1e-6  # smoothed one-hots
    with pytest.raises(AudioEncoderError, match="smoothing"):
        PhoneticEncoder(smoothing=0.3)
