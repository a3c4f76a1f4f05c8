"""The one phone inventory of thunder3d, phone timings, and the espeak-ng -> ARPAbet mapping.

Every phone label in the project (TTS timings, forced alignment, phone recognition, the ``phones``
of a clip on disk, phone-posterior targets) is one of :data:`PHONES`: the 39 ARPAbet phones of
CMUdict / the pocketsphinx en-US model, without stress digits, plus ``SIL`` for silence and
pauses. ``SIL`` has index 0 so that zero-filled label arrays mean silence.

A timed phone is a :class:`Phone` (``start``/``end`` in seconds, ``label``); a sequence of them is
a plain ``list[Phone]`` (:data:`PhoneSequence`) kept sorted, non-overlapping and, after
:func:`fill_silence`, covering ``[0, duration]`` without gaps. :func:`to_frame_labels` samples a
sequence at animation-frame centres; :func:`phones_to_json` / :func:`phones_from_json` store it.

espeak-ng reports phonemes by its own ASCII mnemonics (``@``, ``3:``, ``aI``, ``tS``, ...), with a
stress mark in front of stressed vowels (``'`` primary, ``,`` secondary). :func:`espeak_to_arpabet`
maps one mnemonic to zero, one or two ARPAbet labels (see :data:`ESPEAK_TO_ARPABET` for the table
and its notes); anything it does not know goes through a documented fallback and never raises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from thunder3d.constants import FPS
from thunder3d.errors import AudioError

SIL = "SIL"

# ARPAbet as in CMUdict / pocketsphinx (stress digits dropped), SIL first.
PHONES: tuple[str, ...] = (
    SIL,
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
)
NUM_PHONES = len(PHONES)  # 40
PHONE_INDEX: dict[str, int] = {p: i for i, p in enumerate(PHONES)}

# ---- phone classes (frozensets of labels) -------------------------------------------------------
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY",
                    "UH", "UW"})
DIPHTHONGS = frozenset({"AW", "AY", "EY", "OW", "OY"})
CONSONANTS = frozenset(PHONES[1:]) - VOWELS
# jaw clearly open at the nucleus. AH is left out: in running speech ARPAbet's AH is mostly the
# reduced schwa ("a", "the", "-tion"), a short mid-central vowel, not an open one.
OPEN_VOWELS = frozenset({"AA", "AE", "AO", "AW", "AY"})
CLOSE_VOWELS = frozenset({"IY", "IH", "UW", "UH"})  # high tongue, small jaw opening
SPREAD_VOWELS = frozenset({"IY", "IH", "EY", "EH", "AE"})  # unrounded front vowels, lips spread
# lips rounded (and protruded) during the sound: back rounded vowels, diphthongs ending or starting
# rounded, and the labial-velar glide
ROUNDED = frozenset({"UW", "UH", "OW", "OY", "AO", "AW", "W"})
# lips protruded without full rounding: post-alveolars, and English /r/ and r-coloured schwa
PROTRUDED = frozenset({"SH", "ZH", "CH", "JH", "R", "ER"})

BILABIAL = frozenset({"P", "B", "M"})  # lips closed: the phones lip-sync is judged on most
LABIODENTAL = frozenset({"F", "V"})  # lower lip against the upper teeth
DENTAL = frozenset({"TH", "DH"})  # tongue tip between or behind the teeth
ALVEOLAR = frozenset({"T", "D", "S", "Z", "N", "L"})
POSTALVEOLAR = frozenset({"SH", "ZH", "CH", "JH", "R"})
PALATAL = frozenset({"Y"})
VELAR = frozenset({"K", "G", "NG"})
GLOTTAL = frozenset({"HH"})
LABIAL_VELAR = frozenset({"W"})

STOPS = frozenset({"P", "B", "T", "D", "K", "G"})
AFFRICATES = frozenset({"CH", "JH"})
FRICATIVES = frozenset({"F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH"})
NASALS = frozenset({"M", "N", "NG"})
LIQUIDS = frozenset({"L", "R"})
GLIDES = frozenset({"W", "Y"})
VOICED = frozenset({"B", "D", "G", "JH", "V", "DH", "Z", "ZH", "M", "N", "NG", "L", "R", "W",
                    "Y"}) | VOWELS

PHONE_CLASSES: dict[str, frozenset[str]] = {
    "vowels": VOWELS, "diphthongs": DIPHTHONGS, "consonants": CONSONANTS,
    "open_vowels": OPEN_VOWELS, "close_vowels": CLOSE_VOWELS, "spread_vowels": SPREAD_VOWELS,
    "rounded": ROUNDED, "protruded": PROTRUDED,
    "bilabial": BILABIAL, "labiodental": LABIODENTAL, "dental": DENTAL, "alveolar": ALVEOLAR,
    "postalveolar": POSTALVEOLAR, "palatal": PALATAL, "velar": VELAR, "glottal": GLOTTAL,
    "labial_velar": LABIAL_VELAR,
    "stops": STOPS, "affricates": AFFRICATES, "fricatives": FRICATIVES, "nasals": NASALS,
    "liquids": LIQUIDS, "glides": GLIDES, "voiced": VOICED,
}


def phone_index(label: str) -> int:
    """Index of ``label`` in :data:`PHONES` (``SIL`` is 0); raises AudioError for unknown labels."""
    try:
        return PHONE_INDEX[label]
    except KeyError:
        raise AudioError(f"unknown phone label {label!r}; valid labels: {', '.join(PHONES)}") from None


# ---- timed phones -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phone:
    """One phone: ``label`` (from :data:`PHONES`) from ``start`` to ``end`` seconds."""

    start: float
    end: float
    label: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Word:
    """One word of an utterance from ``start`` to ``end`` seconds (its pauses excluded)."""

    start: float
    end: float
    text: str


PhoneSequence = list[Phone]  # sorted by time, non-overlapping; see validate_phones

_TOL = 1e-6  # seconds; float slack for comparisons of boundaries


def validate_phones(phones: Sequence[Phone], duration: float | None = None, *,
                    name: str = "phones") -> None:
    """Raise AudioError unless ``phones`` are well formed.

    Checks: known labels, finite times, ``start < end`` for every phone, sorted and
    non-overlapping (``phone[i].start >= phone[i-1].end``), within ``[0, duration]`` when a duration
    is given. Gaps are allowed (see :func:`fill_silence` to close them).
    """
    prev_end = 0.0
    for i, p in enumerate(phones):
        if p.label not in PHONE_INDEX:
            raise AudioError(f"{name}[{i}]: unknown phone label {p.label!r}; valid labels: "
                             f"{', '.join(PHONES)}")
        if not (math.isfinite(p.start) and math.isfinite(p.end)):
            raise AudioError(f"{name}[{i}]: non-finite time ({p.start}, {p.end})")
        if p.start < -_TOL:
            raise AudioError(f"{name}[{i}]: starts before 0 ({p.start:.6f} s)")
        if p.end <= p.start:
            raise AudioError(f"{name}[{i}] {p.label}: end {p.end:.6f} s is not after start "
                             f"{p.start:.6f} s")
        if p.start < prev_end - _TOL:
            raise AudioError(f"{name}[{i}] {p.label}: starts at {p.start:.6f} s, before the previous "
                             f"phone ends ({prev_end:.6f} s): phones must be sorted and not overlap")
        if duration is not None and p.end > duration + _TOL:
            raise AudioError(f"{name}[{i}] {p.label}: ends at {p.end:.6f} s, after the audio "
                             f"({duration:.6f} s)")
        prev_end = p.end


def fill_silence(phones: Iterable[Phone], duration: float, *, min_gap: float = 0.0) -> PhoneSequence:
    """Close the gaps of a sorted phone list so that it covers ``[0, duration]`` exactly.

    Gaps longer than ``min_gap`` seconds become ``SIL``; shorter ones are absorbed by extending the
    phone before them (or, at the very start, the first phone). Phones are clipped to
    ``[0, duration]`` (those left empty are dropped) and neighbouring ``SIL`` are merged.
    """
    out: PhoneSequence = []
    t = 0.0
    for p in phones:
        start, end = max(p.start, 0.0), min(p.end, duration)
        if end <= start or end <= t:
            continue
        start = max(start, t)
        if start - t > min_gap:
            out.append(Phone(t, start, SIL))
        elif start > t:
            if out:
                out[-1] = Phone(out[-1].start, start, out[-1].label)
            else:
                start = t
        out.append(Phone(start, end, p.label))
        t = end
    if duration - t > min_gap or not out:
        if duration > t:
            out.append(Phone(t, duration, SIL))
    elif duration > t:
        out[-1] = Phone(out[-1].start, duration, out[-1].label)
    return merge_silence(out)


def merge_silence(phones: Iterable[Phone]) -> PhoneSequence:
    """Merge runs of touching ``SIL`` phones into one."""
    out: PhoneSequence = []
    for p in phones:
        if out and p.label == SIL and out[-1].label == SIL and p.start <= out[-1].end + _TOL:
            out[-1] = Phone(out[-1].start, max(out[-1].end, p.end), SIL)
        else:
            out.append(p)
    return out


def to_frame_labels(phones: Sequence[Phone], num_frames: int, fps: float = FPS) -> np.ndarray:
    """Phone index at the centre of each animation frame.

    Frame ``t`` covers ``[t / fps, (t + 1) / fps)``; its label is that of the phone containing the
    time ``(t + 0.5) / fps`` (a phone owns ``[start, end)``), ``SIL`` (0) where no phone does.

    Returns:
        ``[num_frames]`` int64 indices into :data:`PHONES`.
    """
    if num_frames < 0:
        raise AudioError(f"num_frames must be >= 0, got {num_frames}")
    labels = np.zeros(num_frames, dtype=np.int64)
    if not phones or num_frames == 0:
        return labels
    centres = (np.arange(num_frames) + 0.5) / fps  # [T]
    starts = np.array([p.start for p in phones])  # [N], sorted
    ends = np.array([p.end for p in phones])
    idx = np.array([phone_index(p.label) for p in phones])
    k = np.searchsorted(starts, centres, side="right") - 1  # last phone starting at or before
    inside = (k >= 0) & (centres < ends[np.clip(k, 0, None)])
    labels[inside] = idx[k[inside]]
    return labels


def phones_to_json(phones: Sequence[Phone], *, indent: int | None = None) -> str:
    """Serialise as a JSON list of ``{"start", "end", "label"}`` objects (times in seconds)."""
    return json.dumps([{"start": round(p.start, 6), "end": round(p.end, 6), "label": p.label}
                       for p in phones], indent=indent)


def phones_from_json(data: str | bytes | list, duration: float | None = None) -> PhoneSequence:
    """Parse :func:`phones_to_json` output (a string, or the already-decoded list) and validate it.

    Also accepts ``[start, end, label]`` triples. Raises AudioError for malformed input.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise AudioError(f"phones: not valid JSON ({e})") from e
    if not isinstance(data, list):
        raise AudioError(f"phones: expected a JSON list, got {type(data).__name__}")
    phones = []
    for i, item in enumerate(data):
        try:
            if isinstance(item, dict):
                start, end, label = item["start"], item["end"], item["label"]
            else:
                start, end, label = item
            phones.append(Phone(float(start), float(end), str(label)))
        except (KeyError, TypeError, ValueError) as e:
            raise AudioError(f"phones[{i}]: expected {{start, end, label}}, got {item!r}") from e
    validate_phones(phones, duration)
    return phones


