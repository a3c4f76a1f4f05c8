"""Loading, validating, streaming and saving audio, on real files written here."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from thunder3d.audio import (
    audio_info,
    is_silent,
    iter_audio_blocks,
    load_audio,
    save_audio,
    to_mono_16k,
)
from thunder3d.errors import AudioError

# most tests here use a tone, which thunder3d warns is not speech (tested below, where it is wanted)
pytestmark = pytest.mark.filterwarnings("ignore:.*steady tone.*not speech:UserWarning")

TONE_HZ = 1000.0
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def tone_and_noise(sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A 1 kHz tone (amplitude 0.5) plus noise at -40 dB on every channel: ``[N, channels]`` float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    tone = 0.5 * np.sin(2 * np.pi * TONE_HZ * t)
    return np.stack([tone + 0.005 * rng.standard_normal(t.size) for _ in range(channels)], axis=1)


def chirp_and_noise(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """A 100 Hz .. 0.45 sr linear sweep plus noise: ``[N]`` float64, speech-like broadband content."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    f1 = 0.45 * sr
    phase = 2 * np.pi * (100 * t + (f1 - 100) * t**2 / (2 * seconds))
    return 0.4 * np.sin(phase) + 0.02 * rng.standard_normal(t.size)


def peak_hz(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(wav.size)))
    return float(np.argmax(spectrum)) * sr / wav.size


FILES = [  # (sample rate, channels, extension, subtype)
    (44100, 2, "wav", "PCM_16"),
    (48000, 1, "wav", "FLOAT"),
    (8000, 1, "wav", "PCM_16"),
    (22050, 2, "flac", "PCM_24"),
    (32000, 1, "ogg", "VORBIS"),
    (16000, 1, "wav", "PCM_32"),
    pytest.param(
        44100, 2, "mp3", "MPEG_LAYER_III",
        marks=pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without mp3"),
    ),
]


