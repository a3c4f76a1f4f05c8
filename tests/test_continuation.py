"""A denoiser that reads the frames a continuation is given (``known_input``), trained with
``--continue-prob`` and used by sampling and streaming."""

import numpy as np
import pytest
import torch

from thunder3d.models import ModelConfigError
from thunder3d.models.denoiser import Denoiser, DenoiserConfig
from thunder3d.models.regressor import RegressorConfig
from thunder3d.train.talker import continuation_mask

C, DA = 6, 8


def config(**overrides):
    return DenoiserConfig.from_dict({"coeff_dim": C, "audio_dim": DA, "dim": 32, "layers": 2, "heads": 4,
                                     "conv_kernel": 5, **overrides})


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_config_stores_it_only_when_set_and_the_regressor_refuses_it():
    assert "known_input" not in config().to_dict()  # earlier models' configs are unchanged
    cfg = config(known_input=True)
    assert cfg.to_dict()["known_input"] is True and DenoiserConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ModelConfigError, match="known_input must be true or false"):
        config(known_input="yes")
    with pytest.raises(ModelConfigError, match="regressor has no known-frames input"):
        RegressorConfig(coeff_dim=C, audio_dim=DA, known_input=True)


def test_it_starts_as_the_model_without_it_then_reads_the_known_frames():
    torch.manual_seed(0)
    base = Denoiser(config()).eval()
    net = Denoiser(config(known_input=True)).eval()
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    assert sorted(missing) == ["known_proj.bias", "known_proj.weight"] and not unexpected
    assert net.init_optional == ("known_proj",)  # --init from a model without it
    x, t, audio = randn(2, 12, C), torch.tensor([10, 600]), randn(2, 12, DA, seed=2)
    known, mask = randn(2, 12, C, seed=3), torch.arange(12)[None].expand(2, 12) < torch.tensor([[5], [0]])
    with torch.no_grad():
        ref = base(x, t, audio)
        torch.testing.assert_close(net(x, t, audio), ref)  # zero-initialised
        torch.testing.assert_close(net(x, t, audio, known=known, known_mask=mask), ref)
        net.known_proj.weight.normal_(0, 0.5)
        out = net(x, t, audio, known=known, known_mask=mask)
        assert not torch.allclose(out[0], ref[0], atol=1e-4)  # the known frames reach every frame
        # only the known frames' values count, and no mask is no known frame
        other = known.clone()
        other[0, 5:] += 10.0
        torch.testing.assert_close(net(x, t, audio, known=other, known_mask=mask), out)
        torch.testing.assert_close(net(x, t, audio, known_mask=torch.zeros(2, 12, dtype=torch.bool)), net(x, t, audio))
        torch.testing.assert_close(out[1], net(x[1:], t[1:], audio[1:])[0], atol=1e-5, rtol=1e-4)
        guided = net.guided(x, t, audio, audio_scale=2.0, known=known, known_mask=mask)
        assert guided.shape == x.shape and not torch.allclose(guided, net.guided(x, t, audio, audio_scale=2.0))
    with pytest.raises(ValueError, match="known_mask must be"):
        net(x, t, audio, known=known, known_mask=mask[:, :5])
    with pytest.raises(ValueError, match="need their known_mask"):
        net(x, t, audio, known=known)
    with pytest.raises(ValueError, match="no known-frames input"):
        base(x, t, audio, known=known, known_mask=mask)