def phones_to_arrays(phones: Sequence[Phone]) -> dict[str, np.ndarray]:
    """``{"phone_start": [N] float64 s, "phone_end": [N] float64 s, "phone_label": [N] str}``
    (the clip ``.npz`` layout)."""
    return {
        "phone_start": np.array([p.start for p in phones], dtype=np.float64),
        "phone_end": np.array([p.end for p in phones], dtype=np.float64),
        "phone_label": np.array([p.label for p in phones], dtype="<U3"),
    }


def phones_from_arrays(start: np.ndarray, end: np.ndarray, label: np.ndarray) -> PhoneSequence:
    """Inverse of :func:`phones_to_arrays`, validated."""
    if not (len(start) == len(end) == len(label)):
        raise AudioError(f"phone arrays differ in length: {len(start)}, {len(end)}, {len(label)}")
    phones = [Phone(float(s), float(e), str(lab)) for s, e, lab in zip(start, end, label)]
    validate_phones(phones)
    return phones


# ---- espeak-ng mnemonics -> ARPAbet -------------------------------------------------------------
# Keys are espeak-ng mnemonics (en / en-us phoneme tables, espeak-ng 1.52) without stress marks.
# A value is a tuple of labels: one label is the usual case; two labels split the espeak phone's
# time evenly (r-coloured vowels of rhotic accents: "car" 'A@ = AA R, as CMUdict writes it); an
# empty tuple means "not a phone of its own", and its time is added to the phone before it.
#
# Notes on choices: '0' (LOT), 'O2' (CLOTH) and 'A:' are AA/AO as in CMUdict; 'aa' (BATH) is AE
# in every accent (American value); 'a#' and '@' (reduced vowels) are AH; 'i' (happY) is IY;
# 'I2'/'I#' (reduced i) are IH; '3' (lettER) is ER for rhotic voices and AH otherwise; the flap and
# glottal-stop allophones of t ('t#', 't2', '?') are T; '@L', 'l-', 'n-', 'm-' (syllabic) are the
# consonant; ';' (palatal on-glide that espeak inserts between vowels) is merged into the previous
# phone; 'x' (loch) is HH; pauses '_', '_:', '_!', '_|' are SIL.
ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # consonants
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",),
    "f": ("F",), "v": ("V",), "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",),
    "S": ("SH",), "Z": ("ZH",), "h": ("HH",), "x": ("HH",), "tS": ("CH",), "dZ": ("JH",),
    "m": ("M",), "n": ("N",), "N": ("NG",), "l": ("L",), "r": ("R",), "w": ("W",), "j": ("Y",),
    "t#": ("T",), "t2": ("T",), "t[": ("T",), "d#": ("D",), "?": ("T",), "r-": ("R",),
    "l#": ("L",), "w#": ("W",), "hw": ("W",), "z#": ("Z",), "s#": ("S",),
    "@L": ("L",), "l-": ("L",), "n-": ("N",), "m-": ("M",),
    ";": (),
    # vowels
    "@": ("AH",), "@-": ("AH",), "@2": ("AH",), "@5": ("AH",), "a#": ("AH",), "V": ("AH",),
    "a": ("AE",), "aa": ("AE",), "E": ("EH",), "e": ("EH",),
    "I": ("IH",), "I2": ("IH",), "I#": ("IH",), "i": ("IY",), "i:": ("IY",),
    "0": ("AA",), "A:": ("AA",), "A": ("AA",), "O:": ("AO",), "O": ("AO",), "O2": ("AO",),
    "U": ("UH",), "u:": ("UW",), "u": ("UW",), "3:": ("ER",), "IR": ("ER",), "VR": ("ER",),
    "eI": ("EY",), "aI": ("AY",), "aI2": ("AY",), "aU": ("AW",), "OI": ("OY",), "oU": ("OW",),
    "o": ("OW",), "o:": ("OW",),
    # r-coloured vowels (rhotic voices; see _NON_RHOTIC for the others)
    "3": ("ER",), "A@": ("AA", "R"), "o@": ("AO", "R"), "O@": ("AO", "R"), "e@": ("EH", "R"),
    "i@": ("IH", "R"), "i@3": ("IH", "R"), "U@": ("UH", "R"), "aI@": ("AY", "ER"),
    "aI3": ("AY", "ER"), "aU@": ("AW", "ER"),
    # pauses
    "_": (SIL,), "_:": (SIL,), "_!": (SIL,), "_|": (SIL,), "_^_": (SIL,),
}
# the same mnemonics for non-rhotic voices (en, en-gb-x-rp, en-029, ...): no R, centring schwa
_NON_RHOTIC: dict[str, tuple[str, ...]] = {
    "3": ("AH",), "A@": ("AA",), "o@": ("AO",), "O@": ("AO",), "e@": ("EH",), "i@": ("IH", "AH"),
    "U@": ("UH", "AH"), "aI@": ("AY", "AH"), "aI3": ("AY", "AH"), "aU@": ("AW", "AH"),
}
_STRESS_MARKS = "',%=!"
ESPEAK_FALLBACK = "AH"  # label of a mnemonic that nothing else matches (a neutral, half-open vowel)


