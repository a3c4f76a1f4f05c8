"""The clip on disk: round trips, atomic writes, validation errors, manifest."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from thunder3d.audio.phones import Phone
from thunder3d.data.clip import (
    EMOTIONS,
    NPZ_KEYS,
    Clip,
    DataError,
    append_manifest,
    assign_split,
    clip_exists,
    clip_paths,
    corpus_clips,
    load_clip,
    manifest_entry,
    normalize_emotion,
    read_manifest,
    rebuild_manifest,
    save_clip,
    validate_clip,
    write_manifest,
    write_npz,
)


def make_clip(clip_id: str = "spk1_0001", frames: int = 50, num_coeffs: int = 6, seed: int = 0,
              **fields) -> Clip:
    """A clip with a tone-plus-noise voice and smooth random motion."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    knots = rng.standard_normal((frames // 10 + 2, num_coeffs))
    coeffs = np.stack([np.interp(np.arange(frames) / 10, np.arange(len(knots)), knots[:, c])
                       for c in range(num_coeffs)], axis=1)
    defaults = dict(
        id=clip_id, audio=audio, coeffs=coeffs, coeff_names=[f"c{i}" for i in range(num_coeffs)],
        rig="arkit",
        phones=[Phone(0.0, 0.4, "SIL"), Phone(0.4, 0.9, "AA"), Phone(0.9, 1.2, "M"),
                Phone(1.2, frames / 25, "SIL")],
        emotion="happy", intensity=2, style="spk1", voice="en-us", text="a test clip",
        head_rotation=0.05 * coeffs[:, :3], shape=rng.standard_normal(10), split="train",
        meta={"generator": "test", "seed": seed},
    )
    defaults.update(fields)
    return Clip(**defaults)


def test_round_trip_float_is_bit_exact(tmp_path):
    clip = make_clip()
    save_clip(tmp_path, clip, subtype="FLOAT")
    assert clip_exists(tmp_path, clip.id)
    back = load_clip(tmp_path, clip.id)
    for name in ("audio", "coeffs", "head_rotation", "shape"):
        a, b = getattr(clip, name), getattr(back, name)
        assert a.dtype == b.dtype == np.float32
        assert a.tobytes() == b.tobytes(), name
    for name in ("id", "coeff_names", "rig", "fps", "phones", "emotion", "intensity", "style",
                 "voice", "text", "split", "meta"):
        assert getattr(back, name) == getattr(clip, name), name


def test_round_trip_pcm16_and_same_bytes(tmp_path):
    clip = make_clip()
    save_clip(tmp_path / "a", clip)
    back = load_clip(tmp_path / "a", clip.id)
    assert np.abs(back.audio - clip.audio).max() <= 1 / 32768 + 1e-7
    assert back.coeffs.tobytes() == clip.coeffs.tobytes()
    save_clip(tmp_path / "b", back)  # re-saving the loaded clip gives the same files
    for a, b in zip(clip_paths(tmp_path / "a", clip.id), clip_paths(tmp_path / "b", clip.id)):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_optional_fields_absent(tmp_path):
    clip = make_clip(phones=None, emotion=None, intensity=None, style=None, voice=None, text=None,
                     head_rotation=None, shape=None, split=None, meta={})
    save_clip(tmp_path, clip)
    back = load_clip(tmp_path, clip.id)
    assert back.phones is None and back.emotion is None and back.head_rotation is None
    assert back.meta == {} and back.split is None
    assert set(np.load(clip_paths(tmp_path, clip.id)[1]).files) == {"coeffs", "fps", "rig",
                                                                     "coeff_names", "version"}


def test_failed_write_leaves_no_npz(tmp_path, monkeypatch):
    clip = make_clip()
    calls = {"n": 0}
    real = np.lib.format.write_array

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # fail in the middle of the npz
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        save_clip(tmp_path, clip)
    assert not clip_exists(tmp_path, clip.id)
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob(".*"))  # no temporaries
    with pytest.raises(DataError, match=clip.id):
        load_clip(tmp_path, clip.id)


