"""Speech synthesis with phone timings: espeak-ng through ctypes.

``espeakng-loader`` ships ``libespeak-ng.so`` and its data folder; no system package or subprocess
is involved. The library is initialised once per process in synchronous mode
(``AUDIO_OUTPUT_SYNCHRONOUS``) with phoneme events on: ``espeak_Synth`` then runs to completion in
the calling thread and hands 16-bit samples at espeak's own rate (22050 Hz) to a callback together
with events. Phoneme events (type 7) carry the phoneme mnemonic and the sample where it starts;
word events carry the word's character span in the text. :func:`synthesize` turns that into an
:class:`Utterance`: 16 kHz float32 audio (resampled by :func:`thunder3d.audio.io.to_mono_16k`),
phones in the common ARPAbet set (:mod:`.phones`) covering the whole clip, and words.

espeak-ng keeps global state (current voice, parameters, the callback) and is not thread-safe, so
every call holds a module lock. The library is reloaded before each synthesis (under 1 ms), which
makes the output deterministic: the same text, voice, parameters and seed give identical samples
whatever was synthesised before (see :meth:`_Espeak.reload`). After ``fork`` a child loads its
own instance on first use.

Voices are named like espeak-ng's own: a language voice (``en-us``, ``en-gb``, ``en-gb-x-rp``,
``en-029``, ... see :func:`list_voices`), optionally with a variant (``en-us+f3``, ``en+m1``,
``en-gb+Annie``; see :func:`list_variants`). Variants change pitch, formants and voice quality.
"""

from __future__ import annotations

import ctypes
import _ctypes
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from thunder3d.audio.io import to_mono_16k
from thunder3d.audio.phones import SIL, Phone, Word, espeak_to_arpabet, merge_silence
from thunder3d.constants import SAMPLE_RATE
from thunder3d.errors import AudioError

# speak_lib.h values
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_SENTENCE, _EVENT_END = 0, 1, 2, 5
_EVENT_PHONEME = 7
_EVENT_SAMPLERATE = 8
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes: IPA output
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_OK = 0

RATE_RANGE = (80, 450)  # words per minute (espeakRATE_MINIMUM .. espeakRATE_MAXIMUM)
PITCH_RANGE = (0, 100)  # base pitch, espeak's 0..100 scale (50 = voice default)
PITCH_RANGE_RANGE = (0, 100)  # intonation range, 0 = monotone, 50 = normal

# accents that pronounce post-vocalic r (decides how r-coloured vowels are mapped)
_RHOTIC_LANGUAGES = {"en-us", "en-us-nyc", "en-gb-scotland"}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: 40 bytes on 64-bit (the pointer and the union are 8-byte aligned)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index of the event's text
        ("length", ctypes.c_int),  # word length in characters (word events)
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at espeak's rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),  # priority byte, then the language name
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """Synthesised speech and its timing.

    Attributes:
        wav: ``[N]`` float32 mono at ``sample_rate`` (16 kHz).
        phones: ARPAbet phones covering ``[0, duration]`` without gaps (``SIL`` for pauses).
        words: the spoken words with their start/end (pauses excluded).
        espeak_phonemes: the raw ``(start seconds, mnemonic)`` events, for inspection.
        token_times: ``(symbol, start, end)`` seconds of a neural TTS's own phoneme durations
            (:mod:`.kokoro`), a check of the aligned phones.
    """

    wav: np.ndarray
    sample_rate: int
    phones: list[Phone]
    words: list[Word]
    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    espeak_phonemes: list[tuple[float, str]] = field(default_factory=list, repr=False)
    token_times: list[tuple[str, float, float]] = field(default_factory=list, repr=False)

    @property
    def duration(self) -> float:
        return self.wav.size / self.sample_rate


