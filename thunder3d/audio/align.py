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
once with wider beams. A fresh decoder is built for every utterance (0.2-0.4 s: a decoder carries
its noise estimate from one utterance to the next), under a lock.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
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

FRAME_RATE = 100  # pocketsphinx frames per second
# Seeded Gaussian noise (standard deviation, full scale = 1) added to every input: about 3 LSB of
# 16-bit audio (-80 dBFS), far below any recording's own noise floor, but it replaces the exact
# zeros of synthetic speech, whose log energy wrecks pocketsphinx's cepstral normalisation.
_NOISE_FLOOR = 1e-4
# First-pass options: no bestpath rescoring (it can leave a phone 1 frame long, which the 3-state
# HMMs of the second pass cannot align). The retry uses wider beams.
_ALIGN_ARGS = {"bestpath": False}
_RETRY_ARGS = {"bestpath": False, "beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100}
# allphone: a light phone-bigram LM weight (pocketsphinx's word-LM default of 6.5 is far too
# heavy for phones) and the default insertion penalty
_ALLPHONE_ARGS = {"lw": 2.0, "pip": 1.0, "beam": 1e-60, "pbeam": 1e-60}
# word recognition: the first (tree) pass only, at most 1500 active HMMs a frame and the top-2
# Gaussians: about a tenth of real time on one core, with more frames right on the LibriVox clips
# (0.93) than pocketsphinx's defaults (0.89, at twice the time)
_WORD_ARGS = {"fwdflat": False, "bestpath": False, "maxhmmpf": 1500, "maxwpf": 5, "topn": 2}
RECOGNIZERS = ("phones", "words")


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
class _Decoders:
    """Builds a fresh pocketsphinx decoder for every utterance.

    A decoder carries state from one utterance to the next (its running cepstral mean and noise
    estimate), so reusing one would make a result depend on what was decoded before. Building one
    costs a few tenths of a second; results are then a function of the audio (and text) alone.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()

    @staticmethod
    def _make(**kwargs):
        try:
            import pocketsphinx
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise AudioError("alignment needs the pocketsphinx package (pip install pocketsphinx)") from e
        return pocketsphinx.Decoder(loglevel="FATAL", **kwargs)

    def aligner(self, retry: bool = False):
        return self._make(lm=None, **(_RETRY_ARGS if retry else _ALIGN_ARGS))

    def recognizer(self):
        import pocketsphinx

        lm = pocketsphinx.get_model_path(os.path.join("en-us", "en-us-phone.lm.bin"))
        if not os.path.isfile(lm):
            lm = None  # uniform phone loop
        return self._make(allphone=lm, **_ALLPHONE_ARGS)

    def word_recognizer(self):
        return self._make(**_WORD_ARGS)  # the bundled en-us.lm.bin and CMUdict


_DECODERS = _Decoders()


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


def _decode(decoder, pcm: bytes) -> bool:
    """One pass over the whole utterance; False if pocketsphinx could not finish it."""
    try:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
    except RuntimeError:  # e.g. "Alignment failed in frame N"
        return False
    return True


def _align_once(decoder, pcm: bytes, words: list[str]):
    """Both passes; the pocketsphinx Alignment, or None if the words could not all be aligned."""
    decoder.set_align_text(" ".join(words))
    if not _decode(decoder, pcm) or decoder.hyp() is None:
        return None
    # the grammar search can end early with a partial path: insist on every word
    got = [re.sub(r"\(\d+\)$", "", s.word) for s in decoder.seg()]
    if [w for w in got if not w.startswith(("<", "[", "+"))] != words:
        return None
    try:
        decoder.set_alignment()
    except RuntimeError:
        return None
    if not _decode(decoder, pcm):
        return None
    return decoder.get_alignment()


def align_detailed(wav: np.ndarray, text: str) -> AlignmentResult:
    """Force-align ``text`` to ``wav``: phones and words with times (see :func:`align`)."""
    words = normalize_text(text if isinstance(text, str) else "")
    if not words:
        raise AudioError(f"nothing to align: the transcript {text!r} holds no words")
    pcm = _pcm16(wav, "audio to align")
    duration = len(pcm) // 2 / SAMPLE_RATE
    with _DECODERS.lock:
        alignment, added = None, []
        for retry in (False, True):
            decoder = _DECODERS.aligner(retry)
            added = _ensure_words(decoder, words)
            alignment = _align_once(decoder, pcm, words)
            if alignment is not None:
                break
        if alignment is None:
            raise AudioError(f"could not align the transcript to the audio ({duration:.2f} s, "
                             f"{len(words)} words): does the text match the speech?")
        phones, out_words = _alignment_phones(alignment)
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


def recognize_phones(wav: np.ndarray) -> list[Phone]:
    """Decode phones without a transcript (allphone search, phone-bigram LM).

    Phone recognition is far less accurate than alignment (expect roughly half the phones right
    on clean speech); use it to check or segment audio whose text is unknown.

    Returns:
        Phones covering ``[0, duration]``, ``SIL`` for silence and noise.
    """
    pcm = _pcm16(wav, "audio to recognise")
    duration = len(pcm) // 2 / SAMPLE_RATE
    with _DECODERS.lock:
        decoder = _DECODERS.recognizer()
        ok = _decode(decoder, pcm)
        segments = list(decoder.seg()) if ok and decoder.hyp() is not None else []
        phones = [Phone(s.start_frame / FRAME_RATE, (s.end_frame + 1) / FRAME_RATE, _label(s.word))
                  for s in segments]
    return fill_silence(phones, duration, min_gap=1.0 / FRAME_RATE)


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
    pcm = _pcm16(wav, "audio to recognise")
    duration = len(pcm) // 2 / SAMPLE_RATE
    phones, words = [], []
    with _DECODERS.lock:
        decoder = _DECODERS.word_recognizer()
        if _decode(decoder, pcm) and decoder.hyp() is not None and decoder.hyp().hypstr.strip():
            try:
                decoder.set_alignment()
                aligned = _decode(decoder, pcm)
            except RuntimeError:
                aligned = False
            if aligned:
                phones, words = _alignment_phones(decoder.get_alignment())
    return AlignmentResult(fill_silence(phones, duration, min_gap=1.0 / FRAME_RATE), words, [])


def _alignment_phones(alignment) -> tuple[list[Phone], list[Word]]:
    """A pocketsphinx Alignment -> phones and words (seconds)."""
    phones, words = [], []
    for word in alignment:
        name = re.sub(r"\(\d+\)$", "", word.name)  # alternate pronunciations: "the(2)"
        if not name.startswith(("<", "[", "+")):
            words.append(Word(word.start / FRAME_RATE, (word.start + word.duration) / FRAME_RATE, name))
        for p in word:
            phones.append(Phone(p.start / FRAME_RATE, (p.start + p.duration) / FRAME_RATE, _label(p.name)))
    return phones, words


def check_recognizer(method: str, what: str = "recognizer") -> str:
    """``method`` if it is one of :data:`RECOGNIZERS`, else an :class:`AudioError` listing them
    (``what``: the name the message gives it)."""
    if method not in RECOGNIZERS:
        raise AudioError(f"unknown {what} {method!r}; valid: {', '.join(RECOGNIZERS)}")
    return method


def recognize(wav: np.ndarray, method: str = "phones") -> list[Phone]:
    """Phones of speech without a transcript: :func:`recognize_phones` (``"phones"``) or the phones
    of :func:`recognize_words` (``"words"``)."""
    check_recognizer(method)
    return recognize_phones(wav) if method == "phones" else recognize_words(wav).phones


def recognize_frame_labels(wav: np.ndarray, num_frames: int, *, method: str = "phones",
                           chunk_seconds: float = 30.0, context_seconds: float = 1.0) -> np.ndarray:
    """Recognised phone index per animation frame, for speech of any length.

    ``wav [N]`` (16 kHz) -> ``[num_frames]`` int64 indices into :data:`~.phones.PHONES` (the phone
    at each frame centre, :func:`~.phones.to_frame_labels`; ``SIL`` past the audio), recognised by
    :func:`recognize` with ``method``. Audio up to ``chunk_seconds + context_seconds`` long is
    decoded in one piece (exactly the frame labels of ``recognize(wav, method)``); longer audio in chunks of
    ``chunk_seconds`` frames, each decoded with ``context_seconds`` of audio on both sides, so
    pocketsphinx's memory stays bounded and a chunk edge does not cut a phone it labels.
    """
    check_recognizer(method, "recognition method")
    if num_frames < 0:
        raise AudioError(f"num_frames must be >= 0, got {num_frames}")
    if chunk_seconds <= 0 or context_seconds < 0:
        raise AudioError(f"need chunk_seconds > 0 and context_seconds >= 0, got {chunk_seconds}, "
                         f"{context_seconds}")

    wav = np.asarray(wav)
    chunk, context = max(1, round(chunk_seconds * FPS)), round(context_seconds * FPS)
    labels = np.zeros(num_frames, dtype=np.int64)
    available = min(num_frames, -(-wav.shape[-1] // SAMPLES_PER_FRAME))  # frames with any audio
    if available == 0:
        return labels
    if available <= chunk + context:
        labels[:available] = to_frame_labels(recognize(wav, method), num_frames)[:available]
        return labels
    for start in range(0, available, chunk):
        end = min(start + chunk, available)
        lo, hi = max(0, start - context), min(available, end + context)
        piece = wav[lo * SAMPLES_PER_FRAME: hi * SAMPLES_PER_FRAME]
        labels[start:end] = to_frame_labels(recognize(piece, method), hi - lo)[start - lo: end - lo]
    return labels


def align_file(path: str | os.PathLike, text: str | None = None) -> list[Phone]:
    """Load an audio file (any format :func:`load_audio` reads) and align ``text`` to it, or
    recognise its phones when ``text`` is None."""
    wav = load_audio(path)
    return recognize_phones(wav) if text is None else align(wav, text)
