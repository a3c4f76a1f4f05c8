"""Forced alignment and phone recognition of 16 kHz speech with pocketsphinx 5.

:func:`align` finds where each phone of a known transcript lies in the audio: a first pass aligns
the words (``Decoder.set_align_text``), a second pass aligns their phones
(``set_alignment`` / ``get_alignment``). :func:`recognize_phones` decodes phones without a
transcript (pocketsphinx's allphone search with the bundled phonetic language model
``en-us-phone.lm.bin``); :func:`recognize_words` recognises words with the bundled word language
model ``en-us.lm.bin`` and aligns the phones of that hypothesis (slower, far more phones right on
real speech: 0.92 of the frames of the LibriVox test clips against 0.62). All use the en-US acoustic model and CMUdict that the ``pocketsphinx``
wheel ships, so labels are already the common ARPAbet set of :mod:`.phones`; pocketsphinx's
frames are 10 ms. Results cover ``[0, duration]`` without gaps, ``SIL`` for silence and noise.

Text normalisation (:func:`normalize_text`): lower case, digits spelled out as words ("42" ->
"forty two"), every character other than letters, digits and inner apostrophes is a word break.
Words missing from CMUdict ("thunder3d", names) are not an error: their pronunciation is taken
from espeak-ng (:func:`thunder3d.audio.tts.synthesize` phone labels), added to the decoder's
dictionary, and a warning names them.

Digital silence (exact zeros, as synthetic speech has) breaks pocketsphinx's energy
normalisation, so a faint seeded noise floor (-80 dBFS) is added to every input; results are
deterministic. If the grammar search cannot reach the end of the transcript, alignment is retried
once with wider beams. Alignment builds a fresh decoder for every utterance (0.15 s); recognition
reuses one, reset so that it gives exactly a fresh decoder's result (:mod:`thunder3d.sphinx`);
pocketsphinx runs under a lock.
:func:`recognize_frame_labels` and :func:`recognize_all` hand the utterances (or chunks of a long
one) to worker processes that decode in parallel, each with its own reset decoder
(:func:`recognition_workers`); results do not depend on how many there are.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from thunder3d.audio.io import load_audio, to_mono_16k
from thunder3d.audio.phones import (
    PHONE_INDEX,
    SIL,
    Phone,
    Word,
    fill_silence,
    to_frame_labels,
)
from thunder3d.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.errors import AudioError
from thunder3d.sphinx import (  # noqa: F401 - RECOGNIZERS and check_recognizer are this module's API too
    FRAME_RATE,
    RECOGNIZERS,
    RecognizerPool,
    alignment_raw,
    check_recognizer,
    decode,
    make_decoder,
    recognize_pcm,
)

# Seeded Gaussian noise (standard deviation, full scale = 1) added to every input: about 3 LSB of
# 16-bit audio (-80 dBFS), far below any recording's own noise floor, but it replaces the exact
# zeros of synthetic speech, whose log energy wrecks pocketsphinx's cepstral normalisation.
_NOISE_FLOOR = 1e-4
WORKERS_ENV = "THUNDER3D_RECOGNITION_WORKERS"  # worker processes for recognize_frame_labels/recognize_all


@dataclass
class AlignmentResult:
    """Phones and words of an aligned transcript (times in seconds)."""

    phones: list[Phone]
    words: list[Word]
    added_words: list[str]  # words pronounced by espeak-ng because CMUdict lacks them


# ---- text ----------------------------------------------------------------------------------------
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> list[str]:
    """English words of ``0 <= n < 10**12``."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (_number_words(n % 100) if n % 100 else [])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            return _number_words(n // size) + [name] + (_number_words(n % size) if n % size else [])
    raise AssertionError(n)


def normalize_text(text: str) -> list[str]:
    """Transcript -> lower-case words as CMUdict spells them (see the module docstring)."""
    words = []
    for token in re.findall(r"[0-9]+|[^\W\d_]+(?:'[^\W\d_]+)*", text.lower()):
        if token.isdigit():
            words += _number_words(int(token)) if len(token) <= 12 else [_ONES[int(c)] for c in token]
        else:
            words.append(token)
    return words


