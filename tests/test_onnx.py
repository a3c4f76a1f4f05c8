"""The onnxruntime path of the denoiser and the Whisper encoder: the same numbers as torch, cached graphs."""

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from thunder3d.models import onnx  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THUNDER3D_CACHE", str(tmp_path))
    return tmp_path / "onnx"


def test_denoiser_matches_torch_with_guidance_any_length(tiny_talker, cache, one_thread):
    from thunder3d.checkpoints import load_talker

    model = load_talker(tiny_talker)[0]
    net = model.net
    fast = onnx.onnx_denoiser(net)
    assert len(list(cache.glob("denoiser-*.onnx"))) == 1
    g = torch.Generator().manual_seed(0)
    for B, T in ((1, 7), (3, 100), (2, 600)):
        x = torch.randn(B, T, net.cfg.coeff_dim, generator=g)
        audio = torch.randn(B, T, net.cfg.audio_dim, generator=g)
        t = torch.randint(0, 1000, (B,), generator=g)
        emotion, intensity = torch.randint(-1, 8, (B,), generator=g), torch.randint(0, 4, (B,), generator=g)
        with torch.no_grad():
            for kwargs in ({}, {"audio_scale": 2.0}, {"audio_scale": 1.5, "cond_scale": 0.0}):
                ref = net.guided(x, t, audio, emotion, intensity, None, **kwargs)
                got = fast.guided(x, t, audio, emotion, intensity, None, **kwargs)
                torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)
            mask = torch.ones(B, T, dtype=torch.bool)
            mask[0, T // 2:] = False  # masks go to torch
            torch.testing.assert_close(fast(x, t, audio, mask=mask), net(x, t, audio, mask=mask))


def test_a_denoiser_that_ignores_an_input_runs(cache, one_thread):
    """The exporter drops inputs a network does not use (style without styles): they are not fed."""
    from thunder3d.models.conformer import ConformerConfig
    from thunder3d.models.denoiser import Denoiser, DenoiserConfig

    net = Denoiser(DenoiserConfig(coeff_dim=6, audio_dim=8, conformer=ConformerConfig(dim=32, layers=1, heads=2),
                                  num_styles=0)).eval()
    fast = onnx.onnx_denoiser(net)
    assert "style" not in fast._inputs and "x_t" in fast._inputs
    x, audio, t = torch.randn(2, 9, 6), torch.randn(2, 9, 8), torch.tensor([3, 700])
    with torch.no_grad():
        torch.testing.assert_close(fast.guided(x, t, audio, audio_scale=1.5), net.guided(x, t, audio, audio_scale=1.5),
                                   atol=2e-5, rtol=1e-4)


def test_models_use_it_and_copies_do_not(tiny_talker, tiny_corpus, cache, one_thread):
    from thunder3d.checkpoints import load_talker
    from thunder3d.data.clip import load_clip
    from thunder3d.inference import generate

    model = load_talker(tiny_talker)[0]
    wav = load_clip(tiny_corpus, "syn000001").audio
    ref = generate(model, wav, steps=3, seed=2)
    assert model.use_onnx()
    stamp = next(cache.glob("denoiser-*.onnx")).stat().st_mtime_ns
    got = generate(model, wav, steps=3, seed=2)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert load_talker(tiny_talker)[0].use_onnx()  # the same weights: the cached graph, not a new export
    assert [p.stat().st_mtime_ns for p in cache.glob("denoiser-*.onnx")] == [stamp]
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in clone.parameters():
            p.mul_(1.5)
    assert not np.allclose(generate(clone, wav, steps=3, seed=2), got, atol=1e-3)  # torch, new weights
    model.use_onnx(False)
    np.testing.assert_array_equal(generate(model, wav, steps=3, seed=2), ref)


def test_whisper_matches_torch(cache, one_thread):
    from thunder3d.audio.features import whisper_log_mel
    from thunder3d.audio.whisper import shared_encoder

    fast = onnx.onnx_whisper("tiny.en")
    net = shared_encoder()
    wav = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32))
    mel = whisper_log_mel(wav[None])
    with torch.no_grad():
        torch.testing.assert_close(fast(mel), net(mel), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fast(mel[:, :50]), net(mel[:, :50]), atol=1e-4, rtol=1e-4)


def test_cached_whisper_graph_starts_without_torch_weights(cache, one_thread, monkeypatch):
    from thunder3d.audio import whisper
    from thunder3d.audio.features import whisper_log_mel

    first = onnx.onnx_whisper("tiny.en")  # exports (loads the torch encoder once), saves the optimised graph
    assert len(list(cache.glob("whisper-*.opt"))) == 1
    monkeypatch.setattr(whisper, "_SHARED", {})
    fast = onnx.onnx_whisper("tiny.en")  # from the cache: the optimised graph, not optimised again
    mel = whisper_log_mel(torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32))[None])
    with torch.no_grad():
        assert fast(mel).shape == (1, 50, 384)
        torch.testing.assert_close(fast(mel), first(mel), atol=1e-5, rtol=1e-5)
    assert whisper._SHARED == {}  # the graph ran; the 71 MB of weights were never read into torch
    assert fast.net is whisper._SHARED["tiny.en"]  # loaded when asked for (gradients)