def test_onnx_graph_takes_the_known_frames(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("onnxruntime")
    from thunder3d.models import onnx

    monkeypatch.setenv("THUNDER3D_CACHE", str(tmp_path))
    torch.manual_seed(0)
    net = Denoiser(config(known_input=True)).eval()
    with torch.no_grad():
        net.known_proj.weight.normal_(0, 0.5)
    fast = onnx.onnx_denoiser(net)
    assert {"known", "known_mask"} <= fast._inputs
    x, t, audio = randn(3, 30, C), torch.tensor([10, 600, 999]), randn(3, 30, DA, seed=2)
    known, mask = randn(3, 30, C, seed=3), torch.arange(30)[None].expand(3, 30) < torch.tensor([[25], [0], [29]])
    with torch.no_grad():
        for kwargs in ({}, {"known": known, "known_mask": mask}):
            torch.testing.assert_close(fast.guided(x, t, audio, audio_scale=1.5, **kwargs),
                                       net.guided(x, t, audio, audio_scale=1.5, **kwargs), atol=2e-5, rtol=1e-4)


def test_continuation_mask_is_a_prefix_that_leaves_frames_to_learn():
    torch.manual_seed(0)
    valid = torch.tensor([30, 30, 17, 2, 1, 0] * 50)
    mask = torch.arange(30)[None] < valid[:, None]
    known = continuation_mask(mask, 0.5)
    k = known.sum(1)
    assert torch.equal(known, torch.arange(30)[None] < k[:, None])  # a prefix
    assert bool((known <= mask).all()) and bool((k[valid >= 2] < valid[valid >= 2]).all())
    assert int(k[valid < 2].sum()) == 0
    share = float((k[valid >= 2] > 0).float().mean())
    assert 0.35 < share < 0.65 and int(k.max()) == 29 and int(k[k > 0].min()) == 1
    assert not continuation_mask(mask, 0.0).any() and bool((continuation_mask(mask, 1.0).sum(1)[valid >= 2] > 0).all())


@pytest.mark.slow
def test_fine_tuned_from_a_model_without_it_then_sampled_and_streamed(tiny_talker, tiny_corpus, tmp_path,
                                                                        one_thread):
    """``--init`` from a model without the input, ``--continue-prob``: the run records it, the model continues
    given frames exactly (inpainting) and streams deterministically."""
    from thunder3d.checkpoints import load_talker
    from thunder3d.cli import main
    from thunder3d.errors import TrainError
    from thunder3d.inference import Animator
    from thunder3d.inference.sampling import sample_window
    from thunder3d.inference.streaming import Stream
    from thunder3d.models.diffusion import DDIMSampler
    from thunder3d.train.talker import TalkerData

    with pytest.raises(TrainError, match="continue_prob must be in"):
        TalkerData(corpus=str(tiny_corpus), continue_prob=1.5)
    with pytest.raises(TrainError, match="regressor has no known-frames input"):
        TalkerData(corpus=str(tiny_corpus), continue_prob=0.5, deterministic=True)
    run = tmp_path / "continued"
    args = ["train", "talker", "--corpus", str(tiny_corpus), "-o", str(run), "--steps", "2", "--batch-size", "2",
            "--dim", "32", "--layers", "1", "--heads", "2", "--window", "2", "--eval-every", "2", "--save-every", "2",
            "--warmup", "1", "--eval-windows", "2", "--eval-steps", "2", "--audio-dim", "16", "--no-progress",
            "--seed", "0", "--init", str(tiny_talker / "last"), "--continue-prob", "0.5", "--lr", "0.05"]
    assert main(args) == 0
    model = load_talker(run / "last")[0].eval()
    assert model.continues and not load_talker(tiny_talker / "last")[0].continues
    assert float(model.net.known_proj.weight.detach().abs().sum()) > 0  # trained from its zero start
    from thunder3d.checkpoints import load_checkpoint

    assert load_checkpoint(run / "last").config["data"]["continue_prob"] == 0.5

    sampler = DDIMSampler(model.schedule)
    sampler.set_timesteps(3)
    feats = randn(2, 20, model.audio_dim)
    labels = {name: torch.full((2,), -1) for name in ("emotion", "intensity", "style")}
    scales = {"audio_scale": 1.0, "cond_scale": 1.0, "mode": "nested"}
    known = randn(2, 8, model.coeff_dim, seed=5)
    g = torch.Generator().manual_seed(0)
    x = sample_window(model, feats, labels, scales, known, sampler, lambda: torch.randn(2, 20, model.coeff_dim,
                                                                                      generator=g))
    torch.testing.assert_close(x[:, :8], known)  # the given frames stay as given

    animator = Animator.from_pretrained(run / "last", device="cpu")
    from thunder3d.data.clip import load_clip

    wav = load_clip(tiny_corpus, "syn000000").audio
    outs = []
    for chunk in (320, 5000):
        s = Stream(animator, seed=1)
        outs.append(np.concatenate([s.push(wav[i:i + chunk]) for i in range(0, wav.size, chunk)] + [s.end()]))
    assert outs[0].shape == (round(wav.size / 640), len(animator.names)) and np.isfinite(outs[0]).all()
    np.testing.assert_array_equal(outs[0], outs[1])