def test_failed_overwrite_keeps_the_old_clip(tmp_path, monkeypatch):
    save_clip(tmp_path, make_clip(seed=1))
    before = clip_paths(tmp_path, "spk1_0001")[1].read_bytes()

    def failing(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(KeyboardInterrupt):
        save_clip(tmp_path, make_clip(seed=2))
    assert clip_paths(tmp_path, "spk1_0001")[1].read_bytes() == before


BAD_CLIPS = {
    "length mismatch": dict(audio=np.zeros(50 * 640 + 641, np.float32)),
    "NaN coeffs": dict(coeffs=np.full((50, 6), np.nan)),
    "inf audio": dict(audio=np.full(50 * 640, np.inf, np.float32)),
    "fps": dict(fps=30),
    "empty coeffs": dict(coeffs=np.zeros((0, 6)), head_rotation=None, audio=np.zeros(640, np.float32),
                         phones=None),
    "names": dict(coeff_names=["a", "b"]),
    "duplicate names": dict(coeff_names=["a"] * 6),
    "head rotation shape": dict(head_rotation=np.zeros((49, 3))),
    "emotion": dict(emotion="bored"),
    "split": dict(split="holdout"),
    "intensity": dict(intensity=-1),
    "phones": dict(phones=[Phone(0.5, 0.2, "AA")]),
    "rig": dict(rig=""),
}


@pytest.mark.parametrize("case", sorted(BAD_CLIPS))
def test_validation_errors_name_the_clip(tmp_path, case):
    clip = make_clip("bad_clip_7", **BAD_CLIPS[case])
    with pytest.raises(DataError, match="bad_clip_7"):
        save_clip(tmp_path, clip)
    assert not clip_exists(tmp_path, "bad_clip_7")


@pytest.mark.parametrize("extra", [-640, 640])
def test_audio_within_one_frame_is_accepted(tmp_path, extra):
    """Up to one frame of audio more or less than the motion is tolerated, so validation must not raise."""
    clip = make_clip(audio=np.zeros(50 * 640 + extra, np.float32))
    assert validate_clip(clip) is None
    save_clip(tmp_path, clip)  # saving validates too; the audio is stored as given, not trimmed
    back = load_clip(tmp_path, clip.id)
    assert back.audio.size == 50 * 640 + extra and back.coeffs.shape == (50, 6)
    # one sample beyond the tolerance is refused
    with pytest.raises(DataError, match="audio/motion length mismatch"):
        validate_clip(make_clip(audio=np.zeros(50 * 640 + extra + (1 if extra > 0 else -1), np.float32)))


def test_bad_ids_are_refused(tmp_path):
    for bad in ("", "../escape", "a/b", ".hidden"):
        with pytest.raises(DataError, match="clip ids"):
            save_clip(tmp_path, make_clip(bad))


def test_unknown_npz_key_names_the_clip(tmp_path):
    clip = make_clip()
    save_clip(tmp_path, clip)
    npz = clip_paths(tmp_path, clip.id)[1]
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["mystery"] = np.zeros(3)
    write_npz(npz, arrays)
    with pytest.raises(DataError, match=r"spk1_0001.*unknown npz keys \['mystery'\]"):
        load_clip(tmp_path, clip.id)


def test_npz_on_disk_is_checked_on_load(tmp_path):
    clip = make_clip()
    save_clip(tmp_path, clip)
    npz = clip_paths(tmp_path, clip.id)[1]
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    write_npz(npz, {**arrays, "fps": np.array(30.0)})
    with pytest.raises(DataError, match="spk1_0001.*unsupported fps"):
        load_clip(tmp_path, clip.id)
    npz.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="spk1_0001.*cannot read npz"):
        load_clip(tmp_path, clip.id)


def test_npz_is_plain_zip_with_fixed_dates(tmp_path):
    save_clip(tmp_path, make_clip())
    with zipfile.ZipFile(clip_paths(tmp_path, "spk1_0001")[1]) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {n[:-4] for n in zf.namelist()} <= set(NPZ_KEYS)


def test_load_without_audio(tmp_path):
    save_clip(tmp_path, make_clip())
    clip = load_clip(tmp_path, "spk1_0001", audio=False)
    assert clip.audio.size == 0 and clip.coeffs.shape == (50, 6)


def test_manifest_round_trip(tmp_path):
    clips = [make_clip(f"c{i}", split=s, seed=i) for i, s in enumerate(["train", "val", "test", "train"])]
    for clip in clips:
        save_clip(tmp_path, clip)
    entries = [manifest_entry(c) for c in reversed(clips)]
    write_manifest(tmp_path, entries)
    back = read_manifest(tmp_path)
    assert back == sorted(entries, key=lambda e: e["id"])
    assert back[0]["duration"] == 2.0 and back[0]["num_frames"] == 50
    # one JSON object per line, in id order, holding exactly what read_manifest gives back
    assert [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()] == back
    assert corpus_clips(tmp_path) == ["c0", "c1", "c2", "c3"]
    assert corpus_clips(tmp_path, "train") == ["c0", "c3"]
    append_manifest(tmp_path, [{**entries[0], "text": "changed"}, {"id": "c9", "split": "val"}])
    assert [e["id"] for e in read_manifest(tmp_path)] == ["c0", "c1", "c2", "c3", "c9"]
    assert read_manifest(tmp_path)[3]["text"] == "changed"
    with pytest.raises(DataError, match="twice"):
        write_manifest(tmp_path, [{"id": "x"}, {"id": "x"}])


def test_corpus_without_manifest_and_rebuild(tmp_path):
    for i, split in enumerate(["train", "val"]):
        save_clip(tmp_path, make_clip(f"c{i}", split=split))
    assert corpus_clips(tmp_path, "val") == ["c1"]
    rebuild_manifest(tmp_path)
    assert [e["split"] for e in read_manifest(tmp_path)] == ["train", "val"]


def test_missing_or_empty_corpus(tmp_path):
    with pytest.raises(DataError, match="not found"):
        corpus_clips(tmp_path / "nope")
    with pytest.raises(DataError, match="no clips"):
        corpus_clips(tmp_path)
    with pytest.raises(DataError, match="manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text("")
    with pytest.raises(DataError, match="empty"):
        corpus_clips(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"id": "a", "split": "train"}\n')
    with pytest.raises(DataError, match="no clips in split 'test'"):
        corpus_clips(tmp_path, "test")
    with pytest.raises(DataError, match="valid: train, val, test"):
        corpus_clips(tmp_path, "dev")
    (tmp_path / "manifest.jsonl").write_text("{broken\n")
    with pytest.raises(DataError, match="manifest.jsonl:1"):
        read_manifest(tmp_path)


def test_splits_are_deterministic_hashes():
    keys = [f"speaker{i}" for i in range(2000)]
    splits = [assign_split(k) for k in keys]
    assert splits == [assign_split(k) for k in keys]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.75 < share["train"] < 0.85 and 0.07 < share["val"] < 0.13
    assert assign_split("speaker0") == assign_split("speaker0", (0.8, 0.1, 0.1))
    with pytest.raises(DataError):
        assign_split("x", (0.5, 0.5, 0.5))


def test_emotion_spellings():
    assert normalize_emotion("Anger") == "angry" and normalize_emotion("surprise") == "surprised"
    assert [normalize_emotion(e) for e in EMOTIONS] == list(EMOTIONS)
    with pytest.raises(DataError, match="valid: neutral"):
        normalize_emotion("bored")
