"""Importers: FLAME parameter files and Live Link Face CSVs -> 25 fps clips."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.spatial.transform import Rotation

from thunder3d.data.clip import DataError, corpus_clips, load_clip, read_manifest
from thunder3d.data.import_livelink import (
    LIVELINK_NAMES,
    ROTATION_COLUMNS,
    read_livelink_csv,
    write_livelink_csv,
)
from thunder3d.data.importers import FORMATS, import_corpus, resample_rotations
from thunder3d.rigs.arkit import ARKIT_NAMES


def write_wav(path: Path, seconds: float, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * sr))) / sr
    sf.write(path, 0.2 * np.sin(2 * np.pi * 220 * t), sr)


def flame_params(frames: int, fps: float, num_exp: int = 50) -> dict[str, np.ndarray]:
    """Expression linear in time and a jaw opening about x with an angle linear in time."""
    t = np.arange(frames)[:, None] / fps
    slopes = np.linspace(-1, 1, num_exp)[None]
    jaw = np.zeros((frames, 3))
    jaw[:, 0] = 0.1 + 0.2 * t[:, 0]
    glob = np.zeros((frames, 3))
    glob[:, 1] = 0.05 * t[:, 0]
    return {"exp": slopes * t + 0.5, "jaw_pose": jaw, "global_pose": glob}


def check_flame_clip(clip, seconds: float, num_exp: int = 50) -> None:
    frames = int(round(seconds * 25))
    assert clip.coeffs.shape[0] == frames and clip.audio.size == frames * 640
    assert clip.rig == "flame" and clip.fps == 25
    assert clip.coeff_names[:num_exp + 3] == tuple(f"exp{i:03d}" for i in range(num_exp)) + (
        "jaw_rx", "jaw_ry", "jaw_rz")
    t = np.arange(frames)[:, None] / 25
    expected = np.linspace(-1, 1, num_exp)[None] * t + 0.5
    np.testing.assert_allclose(clip.coeffs[:, :num_exp], expected, atol=1e-5)
    np.testing.assert_allclose(clip.coeffs[:, num_exp], 0.1 + 0.2 * t[:, 0], atol=1e-5)
    np.testing.assert_allclose(clip.coeffs[:, num_exp + 1:num_exp + 3], 0, atol=1e-6)
    np.testing.assert_allclose(clip.head_rotation[:, 1], 0.05 * t[:, 0], atol=1e-6)


def test_formats_listed_in_errors(tmp_path):
    assert set(FORMATS) == {"flame", "livelink"}
    with pytest.raises(DataError, match="valid: flame, livelink"):
        import_corpus("bvh", tmp_path, tmp_path / "out", progress=False)


def test_flame_npz_at_30fps(tmp_path):
    src = tmp_path / "src"
    np.savez(src / "a.npz" if src.mkdir() is None else None, **flame_params(60, 30.0), fps=30)
    write_wav(src / "a.wav", 2.0, sr=44100)
    report = import_corpus("flame", src, tmp_path / "out", progress=False)
    assert report.imported == ["a"] and not report.skipped and not report.unpaired
    clip = load_clip(tmp_path / "out", "a")
    check_flame_clip(clip, 2.0)
    assert clip.meta["source_fps"] == 30.0 and clip.split in ("train", "val", "test")
    assert read_manifest(tmp_path / "out")[0]["rig"] == "flame"


def test_flame_pkl_at_60fps_full_pose(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    p = flame_params(150, 60.0, num_exp=100)
    pose = np.zeros((150, 15))
    pose[:, 0:3], pose[:, 6:9] = p["global_pose"], p["jaw_pose"]
    pose[:, 3] = 0.01  # neck
    pose[:, 9:15] = 0.02  # eyes
    data = {"expression_params": p["exp"], "pose": pose, "betas": np.ones((150, 300)),
            "mocap_framerate": np.array(60.0), "trans": np.zeros((150, 3))}
    with open(src / "take.pkl", "wb") as fh:
        pickle.dump(data, fh)
    write_wav(src / "take.wav", 2.5)
    import_corpus("flame", src, tmp_path / "out", progress=False)
    clip = load_clip(tmp_path / "out", "take")
    check_flame_clip(clip, 2.5, num_exp=100)
    assert clip.coeff_names[103:] == ("neck_rx", "neck_ry", "neck_rz", "leye_rx", "leye_ry",
                                      "leye_rz", "reye_rx", "reye_ry", "reye_rz")
    np.testing.assert_allclose(clip.coeffs[:, 103], 0.01, atol=1e-6)
    np.testing.assert_allclose(clip.coeffs[:, 106:], 0.02, atol=1e-6)
    assert clip.shape.shape == (300,)


VARIANTS = {
    "expression+jaw": lambda p: {"expression": p["exp"], "jaw": p["jaw_pose"], "rot": p["global_pose"]},
    "expr+pose6": lambda p: {"expr": p["exp"],
                             "posecode": np.concatenate([p["global_pose"], p["jaw_pose"]], 1)},
    "nested": lambda p: {"flame": {"exp_params": p["exp"], "jaw_params": p["jaw_pose"],
                                   "global_orient": p["global_pose"][:, None, :]},
                         "frame_rate": np.array(30)},
    "batched": lambda p: {"expcode": p["exp"][None], "jaw_pose": p["jaw_pose"][None],
                          "root_orient": p["global_pose"][None], "shapecode": np.zeros(100)},
    "per-frame dicts": lambda p: [{"expcode": e[None], "posecode": np.concatenate([g, j])[None],
                                   "cam": np.zeros(3)}
                                  for e, j, g in zip(p["exp"], p["jaw_pose"], p["global_pose"])],
}


@pytest.mark.parametrize("variant,ext", [(v, e) for v in sorted(VARIANTS) for e in (".npz", ".pkl")
                                         if not (v == "per-frame dicts" and e == ".npz")])
def test_flame_key_variants(tmp_path, variant, ext):
    data = VARIANTS[variant](flame_params(60, 30.0))
    src = tmp_path / "src"
    src.mkdir()
    if ext == ".npz":
        flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
        for v in data.values():
            flat.update(v if isinstance(v, dict) else {})
        np.savez(src / "v.npz", **flat)
    else:
        (src / "v.pkl").write_bytes(pickle.dumps(data))
    write_wav(src / "v.wav", 2.0)
    import_corpus("flame", src, tmp_path / "out", progress=False, fps=30)
    check_flame_clip(load_clip(tmp_path / "out", "v"), 2.0)


def _flame_src(tmp_path: Path, clips: dict[str, dict], seconds: float = 2.0) -> Path:
    src = tmp_path / "src"
    for name, data in clips.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(src / f"{name}.npz", **data)
        write_wav(src / f"{name}.wav", seconds)
    return src


def test_flame_bad_input_names_the_clip(tmp_path):
    good = {**flame_params(50, 25.0)}
    nan = {**good, "exp": np.where(np.arange(50)[:, None] == 7, np.nan, good["exp"])}
    cases = {
        "unknown": ({**good, "wobble": np.zeros(3)}, r"unknown keys \['wobble'\]"),
        "nan": (nan, "NaN"),
        "fps0": ({**good, "fps": np.array(0)}, "unsupported fps"),
        "fps_absurd": ({**good, "fps": np.array(5000.0)}, "unsupported fps"),
        "short": ({k: v[:30] for k, v in good.items()}, "length mismatch"),
        "nojaw": ({"exp": good["exp"]}, "no jaw pose"),
        "twice": ({**good, "expression": good["exp"]}, "both 'exp' and 'expression'"),
        "ragged": ({**good, "jaw_pose": good["jaw_pose"][:40]}, "differ in length"),
    }
    for name, (data, message) in cases.items():
        src = _flame_src(tmp_path / name, {name: data})
        with pytest.raises(DataError, match=f"clip '{name}'.*{message}"):
            import_corpus("flame", src, tmp_path / name / "out", progress=False)


def test_skip_bad_lists_the_skipped(tmp_path):
    good = flame_params(50, 25.0)
    src = _flame_src(tmp_path, {"ok1": good, "ok2": good, "bad": {**good, "exp": good["exp"] * np.nan},
                                "odd": {**good, "extra_key": np.ones(2)}})
    (src / "lonely.npz").write_bytes((src / "ok1.npz").read_bytes())
    write_wav(src / "silent_partner.wav", 1.0)
    report = import_corpus("flame", src, tmp_path / "out", skip_bad=True, progress=False)
    assert report.imported == ["ok1", "ok2"]
    assert [cid for cid, _ in report.skipped] == ["bad", "odd"]
    assert "NaN" in report.skipped[0][1] and "extra_key" in report.skipped[1][1]
    assert sorted(Path(p).name for p, _ in report.unpaired) == ["lonely.npz", "silent_partner.wav"]
    assert "skipped 2 bad clip(s)" in report.summary()
    assert corpus_clips(tmp_path / "out") == ["ok1", "ok2"]
    assert not (tmp_path / "out" / "bad.npz").exists()


def test_clips_before_an_error_are_in_the_manifest(tmp_path):
    good = flame_params(50, 25.0)
    src = _flame_src(tmp_path, {"a": {**good, "level": np.array("level_3"), "emotion": np.array("Anger")},
                                "b": {**good, "exp": good["exp"][:, :0]}})
    with pytest.raises(DataError, match="clip 'b'.*empty"):
        import_corpus("flame", src, tmp_path / "out", progress=False)
    assert [e["id"] for e in read_manifest(tmp_path / "out")] == ["a"]
    clip = load_clip(tmp_path / "out", "a")
    assert (clip.emotion, clip.intensity) == ("angry", 3)


def test_ignore_keys_and_num_expression(tmp_path):
    good = flame_params(50, 25.0)
    src = _flame_src(tmp_path, {"a": {**good, "extra_key": np.ones(2)}})
    import_corpus("flame", src, tmp_path / "out", progress=False, ignore_keys=["extra_key"],
                  num_expression=100)
    clip = load_clip(tmp_path / "out", "a")
    assert clip.coeffs.shape == (50, 103) and np.all(clip.coeffs[:, 50:100] == 0)
    with pytest.raises(DataError, match="unknown option.*valid: fps, num_expression"):
        import_corpus("flame", src, tmp_path / "out", progress=False, speed=2)


def test_trims_up_to_one_frame(tmp_path):
    src = _flame_src(tmp_path, {"a": flame_params(50, 25.0)}, seconds=2.0 - 0.03)
    import_corpus("flame", src, tmp_path / "out", progress=False)
    clip = load_clip(tmp_path / "out", "a")
    assert clip.coeffs.shape[0] == 49 and clip.audio.size == 49 * 640


def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    src = tmp_path / "src"
    src.mkdir()
    (src / "e.pkl").write_bytes(pickle.dumps({"exp": Evil()}))
    write_wav(src / "e.wav", 1.0)
    with pytest.raises(DataError, match="clip 'e'.*not allowed"):
        import_corpus("flame", src, tmp_path / "out", progress=False)


def test_empty_and_missing_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        import_corpus("flame", tmp_path / "nope", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        import_corpus("flame", tmp_path / "empty", tmp_path / "out", progress=False)
    write_wav(tmp_path / "wavs" / "x.wav", 1.0)
    with pytest.raises(DataError, match="no flame clips found"):
        import_corpus("flame", tmp_path / "wavs", tmp_path / "out", progress=False)


def test_folders_give_metadata_and_splits(tmp_path):
    good = flame_params(50, 25.0)
    src = _flame_src(tmp_path, {"M003/angry/level_2/001": good, "M003/neutral/level_1/002": good,
                                "test/W009/happy/level_3/003": good,
                                "M005/sad/level_1/004": {**good, "split": np.array("val")}})
    out = tmp_path / "out"
    report = import_corpus("flame", src, out, progress=False)
    assert report.imported == ["M003_angry_level_2_001", "M003_neutral_level_1_002",
                               "M005_sad_level_1_004", "test_W009_happy_level_3_003"]
    clip = load_clip(out, "M003_angry_level_2_001")
    assert (clip.emotion, clip.intensity, clip.style) == ("angry", 2, "M003")
    entries = {e["id"]: e for e in read_manifest(out)}
    assert entries["test_W009_happy_level_3_003"]["split"] == "test"
    assert entries["test_W009_happy_level_3_003"]["style"] == "W009"
    assert entries["M005_sad_level_1_004"]["split"] == "val"
    # three speakers: hashed by speaker, so both M003 clips share a split; reimport is identical
    assert entries["M003_angry_level_2_001"]["split"] == entries["M003_neutral_level_1_002"]["split"]
    import_corpus("flame", src, tmp_path / "again", progress=False)
    assert read_manifest(tmp_path / "again") == read_manifest(out)
    assert (out / "M003_angry_level_2_001.npz").read_bytes() == \
        (tmp_path / "again" / "M003_angry_level_2_001.npz").read_bytes()


def test_slerp_takes_the_short_arc():
    a = Rotation.from_euler("y", 170, degrees=True).as_rotvec()
    b = Rotation.from_euler("y", -170, degrees=True).as_rotvec()
    mid = resample_rotations(np.stack([a, b]), np.array([0.0, 1.0]), np.array([0.5]))
    assert abs(abs(Rotation.from_rotvec(mid[0]).as_euler("yxz", degrees=True)[0]) - 180) < 1e-3


# --------------------------------------------------------------------------- Live Link
def smooth_arkit(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    knots = rng.uniform(0, 1, (frames // 8 + 2, 52))
    x = np.arange(frames) / 8
    return np.stack([np.interp(x, np.arange(len(knots)), knots[:, c]) for c in range(52)], 1)


def test_livelink_write_read_round_trip(tmp_path):
    coeffs = smooth_arkit(40).astype(np.float32)
    head = np.stack([0.1 * np.sin(np.arange(40) / 5), 0.05 * np.cos(np.arange(40) / 7),
                     np.full(40, -0.02)], 1)
    write_livelink_csv(tmp_path / "a.csv", coeffs, fps=25, head_rotation=head)
    header = (tmp_path / "a.csv").read_text().splitlines()[0].split(",")
    assert header == ["Timecode", "BlendShapeCount", *LIVELINK_NAMES, *ROTATION_COLUMNS]
    assert len(header) == 2 + 61
    back, fps, head_back = read_livelink_csv(tmp_path / "a.csv")
    assert fps == 25 and back.dtype == np.float32
    assert np.array_equal(back, coeffs)
    np.testing.assert_allclose(head_back, head, atol=1e-6)
    write_livelink_csv(tmp_path / "b.csv", coeffs, fps=30)
    back, fps, head_back = read_livelink_csv(tmp_path / "b.csv")
    assert np.array_equal(back, coeffs) and fps == 30 and head_back is None


def _livelink_csv(path: Path, coeffs: np.ndarray, timecodes: list[str], head: np.ndarray) -> None:
    names = list(LIVELINK_NAMES) + list(ROTATION_COLUMNS)
    lines = [",".join(["Timecode", "BlendShapeCount", *names])]
    for tc, row, h in zip(timecodes, coeffs, head):
        values = list(row) + list(h) + [0.0] * 6
        lines.append(",".join([tc, "61", *(f"{v:.6f}" for v in values)]))
    path.write_text("\r\n".join(lines) + "\r\n")


@pytest.mark.parametrize("timecode_rate", [60, 30])
def test_livelink_60fps_to_25fps(tmp_path, timecode_rate):
    frames = 180  # 3 s at 60 fps, starting mid-second at 10:20:30 + 12 frames
    per = 60 // timecode_rate
    start = (10 * 3600 + 20 * 60 + 30) * 60 + 12 * per
    timecodes = []
    for i in range(frames):
        total = start + i  # in 1/60 s
        sec, sub = divmod(total, 60)
        ff = sub / per  # frame at the timecode rate, .5 sub-frames when it is 30
        timecodes.append(f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}:{int(ff):02d}"
                         f".{round((ff % 1) * 1000):03d}")
    t = np.arange(frames) / 60
    coeffs = np.clip(0.5 + 0.4 * np.sin(2 * np.pi * 0.7 * t[:, None] + np.arange(52)[None] / 9), 0, 1)
    yaw = 0.2 * t
    head = np.stack([yaw, np.zeros(frames), np.zeros(frames)], 1)
    src = tmp_path / "src"
    src.mkdir()
    _livelink_csv(src / "take1.csv", coeffs, timecodes, head)
    write_wav(src / "take1.wav", 3.0, sr=48000)

    native, fps, head_native = read_livelink_csv(src / "take1.csv")
    assert fps == 60 and native.shape == (180, 52)
    np.testing.assert_allclose(head_native[:, 1], yaw, atol=1e-5)  # yaw about +y

    import_corpus("livelink", src, tmp_path / "out", progress=False)
    clip = load_clip(tmp_path / "out", "take1")
    assert clip.rig == "arkit" and clip.coeff_names == ARKIT_NAMES
    assert clip.coeffs.shape == (75, 52) and clip.audio.size == 75 * 640
    t25 = np.arange(75) / 25
    expected = np.clip(0.5 + 0.4 * np.sin(2 * np.pi * 0.7 * t25[:, None] + np.arange(52)[None] / 9), 0, 1)
    np.testing.assert_allclose(clip.coeffs, expected, atol=2e-3)  # linear interpolation error
    np.testing.assert_allclose(clip.head_rotation[:, 1], 0.2 * t25, atol=1e-5)


def test_livelink_dropped_and_repeated_frames(tmp_path):
    coeffs = smooth_arkit(60).astype(np.float32)
    write_livelink_csv(tmp_path / "full.csv", coeffs, fps=60)
    lines = (tmp_path / "full.csv").read_text().splitlines()
    kept = lines[:11] + lines[12:21] + [lines[20]] + lines[21:]  # drop frame 10, repeat frame 19
    (tmp_path / "gappy.csv").write_text("\n".join(kept) + "\n")
    back, fps, _ = read_livelink_csv(tmp_path / "gappy.csv")
    assert fps == 60 and back.shape == (60, 52)
    np.testing.assert_allclose(back[9], coeffs[9])
    np.testing.assert_allclose(back[10], (coeffs[9] + coeffs[11]) / 2, atol=1e-6)
    np.testing.assert_allclose(back[11:], coeffs[11:])


def test_livelink_bad_files(tmp_path):
    coeffs = smooth_arkit(30).astype(np.float32)
    write_livelink_csv(tmp_path / "ok.csv", coeffs, fps=30)
    text = (tmp_path / "ok.csv").read_text()
    cases = {
        "unknown": (text.replace("TongueOut", "TongueWiggle"), r"unknown columns \['TongueWiggle'\]"),
        "nan": (text.replace(text.splitlines()[5].split(",")[4], "nan", 1), "NaN"),
        "ragged": (text + "00:00:09:00.000,52,1\n", "values for 54 columns"),
        "word": (text.replace(text.splitlines()[3].split(",")[3], "abc", 1), "not a number"),
        "timecode": (text.replace("00:00:00:03.000", "3 o'clock"), "malformed timecode"),
        "empty": ("", "empty"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / f"{name}.csv").write_text(content)
        with pytest.raises(DataError, match=f"{name}.csv.*{message}"):
            read_livelink_csv(tmp_path / f"{name}.csv")
    missing = "\n".join(",".join(line.split(",")[:-1]) for line in text.splitlines())
    (tmp_path / "missing.csv").write_text(missing)
    with pytest.raises(DataError, match=r"missing blendshape columns \['tongueOut'\]"):
        read_livelink_csv(tmp_path / "missing.csv")
    no_tc = "\n".join(",".join(line.split(",")[1:]) for line in text.splitlines())
    (tmp_path / "notc.csv").write_text(no_tc)
    with pytest.raises(DataError, match="pass the capture fps"):
        read_livelink_csv(tmp_path / "notc.csv")
    assert read_livelink_csv(tmp_path / "notc.csv", fps=30).fps == 30
    with pytest.raises(DataError, match="unsupported fps"):
        read_livelink_csv(tmp_path / "notc.csv", fps=-1)


def test_livelink_import_mismatch_names_the_clip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_livelink_csv(src / "s1.csv", smooth_arkit(100), fps=50)  # 2 s
    write_wav(src / "s1.wav", 3.0)
    with pytest.raises(DataError, match="clip 's1'.*length mismatch"):
        import_corpus("livelink", src, tmp_path / "out", progress=False)
    report = import_corpus("livelink", src, tmp_path / "out", progress=False, skip_bad=True)
    assert report.imported == [] and report.skipped[0][0] == "s1"
