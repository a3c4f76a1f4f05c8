"""The synthetic audio-visual corpus: TTS speech with known phone timings -> 52 ARKit coefficients.

``synthesize_corpus(out, hours, seed)`` writes a corpus in the clip format of
:mod:`thunder3d.data.clip` (``<id>.wav`` + ``<id>.npz`` per clip, ``manifest.jsonl``,
and ``synth.json`` with the settings it was made with). Each clip is made in five steps:

1. **speech**: a :class:`VoiceSource` speaks the clip's text (espeak-ng by default; festival and the
   neural Kokoro voices, ``kokoro:VOICE``, as more natural sources) and gives phone and word timings;
2. **augmentation** (:func:`thunder3d.audio.augment.augment`): noise, EQ, reverb, speed,
   band-limit, level; a speed change rescales the phone and word times by the returned factor;
3. **articulation** (:func:`~thunder3d.data.articulation.articulate`) with the speaker's
   :class:`~thunder3d.data.articulation.SpeakerStyle`;
4. **expression** (:func:`~thunder3d.data.expression.expression_track`): the clip's emotion and
   intensity, blinks, brow raises on emphasised words (the longest words' onsets), head rotation;
   :func:`~thunder3d.data.expression.combine` merges it with the speech;
5. **save** (:func:`~thunder3d.data.clip.save_clip`): wav then npz, each atomically.

**Plan.** Everything random is decided from the seed before any audio is made (:func:`plan_corpus`):
a pool of speakers (voice + variant + base rate/pitch + articulation style, each bound to one
split), then clip after clip a split, a speaker of that split, a text of that split, an emotion and
intensity, rate/pitch jitter, and a per-clip seed (``SeedSequence(seed, spawn_key=(index,))``)
for augmentation and expression. Clips are added until the planned speech reaches ``hours``
(durations are estimated from word counts and rate). Asking for more hours with the same seed
extends the plan: the first clips are the same, so a larger corpus can be resumed from a
smaller one (except the few clips a corpus of under ten clips moves to val/test, see Splits). Workers only execute specs, so output never depends on scheduling: the same seed
gives byte-identical files with any number of workers.

**Splits** hold out voices *and* sentences. Clips go to splits in blocks of ten (8 train, 1 val,
1 test, in a seeded order). A corpus smaller than a block may miss val or test that way: then its
last train clips become the missing val/test clips (so every corpus of 3 clips or more has every
split, and training on it evaluates and writes ``best/``), and hours too few for 3 clips are
refused with the hours needed. Speakers are partitioned by
split, and so are espeak's voice variants (timbres): a val or test voice never appears in train,
not even with another accent. Sentences are assigned to a split by a hash of their text
(:func:`thunder3d.data.text.sentence_split`), and a clip of split S only speaks sentences of S.

**Resuming**: a clip whose npz exists is skipped (a clip is complete when its npz exists), so
an interrupted run continues where it stopped (a clip on disk whose split or text differs from the
plan's, e.g. a small corpus' moved clip when the corpus grows, is made again); ``manifest.jsonl`` is rewritten atomically every
``manifest_every`` clips and at the end. A folder made with other settings (seed, voices,
augmentation) is refused rather than mixed.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from thunder3d.audio.augment import AugmentConfig
from thunder3d.audio.augment import augment as augment_audio
from thunder3d.audio.phones import SIL, PHONE_INDEX, Phone, Word, fill_silence
from thunder3d.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.data.articulation import SpeakerStyle, articulate
from thunder3d.data.clip import (
    Clip,
    DataError,
    clip_exists,
    clip_paths,
    load_clip,
    manifest_entry,
    save_clip,
    write_manifest,
)
from thunder3d.data.expression import EMOTIONS, INTENSITIES, combine, expression_track
from thunder3d.data.text import SPLITS, SentenceGenerator, sentence_id
from thunder3d.rigs.arkit import ARKIT_NAMES
from thunder3d.utils.io import atomic_write_text

GENERATOR_VERSION = 1  # bump when the same plan would give different files
CONFIG_NAME = "synth.json"

# clips are dealt to splits in blocks: of every SPLIT_BLOCK clips, SPLIT_COUNTS go to each split
SPLIT_BLOCK = 10
SPLIT_COUNTS = {"train": 8, "val": 1, "test": 1}
NUM_SPEAKERS = {"train": 32, "val": 4, "test": 4}  # espeak speakers per split
FESTIVAL_SPEAKERS_PER_VOICE = 4  # speakers (styles, rates) made from one festival voice

CLIP_SECONDS = (2.0, 8.0)  # planned clip length range
SPEAKER_RATE = (145, 195)  # words per minute (espeak rate)
SPEAKER_PITCH = (25, 75)  # espeak 0..100
SPEAKER_PITCH_RANGE = (30, 85)
CLIP_RATE_JITTER = 0.08  # relative, per clip
# planning estimate of a clip's length: _SECONDS_PER_WORD_AT_1WPM * words / rate (fitted on espeak
# English voices with this corpus's augmentation: ~0.92 * 60 s / wpm)
_SECONDS_PER_WORD_AT_1WPM = 55.0

# espeak-ng English voices not used by default (another script, not an accent)
_EXCLUDED_VOICES = ("en-shaw",)
# espeak variants left out: robotic, whispered or deliberately distorted timbres
_EXCLUDED_VARIANT_WORDS = ("robot", "robosoft", "demonic", "croak", "whisper", "kaukovalta",
                           "tweaky", "storm")


# ---- voice sources ------------------------------------------------------------------------------
class VoiceSource(Protocol):
    """A speech engine: text -> :class:`thunder3d.audio.tts.Utterance` with phone/word timings.

    ``name`` prefixes its voices in a corpus (``festival:cmu_us_slt_arctic_hts``); the default
    source, espeak, uses bare espeak voice names (``en-gb+f3``).
    """

    name: str

    def available(self) -> bool: ...

    def voices(self) -> list[str]: ...

    def synthesize(self, text: str, voice: str, *, rate: int, pitch: int, pitch_range: int): ...


class EspeakSource:
    """espeak-ng through :mod:`thunder3d.audio.tts` (always available; phone timings from events)."""

    name = "espeak"

    def available(self) -> bool:
        return True

    def voices(self) -> list[str]:
        from thunder3d.audio.tts import list_voices

        return [v for v in list_voices("en") if v not in _EXCLUDED_VOICES]

    def variants(self) -> list[str]:
        from thunder3d.audio.tts import list_variants

        return [v for v in list_variants()
                if not any(w in v.lower() for w in _EXCLUDED_VARIANT_WORDS)]

    def synthesize(self, text: str, voice: str, *, rate: int, pitch: int, pitch_range: int):
        from thunder3d.audio.tts import synthesize

        return synthesize(text, voice, rate=rate, pitch=pitch, pitch_range=pitch_range)


# festival's phone names (the "radio" set of its US voices) that are not lower-case ARPAbet
_FESTIVAL_PHONES = {"ax": "AH", "axr": "ER", "pau": SIL, "h#": SIL, "brth": SIL, "#": SIL}


class FestivalSource:
    """Festival (Debian ``festival`` + voice packages such as ``festvox-us-slt-hts``), optional.

    Each call runs ``festival -b`` on a small Scheme script that synthesises the text, saves the
    wave and writes festival's own segment and word end times (exact: they are what the engine
    rendered), so no forced alignment is needed. The rate is applied through festival's
    ``Duration_Stretch`` (HTS voices ignore it); pitch is not controllable and is left to the
    voice (speed augmentation moves it).
    """

    name = "festival"
    # voice packages known to work with English text, most natural first
    KNOWN_VOICES = ("cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone", "cmu_us_awb_cg",
                    "cmu_us_rms_cg", "cmu_us_slt_cg")

    def __init__(self, binary: str = "festival", voice_dirs: Sequence[str] = (
            "/usr/share/festival/voices", "/usr/local/share/festival/voices")):
        self.binary = binary
        self.voice_dirs = tuple(voice_dirs)

    def available(self) -> bool:
        return shutil.which(self.binary) is not None and bool(self.voices())

    def voices(self) -> list[str]:
        if shutil.which(self.binary) is None:
            return []
        found = set()
        for d in self.voice_dirs:
            for lang in ("us", "english"):
                folder = Path(d) / lang
                if folder.is_dir():
                    found |= {p.name for p in folder.iterdir() if p.is_dir()}
        return [v for v in self.KNOWN_VOICES if v in found]

    def synthesize(self, text: str, voice: str, *, rate: int = 175, pitch: int = 50,
                   pitch_range: int = 50):
        from thunder3d.audio.io import load_audio
        from thunder3d.audio.tts import Utterance

        if voice not in self.voices():
            raise DataError(f"festival voice {voice!r} is not installed; installed: "
                            f"{', '.join(self.voices()) or 'none'}")
        stretch = 175.0 / max(rate, 1)
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        with tempfile.TemporaryDirectory(prefix="thunder3d-festival-") as tmp:
            wav_path, seg_path, scm = Path(tmp, "u.wav"), Path(tmp, "u.txt"), Path(tmp, "u.scm")
            scm.write_text(
                f"(voice_{voice})\n"
                f"(Parameter.set 'Duration_Stretch {stretch:.4f})\n"
                f'(set! u (utt.synth (Utterance Text "{escaped}")))\n'
                f'(utt.save.wave u "{wav_path}" \'riff)\n'
                f'(set! fd (fopen "{seg_path}" "w"))\n'
                '(mapcar (lambda (s) (format fd "S %s %f\\n" (item.name s) (item.feat s "end")))'
                " (utt.relation.items u 'Segment))\n"
                '(mapcar (lambda (w) (format fd "W %s %f %f\\n" (item.name w)'
                ' (item.feat w "R:SylStructure.daughter1.daughter1.segment_start")'
                ' (item.feat w "R:SylStructure.daughtern.daughtern.segment_end")))'
                " (utt.relation.items u 'Word))\n"
                "(fclose fd)\n", encoding="utf-8")
            res = subprocess.run([self.binary, "-b", str(scm)], capture_output=True, text=True,
                                 timeout=120)
            if res.returncode != 0 or not wav_path.is_file() or not seg_path.is_file():
                raise DataError(f"festival failed on {text[:60]!r} with voice {voice}: "
                                f"{(res.stderr or res.stdout).strip()[-300:]}")
            wav = load_audio(wav_path)
            lines = seg_path.read_text(encoding="utf-8").splitlines()
        duration = wav.size / SAMPLE_RATE
        phones, words, start = [], [], 0.0
        for line in lines:
            kind, *rest = line.split()
            if kind == "S":
                label, end = rest[0], min(float(rest[1]), duration)
                label = _FESTIVAL_PHONES.get(label, label.upper())
                if label not in PHONE_INDEX:
                    label = "AH"
                if end > start:
                    phones.append(Phone(start, end, label))
                    start = end
            elif kind == "W" and len(rest) == 3:
                ws, we = float(rest[1]), min(float(rest[2]), duration)
                if we > ws:
                    words.append(Word(ws, we, rest[0]))
        phones = fill_silence(phones, duration)
        return Utterance(wav=wav, sample_rate=SAMPLE_RATE, phones=phones, words=words, text=text,
                         voice=f"festival:{voice}", rate=rate, pitch=pitch,
                         pitch_range=pitch_range)


class KokoroSource:
    """Kokoro-82M (:mod:`thunder3d.audio.kokoro`): neural voices trained on human recordings, speaking
    English from espeak-ng phonemes; phone timings by forced alignment. Voices are the voicepacks
    and every blend of two (``jf_alpha+jm_kumo``); the rate sets Kokoro's speed (175 wpm = 1),
    pitch is the voice's own."""

    name = "kokoro"

    def available(self) -> bool:
        from thunder3d.audio import kokoro

        return kokoro.available()

    def voices(self) -> list[str]:
        from thunder3d.audio.kokoro import VOICES

        return [*VOICES, *(f"{a}+{b}" for i, a in enumerate(VOICES) for b in VOICES[i + 1:])]

    def synthesize(self, text: str, voice: str, *, rate: int = 175, pitch: int = 50, pitch_range: int = 50):
        from thunder3d.audio import kokoro

        return kokoro.synthesize(text, voice, speed=float(np.clip(rate / 175.0, 0.5, 2.0)))


