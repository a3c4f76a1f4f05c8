"""Coarticulation: timed phones -> 52 ARKit coefficients per frame, deterministically.

The model has three steps.

1. **Targets.** Every phone of the project's phone set (ARPAbet 39 + ``SIL``) has a target: a few
   articulatory *channels* (:data:`CHANNELS`), most of them ARKit shapes with the left/right pair
   written once (``mouthPress`` drives ``mouthPressLeft`` and ``mouthPressRight``), plus ``closure``,
   the fraction of the jaw opening that the lips close over (``mouthClose = closure * jawOpen``, so
   the lips meet whatever the jaw does). Diphthongs (``AY AW OY EY OW``) have two targets, at
   their start and their end. ``HH`` takes the shape of the vowel after it. See :data:`PHONE_TARGETS`.
2. **Dominance blending** (after Cohen & Massaro's coarticulation model). Channels are grouped
   (:data:`GROUPS`: jaw, lip closure, other lip shape, rounding, spreading, tongue). Each phone has a
   dominance per group: how strongly it claims those channels. Its dominance is flat over the core
   of the phone (the central part of its interval) and falls off outside it as a half-Gaussian,
   wider *before* the phone (anticipation, 50-150 ms) than after it (carry-over). A channel at
   time ``t`` is the dominance-weighted mean of the phones' targets. Bilabials own lip closure
   and labiodentals own the lower lip with a *critical* dominance (tens of times a vowel's, with
   short tails), so they reach closure at their centre even between open vowels; consonants that
   do not use the lips leave rounding and spreading to their neighbours, so an upcoming ``UW``
   rounds the lips through the consonants before it. Silence claims every group towards rest
   (lips together, jaw closed); the last phone before a pause carries over longer, so the face
   relaxes over about 100-200 ms.
3. **Mapping** to ARKit: speaker style gains (:class:`SpeakerStyle`), left/right asymmetry,
   ``mouthClose = closure * jawOpen`` where a blended closure of :data:`CONTACT` already counts as
   contact (the bilabial target lies beyond it: the lips compress), lip-opening shapes and the
   tongue scaled by ``1 - closure`` (pressed lips cannot funnel), clamped to ``[0, 1]``.

Frame ``t`` covers ``[t, t + 1) / fps`` seconds (as :func:`thunder3d.audio.frame_times`); its pose is
the model evaluated at the middle of that interval.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from thunder3d.audio.phones import VOWELS
from thunder3d.constants import FPS
from thunder3d.errors import ThunderError
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES

if TYPE_CHECKING:  # any object with .start/.end/.label works
    from thunder3d.audio.phones import Phone

# ---------------------------------------------------------------------------------------- channels

GROUPS: dict[str, tuple[str, ...]] = {
    "jaw": ("jawOpen", "jawForward"),
    "closure": ("closure", "mouthPress", "cheekPuff"),
    "labial": ("mouthRollLower", "mouthRollUpper", "mouthUpperUp", "mouthLowerDown", "mouthShrugUpper"),
    "rounding": ("mouthPucker", "mouthFunnel"),
    "spreading": ("mouthStretch", "mouthSmile"),
    "tongue": ("tongueOut",),
}
"""Articulatory channels by dominance group. A phone claims a whole group with one dominance."""

CHANNELS: tuple[str, ...] = tuple(c for group in GROUPS.values() for c in group)
"""All channels, in the order of the internal ``[T, K]`` tracks."""

_PAIRED = ("mouthPress", "mouthUpperUp", "mouthLowerDown", "mouthStretch", "mouthSmile")
"""Channels that drive an ARKit ``...Left``/``...Right`` pair."""
_OPENING = ("mouthRollLower", "mouthRollUpper", "mouthUpperUp", "mouthLowerDown", "mouthShrugUpper",
            "mouthFunnel", "tongueOut")
"""Channels that part the lips (the tongue too, between them); scaled by ``1 - closure`` so that a
bilabial closure stays closed."""

# dominance levels (relative weights in the blend)
FREE = 0.08  # the phone leaves the group to its neighbours
WEAK = 0.4
MID = 1.0
STRONG = 3.0
CRITICAL = 40.0  # the phone must reach its target: bilabial closure, labiodental lower lip

# half-Gaussian tail widths (seconds) per group: (before the phone = anticipation, after = carry-over)
TAILS: dict[str, tuple[float, float]] = {
    "jaw": (0.075, 0.055),
    "closure": (0.06, 0.045),
    "labial": (0.06, 0.045),
    "rounding": (0.13, 0.07),
    "spreading": (0.09, 0.06),
    "tongue": (0.045, 0.04),
}
CRITICAL_TAILS = (0.015, 0.012)  # critical dominances: short tails, so closure does not swallow vowels
_SIL_CORE = 0.04  # seconds from each end of a silence to its core
CONTACT = 0.85  # blended lip closure at which the lips touch
_PAUSE_CARRY = 1.8  # carry-over tails of a phone before a silence are this much longer
_REST = 1e-4  # dominance of the rest pose everywhere (keeps the blend defined far from any phone)


@dataclasses.dataclass(frozen=True)
class Target:
    """One articulatory target: channel values and per-group dominance (see module docstring)."""

    values: Mapping[str, float]
    dominance: Mapping[str, float]
    core: float = 0.3  # fraction of the phone's duration left out of its flat core at each end

    def row(self) -> np.ndarray:
        """``[K]`` channel values in :data:`CHANNELS` order."""
        return np.array([self.values.get(c, 0.0) for c in CHANNELS], dtype=np.float64)

    def weights(self) -> np.ndarray:
        """``[G]`` dominance per group in :data:`GROUPS` order."""
        return np.array([self.dominance[g] for g in GROUPS], dtype=np.float64)


def _t(values: Mapping[str, float], core: float = 0.3, **dominance: float) -> Target:
    unknown = set(values) - set(CHANNELS)
    assert not unknown, unknown
    full = dict(jaw=MID, closure=MID, labial=WEAK, rounding=WEAK, spreading=WEAK, tongue=MID)
    full.update(dominance)
    return Target(dict(values), full, core)


def _vowel(jaw: float, *, rounded: float = 0.0, funnel: float = 0.0, spread: float = 0.0,
           smile: float = 0.0, lower: float = 0.0, upper: float = 0.0) -> Target:
    """A vowel: jaw by height, lips parted (closure 0), rounding or spreading by quality."""
    values = {"jawOpen": jaw, "mouthPucker": rounded, "mouthFunnel": funnel, "mouthStretch": spread,
              "mouthSmile": smile, "mouthLowerDown": lower, "mouthUpperUp": upper}
    return _t({k: v for k, v in values.items() if v},
              jaw=STRONG if jaw >= 0.45 else 2.0,  # open vowels hold the jaw against neighbours
              closure=STRONG, labial=MID,
              rounding=STRONG if rounded or funnel else WEAK,
              spreading=MID if spread or smile else WEAK)


# Vowels by height: open (AA AE AO, diphthongs from AA/AO) ~0.5 jaw, mid (AH EH ER OW) ~0.3,
# close (IH IY UH UW) ~0.15. Front vowels spread (stretch, a slight smile); back ones round.
_AA = _vowel(0.55, lower=0.22, upper=0.08)
_AE = _vowel(0.50, spread=0.18, lower=0.2, upper=0.12)
_AO = _vowel(0.50, rounded=0.12, funnel=0.3, lower=0.15)
_AH = _vowel(0.4, lower=0.12, upper=0.04)
_EH = _vowel(0.32, spread=0.16, smile=0.06, lower=0.1, upper=0.06)
_ER = _vowel(0.26, rounded=0.22, funnel=0.32, upper=0.06)
_OW = _vowel(0.32, rounded=0.3, funnel=0.45, lower=0.08)
_IH = _vowel(0.18, spread=0.22, smile=0.1, upper=0.04)
_IY = _vowel(0.12, spread=0.32, smile=0.2, upper=0.05)
_UH = _vowel(0.17, rounded=0.38, funnel=0.28)
_UW = _vowel(0.12, rounded=0.72, funnel=0.22)
_EY = _vowel(0.28, spread=0.2, smile=0.1, lower=0.06, upper=0.05)

# Consonants. Bilabials close the lips with a critical dominance and press them; the jaw rises
# but need not shut, since mouthClose follows it. Labiodentals tuck the lower lip under the
# upper teeth. Sibilants and affricates bring the teeth together and flare the lips; SH ZH CH JH
# round. Alveolars, dentals and velars set the jaw and leave the lips to their neighbours.
_BILABIAL = dict(jaw=WEAK, closure=CRITICAL, labial=STRONG, rounding=FREE, spreading=WEAK, core=0.25)
_LABIODENTAL = dict(jaw=STRONG, closure=STRONG, labial=CRITICAL, rounding=WEAK, spreading=WEAK, core=0.1)
_SIL = 0.5
_LINGUAL = dict(closure=MID, labial=FREE, rounding=FREE, spreading=FREE)

PHONE_TARGETS: dict[str, tuple[Target, ...]] = {
    # silence: the rest pose, lips together, claimed gently so speech relaxes into it over ~150 ms
    "SIL": (_t({"closure": 1.0}, jaw=_SIL, closure=_SIL, labial=_SIL, rounding=_SIL, spreading=_SIL,
               tongue=_SIL),),
    # vowels (diphthongs: start and end targets)
    "AA": (_AA,), "AE": (_AE,), "AH": (_AH,), "AO": (_AO,), "EH": (_EH,), "ER": (_ER,),
    "IH": (_IH,), "IY": (_IY,), "UH": (_UH,), "UW": (_UW,),
    "AW": (_AA, _UH), "AY": (_AA, _IH), "EY": (_EY, _IY), "OW": (_OW, _UH), "OY": (_AO, _IY),
    # bilabial stops and nasal: closure, press (stronger for the voiceless stop), a little puff
    "P": (_t({"jawOpen": 0.06, "closure": 1.0, "mouthPress": 0.55, "cheekPuff": 0.06}, **_BILABIAL),),
    "B": (_t({"jawOpen": 0.06, "closure": 1.0, "mouthPress": 0.4, "cheekPuff": 0.04}, **_BILABIAL),),
    "M": (_t({"jawOpen": 0.05, "closure": 1.0, "mouthPress": 0.3}, **_BILABIAL),),
    # labiodentals: lower lip rolled in to the upper teeth, upper lip a little up
    "F": (_t({"jawOpen": 0.1, "mouthRollLower": 0.7, "mouthUpperUp": 0.22, "mouthShrugUpper": 0.1},
             **_LABIODENTAL),),
    "V": (_t({"jawOpen": 0.1, "mouthRollLower": 0.62, "mouthUpperUp": 0.2, "mouthShrugUpper": 0.08},
             **_LABIODENTAL),),
    # rounded consonants
    "W": (_t({"jawOpen": 0.1, "mouthPucker": 0.85, "mouthFunnel": 0.3}, rounding=STRONG, labial=WEAK),),
    "R": (_t({"jawOpen": 0.16, "mouthPucker": 0.35, "mouthFunnel": 0.3}, rounding=MID, labial=WEAK),),
    "SH": (_t({"jawOpen": 0.08, "jawForward": 0.1, "mouthFunnel": 0.5, "mouthPucker": 0.25,
               "mouthUpperUp": 0.15, "mouthLowerDown": 0.12}, jaw=STRONG, rounding=STRONG, labial=MID),),
    "ZH": (_t({"jawOpen": 0.08, "jawForward": 0.1, "mouthFunnel": 0.48, "mouthPucker": 0.25,
               "mouthUpperUp": 0.14, "mouthLowerDown": 0.12}, jaw=STRONG, rounding=STRONG, labial=MID),),
    "CH": (_t({"jawOpen": 0.1, "jawForward": 0.08, "mouthFunnel": 0.45, "mouthPucker": 0.3,
               "mouthUpperUp": 0.12, "mouthLowerDown": 0.1}, jaw=STRONG, rounding=STRONG, labial=MID),),
    "JH": (_t({"jawOpen": 0.1, "jawForward": 0.08, "mouthFunnel": 0.42, "mouthPucker": 0.3,
               "mouthUpperUp": 0.12, "mouthLowerDown": 0.1}, jaw=STRONG, rounding=STRONG, labial=MID),),
    # alveolar sibilants: teeth close (strong jaw), slight spreading
    "S": (_t({"jawOpen": 0.04, "jawForward": 0.05, "mouthStretch": 0.1, "mouthUpperUp": 0.06},
             jaw=STRONG, closure=MID, labial=WEAK, rounding=FREE, spreading=WEAK),),
    "Z": (_t({"jawOpen": 0.04, "jawForward": 0.05, "mouthStretch": 0.1, "mouthUpperUp": 0.06},
             jaw=STRONG, closure=MID, labial=WEAK, rounding=FREE, spreading=WEAK),),
    # dentals: tongue tip between the teeth, small jaw
    "TH": (_t({"jawOpen": 0.12, "tongueOut": 0.3, "mouthUpperUp": 0.08}, jaw=STRONG, tongue=STRONG,
              **_LINGUAL),),
    "DH": (_t({"jawOpen": 0.12, "tongueOut": 0.25, "mouthUpperUp": 0.06}, jaw=STRONG, tongue=STRONG,
              **_LINGUAL),),
    # alveolar stops, nasal and lateral: jaw fairly closed; L opens more and yields to the vowel
    "T": (_t({"jawOpen": 0.1}, jaw=MID, **_LINGUAL),),
    "D": (_t({"jawOpen": 0.1}, jaw=MID, **_LINGUAL),),
    "N": (_t({"jawOpen": 0.11}, jaw=MID, **_LINGUAL),),
    "L": (_t({"jawOpen": 0.18}, jaw=WEAK, **_LINGUAL),),
    # velars: mid jaw, lips free
    "K": (_t({"jawOpen": 0.2}, jaw=MID, **_LINGUAL),),
    "G": (_t({"jawOpen": 0.2}, jaw=MID, **_LINGUAL),),
    "NG": (_t({"jawOpen": 0.18}, jaw=WEAK, **_LINGUAL),),
    # palatal glide: like a short IY
    "Y": (_t({"jawOpen": 0.1, "mouthStretch": 0.26, "mouthSmile": 0.14}, jaw=MID, spreading=MID,
             rounding=WEAK, labial=WEAK),),
    # HH is replaced by the next vowel's first target with weak dominance (see _segments)
    "HH": (_t({"jawOpen": 0.15}, jaw=WEAK, closure=WEAK, labial=FREE, rounding=FREE, spreading=FREE),),
}
"""Per-phone targets (one, or two for diphthongs) in the project's phone set."""