class _Espeak:
    """The process-wide espeak-ng library: loading, initialisation, one synthesis at a time."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.lib = None
        self.pid = None
        self.sample_rate = 0
        self.data_path = ""
        self._samples: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, object]] = []
        self._callback = _Callback(self._on_audio)  # kept alive as long as the module

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._samples.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                value: object = bytes(e.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
            else:
                value = e.id.number
            self._events.append((e.type, e.sample, e.text_position, e.length, value))
            i += 1
        return 0  # continue synthesis

    def ensure(self) -> None:
        """Load and initialise the library in this process (call with the lock held)."""
        if self.pid != os.getpid():
            self.reload()

    def reload(self) -> None:
        """Unload and load the library again, so that synthesis starts from a fresh state.

        espeak-ng keeps waveform-generator state (pitch-cycle counters) in static variables that
        neither ``espeak_Terminate`` nor ``espeak_Initialize`` reset, and phone durations snap to
        pitch cycles, so a second synthesis of the same text differs from the first by a few ms.
        Unloading the library (``dlclose``; < 1 ms) makes every synthesis the first. A process
        forked from one that had it loaded closes its inherited copy the same way.
        """
        if self.lib is not None:
            self.lib.espeak_Terminate()
            handle, self.lib = self.lib._handle, None
            _ctypes.dlclose(handle)
        self._load()

    def _load(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise AudioError("speech synthesis needs the espeakng-loader package "
                             "(pip install espeakng-loader)") from e
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.data_path = espeakng_loader.get_data_path()
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(),
                                   _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
        if sr <= 0:
            raise AudioError(f"espeak-ng failed to initialise (data folder {self.data_path})")
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.sample_rate, self.pid = lib, sr, os.getpid()

    def voices(self) -> list[tuple[str, str, str]]:
        """``(language, identifier, name)`` of every installed voice."""
        with self.lock:
            self.ensure()
            out = []
            table = self.lib.espeak_ListVoices(None)
            i = 0
            while table[i]:
                v = table[i].contents
                # the first language entry: one priority byte, then a NUL-terminated name
                language = ctypes.string_at(v.languages)[1:].decode("utf-8", "replace")
                out.append((language.lower(), v.identifier.decode(), v.name.decode()))
                i += 1
            return out

    def ipa(self, text: str, voice_id: str) -> list[str]:
        """The IPA of each clause of ``text`` as the voice would speak it (stress marks included)."""
        with self.lock:
            self.reload()
            if self.lib.espeak_SetVoiceByName(voice_id.encode()) != _EE_OK:
                raise AudioError(f"espeak-ng could not load voice {voice_id!r}")
            buf = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
            pointer = ctypes.c_void_p(ctypes.addressof(buf))
            clauses = []
            while pointer.value:  # one clause per call; the pointer moves on, NULL at the end
                out = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA)
                clauses.append((out or b"").decode("utf-8", "replace"))
            return clauses

    def synth(self, text: str, voice_id: str, rate: int, pitch: int, pitch_range: int, seed: int
              ) -> tuple[np.ndarray, list[tuple[int, int, int, int, object]], int]:
        """int16 samples at espeak's rate, the events, and that rate."""
        with self.lock:
            self.reload()
            lib = self.lib
            if lib.espeak_SetVoiceByName(voice_id.encode()) != _EE_OK:
                raise AudioError(f"espeak-ng could not load voice {voice_id!r}")
            for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch),
                                 (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, 100)):
                lib.espeak_SetParameter(param, value, 0)
            lib.espeak_ng_SetRandSeed(seed)  # last: loading a voice may draw from the generator
            _LIBC.srand(seed)  # the Klatt synthesiser draws its noise from the C library's rand()
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            self._samples, self._events = [], []
            try:
                err = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                if err != _EE_OK:
                    raise AudioError(f"espeak-ng synthesis failed (error {err}) for text {text[:60]!r}")
                samples = np.concatenate(self._samples) if self._samples else np.zeros(0, np.int16)
                return samples, self._events, self.sample_rate
            finally:
                self._samples, self._events = [], []


_LIBC = ctypes.CDLL(None)  # this process's C library (srand/rand are process-global)
_ESPEAK = _Espeak()