@pytest.mark.parametrize("sr, channels, ext, subtype", FILES)
def test_load_any_rate_and_format(tmp_path, sr, channels, ext, subtype):
    path = tmp_path / f"clip.{ext}"
    seconds = 1.0
    sf.write(path, tone_and_noise(sr, seconds, channels), sr, subtype=subtype)

    wav = load_audio(path)

    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - seconds * 16000) <= 1
    assert peak_hz(wav, 16000) == pytest.approx(TONE_HZ, abs=1.0)
    # level is kept: tone RMS 0.5 / sqrt(2) (edges of the filter aside)
    assert np.sqrt(np.mean(wav[800:-800] ** 2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.02)


def test_stereo_is_channel_mean(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = chirp_and_noise(16000, 0.5, seed=1), chirp_and_noise(16000, 0.5, seed=2)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")

    np.testing.assert_allclose(load_audio(path), ((left + right) / 2).astype(np.float32), atol=1e-7)


def test_resampling_is_polyphase_quality(tmp_path):
    # 44.1 kHz -> 16 kHz: a 6 kHz tone survives, a 10 kHz tone (above the new Nyquist) is removed
    sr, t = 44100, np.arange(44100) / 44100
    in_band, out_band = 0.3 * np.sin(2 * np.pi * 6000 * t), 0.3 * np.sin(2 * np.pi * 10000 * t)
    kept = load_audio((in_band, sr))[400:-400]
    removed = load_audio((out_band, sr))[400:-400]
    assert np.sqrt(np.mean(kept**2)) == pytest.approx(0.3 / math.sqrt(2), rel=0.01)
    assert np.sqrt(np.mean(removed**2)) < 1e-3


def test_arrays_convert_like_files(tmp_path):
    data = (tone_and_noise(44100, 0.5, channels=2) * 32767).astype(np.int16)
    path = tmp_path / "clip.wav"
    sf.write(path, data, 44100, subtype="PCM_16")

    from_file = load_audio(path)
    np.testing.assert_allclose(load_audio((data, 44100)), from_file, atol=1e-6)
    np.testing.assert_allclose(to_mono_16k(data, 44100), from_file, atol=1e-6)
    np.testing.assert_array_equal(to_mono_16k(data[:, 0], 16000), data[:, 0] / np.float32(32768))


def test_array_errors_are_clear():
    with pytest.raises(AudioError, match="channels-first"):
        to_mono_16k(np.zeros((2, 16000), np.float32), 16000)
    with pytest.raises(AudioError, match="non-finite"):
        to_mono_16k(np.full(16000, np.inf, np.float32), 16000)
    with pytest.raises(AudioError, match="sample rate"):
        to_mono_16k(np.zeros(16000, np.float32), 0)


def test_float_overs_are_kept_and_silence_is_valid(tmp_path):
    loud = np.full(16000, 1.5, np.float32)
    assert load_audio((loud, 16000)).max() == pytest.approx(1.5)

    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    wav = load_audio(path)
    assert is_silent(wav)
    quiet = tone_and_noise(16000, 1.0)[:, 0] * 1e-3  # about -69 dBFS
    assert is_silent(quiet)
    assert not is_silent(quiet, threshold_db=-75)
    assert not is_silent(quiet * 1e3)


def test_sample_rates_below_8_khz_are_refused_before_decoding(tmp_path):
    path = tmp_path / "one_hertz.wav"
    sf.write(path, np.zeros(4, np.float32), 1)  # a 1 Hz "recording": 4 s of nothing
    for read in (audio_info, load_audio, lambda p: next(iter_audio_blocks(p, 60.0))):
        with pytest.raises(AudioError, match=r"sample rate 1 Hz is too low for speech; at least 8000 Hz") as err:
            read(path)
        assert str(path) in str(err.value)
    sf.write(tmp_path / "phone.wav", chirp_and_noise(7999, 0.5), 7999)
    with pytest.raises(AudioError, match="7999 Hz is too low"):
        load_audio(tmp_path / "phone.wav")
    with pytest.raises(AudioError, match="audio array: sample rate 4000 Hz"):
        to_mono_16k(np.zeros(4000, np.float32), 4000)
    assert load_audio((chirp_and_noise(8000, 0.5), 8000)).size == 8000  # 8 kHz (telephone) is fine


def test_a_steady_tone_warns_once_and_is_still_used(tmp_path):
    path = tmp_path / "beep.wav"
    sf.write(path, tone_and_noise(16000, 2.0)[:, 0], 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"beep\.wav: this is a steady tone at about 1000 Hz, not speech; "
                                         r"it is used as it is") as record:
        wav = load_audio(path)
    assert len(record) == 1
    np.testing.assert_array_equal(wav, sf.read(path, dtype="float32")[0])  # unchanged
    with pytest.warns(UserWarning, match="steady tone") as record:
        blocks = list(iter_audio_blocks(path, block_seconds=0.5))
    assert len(blocks) == 4 and len(record) == 1  # the first block is checked, not every block
    with pytest.warns(UserWarning, match="audio array: this is a steady tone at about 220 Hz"):
        to_mono_16k(0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000), 16000)


def test_samples_far_beyond_full_scale_warn(tmp_path):
    # int16 PCM converted to float without scaling, then divided by 1024: samples up to +-32
    pcm = chirp_and_noise(16000, 1.0) * 32767 / 1024
    path = tmp_path / "unscaled.wav"
    sf.write(path, pcm.astype(np.float32), 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"unscaled\.wav: samples reach 1[0-9.]+, far beyond full scale \(1\.0\)"):
        wav = load_audio(path)
    assert np.abs(wav).max() > 10  # kept as it is
    garbage = np.random.default_rng(0).choice([-32.0, 32.0], 16000)
    with pytest.warns(UserWarning, match="samples reach 32, far beyond full scale"):
        to_mono_16k(garbage, 16000)


def _speech_files(tmp_path) -> list[Path]:
    from thunder3d.audio.tts import synthesize

    files = []
    for i, (text, voice) in enumerate([("Hello! I am a talking head, and I can speak along with any voice.", "en-us"),
                                       ("Mama made a pie.", "en-gb"), ("Who knew you would move to Peru?", "en-us+f3"),
                                       ("Bob bought a big map of Paris.", "en-gb-scotland+m3")]):
        files.append(tmp_path / f"speech{i}.wav")
        save_audio(files[-1], synthesize(text, voice).wav)
    suffixes = (".wav", ".flac", ".ogg", ".mp3", ".raw", ".sph")
    if LIBRIVOX.is_dir():  # real recordings, where the pocketsphinx test data is installed
        files += sorted(p for p in LIBRIVOX.rglob("*") if p.suffix in suffixes and p.suffix != ".raw")[:3]
    return files


def test_speech_silence_and_noise_do_not_warn(tmp_path):
    files = _speech_files(tmp_path)
    sf.write(tmp_path / "silence.wav", np.zeros(32000, np.float32), 16000)
    sf.write(tmp_path / "chirp.wav", chirp_and_noise(44100, 2.0), 44100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        for path in [*files, tmp_path / "silence.wav", tmp_path / "chirp.wav"]:
            assert next(iter_audio_blocks(path, 60.0)).size > 0  # the first block, as the animator reads
            if audio_info(path).duration < 120:
                assert load_audio(path).size > 0
        to_mono_16k(np.zeros(16000, np.float32), 16000)
        to_mono_16k(0.1 * np.random.default_rng(0).standard_normal(16000), 16000)  # noise
        to_mono_16k(np.full(16000, 1.5, np.float32), 16000)  # overs within 6 dB are not flagged


def _make_bad_file(tmp_path, kind: str):
    """Create one kind of unusable input and return its path."""
    good = tmp_path / "good.wav"
    sf.write(good, tone_and_noise(16000, 0.5)[:, 0], 16000, subtype="PCM_16")
    path = tmp_path / f"{kind}.wav"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not audio\n" * 20)
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:20])
    elif kind == "no_samples":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif kind == "nan":
        data = tone_and_noise(16000, 0.5)[:, 0].astype(np.float32)
        data[1000] = np.nan
        sf.write(path, data, 16000, subtype="FLOAT")
    elif kind == "too_short":
        sf.write(path, tone_and_noise(16000, 0.010)[:, 0], 16000)
    return path  # "missing": never created


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "not found"),
        ("directory", "directory"),
        ("empty", "empty"),
        ("text", "cannot read"),
        ("truncated", "cannot read"),
        ("no_samples", "no audio samples"),
        ("nan", "non-finite"),
        ("too_short", "10.0 ms"),
    ],
)
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, kind, message):
    path = _make_bad_file(tmp_path, kind)
    with pytest.raises(AudioError, match=message) as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_truncated_data_with_intact_header_still_loads(tmp_path):
    path = tmp_path / "half.wav"
    sf.write(path, tone_and_noise(16000, 1.0)[:, 0], 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 2 * 8000])  # header + first half of the samples
    assert load_audio(path).size == 8000


