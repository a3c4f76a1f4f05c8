"""ClipDataset windows, collate padding, phone labels and normalisation statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thunder3d.audio.phones import PHONES, Phone
from thunder3d.data.clip import Clip, DataError, load_clip, manifest_entry, save_clip, write_manifest
from thunder3d.data.dataset import PAD_PHONE, ClipDataset, Normalizer, collate, compute_stats

NAMES = ("jawOpen", "mouthClose", "mouthPucker", "eyeBlinkLeft", "tongueOut")
LABELS = ("AA", "M", "IY", "UW", "P", "S", "SIL", "B")


def synthetic_clip(clip_id: str, frames: int, seed: int, **fields) -> Clip:
    rng = np.random.default_rng(seed)
    t = np.arange(frames * 640) / 16000
    audio = (0.2 * np.sin(2 * np.pi * (120 + 40 * seed) * t)
             + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    x = np.arange(frames) / 25
    coeffs = 0.5 + 0.3 * np.sin(2 * np.pi * x[:, None] * rng.uniform(0.5, 2, 5) + rng.uniform(0, 6, 5))
    coeffs[:, 4] = 0.0  # tongueOut never moves: its std is floored
    bounds = np.concatenate([[0.0], np.sort(rng.uniform(0, frames / 25, 12)), [frames / 25]])
    phones = [Phone(float(a), float(b), LABELS[(i + seed) % len(LABELS)])
              for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a]
    return Clip(id=clip_id, audio=audio, coeffs=coeffs, coeff_names=NAMES, rig="arkit",
                phones=phones, **fields)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    specs = [  # id, frames, split, style, emotion, intensity
        ("a", 150, "train", "spk1", "happy", 2), ("b", 120, "train", "spk2", "angry", 3),
        ("c", 30, "train", "spk1", None, None), ("d", 200, "train", None, "sad", 1),
        ("e", 100, "val", "spk9", "neutral", 1), ("f", 110, "val", "spk2", None, None),
    ]
    clips = []
    for i, (cid, frames, split, style, emotion, intensity) in enumerate(specs):
        clip = synthetic_clip(cid, frames, i, split=split, style=style, emotion=emotion,
                              intensity=intensity)
        if cid == "d":
            clip.phones = None  # no phone labels: -100
        save_clip(root, clip, subtype="FLOAT")
        clips.append(clip)
    write_manifest(root, [manifest_entry(c) for c in clips])
    return root


def test_items_are_aligned_windows(corpus):
    ds = ClipDataset(corpus, "train", window_seconds=2.0)
    assert len(ds) == 4 and ds.window_frames == 50 and ds.coeff_names == NAMES
    for i in range(len(ds)):
        item = ds[i]
        clip = load_clip(corpus, item["id"])
        w = item["coeffs"].shape[0]
        assert item["audio"].shape == (w * 640,) and item["phones"].shape == (w,)
        assert item["mask"].all() and item["mask"].shape == (w,)
        s = item["start"]
        assert w == min(50, clip.num_frames) and 0 <= s <= clip.num_frames - w
        assert torch.equal(item["coeffs"], torch.from_numpy(clip.coeffs[s:s + w]))
        assert torch.equal(item["audio"], torch.from_numpy(clip.audio[s * 640:(s + w) * 640]))
    assert ds[2]["coeffs"].shape[0] == 30 and ds[2]["start"] == 0  # shorter than the window


def test_conditions(corpus):
    ds = ClipDataset(corpus, "train", window_seconds=2.0)
    assert ds.styles == ("spk1", "spk2")
    a, b, c, d = (ds[i] for i in range(4))
    assert (a["emotion"].item(), a["intensity"].item(), a["style"].item()) == (1, 2, 0)
    assert (b["emotion"].item(), b["intensity"].item(), b["style"].item()) == (6, 3, 1)
    assert (c["emotion"].item(), c["intensity"].item()) == (-1, 0)
    assert d["style"].item() == -1 and (d["phones"] == PAD_PHONE).all()
    val = ClipDataset(corpus, "val", window_seconds=2.0)
    assert [val[i]["style"].item() for i in range(2)] == [-1, 1]  # spk9 unseen in training


def test_phone_labels_follow_phone_times(corpus):
    ds = ClipDataset(corpus, "train", window_seconds=2.0)
    for i in (0, 1):
        item = ds[i]
        clip = load_clip(corpus, item["id"])
        for f, label in enumerate(item["phones"].tolist()):
            centre = (item["start"] + f + 0.5) / 25
            owner = [p.label for p in clip.phones if p.start <= centre < p.end]
            assert PHONES[label] == owner[0]


def test_windows_are_deterministic(corpus):
    one = ClipDataset(corpus, "train", window_seconds=2.0, seed=3)
    two = ClipDataset(corpus, "train", window_seconds=2.0, seed=3)
    starts = [one[i]["start"] for i in range(4)]
    assert starts == [two[i]["start"] for i in range(4)] == [one[i]["start"] for i in range(4)]
    draws = set()
    for epoch in range(6):
        one.set_epoch(epoch)
        draws.add(tuple(one[i]["start"] for i in range(4)))
    assert len(draws) > 1
    one.set_epoch(0)
    assert [one[i]["start"] for i in range(4)] == starts
    seeds = {tuple(ClipDataset(corpus, "train", window_seconds=2.0, seed=s)[i]["start"]
                   for i in range(4)) for s in range(4)}
    assert len(seeds) > 1


def test_windows_per_epoch(corpus):
    ds = ClipDataset(corpus, "train", window_seconds=2.0, windows_per_epoch=40, seed=1)
    assert len(ds) == 40
    ids = [ds[i]["id"] for i in range(40)]
    assert ids == [ds[i]["id"] for i in range(40)]
    assert ids.count("d") > ids.count("c")  # drawn in proportion to length
    with pytest.raises(IndexError):
        ds[40]


def test_collate_pads_and_masks(corpus):
    ds = ClipDataset(corpus, "train", window_seconds=2.0)
    batch = collate([ds[2], ds[0]])  # 30 frames, then 50
    assert batch["audio"].shape == (2, 50 * 640) and batch["coeffs"].shape == (2, 50, 5)
    assert batch["mask"][0, :30].all() and not batch["mask"][0, 30:].any() and batch["mask"][1].all()
    assert (batch["phones"][0, 30:] == PAD_PHONE).all() and (batch["phones"][0, :30] != PAD_PHONE).all()
    for row, item in enumerate((ds[2], ds[0])):  # the valid frames are the items' own, unchanged
        n = item["coeffs"].shape[0]
        for key in ("phones", "coeffs", "mask"):
            assert torch.equal(batch[key][row, :n], item[key]), key
        assert torch.equal(batch["audio"][row, :n * 640], item["audio"])
    assert (batch["audio"][0, 30 * 640:] == 0).all() and (batch["coeffs"][0, 30:] == 0).all()
    assert batch["id"] == ["c", "a"] and batch["start"].tolist() == [0, ds[0]["start"]]
    assert batch["emotion"].tolist() == [-1, 1] and batch["style"].dtype == torch.long
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate)
    assert [b["coeffs"].shape[0] for b in loader] == [3, 1]


def test_audio_from_file_matches_cache(corpus):
    cached = ClipDataset(corpus, "train", window_seconds=3.0, seed=7)
    streamed = ClipDataset(corpus, "train", window_seconds=3.0, seed=7, cache_audio=False)
    for i in range(4):
        assert torch.equal(cached[i]["audio"], streamed[i]["audio"])


def test_coefficient_selection(corpus):
    ds = ClipDataset(corpus, "train", window_seconds=2.0, rig_coeff_names=["mouthClose", "jawOpen"])
    item = ds[0]
    full = load_clip(corpus, "a").coeffs
    s = item["start"]
    assert torch.equal(item["coeffs"], torch.from_numpy(full[s:s + 50][:, [1, 0]]))
    with pytest.raises(DataError, match=r"clip 'a'.*lacks coefficients \['cheekPuff'\]"):
        ClipDataset(corpus, "train", rig_coeff_names=["cheekPuff"])[0]


def test_bad_arguments(corpus, tmp_path):
    for seconds in (0.5, 9.0):
        with pytest.raises(DataError, match="between 1 and 8"):
            ClipDataset(corpus, "train", window_seconds=seconds)
    for seconds in (-1.0, 4.5, float("nan")):
        with pytest.raises(DataError, match="audio_context must be between 0 and 4"):
            ClipDataset(corpus, "train", audio_context=seconds)
    with pytest.raises(DataError, match="valid: train, val, test"):
        ClipDataset(corpus, "dev")
    with pytest.raises(DataError, match="no clips in split 'test'"):
        ClipDataset(corpus, "test")
    with pytest.raises(DataError, match="not found"):
        ClipDataset(tmp_path / "missing", "train")


def test_normalizer(corpus):
    stats = compute_stats(corpus)
    frames = np.concatenate([load_clip(corpus, c).coeffs for c in "abcd"]).astype(np.float64)
    np.testing.assert_allclose(stats.mean, frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std[:4], frames.std(0)[:4], rtol=1e-5)
    assert stats.std[4] == pytest.approx(1e-2)  # floored
    x = torch.from_numpy(frames[:10].astype(np.float32))
    assert torch.allclose(stats.denormalize(stats.normalize(x)), x, atol=1e-6)
    back = Normalizer.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert np.array_equal(back.mean, stats.mean) and np.array_equal(back.std, stats.std)
    assert back.coeff_names == NAMES

    ds = ClipDataset(corpus, "train", window_seconds=2.0, normalizer=stats)
    assert compute_stats(ds).to_dict() == stats.to_dict()
    item = ds[0]
    raw = load_clip(corpus, "a").coeffs[item["start"]:item["start"] + 50]
    np.testing.assert_allclose(item["coeffs"].numpy(), (raw - stats.mean) / stats.std, atol=1e-5)
    with pytest.raises(DataError, match="differ"):
        ClipDataset(corpus, "train", rig_coeff_names=NAMES[:2], normalizer=stats)
    with pytest.raises(DataError, match="one value per coefficient"):
        Normalizer.from_dict({"coeff_names": ["a"], "mean": [0, 1], "std": [1, 1]})


def test_oversample_repeats_the_clips_of_some_voices(tmp_path):
    voices = {"a": "en-us+f3", "b": "festival:kal_diphone", "c": "festival:cmu_us_slt_arctic_hts",
              "d": "en-gb", "e": "festival:ked_diphone"}
    clips = [synthetic_clip(cid, 60 + 10 * i, i, split="val" if cid == "e" else "train", voice=v)
             for i, (cid, v) in enumerate(voices.items())]
    for clip in clips:
        save_clip(tmp_path, clip, subtype="FLOAT")
    write_manifest(tmp_path, [manifest_entry(c) for c in clips])
    plain = ClipDataset(tmp_path, "train", window_seconds=2.0)
    ds = ClipDataset(tmp_path, "train", window_seconds=2.0, oversample={"festival:": 3, "en-gb": 2})
    assert len(plain) == 4 and len(ds) == 4 + 2 * 2 + 1
    assert [ds[i]["id"] for i in range(4)] == [plain[i]["id"] for i in range(4)]  # plain items first
    ids = [ds[i]["id"] for i in range(len(ds))]
    assert {cid: ids.count(cid) for cid in "abcd"} == {"a": 1, "b": 3, "c": 3, "d": 2}
    assert len({ds[i]["start"] for i in range(len(ds)) if ds[i]["id"] == "b"}) > 1  # other windows
    many = ClipDataset(tmp_path, "train", window_seconds=2.0, windows_per_epoch=400, seed=3,
                       oversample={"festival:": 3})
    drawn = [many.window(i)[0] for i in range(400)]
    assert drawn.count(1) + drawn.count(2) > 2 * (drawn.count(0) + drawn.count(3))
    with pytest.raises(DataError, match="no train clip has a voice starting with.*festival:ked"):
        ClipDataset(tmp_path, "train", window_seconds=2.0, oversample={"festival:ked": 2})
    with pytest.raises(DataError, match="integer >= 1"):
        ClipDataset(tmp_path, "train", window_seconds=2.0, oversample={"festival:": 0})