@lru_cache(maxsize=1)
def _voice_table() -> dict[str, tuple[str, str]]:
    """Lower-case accepted name -> (espeak identifier, canonical name)."""
    table: dict[str, tuple[str, str]] = {}
    for language, identifier, name in _ESPEAK.voices():
        canonical = language or identifier.rsplit("/", 1)[-1].lower()
        for key in (identifier.lower(), identifier.rsplit("/", 1)[-1].lower(), name.lower()):
            table.setdefault(key, (identifier, canonical))
        table[canonical] = (identifier, canonical)  # the language code wins over file names
    return table


@lru_cache(maxsize=1)
def list_variants() -> list[str]:
    """Names of the voice variants (``f3``, ``m1``, ``klatt``, ``Annie``, ...) usable as ``+name``."""
    folder = os.path.join(_data_path(), "voices", "!v")
    return sorted(os.listdir(folder), key=str.lower) if os.path.isdir(folder) else []


def _data_path() -> str:
    with _ESPEAK.lock:
        _ESPEAK.ensure()
        return _ESPEAK.data_path


def list_voices(language: str | None = "en", *, variants: bool = False) -> list[str]:
    """Voice names accepted by :func:`synthesize`.

    Args:
        language: keep voices whose language code starts with this (``"en"``); ``None`` for all.
        variants: also list every ``voice+variant`` combination (about a hundred per voice).
    """
    table = _voice_table()
    names = sorted({canonical for _, canonical in table.values()
                    if language is None or canonical.startswith(language.lower())})
    if variants:
        names += [f"{n}+{v}" for n in names for v in list_variants()]
    return names


def resolve_voice(voice: str) -> tuple[str, str, bool]:
    """``voice`` -> (espeak name to load, canonical name, rhotic accent); AudioError if unknown."""
    base, _, variant = voice.strip().partition("+")
    table = _voice_table()
    entry = table.get(base.strip().lower())
    if entry is None:
        raise AudioError(f"unknown voice {voice!r}; English voices: {', '.join(list_voices('en'))} "
                         f"(list_voices(None) lists all {len(set(table.values()))})")
    identifier, canonical = entry
    if variant:
        by_lower = {v.lower(): v for v in list_variants()}
        if variant.strip().lower() not in by_lower:
            shown = ", ".join(list_variants()[:30])
            raise AudioError(f"unknown voice variant {variant!r} in {voice!r}; variants include: "
                             f"{shown}, ... (see list_variants())")
        variant = by_lower[variant.strip().lower()]
        return f"{identifier}+{variant}", f"{canonical}+{variant}", canonical in _RHOTIC_LANGUAGES
    return identifier, canonical, canonical in _RHOTIC_LANGUAGES


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            bounds[0] <= value <= bounds[1]):
        raise AudioError(f"{name} must be an integer in [{bounds[0]}, {bounds[1]}], got {value!r}")
    return int(value)


def phonemize(text: str, voice: str = "en-us") -> list[str]:
    """The IPA espeak-ng gives ``text`` with ``voice`` (an espeak language voice), one string per
    clause, words separated by spaces, stress marks (``ˈ ˌ``) and lengths (``ː``) included."""
    if not text.strip():
        return []
    return [c for c in _ESPEAK.ipa(text, resolve_voice(voice)[0]) if c.strip()]