# ---- decoders ------------------------------------------------------------------------------------
# In-process decoding happens under this lock, so threads never share pocketsphinx state; alignment
# builds a fresh decoder per utterance, recognition reuses one per kind after sphinx.reset.
_LOCK = threading.RLock()
_IN_PROCESS: dict[str, object] = {}  # kind -> the decoder recognize() reuses (reset every time)
_POOLS: dict[tuple[str, int], RecognizerPool] = {}


def recognition_workers() -> int:
    """Worker processes used to recognise speech: ``$THUNDER3D_RECOGNITION_WORKERS`` if set, else
    one per CPU core available up to 4, and none (in-process) on a single core."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = -1
        if n < 0:
            raise AudioError(f"{WORKERS_ENV} must be a whole number >= 0, got {value!r}")
        return n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 else min(cores, 4)


def recognizer_pool(method: str, workers: int | None = None) -> RecognizerPool | None:
    """The process-wide pool of ``workers`` (default :func:`recognition_workers`) recognisers of
    ``method``, not started until used (:meth:`~thunder3d.sphinx.RecognizerPool.start` starts it
    ahead, e.g. while a model loads); None for 0 workers."""
    check_recognizer(method)
    workers = recognition_workers() if workers is None else int(workers)
    if workers < 0:
        raise AudioError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return None
    key = (method, workers)
    if key not in _POOLS:
        if not _POOLS:
            atexit.register(_close_pools)
        _POOLS[key] = RecognizerPool(method, workers)
    return _POOLS[key]


def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.close()


def _pcm16(wav: np.ndarray, name: str) -> bytes:
    """Validated 16 kHz float audio plus the seeded noise floor -> little-endian int16 bytes."""
    wav = to_mono_16k(np.asarray(wav), SAMPLE_RATE, name=name)
    wav = wav + np.random.default_rng(0).normal(0.0, _NOISE_FLOOR, wav.shape).astype(np.float32)
    return (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def _label(name: str) -> str:
    """pocketsphinx phone name -> common label (fillers such as ``+NSN+`` and ``SIL`` -> SIL)."""
    name = name.upper()
    return name if name in PHONE_INDEX else SIL


_G2P_WORDS: dict[str, str] = {}  # words added to the decoders' dictionaries, with their phones


def _ensure_words(decoder, words: list[str]) -> list[str]:
    """Add the words CMUdict lacks, pronounced by espeak-ng; return those of ``words``."""
    for w in dict.fromkeys(words):
        if decoder.lookup_word(w) is not None:
            continue
        if w not in _G2P_WORDS:
            from thunder3d.audio.tts import synthesize  # espeak-ng as grapheme-to-phoneme fallback

            try:
                phones = [p.label for p in synthesize(w, "en-us").phones if p.label != SIL]
            except AudioError:
                phones = []
            if not phones:
                raise AudioError(f"cannot pronounce word {w!r}: not in the pocketsphinx dictionary "
                                 "and espeak-ng gives no phones for it")
            _G2P_WORDS[w] = " ".join(phones)
        decoder.add_word(w, _G2P_WORDS[w], True)
    added = [w for w in dict.fromkeys(words) if w in _G2P_WORDS]
    if added:
        warnings.warn(f"words not in the pocketsphinx dictionary, pronounced by espeak-ng: "
                      f"{', '.join(added)}", stacklevel=3)
    return added


def _align_once(decoder, pcm: bytes, words: list[str]):
    """Both passes; the pocketsphinx Alignment, or None if the words could not all be aligned."""
    decoder.set_align_text(" ".join(words))
    if not decode(decoder, pcm) or decoder.hyp() is None:
        return None
    # the grammar search can end early with a partial path: insist on every word
    got = [re.sub(r"\(\d+\)$", "", s.word) for s in decoder.seg()]
    if [w for w in got if not w.startswith(("<", "[", "+"))] != words:
        return None
    try:
        decoder.set_alignment()
    except RuntimeError:
        return None
    if not decode(decoder, pcm):
        return None
    return decoder.get_alignment()


def align_detailed(wav: np.ndarray, text: str) -> AlignmentResult:
    """Force-align ``text`` to ``wav``: phones and words with times (see :func:`align`)."""
    words = normalize_text(text if isinstance(text, str) else "")
    if not words:
        raise AudioError(f"nothing to align: the transcript {text!r} holds no words")
    pcm = _pcm16(wav, "audio to align")
    duration = len(pcm) // 2 / SAMPLE_RATE
    with _LOCK:
        alignment, added = None, []
        for retry in (False, True):
            decoder = make_decoder("align-retry" if retry else "align")
            added = _ensure_words(decoder, words)
            alignment = _align_once(decoder, pcm, words)
            if alignment is not None:
                break
        if alignment is None:
            raise AudioError(f"could not align the transcript to the audio ({duration:.2f} s, "
                             f"{len(words)} words): does the text match the speech?")
        phones, out_words = _phones_words(alignment_raw(alignment))
    return AlignmentResult(fill_silence(phones, duration, min_gap=1.0 / FRAME_RATE), out_words, added)


def align(wav: np.ndarray, text: str) -> list[Phone]:
    """Force-align a transcript to speech.

    Args:
        wav: ``[N]`` float32 mono audio at 16 kHz (as :func:`thunder3d.audio.io.load_audio` gives).
        text: what is said. Normalised by :func:`normalize_text`; words outside CMUdict are
            pronounced by espeak-ng (with a warning).

    Returns:
        Phones in the common ARPAbet set covering ``[0, duration]`` (``SIL`` between words where
        pocketsphinx finds pauses, and for leading/trailing silence).

    Raises:
        AudioError: empty/invalid audio, a transcript without words, or audio the transcript
            cannot be aligned to.
    """
    return align_detailed(wav, text).phones


def _phones_words(raw: dict) -> tuple[list[Phone], list[Word]]:
    """:data:`thunder3d.sphinx.Raw` -> phones (common labels) and words (fillers dropped), in seconds."""
    phones = [Phone(a / FRAME_RATE, b / FRAME_RATE, _label(name)) for name, a, b in raw["phones"]]
    words = []
    for name, a, b in raw["words"]:
        name = re.sub(r"\(\d+\)$", "", name)  # alternate pronunciations: "the(2)"
        if not name.startswith(("<", "[", "+")):
            words.append(Word(a / FRAME_RATE, b / FRAME_RATE, name))
    return phones, words


def _recognized(raw: dict, pcm: bytes) -> AlignmentResult:
    phones, words = _phones_words(raw)
    return AlignmentResult(fill_silence(phones, len(pcm) // 2 / SAMPLE_RATE, min_gap=1.0 / FRAME_RATE), words, [])


def _recognize_pcm(pcm: bytes, method: str) -> AlignmentResult:
    with _LOCK:
        if method not in _IN_PROCESS:
            _IN_PROCESS[method] = make_decoder(method)
        return _recognized(recognize_pcm(method, pcm, _IN_PROCESS[method]), pcm)


def recognize_phones(wav: np.ndarray) -> list[Phone]:
    """Decode phones without a transcript (allphone search, phone-bigram LM).

    Phone recognition is far less accurate than alignment (expect roughly half the phones right
    on clean speech); use it to check or segment audio whose text is unknown.

    Returns:
        Phones covering ``[0, duration]``, ``SIL`` for silence and noise.
    """
    return _recognize_pcm(_pcm16(wav, "audio to recognise"), "phones").phones


def recognize_words(wav: np.ndarray) -> AlignmentResult:
    """Recognise words (no transcript) and align their phones.

    One decoder does both: a word search with pocketsphinx's bundled en-US language model, then
    a phone alignment of the best hypothesis (``set_alignment`` with the recognised word
    segmentation, a second pass over the audio). Word errors are common (the LM is generic), but
    a misheard word usually shares most of its sounds with the spoken one, so far more phones are
    right than with :func:`recognize_phones`; it costs about three times as long.

    Returns:
        The recognised words and phones covering ``[0, duration]`` (``SIL`` for silence, noise and
        audio where nothing was recognised); ``added_words`` is empty.
    """
    return _recognize_pcm(_pcm16(wav, "audio to recognise"), "words")


def recognize(wav: np.ndarray, method: str = "phones") -> list[Phone]:
    """Phones of speech without a transcript: :func:`recognize_phones` (``"phones"``) or the phones
    of :func:`recognize_words` (``"words"``)."""
    check_recognizer(method)
    return _recognize_pcm(_pcm16(wav, "audio to recognise"), method).phones


def recognize_all(wavs: Iterable[np.ndarray], method: str = "phones", *,
                  workers: int | None = None) -> Iterator[list[Phone]]:
    """:func:`recognize` of each utterance, in order, decoded by ``workers`` processes in parallel
    (default :func:`recognition_workers`; 0: in this process, one after another). The results do
    not depend on ``workers``. At most one utterance per worker is read ahead of the results."""
    pool = recognizer_pool(method, workers)  # checks the method
    pcms = (_pcm16(wav, "audio to recognise") for wav in wavs)
    if pool is None:
        for pcm in pcms:
            yield _recognize_pcm(pcm, method).phones
        return
    pending = collections.deque()  # the bytes of the utterances in flight, for their durations

    def sent():
        for pcm in pcms:
            pending.append(pcm)
            yield pcm

    for raw in pool.map(sent()):
        yield _recognized(raw, pending.popleft()).phones


def chunk_plan(num_frames: int, chunk: int, context: int) -> list[tuple[int, int, int, int]]:
    """How :func:`recognize_frame_labels` cuts ``num_frames`` frames: ``(start, end, lo, hi)`` per
    piece, frames ``[start, end)`` labelled from the audio of frames ``[lo, hi)``. Up to
    ``chunk + context`` frames: one piece; longer: ``ceil(num_frames / chunk)`` pieces of equal
    length (±1 frame), each with ``context`` frames of audio on both sides where there are any."""
    if num_frames <= chunk + context:
        return [(0, num_frames, 0, num_frames)] if num_frames > 0 else []
    n = -(-num_frames // chunk)
    bounds = [round(i * num_frames / n) for i in range(n + 1)]
    return [(a, b, max(0, a - context), min(num_frames, b + context)) for a, b in zip(bounds, bounds[1:])]


def recognize_frame_labels(wav: np.ndarray, num_frames: int, *, method: str = "phones",
                           chunk_seconds: float = 5.0, context_seconds: float = 1.0,
                           workers: int | None = None) -> np.ndarray:
    """Recognised phone index per animation frame, for speech of any length.

    ``wav [N]`` (16 kHz) -> ``[num_frames]`` int64 indices into :data:`~.phones.PHONES` (the phone
    at each frame centre, :func:`~.phones.to_frame_labels`; ``SIL`` past the audio), recognised by
    :func:`recognize` with ``method``. Audio up to ``chunk_seconds + context_seconds`` long is
    decoded in one piece (exactly the frame labels of ``recognize(wav, method)``); longer audio in
    equal chunks of at most ``chunk_seconds`` (:func:`chunk_plan`), each decoded with
    ``context_seconds`` of audio on both sides, so a chunk edge does not cut a phone it labels and
    memory stays bounded. The chunks are decoded by ``workers`` processes in parallel
    (:func:`recognize_all`); the labels depend only on the audio and the chunk sizes.
    """
    check_recognizer(method, "recognition method")
    if num_frames < 0:
        raise AudioError(f"num_frames must be >= 0, got {num_frames}")
    if chunk_seconds <= 0 or context_seconds < 0:
        raise AudioError(f"need chunk_seconds > 0 and context_seconds >= 0, got {chunk_seconds}, "
                         f"{context_seconds}")

    wav = np.asarray(wav)
    labels = np.zeros(num_frames, dtype=np.int64)
    available = min(num_frames, -(-wav.shape[-1] // SAMPLES_PER_FRAME))  # frames with any audio
    plan = chunk_plan(available, max(1, round(chunk_seconds * FPS)), round(context_seconds * FPS))
    pieces = (wav[lo * SAMPLES_PER_FRAME: hi * SAMPLES_PER_FRAME] for _, _, lo, hi in plan)
    for (start, end, lo, hi), phones in zip(plan, recognize_all(pieces, method, workers=workers)):
        labels[start:end] = to_frame_labels(phones, hi - lo)[start - lo: end - lo]
    return labels


def align_file(path: str | os.PathLike, text: str | None = None) -> list[Phone]:
    """Load an audio file (any format :func:`load_audio` reads) and align ``text`` to it, or
    recognise its phones when ``text`` is None."""
    wav = load_audio(path)
    return recognize_phones(wav) if text is None else align(wav, text)
