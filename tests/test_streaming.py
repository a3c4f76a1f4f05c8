"""The streaming animator: chunking-independent, never hears past its look-ahead, the contract's frame count."""

import numpy as np
import pytest

from thunder3d.errors import AudioError, ConfigError, ThunderError
from thunder3d.inference import Animator
from thunder3d.inference.streaming import Stream, StreamConfig


@pytest.fixture(scope="module")
def animator(tiny_talker):
    return Animator.from_pretrained(tiny_talker, device="cpu")


@pytest.fixture(scope="module")
def speech(tiny_corpus):
    from thunder3d.data.clip import load_clip

    return np.concatenate([load_clip(tiny_corpus, "syn000000").audio, load_clip(tiny_corpus, "syn000001").audio])


def _stream(animator, wav, chunk, config=None, **kw):
    s = Stream(animator, config or StreamConfig(), **kw)
    parts = [s.push(wav[i:i + chunk]) for i in range(0, wav.size, chunk)]
    return np.concatenate(parts + [s.end()]), s


def test_frames_do_not_depend_on_the_chunking(animator, speech, one_thread):
    a, s = _stream(animator, speech, 320, seed=3)
    b, _ = _stream(animator, speech, 7777, seed=3)
    c, _ = _stream(animator, speech, speech.size, seed=3)
    assert a.shape == (round(speech.size / 640), len(animator.names)) and s.sent == a.shape[0]
    assert np.array_equal(a, b) and np.array_equal(a, c) and np.isfinite(a).all()
    d, _ = _stream(animator, speech, 320, seed=4)
    assert not np.array_equal(a, d)  # another seed, another sample


def test_pcm16_bytes_and_other_rates(animator, speech, one_thread):
    pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2")
    s = Stream(animator, seed=0)
    got = np.concatenate([s.push(pcm[i:i + 999].tobytes(), pcm16=True) for i in range(0, pcm.size, 999)] + [s.end()])
    ref, _ = _stream(animator, pcm.astype(np.float32) / 32768.0, 640, seed=0)
    assert np.array_equal(got, ref)
    from scipy.signal import resample_poly

    at_44k = resample_poly(speech, 441, 160).astype(np.float32)
    x, _ = _stream(animator, at_44k, 1000, sample_rate=44100, seed=0)
    y, _ = _stream(animator, at_44k, 4410 * 3, sample_rate=44100, seed=0)
    assert np.array_equal(x, y) and x.shape[0] == round(at_44k.size / 44100 * 25)


def test_a_frame_never_hears_beyond_the_lookahead(animator, speech, one_thread):
    config = StreamConfig(lookahead_ms=80, block=2)
    cut = 40 * 640  # the first 40 frames of audio are shared
    other = speech.copy()
    other[cut:] = np.random.default_rng(0).normal(0, 0.1, other.size - cut)
    s1, s2 = Stream(animator, config, seed=1), Stream(animator, config, seed=1)
    a, b = s1.push(speech[:cut]), s2.push(other[:cut])
    assert len(a) == 38  # blocks [n, n + 2) while n + 2 + 2 <= 40: n = 0, 2, ..., 36
    assert np.array_equal(a, b)
    rest_a, rest_b = s1.push(speech[cut:]), s2.push(other[cut:])
    assert not np.array_equal(rest_a, rest_b)  # later frames do hear the new audio


def test_end_pads_and_counts_like_the_contract(animator, speech, one_thread):
    for seconds in (0.03, 0.05, 0.5, 1.01):
        wav = speech[: int(seconds * 16000)]
        out, s = _stream(animator, wav, 500)
        assert out.shape[0] == round(wav.size / 640) == s.sent
    s = Stream(animator)
    s.end()
    with pytest.raises(ThunderError, match="ended"):
        s.push(speech[:640])


def test_bad_input_and_settings_are_clear(animator, speech):
    with pytest.raises(ConfigError, match="lookahead_ms"):
        StreamConfig(lookahead_ms=-1)
    with pytest.raises(ConfigError, match="block"):
        StreamConfig(block=0)
    with pytest.raises(AudioError, match="sample_rate"):
        Stream(animator, sample_rate=100)
    with pytest.raises(ThunderError, match="emotion"):
        Stream(animator, emotion="bored")
    s = Stream(animator)
    with pytest.raises(AudioError, match="2-byte"):
        s.push(b"abc", pcm16=True)
    with pytest.raises(AudioError, match="non-finite"):
        s.push(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(AudioError, match="mono float"):
        s.push(np.zeros((2, 2), dtype=np.float32))


def test_a_phone_reading_model_cannot_stream(animator):
    from types import SimpleNamespace

    from thunder3d.models.talker import TalkerModel

    config = dict(animator.model.config)
    config["audio"] = {"kind": "hybrid", "out_dim": animator.model.audio_dim, "hidden": 16, "layers": 1}
    hybrid = SimpleNamespace(model=TalkerModel(config), path="hybrid-run")
    assert hybrid.model.uses_phones
    with pytest.raises(ThunderError, match="cannot be streamed"):
        Stream(hybrid)