def espeak_to_arpabet(mnemonic: str, *, rhotic: bool = True, next_mnemonic: str | None = None
                      ) -> tuple[str, ...]:
    """Map one espeak-ng phoneme mnemonic to ARPAbet labels (see :data:`ESPEAK_TO_ARPABET`).

    Args:
        mnemonic: as reported by espeak-ng, possibly with stress marks (``'aI``, ``,E``).
        rhotic: the voice's accent pronounces post-vocalic r (en-us, Scottish); otherwise
            r-coloured vowels lose their R.
        next_mnemonic: the following mnemonic, if any: an r-coloured vowel before an ``r`` drops
            its own R ("period" 'i@ r -> IH R, not IH R R).

    Fallback for mnemonics not in the table (never raises): strip stress marks; a leading ``_`` is
    a pause (SIL); then try the longest known prefix ("aI@3" -> "aI@"); otherwise
    :data:`ESPEAK_FALLBACK`. Unstressed 'i@' (the ending of "million") becomes Y AH.
    """
    stressed = mnemonic[:1] in "',"
    m = mnemonic.lstrip(_STRESS_MARKS)
    if not m:
        return ()
    if m.startswith("_"):
        return (SIL,)
    if m == "i@" and not stressed and rhotic:
        return ("Y", "AH")
    labels = (_NON_RHOTIC.get(m) if not rhotic else None) or ESPEAK_TO_ARPABET.get(m)
    if labels is None:
        labels = (ESPEAK_FALLBACK,)
        for k in range(len(m) - 1, 0, -1):
            if m[:k] in ESPEAK_TO_ARPABET:
                labels = (_NON_RHOTIC.get(m[:k]) if not rhotic else None) or ESPEAK_TO_ARPABET[m[:k]]
                break
    if len(labels) > 1 and labels[-1] == "R" and next_mnemonic is not None:
        if next_mnemonic.lstrip(_STRESS_MARKS) in ("r", "r-"):
            labels = labels[:-1]
    return labels