def synthesize(text: str, voice: str = "en-us", *, rate: int = 175, pitch: int = 50,
               pitch_range: int = 50, seed: int = 0) -> Utterance:
    """Speak ``text`` with espeak-ng and return 16 kHz audio with phone and word timings.

    Args:
        text: plain text (UTF-8; no SSML). Numbers, abbreviations and punctuation are read the way
            espeak-ng reads them; sentence punctuation gives pauses (``SIL``).
        voice: ``language[+variant]``, e.g. ``"en-us"``, ``"en-gb+f3"``, ``"en+m1"``
            (see :func:`list_voices`, :func:`list_variants`).
        rate: speaking rate in words per minute, 80..450.
        pitch: base pitch on espeak's 0..100 scale (50 is the voice's default).
        pitch_range: intonation range, 0 (monotone) .. 100 (50 is normal).
        seed: seed of espeak-ng's noise generator (used by the Klatt and breathy variants). The
            same text, voice, parameters and seed give identical samples.

    Returns:
        An :class:`Utterance`; its phones start at 0, end at ``duration`` and leave no gaps.

    Raises:
        AudioError: empty text, unknown voice or variant, out-of-range rate/pitch, or text that
            produced no audio.
    """
    if not isinstance(text, str) or not text.strip():
        raise AudioError(f"text to synthesise is empty: {text!r}")
    if "\0" in text:
        raise AudioError("text to synthesise contains a NUL character")
    rate = _check_range("rate", rate, RATE_RANGE)
    pitch = _check_range("pitch", pitch, PITCH_RANGE)
    pitch_range = _check_range("pitch_range", pitch_range, PITCH_RANGE_RANGE)
    espeak_name, canonical, rhotic = resolve_voice(voice)

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise AudioError(f"seed must be an integer, got {seed!r}")
    samples, events, sr = _ESPEAK.synth(text, espeak_name, rate, pitch, pitch_range,
                                        int(seed) & 0x7FFFFFFF)
    if samples.size == 0:
        raise AudioError(f"espeak-ng produced no audio for text {text[:60]!r}")
    wav = to_mono_16k(samples, sr, name="synthesised speech")
    duration = wav.size / SAMPLE_RATE

    mnemonics = [(s / sr, m) for kind, s, _, _, m in events if kind == _EVENT_PHONEME]
    phones = _phones_from_events(mnemonics, duration, rhotic)
    words = _words_from_events(events, sr, text, phones, duration)
    return Utterance(wav=wav, sample_rate=SAMPLE_RATE, phones=phones, words=words, text=text,
                     voice=canonical, rate=rate, pitch=pitch, pitch_range=pitch_range,
                     espeak_phonemes=mnemonics)


def _phones_from_events(mnemonics: list[tuple[float, str]], duration: float, rhotic: bool
                        ) -> list[Phone]:
    """Phoneme start events -> ARPAbet phones covering ``[0, duration]``.

    Each espeak phoneme lasts until the next one starts (the last until the end of the audio).
    Mnemonics mapped to two labels split their time evenly; those mapped to none extend the
    previous phone. Leading audio before the first phoneme is ``SIL``.
    """
    segments: list[list] = []  # [start, end, label]
    for i, (start, mnemonic) in enumerate(mnemonics):
        end = mnemonics[i + 1][0] if i + 1 < len(mnemonics) else duration
        start, end = min(start, duration), min(end, duration)
        if end <= start:
            continue
        nxt = mnemonics[i + 1][1] if i + 1 < len(mnemonics) else None
        labels = espeak_to_arpabet(mnemonic, rhotic=rhotic, next_mnemonic=nxt)
        if not labels:
            if segments:
                segments[-1][1] = end
            else:
                segments.append([start, end, SIL])
            continue
        step = (end - start) / len(labels)
        for k, label in enumerate(labels):
            segments.append([start + k * step, end if k == len(labels) - 1 else start + (k + 1) * step,
                             label])
    phones: list[Phone] = []
    t = 0.0
    for start, end, label in segments:
        if start > t:  # leading silence (or an event gap): silence
            phones.append(Phone(t, start, SIL))
        phones.append(Phone(max(start, t), end, label))
        t = end
    if t < duration:
        phones.append(Phone(t, duration, SIL))
    return merge_silence(phones)


def _words_from_events(events, sr: int, text: str, phones: list[Phone], duration: float
                       ) -> list[Word]:
    """Word events -> words; a word ends where the next word starts or at the next pause."""
    starts = [(s / sr, pos, length) for kind, s, pos, length, _ in events if kind == _EVENT_WORD]
    sil_starts = [p.start for p in phones if p.label == SIL]
    words = []
    for i, (start, pos, length) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else duration
        # a word event can come before the silence that precedes the word: start after it
        start = next((p.end for p in phones if p.label == SIL and p.start <= start < p.end), start)
        end = min([end] + [s for s in sil_starts if s > start + 1e-9])
        word = text[max(pos - 1, 0): max(pos - 1, 0) + max(length, 0)].strip()
        if end > start and word:
            words.append(Word(start, end, word))
    return words
