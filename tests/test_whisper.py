"""The Whisper encoder: the published front end, OpenAI's weights from the pinned package, the torch
encoder against CTranslate2's own, rate, determinism, chunking, and clear errors."""

import os
import shutil

import numpy as np
import pytest
import torch

from thunder3d.audio.features import whisper_log_mel
from thunder3d.audio.tts import synthesize
from thunder3d.errors import AudioEncoderError
from thunder3d.audio import whisper
from thunder3d.audio.whisper import fixed_chunks, whisper_features
from thunder3d.models.encoders import WhisperEncoder, build_audio_encoder
from thunder3d.audio.whisper import load_whisper_encoder, read_ctranslate2, whisper_model_file

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    text = ("The quick brown fox jumps over the lazy dog, and then he sleeps by the fire while rain falls on "
            "the roof of the old mill by the river.")
    return synthesize(text, voice="en-us", seed=3).wav.astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    torch.manual_seed(0)
    return build_audio_encoder({"kind": "whisper", "out_dim": 32, "hidden": 32}).eval()


def test_front_end_is_whispers_formula(speech):
    librosa = pytest.importorskip("librosa")
    ours = whisper_log_mel(speech).numpy()
    fb = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)  # Whisper's filters
    stft = torch.stft(torch.from_numpy(speech), 400, 160, window=torch.hann_window(400), return_complex=True)
    log_spec = torch.from_numpy(fb) @ (stft[..., :-1].abs() ** 2)
    log_spec = log_spec.clamp(min=1e-10).log10()
    log_spec = (torch.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    assert ours.shape == (len(speech) // 160, 80)
    np.testing.assert_allclose(ours, log_spec.T.numpy(), atol=1e-5)


def test_torch_encoder_matches_ctranslate2(speech):
    """The same weights through CTranslate2's own Whisper encoder (what the package was made for)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    n = len(speech) // 640 * 640
    mel = whisper_log_mel(speech[:n])  # [4T, 80]
    with torch.no_grad():
        ours = load_whisper_encoder()(mel[None])[0].numpy()  # [2T, 384]
    model = ctranslate2.models.Whisper(str(whisper_model_file().parent), device="cpu", compute_type="float32")
    theirs = np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy().T[None])),
                                   to_cpu=True))[0]
    assert ours.shape == theirs.shape == (n // 320, 384)
    np.testing.assert_allclose(ours, theirs, atol=5e-4)


def test_shape_rate_and_determinism(encoder, speech):
    wav = torch.from_numpy(speech)
    T = len(speech) // 640
    with torch.no_grad():
        feats = encoder.pretrained_features(wav[None], T)
        out = encoder(wav[None])
        again = encoder(wav[None])
        padded = encoder(wav[None], T + 1)  # one frame more: zero-padded audio
    assert feats.shape == (1, T, 768) and out.shape == (1, T, 32)
    assert torch.equal(out, again) and padded.shape == (1, T + 1, 32)
    assert encoder.frozen and not any(k.startswith("backbone") for k in encoder.state_dict())
    with torch.no_grad():  # the same with the features given precomputed (what training reads from its cache)
        given = encoder(wav[None], pretrained=whisper_features(wav, T)[None].half())
    assert torch.allclose(given, out, atol=2e-2) and encoder.uses_pretrained


def test_features_do_not_depend_on_the_length_around_them(encoder, speech):
    """Chunks start at fixed frames: the first chunk sees the same audio in a long and a short input."""
    wav = torch.from_numpy(np.concatenate([speech, speech, speech]))  # long enough for three 8 s chunks
    T = len(wav) // 640
    plan = fixed_chunks(T, 200, 25)
    assert plan[0] == (0, 200, 0, 225) and plan[1][:3] == (200, 400, 175) and plan[-1][1] == T
    with torch.no_grad():
        whole = encoder.pretrained_features(wav[None], T)
        prefix = encoder.pretrained_features(wav[None, : 225 * 640], 225)
        window = encoder.pretrained_features(wav[None, 175 * 640: 425 * 640], 250)
    assert torch.equal(whole[:, :200], prefix[:, :200])
    # a window cut at another place encodes other chunks: close, not equal (Whisper attends globally)
    cos = torch.nn.functional.cosine_similarity(whole[0, 200:400], window[0, 25:225], dim=-1)
    assert 0.8 < float(cos.mean()) < 1.0


def test_frozen_backbone_gets_no_gradient_but_the_head_does(encoder, speech):
    enc = build_audio_encoder({"kind": "whisper", "out_dim": 8, "hidden": 8, "layers": 1}).train()
    wav = torch.from_numpy(speech[: 64000]).requires_grad_(False)
    enc(wav[None]).square().mean().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in enc.parameters())
    from thunder3d.audio.whisper import shared_encoder

    assert all(p.grad is None for p in shared_encoder().parameters())
    trainable = build_audio_encoder({"kind": "whisper", "out_dim": 8, "hidden": 8, "layers": 1, "trainable": True})
    trainable(wav[None]).square().mean().backward()
    assert float(trainable.backbone.blocks[0].qkv.weight.grad.abs().sum()) > 0
    assert any(k.startswith("backbone.") for k in trainable.state_dict())


def test_config_round_trip(encoder):
    again = build_audio_encoder(encoder.config())
    assert again.config() == encoder.config() and again.out_dim == 32


def test_bad_options_and_missing_or_wrong_weights_are_clear(tmp_path, monkeypatch):
    with pytest.raises(AudioEncoderError, match="chunk \\+ 2 context <= 30"):
        build_audio_encoder({"kind": "whisper", "chunk": 29.0, "context": 1.0})
    with pytest.raises(AudioEncoderError, match="unknown Whisper encoder 'large'; valid: tiny.en"):
        build_audio_encoder({"kind": "whisper", "model": "large"})
    real = whisper.WHISPER_PACKAGES["tiny.en"]
    monkeypatch.setitem(whisper.WHISPER_PACKAGES, "tiny.en", whisper.WhisperPackage(
        "thunder3d_no_such_package", "9.9", real.path, real.sha256, real.dims))
    with pytest.raises(AudioEncoderError, match="not installed: pip install thunder3d-no-such-package==9.9"):
        whisper_model_file("tiny.en")
    monkeypatch.setitem(whisper.WHISPER_PACKAGES, "tiny.en", whisper.WhisperPackage(
        real.package, real.version, real.path, "0" * 64, real.dims))
    with pytest.raises(AudioEncoderError, match="not the pinned Whisper tiny.en model"):
        whisper_model_file("tiny.en")
    monkeypatch.setitem(whisper.WHISPER_PACKAGES, "tiny.en", real)
    truncated = tmp_path / "model.bin"
    with open(whisper_model_file(), "rb") as src:
        truncated.write_bytes(src.read(100_000))
    with pytest.raises(AudioEncoderError, match="not a readable CTranslate2 model file|do not fit"):
        load_whisper_encoder(path=truncated)
    other = tmp_path / "other.bin"
    shutil.copy(whisper_model_file(), other)
    assert set(read_ctranslate2(other, "encoder/")) >= {"conv1/weight", "layer_3/ffn/linear_1/weight"}


@pytest.mark.slow
def test_cached_features_train_and_sample_a_whisper_talker(tiny_corpus, tmp_path, capsys):
    """The corpus cache, the dataset windows, training through the CLI and sampling any length."""
    from thunder3d.checkpoints import load_talker
    from thunder3d.cli import main
    from thunder3d.data.clip import load_clip
    from thunder3d.data.dataset import ClipDataset, collate
    from thunder3d.data.pretrained import cache_pretrained, pretrained_dir, read_pretrained
    from thunder3d.errors import DataError
    from thunder3d.inference import generate

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    with pytest.raises(DataError, match="run `thunder3d data features"):
        ClipDataset(corpus, "train", 2.0, pretrained="whisper-tiny.en")
    run = tmp_path / "run"
    train = ["train", "talker", "--corpus", str(corpus), "-o", str(run), "--audio", "whisper", "--steps", "2",
             "--batch-size", "2", "--dim", "32", "--layers", "1", "--heads", "2", "--window", "2", "--eval-every", "2",
             "--save-every", "2", "--warmup", "1", "--eval-windows", "2", "--eval-steps", "2", "--audio-dim", "16",
             "--no-progress"]
    assert main(train) == 2 and "thunder3d data features" in capsys.readouterr().err
    assert main(["data", "features", str(corpus), "--no-progress"]) == 0
    report = cache_pretrained(corpus)  # resumable: nothing left to do
    assert not report.written and report.skipped == 6 and (pretrained_dir(corpus) / "config.json").is_file()

    clip = load_clip(corpus, "syn000000")
    cached = read_pretrained(corpus, clip.id, clip.num_frames)
    fresh = whisper_features(clip.audio, clip.num_frames).numpy()
    assert cached.dtype == np.float16 and cached.shape == (clip.num_frames, 768)
    np.testing.assert_allclose(cached, fresh, atol=2e-2)
    batch = collate([ClipDataset(corpus, "train", 2.0, pretrained="whisper-tiny.en")[i] for i in range(2)])
    assert batch["pretrained"].shape == (2, 50, 768) and batch["pretrained"].dtype == torch.float32

    assert main(train) == 0
    model, *_ = load_talker(run)
    assert model.uses_pretrained and not any(k.startswith("audio_encoder.backbone") for k in model.state_dict())
    speech = np.concatenate([clip.audio] * 3)  # longer than a window: whole-input features, sliced
    a = generate(model, speech, steps=2, seed=1)
    b = generate(model, speech, steps=2, seed=1)
    assert a.shape == (1, -(-speech.size // 640), 52) and np.isfinite(a).all() and np.array_equal(a, b)


def test_the_shipped_model_hears_through_whisper_with_no_recogniser(tmp_path):
    """The default inference path: Whisper features, no speech recogniser loaded or started, the
    checkpoint's own sampling defaults; a fresh process, as ``thunder3d animate`` runs it."""
    import json
    import os
    import subprocess
    import sys

    from thunder3d.inference.animator import PRETRAINED_DIR

    config = json.loads((PRETRAINED_DIR / "config.json").read_text())
    assert config["model"]["audio"]["kind"] == "whisper"
    assert "recognizer" not in config["model"]["audio"] and config["sampling"]["steps"] >= 1
    code = ("import sys\nfrom thunder3d.audio.tts import synthesize\nfrom thunder3d.inference import Animator\n"
            "animator = Animator.from_pretrained()\n"
            "[anim] = animator.animate(synthesize('Bob made a map.', voice='en-us').wav, seed=0)\n"
            "assert not animator.model.uses_phones and anim.coeffs.shape[1] == 52\n"
            "print(sorted(m for m in sys.modules if 'sphinx' in m))")
    env = {**os.environ, "THUNDER3D_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"  # neither pocketsphinx nor the recogniser module


def test_the_weights_hash_is_remembered_per_file_and_a_changed_file_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("THUNDER3D_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "model.bin"
    shutil.copy(whisper_model_file(), copy)  # the package's file is hashed (and remembered) here
    stamps = set((tmp_path / "cache" / "hashes").glob("*.json"))
    pinned = whisper.WHISPER_PACKAGES["tiny.en"].sha256
    assert whisper._sha256(copy) == pinned
    assert len(set((tmp_path / "cache" / "hashes").glob("*.json")) - stamps) == 1
    assert whisper._sha256(copy) == pinned  # from the stamp
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    os.utime(copy, ns=(1, 1))  # same size; a different modification time
    assert whisper._sha256(copy) not in ("", pinned)


@pytest.mark.slow
def test_a_streaming_variant_trains_on_stream_shaped_windows_hearing_only_the_past(tiny_corpus, tmp_path, capsys):
    """``--window 1.2 --audio-context 1``: the windows of a stream (25 known + 2 new + 3 look-ahead frames),
    the encoder hearing the second before each window and nothing after it, computed from the speech (no
    features cache needed); items, batches, the model's cropping and the CLI's refusals."""
    import json

    from thunder3d.checkpoints import load_talker
    from thunder3d.cli import main
    from thunder3d.data.clip import load_clip
    from thunder3d.data.dataset import ClipDataset, collate
    from thunder3d.errors import DataError
    from thunder3d.inference import Animator
    from thunder3d.inference.sampling import window_features
    from thunder3d.inference.streaming import Stream, StreamConfig

    with pytest.raises(DataError, match="audio_context must be between 0 and 4"):
        ClipDataset(tiny_corpus, "train", 1.2, audio_context=5)
    data = ClipDataset(tiny_corpus, "train", 1.2, audio_context=1.0)
    for i in range(len(data)):
        k, start, frames = data.window(i)
        item = data[i]
        audio = load_clip(tiny_corpus, data.ids[k]).audio
        past = np.concatenate([np.zeros(max(0, 25 - start) * 640, np.float32), audio[max(0, start - 25) * 640: start * 640]])
        assert frames == 30 and item["audio_context"].shape == (25 * 640,)
        np.testing.assert_array_equal(item["audio_context"].numpy(), past)  # zeros before the clip's start
    batch = collate([data[0], data[1]])
    assert batch["audio_context"].shape == (2, 25 * 640) and batch["audio"].shape == (2, 30 * 640)

    run = tmp_path / "stream_run"
    train = ["train", "talker", "--corpus", str(tiny_corpus), "-o", str(run), "--audio", "whisper", "--steps", "2",
             "--batch-size", "2", "--dim", "32", "--layers", "1", "--heads", "2", "--window", "1.2", "--audio-context",
             "1", "--eval-every", "2", "--save-every", "2", "--warmup", "1", "--eval-windows", "2", "--eval-steps", "2",
             "--audio-dim", "16", "--no-progress"]
    assert main(train) == 0  # the tiny corpus has no Whisper features cached: they are computed per window
    config = json.loads((run / "last" / "config.json").read_text())
    assert config["data"]["audio_context"] == 1.0 and config["data"]["window_seconds"] == 1.2
    model, *_ = load_talker(run)
    wav, past = batch["audio"][:1], batch["audio_context"][:1]
    with torch.no_grad():  # training hears a window as a stream's window_features computes it
        heard = model.encode_audio(wav, 30, context=past)
        streamed = window_features(model, torch.cat([past, wav], 1)[0], False, 55, 25, 55, 25, torch.device("cpu"))
        alone = model.encode_audio(wav, 30)
    assert heard.shape == (1, 30, 16) and torch.allclose(heard, streamed, atol=1e-5)
    assert not torch.allclose(heard, alone, atol=1e-3)  # the past changes what the window hears
    with pytest.raises(ValueError, match="not with cached phones or features"):
        model.encode_audio(wav, 30, pretrained=torch.zeros(1, 30, 768), context=past)
    with pytest.raises(ValueError, match="whole frames of 640 samples"):
        model.encode_audio(wav, 30, context=past[:, 1:])

    stream = Stream(Animator.from_pretrained(run, device="cpu"), StreamConfig(), seed=0)
    speech = load_clip(tiny_corpus, data.ids[0]).audio
    frames = np.concatenate([stream.push(speech), stream.end()])
    assert frames.shape == (round(speech.size / 640), 52) and np.isfinite(frames).all()

    capsys.readouterr()
    bad = [*train[:-1], "--audio", "hybrid", "--no-progress"]
    assert main(bad) == 2 and "audio_context: the 'hybrid' encoder reads phones" in capsys.readouterr().err
    assert main([*train[:-1], "--audio-context", "9", "--no-progress"]) == 2
    assert "audio_context must be between 0 and 4 s" in capsys.readouterr().err