PHONE_SET: tuple[str, ...] = tuple(sorted(PHONE_TARGETS))
_HH_DOMINANCE = 0.3  # scale of the borrowed vowel's dominance for HH


def normalise_phone(label: str) -> str:
    """Upper-case an ARPAbet label and drop a stress digit (``aa1`` -> ``AA``); raise if unknown."""
    key = re.sub(r"[012]$", "", str(label).strip().upper())
    if key in ("", "SP", "SPN", "PAU", "SILENCE", "<SIL>", "SIL"):
        return "SIL"
    if key not in PHONE_TARGETS:
        raise ThunderError(f"unknown phone {label!r}; valid: {' '.join(PHONE_SET)}")
    return key


# ------------------------------------------------------------------------------------------ style


@dataclasses.dataclass(frozen=True)
class SpeakerStyle:
    """How one speaker articulates. The default is a neutral speaker (all gains 1, symmetric).

    Attributes:
        gain: overall articulation size (hypo- < 1 < hyper-articulated), all shapes but closure.
        jaw_lip_ratio: > 1 moves the jaw more and the lips less, < 1 the reverse.
        asymmetry: left/right imbalance in ``[-0.5, 0.5]``; > 0 makes the subject's left side move
            more (left shapes scaled by ``1 + a``, right by ``1 - a``).
        smoothing: scales the coarticulation tails (> 1: laxer, more overlap; < 1: crisper);
            the critical lip gestures (bilabial closure, labiodental) keep their short tails.
        rounding: gain on pucker/funnel.
        spreading: gain on stretch/smile of spread vowels.
    """

    gain: float = 1.0
    jaw_lip_ratio: float = 1.0
    asymmetry: float = 0.0
    smoothing: float = 1.0
    rounding: float = 1.0
    spreading: float = 1.0

    def __post_init__(self) -> None:
        for field in ("gain", "jaw_lip_ratio", "smoothing", "rounding", "spreading"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.05 <= value <= 5.0):
                raise ThunderError(f"SpeakerStyle.{field} must be a number in [0.05, 5], got {value!r}")
        if not (isinstance(self.asymmetry, (int, float)) and abs(self.asymmetry) <= 0.5):
            raise ThunderError(f"SpeakerStyle.asymmetry must be in [-0.5, 0.5], got {self.asymmetry!r}")

    @classmethod
    def sample(cls, rng: np.random.Generator | int | None = None) -> "SpeakerStyle":
        """A plausible random speaker (log-normal gains around 1, small asymmetry)."""
        rng = np.random.default_rng(rng)

        def lognormal(sigma: float, low: float, high: float) -> float:
            return float(np.clip(np.exp(rng.normal(0.0, sigma)), low, high))

        return cls(
            gain=lognormal(0.15, 0.7, 1.4),
            jaw_lip_ratio=lognormal(0.2, 0.65, 1.5),
            asymmetry=float(np.clip(rng.normal(0.0, 0.07), -0.2, 0.2)),
            smoothing=lognormal(0.15, 0.75, 1.35),
            rounding=lognormal(0.18, 0.65, 1.5),
            spreading=lognormal(0.22, 0.55, 1.6),
        )

    def to_dict(self) -> dict[str, float]:
        """JSON-able dict (stored in clips)."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> "SpeakerStyle":
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take the default."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ThunderError(f"unknown SpeakerStyle keys {unknown}; valid: {names}")
        return cls(**{k: float(v) for k, v in data.items()})


# -------------------------------------------------------------------------------------- segments


@dataclasses.dataclass(frozen=True)
class _Segment:
    core_start: float  # seconds; dominance is flat on [core_start, core_end]
    core_end: float
    target: Target
    carry: float = 1.0  # scale of the carry-over tail (longer before a pause: the face relaxes)


def _check_phones(phones: Sequence["Phone"]) -> list[tuple[float, float, str]]:
    """``[(start, end, LABEL)]`` sorted in time, validated; raises ThunderError on bad intervals."""
    out = []
    previous_end = -math.inf
    for i, p in enumerate(phones):
        try:
            start, end, label = float(p.start), float(p.end), p.label
        except AttributeError as err:
            raise ThunderError(f"phone {i} ({p!r}) needs .start, .end and .label") from err
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ThunderError(f"phone {i} {label!r} has a bad interval [{start}, {end}]")
        if start < previous_end - 1e-6:
            raise ThunderError(f"phone {i} {label!r} starts at {start:.3f} s, before the previous "
                               f"phone ends ({previous_end:.3f} s): phones must be in order")
        previous_end = end
        out.append((start, end, normalise_phone(label)))
    return out


def _segments(phones: list[tuple[float, float, str]], duration: float) -> list[_Segment]:
    """Dominance segments: phones (two per diphthong), with silences filling gaps and both ends."""
    # fill gaps and pad both ends with silence
    timeline: list[tuple[float, float, str]] = []
    cursor = -1.0
    for start, end, label in phones:
        if start > cursor + 1e-6:
            timeline.append((cursor, start, "SIL"))
        timeline.append((start, end, label))
        cursor = max(cursor, end)
    timeline.append((cursor, max(cursor, duration) + 1.0, "SIL"))

    segments: list[_Segment] = []
    for i, (start, end, label) in enumerate(timeline):
        dur = end - start
        if label == "SIL":
            margin = min(_SIL_CORE, dur / 2)
            segments.append(_Segment(start + margin, end - margin, PHONE_TARGETS["SIL"][0]))
            continue
        targets = PHONE_TARGETS[label]
        if label == "HH":  # take the next vowel's shape, weakly
            nxt = next((lab for _, _, lab in timeline[i + 1:] if lab != "HH"), "SIL")
            if nxt in VOWELS:
                v = PHONE_TARGETS[nxt][0]
                targets = (Target(v.values, {g: d * _HH_DOMINANCE for g, d in v.dominance.items()}),)
        carry = _PAUSE_CARRY if timeline[i + 1][2] == "SIL" else 1.0
        if len(targets) == 1:
            core = targets[0].core * dur
            segments.append(_Segment(start + core, end - core, targets[0], carry))
        else:  # diphthong: the nucleus (first target) holds most of it, the offglide ends it
            segments.append(_Segment(start + 0.1 * dur, start + 0.5 * dur, targets[0]))
            segments.append(_Segment(start + 0.8 * dur, end - 0.05 * dur, targets[1], carry))
    return segments


# ----------------------------------------------------------------------------------------- blend


def articulation_tracks(phones: Sequence["Phone"], num_frames: int, smoothing: float = 1.0,
                        fps: int = FPS) -> np.ndarray:
    """Blended articulatory channels ``[T, K]`` (:data:`CHANNELS` order), before style and mapping.

    Args:
        phones: timed phones (``.start``, ``.end`` seconds, ``.label`` in the project's phone set).
        num_frames: T.
        smoothing: scales every coarticulation tail.
        fps: frames per second.
    """
    if num_frames < 0:
        raise ThunderError(f"num_frames must be >= 0, got {num_frames}")
    if fps <= 0:
        raise ThunderError(f"fps must be positive, got {fps}")
    segs = _segments(_check_phones(phones), num_frames / fps)
    times = (np.arange(num_frames, dtype=np.float64) + 0.5) / fps  # [T] frame centres
    lo = np.array([s.core_start for s in segs])  # [S]
    hi = np.array([s.core_end for s in segs])
    before = np.clip(lo[None, :] - times[:, None], 0.0, None)  # [T, S] seconds until the core
    after = np.clip(times[:, None] - hi[None, :], 0.0, None)  # [T, S] seconds since the core
    values = np.stack([s.target.row() for s in segs])  # [S, K]
    weights = np.stack([s.target.weights() for s in segs])  # [S, G]
    carry = np.array([s.carry for s in segs])  # [S]

    out = np.zeros((num_frames, len(CHANNELS)), dtype=np.float64)
    for g, (group, channels) in enumerate(GROUPS.items()):
        alpha = weights[:, g]  # [S]
        critical = alpha >= CRITICAL
        # a lax speaker coarticulates more, but lip closure stays a crisp gesture
        ant = np.where(critical, CRITICAL_TAILS[0], TAILS[group][0] * smoothing)  # [S]
        car = np.where(critical, CRITICAL_TAILS[1], TAILS[group][1] * smoothing) * carry
        # half-Gaussian fall-off outside the core, wider before the phone (anticipation)
        z = (before / ant) ** 2 + (after / car) ** 2  # [T, S]
        dom = alpha[None, :] * np.exp(-z)  # [T, S]
        cols = [CHANNELS.index(c) for c in channels]
        # rest (all zero) has a tiny dominance everywhere, so the denominator never vanishes
        out[:, cols] = (dom @ values[:, cols]) / (dom.sum(axis=1, keepdims=True) + _REST)
    return out


def to_arkit(tracks: np.ndarray, style: SpeakerStyle = SpeakerStyle()) -> np.ndarray:
    """Map articulatory channels ``[T, K]`` to ARKit coefficients ``[T, 52]`` float32 in ``[0, 1]``.

    Applies the style gains, the left/right asymmetry, ``mouthClose = closure * jawOpen`` and the
    closure gating of lip-opening shapes.
    """
    ch = {c: tracks[:, i].copy() for i, c in enumerate(CHANNELS)}  # each [T]
    jaw_gain = style.gain * math.sqrt(style.jaw_lip_ratio)
    lip_gain = style.gain / math.sqrt(style.jaw_lip_ratio)
    # bilabial targets lie beyond contact (the lips compress), so a blended closure of
    # CONTACT already brings the lips together
    closure = np.clip(ch.pop("closure") / CONTACT, 0.0, 1.0)
    for c in ch:
        if c in ("jawOpen", "jawForward"):
            ch[c] *= jaw_gain
        else:
            ch[c] *= lip_gain
    for c in ("mouthPucker", "mouthFunnel"):
        ch[c] *= style.rounding
    for c in ("mouthStretch", "mouthSmile"):
        ch[c] *= style.spreading
    for c in _OPENING:  # pressed lips cannot part
        ch[c] *= 1.0 - closure
    ch["jawOpen"] = np.clip(ch["jawOpen"], 0.0, 1.0)

    out = np.zeros((tracks.shape[0], len(ARKIT_NAMES)), dtype=np.float64)
    left, right = 1.0 + style.asymmetry, 1.0 - style.asymmetry
    for c, v in ch.items():
        if c in _PAIRED:
            out[:, ARKIT_INDEX[c + "Left"]] = v * left
            out[:, ARKIT_INDEX[c + "Right"]] = v * right
        else:
            out[:, ARKIT_INDEX[c]] = v
    out[:, ARKIT_INDEX["mouthClose"]] = closure * ch["jawOpen"]
    # an asymmetric speaker's mouth also drifts a little towards the side that moves more
    lips = np.clip(ch["mouthLowerDown"] + ch["mouthStretch"] + ch["mouthPucker"], 0.0, 1.0)
    side = "mouthLeft" if style.asymmetry > 0 else "mouthRight"
    out[:, ARKIT_INDEX[side]] = 0.4 * abs(style.asymmetry) * lips
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def articulate(phones: Sequence["Phone"], num_frames: int, style: SpeakerStyle = SpeakerStyle(),
               fps: int = FPS) -> np.ndarray:
    """Speech coefficients for timed phones: ``[T, 52]`` float32 in ARKit order, in ``[0, 1]``.

    Deterministic: the same phones, frame count, style and fps give the same array (randomness
    enters only through ``style``, e.g. :meth:`SpeakerStyle.sample`). Times outside every phone, and
    ``SIL`` phones, relax to the rest pose (all zero).

    Args:
        phones: timed phones in order (``.start``/``.end`` seconds, ``.label`` ARPAbet or ``SIL``;
            a stress digit is ignored).
        num_frames: T, e.g. ``thunder3d.audio.num_frames(len(wav))``.
        style: the speaker (:class:`SpeakerStyle`).
        fps: animation frame rate.
    """
    return to_arkit(articulation_tracks(phones, num_frames, style.smoothing, fps), style)


__all__ = ["CHANNELS", "GROUPS", "PHONE_SET", "PHONE_TARGETS", "SpeakerStyle", "Target", "articulate",
           "articulation_tracks", "normalise_phone", "to_arkit"]