SOURCES: dict[str, VoiceSource] = {"espeak": EspeakSource(), "festival": FestivalSource(),
                                   "kokoro": KokoroSource()}


def _source_of(voice: str) -> tuple[VoiceSource, str]:
    """``"festival:kal_diphone"`` -> (FestivalSource, "kal_diphone"); bare names are espeak's."""
    prefix, sep, name = voice.partition(":")
    if not sep:
        return SOURCES["espeak"], voice
    if prefix not in SOURCES:
        raise DataError(f"unknown voice source {prefix!r} in {voice!r}; valid: {', '.join(SOURCES)}")
    return SOURCES[prefix], name


def available_voices(source: str = "espeak") -> list[str]:
    """Voices of ``source`` as :func:`synthesize_corpus` names them (festival ones prefixed)."""
    if source not in SOURCES:
        raise DataError(f"unknown voice source {source!r}; valid: {', '.join(SOURCES)}")
    src = SOURCES[source]
    if not src.available():
        return []
    return src.voices() if source == "espeak" else [f"{source}:{v}" for v in src.voices()]


# ---- plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a voice bound to a split, base rate/pitch and articulation style."""

    id: str
    voice: str  # "en-gb+f3" (espeak) or "festival:cmu_us_slt_arctic_hts"
    split: str
    rate: int
    pitch: int
    pitch_range: int
    style: SpeakerStyle

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["style"] = self.style.to_dict()
        return d


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to make one clip; a worker needs nothing else (and the seed)."""

    index: int
    id: str
    split: str
    speaker: str
    voice: str
    text: str
    sentence_ids: tuple[str, ...]
    rate: int
    pitch: int
    pitch_range: int
    style: SpeakerStyle
    emotion: str
    intensity: int
    seed: int  # corpus seed; the clip's generator is SeedSequence(seed, spawn_key=(index,))
    estimated_seconds: float


@dataclass(frozen=True)
class CorpusPlan:
    speakers: tuple[Speaker, ...]
    clips: tuple[ClipSpec, ...]

    @property
    def estimated_seconds(self) -> float:
        return float(sum(c.estimated_seconds for c in self.clips))


def _child_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def plan_speakers(seed: int, voices: Sequence[str] | None = None) -> tuple[Speaker, ...]:
    """The speaker pool of a corpus: 40 espeak speakers (32 train, 4 val, 4 test) + festival ones.

    espeak variants (timbres) are partitioned between the splits, so held-out speakers differ in
    timbre from every training speaker, whatever their accent. Accents (base voices) are spread
    over all splits. Voices of the other engines (``festival:VOICE``, ``kokoro:VOICE`` in ``voices``) each
    give :data:`FESTIVAL_SPEAKERS_PER_VOICE` speakers; ``festival:VOICE@SPLIT`` binds a voice to a
    split, and in sorted order the other voices go first to train, then test, then val, the rest
    to train.
    """
    voices = list(available_voices("espeak") if voices is None else voices)
    if not voices:
        raise DataError("no voices to synthesise with")
    espeak_bases = [v for v in voices if ":" not in v]
    if any("@" in v for v in espeak_bases):
        raise DataError("only festival voices take @SPLIT (espeak timbres are assigned to splits "
                        f"already): {[v for v in espeak_bases if '@' in v]}")
    bound: dict[str, str] = {}
    for v in voices:
        if ":" in v and "@" in v:
            name, _, split = v.rpartition("@")
            if split not in SPLITS:
                raise DataError(f"voice {v!r}: split must be one of {list(SPLITS)}, got {split!r}")
            bound[name] = split
    festival = sorted({v.rpartition("@")[0] if "@" in v else v for v in voices if ":" in v})
    for v in festival:
        src, name = _source_of(v)
        if name not in src.voices():
            raise DataError(f"voice {v!r} is not available; installed {src.name} voices: "
                            f"{', '.join(src.voices()) or 'none'}")
    rng = _child_rng(seed, 0, 0)
    speakers: list[Speaker] = []

    def new_speaker(voice: str, split: str) -> Speaker:
        return Speaker(
            id=f"spk{len(speakers):03d}", voice=voice, split=split,
            rate=int(rng.integers(SPEAKER_RATE[0], SPEAKER_RATE[1] + 1)),
            pitch=int(rng.integers(SPEAKER_PITCH[0], SPEAKER_PITCH[1] + 1)),
            pitch_range=int(rng.integers(SPEAKER_PITCH_RANGE[0], SPEAKER_PITCH_RANGE[1] + 1)),
            style=SpeakerStyle.sample(rng))

    if espeak_bases:
        known = available_voices("espeak")
        bad = [v for v in espeak_bases if v not in known]
        if bad:
            raise DataError(f"unknown espeak voice(s) {bad} (give accents without +variant; "
                            f"variants are assigned per split); valid: {', '.join(known)}")
        variants = ["", *EspeakSource().variants()]  # "" = the accent's own default timbre
        order = rng.permutation(len(variants))
        n_val = max(NUM_SPEAKERS["val"] // 2, len(variants) // 10)
        n_test = max(NUM_SPEAKERS["test"] // 2, len(variants) // 10)
        pools = {"test": [variants[i] for i in order[:n_test]],
                 "val": [variants[i] for i in order[n_test:n_test + n_val]],
                 "train": [variants[i] for i in order[n_test + n_val:]]}
        for split in SPLITS:  # distinct variants first, accents spread evenly
            pool = pools[split]
            accents = [espeak_bases[i] for i in rng.permutation(len(espeak_bases))]
            for k in range(NUM_SPEAKERS[split]):
                base = accents[(k + k // len(pool)) % len(accents)]
                variant = pool[k % len(pool)]
                speakers.append(new_speaker(f"{base}+{variant}" if variant else base, split))
    festival_split = iter(("train", "test", "val"))
    for v in festival:
        split = bound.get(v) or next(festival_split, "train")
        for _ in range(FESTIVAL_SPEAKERS_PER_VOICE):
            speakers.append(new_speaker(v, split))
    return tuple(speakers)


def _split_of_clip(seed: int, index: int) -> str:
    block, pos = divmod(index, SPLIT_BLOCK)
    deck = [s for s in SPLITS for _ in range(SPLIT_COUNTS[s])]
    return deck[int(_child_rng(seed, 1, block).permutation(SPLIT_BLOCK)[pos])]


def _estimate_seconds(text: str, rate: int) -> float:
    return len(text.split()) * _SECONDS_PER_WORD_AT_1WPM / rate


def iter_plan(seed: int, speakers: Sequence[Speaker],
              splits: Mapping[int, str] | None = None) -> Iterable[ClipSpec]:
    """Clip specs in order, forever (a prefix of this stream is a corpus plan). ``splits`` puts the
    clips of the given indices into another split than their block's deal (:func:`plan_corpus`
    uses it so that a small corpus has val and test clips)."""
    splits = dict(splits or {})
    by_split = {s: [sp for sp in speakers if sp.split == s] for s in SPLITS}
    missing = [s for s in SPLITS if not by_split[s]]
    if missing:
        raise DataError(f"no speakers for split(s) {missing}: give more voices")
    texts = SentenceGenerator(_child_rng(seed, 2, 0).integers(2**63))
    index = 0
    while True:
        rng = _child_rng(seed, 3, index)
        split = splits.get(index) or _split_of_clip(seed, index)
        spk = by_split[split][int(rng.integers(len(by_split[split])))]
        rate = int(np.clip(round(spk.rate * (1 + rng.uniform(-CLIP_RATE_JITTER, CLIP_RATE_JITTER))),
                           80, 450))
        # words for a clip of the target length: several sentences of this split if needed
        words_per_s = rate / _SECONDS_PER_WORD_AT_1WPM
        target = rng.uniform(CLIP_SECONDS[0] + 0.5, CLIP_SECONDS[1] - 1.2)  # voices and speed vary
        want = max(5, int(round(target * words_per_s)))
        sentences: list[str] = []
        remaining = want
        while remaining >= 3 or not sentences:
            n = remaining if remaining <= 14 else min(12, remaining - 5)
            n = max(n, 4)
            sentences.append(texts.sentence(n - 1, n + 1, split=split))
            remaining -= len(sentences[-1].replace(",", " ").split())
        text = " ".join(sentences)
        emotion = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
        intensity = 1 if emotion == "neutral" else int(INTENSITIES[int(rng.integers(len(INTENSITIES)))])
        yield ClipSpec(
            index=index, id=f"syn{index:06d}", split=split, speaker=spk.id, voice=spk.voice,
            text=text, sentence_ids=tuple(sentence_id(s) for s in sentences), rate=rate,
            pitch=spk.pitch, pitch_range=spk.pitch_range, style=spk.style, emotion=emotion,
            intensity=intensity, seed=seed, estimated_seconds=_estimate_seconds(text, rate))
        index += 1


def plan_corpus(seed: int, hours: float, voices: Sequence[str] | None = None,
                max_clips: int | None = None) -> CorpusPlan:
    """Speakers and clip specs for about ``hours`` of speech (estimated), or ``max_clips`` clips
    if that comes first.

    Every plan of 3 clips or more has at least one val and one test clip: when the clips dealt
    so far hold none of a split (a corpus smaller than one block of ten), the last train clips
    are made val/test clips instead (:func:`_small_corpus_splits`; plans that have every split
    are unchanged). ``hours`` too small for 3 clips raises DataError naming the hours needed;
    ``max_clips`` of 1 or 2 is allowed (such a corpus has no val or test clip).
    """
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and hours > 0):
        raise DataError(f"hours must be a positive number, got {hours!r}")
    if max_clips is not None and (not isinstance(max_clips, int) or max_clips < 1):
        raise DataError(f"max_clips must be a positive integer, got {max_clips!r}")
    speakers = plan_speakers(seed, voices)
    clips, total = [], 0.0
    for spec in iter_plan(seed, speakers):
        if total >= hours * 3600.0 or (max_clips is not None and len(clips) >= max_clips):
            break
        clips.append(spec)
        total += spec.estimated_seconds
    if len(clips) < MIN_SPLIT_CLIPS and (max_clips is None or len(clips) < max_clips):
        raise DataError(_too_small(seed, speakers, hours, len(clips)))
    moved = _small_corpus_splits([c.split for c in clips])
    if moved:  # deterministic: the same stream with those clips in their new split
        stream = iter_plan(seed, speakers, splits=moved)
        clips = [next(stream) for _ in range(len(clips))]
    return CorpusPlan(speakers=speakers, clips=tuple(clips))


MIN_SPLIT_CLIPS = len(SPLITS)
"""Clips a corpus needs to have a train, a val and a test clip."""


def _small_corpus_splits(splits: Sequence[str]) -> dict[int, str]:
    """``{clip index: split}`` moving the last train clips of a plan (clips dealt ``splits``) to
    the splits it lacks, so that a plan of 3+ clips has every split; ``{}`` when none is missing."""
    missing = [s for s in SPLITS if s not in splits]
    train = [i for i, s in enumerate(splits) if s == "train"]
    if len(splits) < MIN_SPLIT_CLIPS or not missing or len(train) <= len(missing):
        return {}
    return dict(zip(train[-len(missing):], missing))


def _too_small(seed: int, speakers: Sequence[Speaker], hours: float, count: int) -> str:
    """The DataError message for ``hours`` that plan fewer than :data:`MIN_SPLIT_CLIPS` clips."""
    stream = iter_plan(seed, speakers)
    first = [next(stream) for _ in range(MIN_SPLIT_CLIPS)]
    # the plan stops once the clips planned so far reach `hours`: the first two must fall short
    need = math.floor(sum(c.estimated_seconds for c in first[:-1]) / 3600.0 * 1e4 + 1) / 1e4
    return (f"hours={hours:g} plans only {count} clip(s) (about {hours * 3600:.0f} s of speech); a corpus needs "
            f"at least {MIN_SPLIT_CLIPS} clips (train, val and test), i.e. at least {need:.4f} hours "
            f"(about {need * 3600:.0f} s) with seed {seed}; ask for more hours")


# ---- making one clip ----------------------------------------------------------------------------
def _emphasis_times(words: Sequence[Word], rng: np.random.Generator) -> list[float]:
    """Onsets of the longest words (about one in four), the moments a speaker would stress."""
    if not words:
        return []
    order = sorted(range(len(words)), key=lambda i: -(words[i].end - words[i].start))
    k = max(1, len(words) // 4)
    chosen = sorted(order[:k])
    return [float(words[i].start + rng.uniform(0.0, 0.06)) for i in chosen]


def make_clip(spec: ClipSpec, config: AugmentConfig) -> Clip:
    """Run the five steps of the module docstring for one spec (deterministic)."""
    rng = _child_rng(spec.seed, 4, spec.index)
    aug_rng, expr_rng, pitch_rng = (np.random.default_rng(s)
                                    for s in np.random.SeedSequence(
                                        [int(v) for v in rng.integers(0, 2**32, size=4)]).spawn(3))
    pitch = spec.pitch
    if config.pitch_jitter:
        pitch = int(np.clip(pitch + pitch_rng.integers(-config.pitch_jitter,
                                                        config.pitch_jitter + 1), 0, 100))
    source, voice = _source_of(spec.voice)
    utt = source.synthesize(spec.text, voice, rate=spec.rate, pitch=pitch,
                            pitch_range=spec.pitch_range)

    log: dict[str, Any] = {}
    wav, scale = augment_audio(utt.wav, aug_rng, config, log=log)
    num_frames = wav.size // SAMPLES_PER_FRAME  # drop the last partial frame (trailing silence)
    if num_frames < 1:
        raise DataError(f"clip {spec.id}: speech shorter than one frame")
    wav = wav[: num_frames * SAMPLES_PER_FRAME]
    duration = num_frames / FPS
    phones = fill_silence([Phone(p.start * scale, p.end * scale, p.label) for p in utt.phones],
                          duration)
    words = [Word(w.start * scale, min(w.end * scale, duration), w.text) for w in utt.words
             if w.start * scale < duration]

    speech = articulate(phones, num_frames, spec.style, fps=FPS)
    track = expression_track(num_frames, spec.emotion, spec.intensity, expr_rng,
                             emphasis_times=_emphasis_times(words, expr_rng))
    coeffs = combine(speech, track.offsets)
    meta = {
        "generator": "thunder3d.data.synth", "version": GENERATOR_VERSION, "seed": spec.seed,
        "index": spec.index, "speaker_style": spec.style.to_dict(), "rate": spec.rate,
        "pitch": pitch, "pitch_range": spec.pitch_range, "augment": log,
        "time_scale": scale, "sentence_ids": list(spec.sentence_ids),
        "blink_times": [round(float(t), 4) for t in track.blink_times],
        "words": [[round(w.start, 6), round(w.end, 6), w.text] for w in words],
    }
    return Clip(id=spec.id, audio=wav, coeffs=coeffs, coeff_names=ARKIT_NAMES, rig="arkit",
                fps=FPS, phones=phones, emotion=spec.emotion, intensity=spec.intensity,
                style=spec.speaker, voice=spec.voice, text=spec.text,
                head_rotation=track.head_rotation, split=spec.split, meta=meta)


def _entry(clip: Clip, spec: ClipSpec) -> dict[str, Any]:
    entry = manifest_entry(clip)
    entry.update(speaker=spec.speaker, sentence_ids=list(spec.sentence_ids))
    return entry


# worker state (set once per process by _init_worker)
_WORKER: dict[str, Any] = {}


def _init_worker(out: str, config: AugmentConfig) -> None:
    _WORKER.update(out=out, config=config)


def _run_spec(spec: ClipSpec) -> tuple[int, dict[str, Any] | None, str | None, float]:
    """Make and save one clip; returns (index, manifest entry, error message, audio seconds)."""
    try:
        clip = make_clip(spec, _WORKER["config"])
        save_clip(_WORKER["out"], clip)
        return spec.index, _entry(clip, spec), None, clip.duration
    except Exception as e:  # noqa: BLE001 - reported per clip; the corpus goes on
        return spec.index, None, f"{type(e).__name__}: {e}", 0.0


# ---- the corpus ---------------------------------------------------------------------------------
@dataclass
class SynthReport:
    """What :func:`synthesize_corpus` did."""

    out: Path
    num_clips: int  # clips in the plan
    generated: int  # made by this run
    skipped: int  # already on disk (resumed)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip id, message)
    audio_seconds: float = 0.0  # of all the corpus' clips
    generated_seconds: float = 0.0  # of the clips made by this run
    wall_seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)  # clips per split
    speakers: dict[str, int] = field(default_factory=dict)  # speakers per split

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600.0

    def summary(self) -> str:
        """A few lines for the command line."""
        lines = [f"{self.out}: {self.num_clips} clips, {self.audio_hours:.3f} h of speech "
                 f"({self.generated} made, {self.skipped} already there, {len(self.failed)} failed) "
                 f"in {self.wall_seconds:.1f} s",
                 "splits: " + ", ".join(f"{k} {v} clips / {self.speakers.get(k, 0)} speakers"
                                        for k, v in self.splits.items())]
        lines += [f"failed {cid}: {msg}" for cid, msg in self.failed[:20]]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["audio_hours"] = self.audio_hours
        return d


def _check_config(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to add to a folder made with other settings; record them in a new one."""
    path = out / CONFIG_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e}); remove it or use another folder") from e
        keys = ("seed", "voices", "augment", "version")
        diff = [k for k in keys if old.get(k) != settings.get(k)]
        if diff:
            raise DataError(f"{out} holds a corpus made with other settings ({', '.join(diff)} "
                            f"differ); resume with the same seed/voices/augmentation or use "
                            f"another --out")
    atomic_write_text(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def synthesize_corpus(
    out: str | os.PathLike,
    hours: float,
    seed: int = 0,
    *,
    workers: int = 1,
    augment: AugmentConfig | None = None,
    progress: bool = True,
    voices: Sequence[str] | None = None,
    manifest_every: int = 200,
    max_clips: int | None = None,
    start_method: str | None = None,
) -> SynthReport:
    """Generate (or resume) a synthetic corpus of about ``hours`` of speech in ``out``.

    Args:
        out: corpus folder (created).
        hours: planned amount of speech; clips are 2-8 s.
        seed: the only source of randomness; the same seed gives byte-identical clips.
        workers: processes; 1 runs in this process. The files do not depend on it.
        augment: augmentation settings (default :class:`AugmentConfig()`;
            ``AugmentConfig.none()`` for clean speech).
        progress: show a tqdm progress bar.
        voices: voices to build speakers from: espeak accents (``en-us``, ``en-gb``, ...;
            default: every English espeak voice) and optional ``festival:VOICE`` entries
            (see :func:`available_voices`).
        manifest_every: rewrite ``manifest.jsonl`` after this many new clips.
        max_clips: stop the plan after this many clips even if ``hours`` is not reached.
        start_method: multiprocessing start method (default ``fork`` where available).

    Returns:
        A :class:`SynthReport`. Clips that fail are listed in ``report.failed`` (the rest of the
        corpus is still made); the manifest lists only complete clips.
    """
    t0 = time.perf_counter()
    if not isinstance(workers, int) or workers < 1:
        raise DataError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    config = AugmentConfig() if augment is None else augment
    out = Path(out)
    plan = plan_corpus(seed, hours, voices, max_clips)  # refuses bad hours before a folder is made
    out.mkdir(parents=True, exist_ok=True)
    voice_list = sorted({s.voice for s in plan.speakers})
    _check_config(out, {
        "seed": seed, "voices": None if voices is None else sorted(voices),
        "augment": config.to_dict(), "version": GENERATOR_VERSION,
        "speakers": [s.to_dict() for s in plan.speakers], "voice_list": voice_list,
    })

    entries: dict[int, dict[str, Any]] = {}
    todo: list[ClipSpec] = []
    for spec in plan.clips:
        if clip_exists(out, spec.id):
            try:
                clip = load_clip(out, spec.id, audio=False)
            except DataError:
                clip = None  # unreadable: make it again
            # a clip of another plan (a small corpus moves its last train clips to val/test, a
            # larger one keeps them in train): made again for this one
            if clip is not None and clip.split == spec.split and clip.text == spec.text:
                entries[spec.index] = _entry(clip, spec)
                continue
            for p in clip_paths(out, spec.id):
                p.unlink(missing_ok=True)
        todo.append(spec)
    skipped = len(entries)
    report = SynthReport(out=out, num_clips=len(plan.clips), generated=0, skipped=skipped)
    by_index = {s.index: s for s in plan.clips}

    def write() -> None:
        write_manifest(out, [entries[i] for i in sorted(entries)])

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan.clips), initial=skipped, unit="clip", desc="synth",
                   dynamic_ncols=True, file=sys.stderr)
    since_write = 0

    def collect(result: tuple[int, dict[str, Any] | None, str | None, float]) -> None:
        nonlocal since_write
        index, entry, error, seconds = result
        if entry is None:
            report.failed.append((by_index[index].id, error or "unknown error"))
        else:
            entries[index] = entry
            report.generated += 1
            report.generated_seconds += seconds
        since_write += 1
        if bar is not None:
            bar.update(1)
        if since_write >= manifest_every:
            write()
            since_write = 0

    try:
        if workers == 1 or len(todo) <= 1:
            _init_worker(str(out), config)
            for spec in todo:
                collect(_run_spec(spec))
        else:
            method = start_method or ("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            ctx = mp.get_context(method)
            with ctx.Pool(workers, initializer=_init_worker, initargs=(str(out), config)) as pool:
                for result in pool.imap_unordered(_run_spec, todo, chunksize=1):
                    collect(result)
    finally:
        if bar is not None:
            bar.close()
        write()
    report.audio_seconds = float(sum(e["duration"] for e in entries.values()))
    report.splits = {s: sum(e["split"] == s for e in entries.values()) for s in SPLITS}
    report.speakers = {s: sum(sp.split == s for sp in plan.speakers) for s in SPLITS}
    report.wall_seconds = time.perf_counter() - t0
    return report