def test_max_seconds(tmp_path):
    path = tmp_path / "clip.flac"
    sf.write(path, tone_and_noise(16000, 2.0)[:, 0], 16000)
    assert load_audio(path, max_seconds=2.0).size == 32000
    with pytest.raises(AudioError, match=r"2\.00 s long.*1\.5 s") as err:
        load_audio(path, max_seconds=1.5)
    assert str(path) in str(err.value)


def test_audio_info_reads_the_header(tmp_path):
    path = tmp_path / "clip.flac"
    sf.write(path, tone_and_noise(44100, 1.5, channels=2), 44100, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (44100, 2, 66150)
    assert (info.format, info.subtype) == ("FLAC", "PCM_24")
    assert info.duration == pytest.approx(1.5)
    assert info.path == str(path)


@pytest.mark.parametrize(
    "sr, channels, ext", [(44100, 2, "wav"), (48000, 1, "wav"), (22050, 1, "flac"), (16000, 1, "wav"),
                          (8000, 1, "wav"), (44100, 2, "ogg")]
)
def test_streamed_blocks_match_whole_file(tmp_path, sr, channels, ext):
    path = tmp_path / f"long.{ext}"
    data = np.stack([chirp_and_noise(sr, 5.0, seed=c) for c in range(channels)], axis=1)
    sf.write(path, data, sr)

    blocks = list(iter_audio_blocks(path, block_seconds=1.3))
    whole = load_audio(path)

    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert len({b.size for b in blocks[:-1]}) == 1 and blocks[0].size >= 1.3 * 16000
    streamed = np.concatenate(blocks)
    assert streamed.size == whole.size
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_streaming_validates(tmp_path):
    path = tmp_path / "nan.wav"
    data = chirp_and_noise(16000, 3.0).astype(np.float32)
    data[40000] = np.nan
    sf.write(path, data, 16000, subtype="FLOAT")
    blocks = iter_audio_blocks(path, block_seconds=1.0)
    assert next(blocks).size == 16000  # the first block is clean
    with pytest.raises(AudioError, match="non-finite"):
        list(blocks)
    with pytest.raises(AudioError, match="ms long"):
        next(iter_audio_blocks(_make_bad_file(tmp_path, "too_short"), block_seconds=1.0))


def test_save_round_trip_pcm16(tmp_path):
    wav = chirp_and_noise(16000, 1.0).astype(np.float32)
    path = tmp_path / "out" / "clip.wav"
    save_audio(path, wav)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_allclose(load_audio(path), wav, atol=1 / 32768)
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.wav"]


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "clip.wav"
    save_audio(path, np.zeros(16000, np.float32))
    before = path.read_bytes()

    def crash(file, *args, **kwargs):
        with open(file, "wb") as f:
            f.write(b"RIFF partial")
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        save_audio(path, np.ones(16000, np.float32) * 0.5)
    with pytest.raises(AudioError, match="non-finite"):
        save_audio(path, np.full(16000, np.nan, np.float32))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clip.wav"]
