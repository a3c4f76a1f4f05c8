"""pocketsphinx decoders, one utterance each, in this process or in worker processes.

The layer under :mod:`thunder3d.audio.align`: the decoder settings, one decoding pass, the raw
result of recognising one utterance, and a pool of worker processes that recognise utterances in
parallel. It imports nothing but the standard library and ``pocketsphinx`` (no numpy, no torch),
so a worker (``python -m thunder3d.sphinx KIND``) starts in about half a second.

**Reuse.** Building a decoder costs 0.1 s (phone loop) to 0.4 s (word LM: the lexicon tree). A
used decoder carries state into the next utterance (noise estimate and cepstral mean; after an
alignment pass, the alignment search), so :func:`reset` rebuilds the feature front end and
re-activates the LM search before every reuse; a reset decoder gives exactly the result of a
fresh one (tests/test_sphinx.py checks it over a sequence of utterances).

**Workers.** pocketsphinx holds the GIL while it decodes, so threads cannot share the work. A
worker process keeps one decoder and recognises what it is sent; :meth:`RecognizerPool.map` keeps
every worker busy and returns the results in input order. A result depends only on the
utterance's bytes and the decoder kind, never on which process decoded it or how many workers
there are.

Protocol (binary pipes): the parent writes a 4-byte little-endian length and that many bytes of
16 kHz int16 PCM; the worker answers one JSON line, ``{"phones": [[name, first, end], ...],
"words": [[name, first, end], ...]}`` in pocketsphinx frames (10 ms, ``end`` exclusive), or
``{"error": message}``. End of input stops the worker.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator

from thunder3d.errors import AudioError

FRAME_RATE = 100  # pocketsphinx frames per second
# forced alignment, first pass: no bestpath rescoring (it can leave a phone 1 frame long, which the
# 3-state HMMs of the second pass cannot align); the retry uses wider beams
ALIGN_ARGS = {"lm": None, "bestpath": False}
RETRY_ARGS = {"lm": None, "bestpath": False, "beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100}
# allphone: a light phone-bigram LM weight (pocketsphinx's word-LM default of 6.5 is far too
# heavy for phones) and the default insertion penalty
ALLPHONE_ARGS = {"lw": 2.0, "pip": 1.0, "beam": 1e-60, "pbeam": 1e-60}
# word recognition: the first (tree) pass only, at most 1500 active HMMs a frame and the top-2
# Gaussians: about a tenth of real time on one core, with more frames right on the LibriVox clips
# (0.93) than pocketsphinx's defaults (0.89, at twice the time)
WORD_ARGS = {"fwdflat": False, "bestpath": False, "maxhmmpf": 1500, "maxwpf": 5, "topn": 2}
KINDS = ("align", "align-retry", "phones", "words")  # what make_decoder builds
RECOGNIZERS = ("phones", "words")  # the kinds that recognise without a transcript

Raw = dict  # {"phones": [[name, first, end], ...], "words": [[name, first, end], ...]}


def check_recognizer(kind: str, what: str = "recognizer") -> str:
    """``kind`` if it is one of :data:`RECOGNIZERS`, else an :class:`AudioError` listing them
    (``what``: the name the message gives it)."""
    if kind not in RECOGNIZERS:
        raise AudioError(f"unknown {what} {kind!r}; valid: {', '.join(RECOGNIZERS)}")
    return kind


def make_decoder(kind: str):
    """A fresh pocketsphinx decoder of ``kind`` (:data:`KINDS`), with the bundled en-US models."""
    try:
        import pocketsphinx
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise AudioError("speech recognition needs the pocketsphinx package (pip install pocketsphinx)") from e
    if kind == "phones":
        lm = pocketsphinx.get_model_path(os.path.join("en-us", "en-us-phone.lm.bin"))
        args = dict(ALLPHONE_ARGS, allphone=lm if os.path.isfile(lm) else None)  # else a uniform loop
    else:
        args = {"align": ALIGN_ARGS, "align-retry": RETRY_ARGS, "words": WORD_ARGS}.get(kind)
        if args is None:
            raise AudioError(f"unknown decoder kind {kind!r}; valid: {', '.join(KINDS)}")
    return pocketsphinx.Decoder(loglevel="FATAL", **args)


def decode(decoder, pcm: bytes) -> bool:
    """One pass over a whole utterance; False if pocketsphinx could not finish it."""
    try:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
    except RuntimeError:  # e.g. "Alignment failed in frame N"
        return False
    return True


def alignment_raw(alignment) -> Raw:
    """A pocketsphinx ``Alignment`` -> :data:`Raw` (names as pocketsphinx gives them)."""
    phones, words = [], []
    for word in alignment:
        words.append([word.name, word.start, word.start + word.duration])
        phones.extend([p.name, p.start, p.start + p.duration] for p in word)
    return {"phones": phones, "words": words}


def reset(decoder):
    """Make a used decoder behave exactly like a fresh one: its front end and feature state (noise
    estimate, cepstral mean) rebuilt and its language-model search active again (an alignment pass
    switches to another search). Free, where building a decoder costs 0.1-0.4 s."""
    if decoder.current_search() != "_default":
        decoder.activate_search("_default")
    decoder.reinit_feat()
    return decoder


def recognize_pcm(kind: str, pcm: bytes, decoder=None) -> Raw:
    """Recognise one utterance (16 kHz int16 bytes) with a new decoder of ``kind`` or with
    ``decoder`` (one of that kind, :func:`reset` first: the result is the same).

    ``"phones"``: the phone loop's segments, no words. ``"words"``: the word search, then a phone
    alignment of its hypothesis on the same decoder (a second pass). Nothing recognised (silence,
    a failed pass) gives empty lists.
    """
    check_recognizer(kind)
    decoder = make_decoder(kind) if decoder is None else reset(decoder)
    empty = {"phones": [], "words": []}
    if not decode(decoder, pcm) or decoder.hyp() is None:
        return empty
    if kind == "phones":
        return {"phones": [[s.word, s.start_frame, s.end_frame + 1] for s in decoder.seg()], "words": []}
    if not decoder.hyp().hypstr.strip():
        return empty
    try:
        decoder.set_alignment()
    except RuntimeError:
        return empty
    return alignment_raw(decoder.get_alignment()) if decode(decoder, pcm) else empty


# ---- worker processes -----------------------------------------------------------------------------
def _read_exact(stream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def serve(kind: str, stdin, stdout) -> None:
    """The worker loop: one decoder, reset for every request, until end of input."""
    decoder = make_decoder(kind)
    while True:
        header = _read_exact(stdin, 4)
        if len(header) < 4:
            return
        pcm = _read_exact(stdin, int.from_bytes(header, "little"))
        try:
            reply = recognize_pcm(kind, pcm, decoder)
        except Exception as e:  # report, keep serving: the parent raises it as an AudioError
            reply = {"error": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(reply).encode() + b"\n")
        stdout.flush()


class _Worker:
    def __init__(self, kind: str) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "thunder3d.sphinx", kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)

    def send(self, pcm: bytes) -> None:
        try:
            self.proc.stdin.write(len(pcm).to_bytes(4, "little") + pcm)
            self.proc.stdin.flush()
        except OSError as e:  # a broken pipe: the worker has gone
            raise AudioError(f"a speech recognition worker stopped unexpectedly ({e})") from e

    def receive(self) -> Raw:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise AudioError(f"a speech recognition worker stopped unexpectedly (exit code {code})")
        reply = json.loads(line)
        if "error" in reply:
            raise AudioError(f"speech recognition failed: {reply['error']}")
        return reply

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc.stdout.close()


class RecognizerPool:
    """``workers`` processes that recognise utterances with ``kind`` decoders (reset for each).

    Started on first use (or :meth:`start`), kept until :meth:`close` or interpreter exit; a
    process that forks gets its own workers. Calls are serialised by a lock.
    """

    def __init__(self, kind: str, workers: int) -> None:
        check_recognizer(kind)
        if workers < 1:
            raise AudioError(f"a recognizer pool needs at least 1 worker, got {workers}")
        self.kind, self.size = kind, int(workers)
        self._workers: list[_Worker] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def start(self) -> RecognizerPool:
        """Start the missing workers (they load pocketsphinx and build a decoder in the background)."""
        with self._lock:
            self._start()
        return self

    def _start(self) -> None:
        if self._pid != os.getpid():  # forked: the pipes belong to the parent's workers
            self._workers, self._pid = [], os.getpid()
        for dead in [w for w in self._workers if w.proc.poll() is not None]:
            dead.close()
            self._workers.remove(dead)
        while len(self._workers) < self.size:
            self._workers.append(_Worker(self.kind))

    def _replace(self, worker: _Worker) -> _Worker:
        worker.close()
        self._workers.remove(worker)
        self._workers.append(_Worker(self.kind))
        return self._workers[-1]

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [w.proc.pid for w in self._workers if w.proc.poll() is None]

    def map(self, utterances: Iterable[bytes]) -> Iterator[Raw]:
        """:func:`recognize_pcm` of each utterance, in input order; at most one utterance per
        worker is read ahead of the results. A worker found dead when it is sent work is replaced;
        one that dies while it works fails the call (:class:`AudioError`) and is replaced on the
        next."""
        with self._lock:
            self._start()
            idle, busy, done = list(self._workers), {}, {}
            todo, out, exhausted = enumerate(utterances), 0, False
            selector = selectors.DefaultSelector()
            try:
                while True:
                    while idle and not exhausted:
                        item = next(todo, None)
                        if item is None:
                            exhausted = True
                            break
                        worker = idle.pop()
                        try:
                            worker.send(item[1])
                        except AudioError:  # it died while idle; the request never reached it
                            worker = self._replace(worker)
                            worker.send(item[1])
                        busy[worker] = item[0]
                        selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)
                    if not busy:
                        return
                    for key, _ in selector.select():
                        worker = key.data
                        selector.unregister(worker.proc.stdout)
                        done[busy[worker]] = worker.receive()
                        del busy[worker]
                        idle.append(worker)
                    while out in done:
                        yield done.pop(out)
                        out += 1
            finally:
                selector.close()
                for worker in busy:  # stopped early or failed: a stale reply must not reach the next call
                    worker.proc.kill()
                    worker.close()
                self._workers = [w for w in self._workers if w not in busy]

    def close(self) -> None:
        """Stop the workers (end of input, then a kill after 5 s)."""
        with self._lock:
            if self._pid == os.getpid():
                for worker in self._workers:
                    worker.close()
            self._workers = []


def main(argv: list[str]) -> int:
    """Worker entry point. Ctrl-C is the parent's to handle (it closes the pipes); a parent that
    went away ends the worker quietly."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(argv[0], sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, ConnectionResetError):
        return 0
    except AudioError as e:  # an unknown kind: nothing sensible to serve
        print(f"thunder3d.sphinx: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
