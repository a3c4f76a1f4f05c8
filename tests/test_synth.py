"""The synthetic corpus: determinism, resuming, held-out splits, phone timing, manifest."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from thunder3d.audio.augment import AugmentConfig
from thunder3d.audio.phones import SIL, validate_phones
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.data.clip import MANIFEST_FIELDS, DataError, load_clip, read_manifest
from thunder3d.data.synth import (
    FestivalSource,
    make_clip,
    plan_corpus,
    plan_speakers,
    synthesize_corpus,
)
from thunder3d.data.text import sentence_split

N = 12
SEED = 21


def _bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())
            if p.suffix in (".wav", ".npz") or p.name == "manifest.jsonl"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "a"
    report = synthesize_corpus(root, hours=1.0, seed=SEED, workers=2, max_clips=N, progress=False)
    assert report.generated == N and report.skipped == 0 and not report.failed
    assert report.splits["val"] >= 1 and report.splits["test"] >= 1
    return root


def test_same_seed_byte_identical_any_workers(corpus, tmp_path):
    report = synthesize_corpus(tmp_path / "b", hours=1.0, seed=SEED, workers=1, max_clips=N,
                               progress=False)
    assert report.generated == N
    a, b = _bytes(corpus), _bytes(tmp_path / "b")
    assert len(a) == 2 * N + 1
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]


def test_other_seed_differs():
    a, b = plan_corpus(1, 1.0, max_clips=3), plan_corpus(2, 1.0, max_clips=3)
    assert [c.text for c in a.clips] != [c.text for c in b.clips]


def test_more_hours_extends_the_plan():
    small, big = plan_corpus(5, 0.01), plan_corpus(5, 0.05)
    assert big.clips[: len(small.clips)] == small.clips
    assert len(big.clips) > len(small.clips)


def test_small_corpora_have_val_and_test_clips():
    # 6 clips of seed 2 are dealt val + 5 train; the last train clip becomes the test clip
    big = plan_corpus(2, 1.0, max_clips=12)
    small = plan_corpus(2, 1.0, max_clips=6)
    assert [c.split for c in big.clips[:6]] == ["val"] + ["train"] * 5
    assert [c.split for c in small.clips] == ["val", "train", "train", "train", "train", "test"]
    assert small.clips[:5] == big.clips[:5] and small == plan_corpus(2, 1.0, max_clips=6)  # deterministic
    moved = small.clips[5]
    assert moved.id == "syn000005" and moved.speaker in {s.id for s in small.speakers if s.split == "test"}
    assert all(sentence_split(s) == "test" for s in moved.text.replace("?", ".").replace("!", ".").split(". "))
    # what `data synth --hours 0.01` plans: every split, for any seed
    for seed in range(8):
        plan = plan_corpus(seed, 0.01)
        assert {c.split for c in plan.clips} == {"train", "val", "test"}, seed
    # 3 clips: one of each; plans that already have every split are unchanged
    assert sorted(c.split for c in plan_corpus(2, 1.0, max_clips=3).clips) == ["test", "train", "val"]
    assert plan_corpus(5, 0.01).clips == plan_corpus(5, 0.05).clips[:9]


def test_hours_too_few_for_three_clips_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"hours=0.001 plans only 1 clip\(s\).*at least 3 clips \(train, val and "
                                        r"test\), i\.e\. at least (0\.\d+) hours") as info:
        plan_corpus(0, 0.001)
    with pytest.raises(DataError, match="at least 3 clips"):
        synthesize_corpus(tmp_path / "tiny", hours=0.001, progress=False)
    assert not (tmp_path / "tiny").exists()  # refused before any work
    need = float(re.search(r"at least (0\.\d+) hours", str(info.value))[1])
    assert [c.split for c in plan_corpus(0, need).clips] == ["train", "val", "test"]
    assert len(plan_corpus(3, 1.0, max_clips=2).clips) == 2  # a small max_clips is what was asked for


def test_growing_a_small_corpus_remakes_its_moved_clip(tmp_path):
    root = tmp_path / "grow"
    clean = AugmentConfig.none()
    first = synthesize_corpus(root, hours=1.0, seed=2, max_clips=6, augment=clean, progress=False)
    assert first.splits == {"train": 4, "val": 1, "test": 1}
    assert load_clip(root, "syn000005", audio=False).split == "test"
    grown = synthesize_corpus(root, hours=1.0, seed=2, max_clips=7, augment=clean, progress=False)
    assert (grown.generated, grown.skipped) == (2, 5)  # syn000005 is a train clip again, syn000006 the test one
    assert {e["id"]: e["split"] for e in read_manifest(root)} == {
        **{f"syn00000{i}": "train" for i in range(1, 6)}, "syn000000": "val", "syn000006": "test"}
    assert load_clip(root, "syn000005", audio=False).text == plan_corpus(2, 1.0, max_clips=7).clips[5].text


def test_resume_regenerates_only_missing(corpus, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(corpus, root)
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    victim = read_manifest(root)[3]["id"]
    original = (root / f"{victim}.npz").read_bytes()
    (root / f"{victim}.npz").unlink()
    (root / f"{victim}.wav").unlink()
    report = synthesize_corpus(root, hours=1.0, seed=SEED, workers=2, max_clips=N, progress=False)
    assert (report.generated, report.skipped) == (1, N - 1)
    assert (root / f"{victim}.npz").read_bytes() == original
    for p in root.iterdir():
        if p.suffix in (".wav", ".npz") and not p.name.startswith(victim):
            assert p.stat().st_mtime_ns == before[p.name], p.name
    assert len(read_manifest(root)) == N


def test_refuses_a_folder_made_with_another_seed(corpus, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(corpus, root)
    with pytest.raises(DataError, match="seed"):
        synthesize_corpus(root, hours=1.0, seed=SEED + 1, max_clips=N, progress=False)


def test_splits_hold_out_voices_and_sentences():
    plan = plan_corpus(SEED, 0.5)
    by = {s: [c for c in plan.clips if c.split == s] for s in ("train", "val", "test")}
    assert all(by.values())
    train_voices = {c.voice for c in by["train"]}
    train_variants = {c.voice.partition("+")[2] for c in by["train"]}
    train_sentences = {i for c in by["train"] for i in c.sentence_ids}
    for split in ("val", "test"):
        for c in by[split]:
            assert c.voice not in train_voices
            assert c.voice.partition("+")[2] not in train_variants  # timbre unseen, any accent
            assert not set(c.sentence_ids) & train_sentences
    for c in plan.clips[:40]:  # each sentence of a clip belongs to the clip's split
        for sentence in c.text.replace("?", ".").replace("!", ".").split(". "):
            assert sentence_split(sentence) == c.split
    # speakers are bound to one split
    assert len({(c.speaker, c.split) for c in plan.clips}) == len({c.speaker for c in plan.clips})


def test_clip_lengths_in_range(corpus):
    durations = [e["duration"] for e in read_manifest(corpus)]
    assert min(durations) > 1.2 and max(durations) < 11.0  # planned 2.5-6.8 s; voices vary


def test_phones_monotonic_and_cover_the_clip(corpus):
    for entry in read_manifest(corpus):
        clip = load_clip(corpus, entry["id"])
        validate_phones(clip.phones, clip.duration)
        assert clip.phones[0].start == 0.0
        assert clip.phones[-1].end == pytest.approx(clip.duration, abs=1e-6)
        for a, b in zip(clip.phones, clip.phones[1:]):
            assert b.start == pytest.approx(a.end, abs=1e-9)  # no gaps
        assert sum(p.label != SIL for p in clip.phones) >= 8
        assert clip.audio.size == clip.num_frames * SAMPLES_PER_FRAME
        assert clip.coeffs.shape == (clip.num_frames, 52)
        assert np.isfinite(clip.coeffs).all()


def test_phones_cover_the_speech():
    """Without augmentation, every loud frame lies inside the span of the speech phones."""
    spec = plan_corpus(3, 1.0, max_clips=2).clips[1]
    clip = make_clip(spec, AugmentConfig.none())
    frames = clip.audio.reshape(clip.num_frames, SAMPLES_PER_FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.nonzero(rms > 0.1 * rms.max())[0]
    speech = [p for p in clip.phones if p.label != SIL]
    t0, t1 = speech[0].start, speech[-1].end
    assert (loud.min() + 1) / 25 >= t0 - 0.04 and loud.max() / 25 <= t1 + 0.04


def test_manifest_fields(corpus):
    settings = json.loads((corpus / "synth.json").read_text())
    speakers = {s["id"]: s for s in settings["speakers"]}
    entries = read_manifest(corpus)
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    for e in entries:
        assert set(MANIFEST_FIELDS) <= set(e) and {"speaker", "sentence_ids"} <= set(e)
        assert e["rig"] == "arkit" and e["split"] in ("train", "val", "test")
        assert e["intensity"] in (1, 2, 3)
        clip = load_clip(corpus, e["id"], audio=False)
        assert clip.num_frames == e["num_frames"] and clip.voice == e["voice"]
        assert clip.head_rotation.shape == (clip.num_frames, 3)
        speaker = speakers[clip.style]  # the clip was made by one planned speaker, with its style
        assert (clip.voice, clip.split) == (speaker["voice"], speaker["split"])
        assert clip.meta["speaker_style"] == speaker["style"]
    assert settings["seed"] == SEED and len(settings["speakers"]) == 40


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="hours"):
        synthesize_corpus(tmp_path, hours=0, progress=False)
    with pytest.raises(DataError, match="workers"):
        synthesize_corpus(tmp_path, hours=1, workers=0, progress=False)
    with pytest.raises(DataError, match="voice source"):
        plan_corpus(0, 1.0, voices=["piper:amy"])


festival = FestivalSource()


@pytest.mark.skipif(not festival.available(),
                    reason="festival with an English voice is not installed "
                           "(Debian: apt-get install festival festvox-us-slt-hts)")
def test_festival_source():
    voice = festival.voices()[0]
    utt = festival.synthesize("Please bring the purple map to my mother.", voice)
    validate_phones(utt.phones, utt.duration)
    labels = [p.label for p in utt.phones]
    assert labels.count("M") >= 3 and labels.count("P") >= 2
    assert utt.phones[-1].end == pytest.approx(utt.duration)
    assert len(utt.words) == 8 and utt.words[0].text.lower() == "please"
    plan = plan_corpus(0, 1.0, voices=["en-us", f"festival:{voice}"], max_clips=40)
    assert any(c.voice == f"festival:{voice}" for c in plan.clips)


def test_voice_split_binding_is_checked():
    with pytest.raises(DataError, match="split must be one of"):
        plan_speakers(0, ["en-us", "festival:kal_diphone@holdout"])
    with pytest.raises(DataError, match="only festival voices take @SPLIT"):
        plan_speakers(0, ["en-us@train"])


@pytest.mark.skipif(not festival.available(), reason="festival with an English voice is not installed")
def test_festival_voice_bound_to_a_split():
    voice = festival.voices()[0]
    speakers = plan_speakers(0, ["en-us", f"festival:{voice}@val"])
    mine = [s for s in speakers if s.voice == f"festival:{voice}"]
    assert mine and {s.split for s in mine} == {"val"}
    # unbound, the first festival voice goes to train
    assert {s.split for s in plan_speakers(0, ["en-us", f"festival:{voice}"]) if s.voice == f"festival:{voice}"} == {"train"}
