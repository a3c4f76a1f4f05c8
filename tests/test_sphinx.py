"""pocketsphinx decoders reused after a reset, recognition worker processes, and the chunk plan of
recognize_frame_labels: results never depend on decoder reuse, worker count or failures."""

import io
import json
import os
import signal
import sys

import numpy as np
import pytest

from thunder3d.audio.align import (
    WORKERS_ENV,
    _pcm16,
    chunk_plan,
    recognition_workers,
    recognize,
    recognize_all,
    recognize_frame_labels,
    recognizer_pool,
)
from thunder3d.audio.tts import synthesize
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.errors import AudioError
from thunder3d.sphinx import RecognizerPool, make_decoder, recognize_pcm, serve


@pytest.fixture(scope="module")
def utterances():
    """Four different pieces of real TTS speech (0.5-3 s) and a second of digital silence."""
    wav = synthesize("Bob picked a map for the tall ship. My mother baked a pie by the bay.", "en-us").wav
    pieces = [wav[:48000], wav[20000:44000], wav[8000:16000], np.zeros(16000, np.float32), wav[30000:]]
    return [p.astype(np.float32) for p in pieces]


@pytest.fixture(scope="module")
def long_speech():
    """About 8 s of speech: more than one recognition chunk."""
    parts = [synthesize(s, "en-us").wav for s in ("Please bring me the big blue map.",
                                                  "My mother baked a pie by the bay.",
                                                  "Five wise owls watched the moon above the old barn.")]
    wav = np.concatenate(parts).astype(np.float32)
    return wav, len(wav) // SAMPLES_PER_FRAME


@pytest.mark.parametrize("kind", ["phones", "words"])
def test_a_reset_decoder_gives_a_fresh_decoders_result(kind, utterances):
    pcms = [_pcm16(u, "test") for u in utterances]
    fresh = [recognize_pcm(kind, p) for p in pcms]
    speech = [0, 1, 2, 4]  # utterance 3 is digital silence
    for i in speech:  # every piece of speech is heard as some non-silence phones (and words)
        assert any(p[0] != "SIL" for p in fresh[i]["phones"]), f"utterance {i}"
        assert (len(fresh[i]["words"]) > 0) == (kind == "words"), f"utterance {i}"  # phones: no words
    assert all(p[0] == "SIL" for p in fresh[3]["phones"]) and fresh[3]["words"] == []  # silence is not
    decoder = make_decoder(kind)
    for i in (0, 1, 2, 3, 4, 4, 1, 0, 2):  # any order, repeats, after an alignment pass (words)
        assert recognize_pcm(kind, pcms[i], decoder) == fresh[i], f"utterance {i}"


def test_serve_answers_requests_until_end_of_input(utterances):
    pcms = [_pcm16(u, "test") for u in utterances[:2]]
    stdin = io.BytesIO(b"".join(len(p).to_bytes(4, "little") + p for p in pcms))
    stdout = io.BytesIO()
    serve("phones", stdin, stdout)
    replies = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert replies == [recognize_pcm("phones", p) for p in pcms]


def test_workers_give_the_in_process_results(utterances, long_speech):
    for method in ("phones", "words"):
        alone = list(recognize_all(utterances, method, workers=0))
        assert alone == [recognize(u, method) for u in utterances]
        assert list(recognize_all(utterances, method, workers=2)) == alone  # in input order
        assert list(recognize_all(iter(utterances[:1]), method, workers=3)) == alone[:1]  # fewer than workers
        assert list(recognize_all([], method, workers=2)) == []
    wav, T = long_speech
    for method in ("phones", "words"):
        labels = recognize_frame_labels(wav, T, method=method, workers=0)
        assert np.array_equal(recognize_frame_labels(wav, T, method=method, workers=1), labels)
        assert np.array_equal(recognize_frame_labels(wav, T, method=method, workers=2), labels)


def test_a_stopped_or_killed_worker_does_not_leak_into_the_next_call(utterances, long_speech):
    pcms = [_pcm16(u, "test") for u in utterances]
    expected = [recognize_pcm("phones", p) for p in pcms]
    pool = RecognizerPool("phones", 2)
    try:
        results = pool.map(pcms)
        assert next(results) == expected[0]
        results.close()  # stopped early: replies still in flight must not reach the next call
        assert list(pool.map(pcms)) == expected
        for pid in pool.pids:  # idle workers that died are replaced when work comes
            os.kill(pid, signal.SIGKILL)
        assert list(pool.map(pcms)) == expected and len(pool.pids) == 2

        def kill_after_the_first():  # dying in the middle of the work: a clear error, not a hang
            yield _pcm16(long_speech[0], "test")
            for pid in pool.pids:
                os.kill(pid, signal.SIGKILL)

        with pytest.raises(AudioError, match="worker stopped unexpectedly"):
            list(pool.map(kill_after_the_first()))
        assert list(pool.map(pcms)) == expected  # replaced
        assert len(pool.pids) == 2
    finally:
        pool.close()
    assert pool.pids == []


def test_worker_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "0")
    assert recognition_workers() == 0 and recognizer_pool("words") is None
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert recognition_workers() == 3 and recognizer_pool("phones").size == 3
    for bad in ("two", "-1"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(AudioError, match=WORKERS_ENV):
            recognition_workers()
    monkeypatch.delenv(WORKERS_ENV)
    # unset: one worker per available core up to 4, none (in-process) on a single core
    for cores, expected in ((1, 0), (2, 2), (3, 3), (4, 4), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert recognition_workers() == expected, cores
    with pytest.raises(AudioError, match="unknown recognizer"):
        recognizer_pool("wordz")
    with pytest.raises(AudioError, match="workers must be"):
        recognizer_pool("phones", -2)


@pytest.mark.parametrize("frames", [0, 1, 150, 151, 175, 250, 251, 1000, 7501])
def test_chunk_plan_covers_every_frame_once(frames):
    chunk, context = 125, 25
    plan = chunk_plan(frames, chunk, context)
    if frames <= chunk + context:
        assert plan == ([(0, frames, 0, frames)] if frames else [])
        return
    starts, ends = [p[0] for p in plan], [p[1] for p in plan]
    assert starts[0] == 0 and ends[-1] == frames and starts[1:] == ends[:-1]
    sizes = [b - a for a, b in zip(starts, ends)]
    assert max(sizes) <= chunk and max(sizes) - min(sizes) <= 1 and len(plan) == -(-frames // chunk)
    for start, end, lo, hi in plan:
        assert lo == max(0, start - context) and hi == min(frames, end + context)


def test_the_worker_module_imports_no_torch():
    import subprocess

    code = "import sys, thunder3d.sphinx; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
