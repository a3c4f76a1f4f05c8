"""Non-speech face motion: emotion, blinks, brow raises, gaze and head rotation, independent of audio.

:func:`expression_track` draws, from a random generator, everything a face does besides articulating:

- **Emotion** (the 8 MEAD emotions x 3 intensities): an offset pattern on brows, eyes, cheeks, nose
  *and mouth corners/lips* (:data:`EMOTION_PATTERNS`, values at intensity 3), scaled by
  :data:`INTENSITY_SCALE`, varied per clip (each shape's gain, a one-sided contempt on a random
  side) and drifting slowly (smooth random modulation over seconds).
- **Blinks**: a renewal process (refractory period + gamma-distributed waiting time, 14-20 per
  minute on average), each a 150-300 ms ``eyeBlink`` pulse, now and then slightly asymmetric.
- **Brow raises** loosely tied to emphasis times (e.g. stressed word onsets), with random misses
  and a few spontaneous extra raises.
- **Gaze**: fixations with small saccades between them (``eyeLook*``).
- **Head rotation** ``[T, 3]``: slow drift, an emotion-dependent posture and small nods at
  emphasis times, drawn as pitch, yaw, roll (radians; pitch > 0 tilts the chin down, yaw > 0 turns
  towards the subject's left, roll > 0 tilts the top of the head towards the subject's left) and
  stored as an axis-angle vector (rx, ry, rz) in the rig frame (+x subject's left, +y up, +z out
  of the face), the convention of the clip format and of FLAME's global pose.

:func:`combine` adds these offsets to speech coefficients from :mod:`thunder3d.data.articulation`
with rules that let them interact with the visemes (see its docstring).

All randomness comes from the ``rng`` argument, and the number and order of draws do not depend on
the emotion's intensity, so one seed gives the same clip at every intensity, only scaled.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from thunder3d.constants import FPS
from thunder3d.conditions import EMOTIONS, INTENSITIES, check_emotion, check_intensity
from thunder3d.errors import ThunderError
from thunder3d.rigs.arkit import ARKIT_INDEX, ARKIT_NAMES

INTENSITY_SCALE: dict[int, float] = {1: 0.4, 2: 0.7, 3: 1.0}
"""Multiplier of the emotion pattern at each intensity."""


# ------------------------------------------------------------------------------ emotion patterns

EMOTION_PATTERNS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"mouthSmile": 0.55, "cheekSquint": 0.38, "eyeSquint": 0.2, "mouthDimple": 0.12,
              "mouthUpperUp": 0.05},
    "sad": {"mouthFrown": 0.48, "browInnerUp": 0.5, "mouthShrugLower": 0.22, "mouthPress": 0.1,
            "browDown": 0.08, "eyeLookDown": 0.12, "eyeSquint": 0.06},
    "surprised": {"browInnerUp": 0.6, "browOuterUp": 0.6, "eyeWide": 0.5, "jawOpen": 0.12,
                  "mouthFunnel": 0.05},
    "fear": {"eyeWide": 0.55, "browInnerUp": 0.55, "browOuterUp": 0.25, "mouthStretch": 0.4,
             "browDown": 0.1, "jawOpen": 0.05, "mouthLowerDown": 0.1},
    "disgusted": {"noseSneer": 0.55, "mouthUpperUp": 0.35, "browDown": 0.35, "cheekSquint": 0.22,
                  "eyeSquint": 0.2, "mouthFrown": 0.15, "mouthShrugLower": 0.12},
    "angry": {"browDown": 0.6, "eyeSquint": 0.3, "mouthPress": 0.35, "noseSneer": 0.15,
              "mouthFrown": 0.12, "eyeWide": 0.1, "jawForward": 0.05},
    # one-sided: "Left" here is the side drawn per clip (see _pattern)
    "contempt": {"mouthSmileLeft": 0.42, "mouthDimpleLeft": 0.35, "eyeSquintLeft": 0.08,
                 "mouthPressRight": 0.1, "browDown": 0.05},
}
"""Emotion offsets at intensity 3. A name without a side drives both ``...Left`` and ``...Right``."""

# head posture bias per emotion (pitch, yaw, roll) in radians at intensity 3
_POSTURE: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0), "happy": (-0.02, 0.0, 0.02), "sad": (0.08, 0.0, 0.0),
    "surprised": (-0.04, 0.0, 0.0), "fear": (0.02, 0.0, 0.0), "disgusted": (0.0, 0.03, 0.02),
    "angry": (0.05, 0.0, 0.0), "contempt": (-0.05, 0.04, 0.03),
}

_REGIONS = {  # slow-drift modulation groups (one smooth noise each)
    "brow": ("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "eye": ("eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "eyeLookDownLeft",
            "eyeLookDownRight"),
    "cheek": ("cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "cheekPuff"),
}
_SIDES = ("Left", "Right")


def _expand(pattern: Mapping[str, float], flip: bool) -> np.ndarray:
    """Pattern dict -> ``[52]`` vector; unsided names fill both sides; ``flip`` swaps Left/Right."""
    out = np.zeros(len(ARKIT_NAMES))
    for name, value in pattern.items():
        if name in ARKIT_INDEX:
            if flip and name.endswith(_SIDES):
                base = name.removesuffix("Left").removesuffix("Right")
                name = base + ("Right" if name.endswith("Left") else "Left")
            out[ARKIT_INDEX[name]] += value
        else:
            for side in _SIDES:
                out[ARKIT_INDEX[name + side]] += value
    return out


# ----------------------------------------------------------------------------------- the track


@dataclasses.dataclass
class ExpressionTrack:
    """Non-speech motion of one clip.

    Attributes:
        offsets: ``[T, 52]`` float32 ARKit offsets (emotion, blinks, brow raises, gaze), >= 0.
        head_rotation: ``[T, 3]`` float32 axis-angle (rx, ry, rz) in radians (module docstring).
        blink_times: ``[B]`` float64 blink onsets in seconds.
        emotion: canonical emotion name; intensity: 1..3; fps: frame rate.
    """

    offsets: np.ndarray
    head_rotation: np.ndarray
    blink_times: np.ndarray
    emotion: str
    intensity: int
    fps: int = FPS


def _smooth_noise(rng: np.random.Generator, num_frames: int, channels: int, timescale: float,
                  fps: float) -> np.ndarray:
    """``[T, channels]`` Gaussian-filtered white noise with unit variance and ``timescale`` seconds
    of correlation (the filter's standard deviation)."""
    sigma = max(timescale * fps, 1e-3)
    white = rng.standard_normal((num_frames + int(8 * sigma), channels))  # padded: no edge effects
    smooth = gaussian_filter1d(white, sigma, axis=0, mode="wrap")[:num_frames]
    # variance of white noise after a unit-sum Gaussian filter of std sigma (in samples)
    return smooth * math.sqrt(2.0 * math.sqrt(math.pi) * sigma)


def _pulse(t: np.ndarray, onset: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 pulse: raised-cosine ``rise``, flat ``hold``, raised-cosine ``fall``."""
    up = np.clip((t - onset) / rise, 0.0, 1.0)
    down = np.clip((t - onset - rise - hold) / fall, 0.0, 1.0)
    return 0.5 * (1 - np.cos(np.pi * up)) * 0.5 * (1 + np.cos(np.pi * down))


def blink_process(rng: np.random.Generator, duration: float, rate_per_min: float,
                  refractory: float = 0.4, shape: float = 2.5) -> np.ndarray:
    """Blink onsets ``[B]`` in ``[0, duration)``: a renewal process whose intervals are
    ``refractory + Gamma(shape)`` with mean ``60 / rate_per_min`` seconds, started at a random phase."""
    mean = 60.0 / rate_per_min
    scale = max(mean - refractory, 1e-3) / shape
    times = []
    t = rng.uniform(0.0, 1.0) * (refractory + rng.gamma(shape, scale))  # random phase
    while t < duration:
        times.append(t)
        t += refractory + rng.gamma(shape, scale)
    return np.array(times, dtype=np.float64)


def euler_to_rotvec(pitch_yaw_roll: np.ndarray) -> np.ndarray:
    """Head angles ``[T, 3]`` (pitch, yaw, roll; module docstring) -> axis-angle ``[T, 3]``.

    R = Ry(yaw) Rx(pitch) Rz(-roll): pitch about +x (chin down), yaw about +y (towards +x),
    roll about -z (top of the head towards +x).
    """
    from scipy.spatial.transform import Rotation

    pyr = np.asarray(pitch_yaw_roll, dtype=np.float64).reshape(-1, 3)
    angles = np.stack([pyr[:, 1], pyr[:, 0], -pyr[:, 2]], axis=-1)  # intrinsic Y, X, Z
    return Rotation.from_euler("YXZ", angles).as_rotvec().reshape(np.shape(pitch_yaw_roll))


FROWNING_EMOTIONS = ("angry", "disgusted")
"""Emotions whose emphasis gestures lower the brows (a raise would cancel their brow posture)."""


def expression_track(num_frames: int, emotion: str = "neutral", intensity: int = 1,
                     rng: np.random.Generator | int | None = None,
                     emphasis_times: Sequence[float] | None = None, fps: int = FPS) -> ExpressionTrack:
    """Draw the non-speech motion of one clip.

    Args:
        num_frames: T.
        emotion: one of :data:`EMOTIONS` (see :func:`check_emotion`).
        intensity: 1, 2 or 3.
        rng: a ``numpy.random.Generator`` (or a seed); the only source of randomness.
        emphasis_times: optional times (seconds) of emphasis, e.g. stressed word onsets: brow raises
            and head nods follow some of them.
        fps: frame rate.
    Returns:
        :class:`ExpressionTrack` with ``offsets [T, 52]`` and ``head_rotation [T, 3]``.
    """
    emotion = check_emotion(emotion)
    intensity = check_intensity(intensity)
    if num_frames < 0:
        raise ThunderError(f"num_frames must be >= 0, got {num_frames}")
    rng = np.random.default_rng(rng)
    T = int(num_frames)
    duration = T / fps
    t = (np.arange(T) + 0.5) / fps  # [T] frame centres
    emphasis = np.asarray([] if emphasis_times is None else emphasis_times, dtype=np.float64)
    scale = INTENSITY_SCALE[intensity]
    offsets = np.zeros((T, len(ARKIT_NAMES)))

    # 1. emotion: pattern x per-clip gains x slow drift (draws independent of emotion and intensity)
    flip = bool(rng.integers(2))  # contempt side
    gains = np.exp(rng.normal(0.0, 0.15, len(ARKIT_NAMES)))  # [52] per-shape variation
    clip_gain = rng.uniform(0.85, 1.15)
    drift = 1.0 + 0.22 * _smooth_noise(rng, T, 4, timescale=1.2, fps=fps)  # [T, 4]: brow eye cheek mouth
    drift = np.clip(drift, 0.3, None)
    pattern = _expand(EMOTION_PATTERNS[emotion], flip) * gains * clip_gain * scale  # [52]
    region = np.full(len(ARKIT_NAMES), 3)  # mouth (and jaw) by default
    for r, names in enumerate(_REGIONS.values()):
        for name in names:
            region[ARKIT_INDEX[name]] = r
    offsets += pattern[None, :] * drift[:, region]

    # 2. idle brow motion (any emotion): small, slow, positive
    idle = np.abs(_smooth_noise(rng, T, 2, timescale=0.8, fps=fps)) * 0.04  # [T, 2]
    offsets[:, ARKIT_INDEX["browInnerUp"]] += idle[:, 0]
    offsets[:, ARKIT_INDEX["browOuterUpLeft"]] += idle[:, 1]
    offsets[:, ARKIT_INDEX["browOuterUpRight"]] += idle[:, 1]

    # 3. brow raises: some emphasis times (p = 0.6) plus spontaneous ones (~2 per minute)
    hits = rng.uniform(size=len(emphasis)) < 0.6
    num_extra = rng.poisson(2.0 * duration / 60.0)
    starts = np.concatenate([emphasis[hits] - rng.uniform(0.05, 0.15, int(hits.sum())),
                             rng.uniform(0.0, max(duration, 1e-6), num_extra)])
    raise_track = np.zeros(T)
    for start in starts:
        amp = rng.uniform(0.15, 0.4)
        raise_track += amp * _pulse(t, start, 0.15, rng.uniform(0.1, 0.3), 0.3)
    lopsided = rng.uniform(-0.15, 0.15)
    if emotion in FROWNING_EMOTIONS:  # emphasis furrows the brows instead of raising them
        offsets[:, ARKIT_INDEX["browDownLeft"]] += raise_track * (1 + lopsided)
        offsets[:, ARKIT_INDEX["browDownRight"]] += raise_track * (1 - lopsided)
    else:
        offsets[:, ARKIT_INDEX["browInnerUp"]] += raise_track
        offsets[:, ARKIT_INDEX["browOuterUpLeft"]] += raise_track * 0.8 * (1 + lopsided)
        offsets[:, ARKIT_INDEX["browOuterUpRight"]] += raise_track * 0.8 * (1 - lopsided)

    # 4. gaze: fixations of ~0.4-2.5 s, quick saccades (two frames) to small random targets
    fix_times = [0.0]
    while fix_times[-1] < duration:
        fix_times.append(fix_times[-1] + 0.3 + rng.gamma(2.0, 0.45))
    targets = np.clip(rng.normal(0.0, 0.1, (len(fix_times), 2)), -0.3, 0.3)  # [N, 2] x (left+), y (up+)
    which = np.searchsorted(np.array(fix_times), t, side="right") - 1  # [T]
    gaze = gaussian_filter1d(targets[which], 0.6, axis=0) if T else np.zeros((0, 2))
    gx, gy = gaze[:, 0], gaze[:, 1]
    offsets[:, ARKIT_INDEX["eyeLookOutLeft"]] += np.clip(gx, 0, None)
    offsets[:, ARKIT_INDEX["eyeLookInRight"]] += np.clip(gx, 0, None)
    offsets[:, ARKIT_INDEX["eyeLookInLeft"]] += np.clip(-gx, 0, None)
    offsets[:, ARKIT_INDEX["eyeLookOutRight"]] += np.clip(-gx, 0, None)
    for side in _SIDES:
        offsets[:, ARKIT_INDEX["eyeLookUp" + side]] += np.clip(gy, 0, None)
        offsets[:, ARKIT_INDEX["eyeLookDown" + side]] += np.clip(-gy, 0, None)

    # 5. blinks: renewal process; fast close, brief hold, slower opening
    rate = rng.uniform(14.0, 20.0)
    blink_times = blink_process(rng, duration, rate)
    blink = np.zeros((T, 2))
    for onset in blink_times:
        length = rng.uniform(0.15, 0.3)
        amp = rng.uniform(0.9, 1.0)
        lr = np.ones(2)
        delay = np.zeros(2)
        if rng.uniform() < 0.15:  # occasionally one eye closes less or a little later
            eye = rng.integers(2)
            lr[eye] = rng.uniform(0.75, 0.95)
            delay[eye] = rng.uniform(0.0, 0.02)
        for e in range(2):
            blink[:, e] = np.maximum(blink[:, e], amp * lr[e] * _pulse(
                t, onset + delay[e], 0.3 * length, 0.15 * length, 0.55 * length))
    for e, side in enumerate(_SIDES):
        offsets[:, ARKIT_INDEX["eyeBlink" + side]] += blink[:, e]
        offsets[:, ARKIT_INDEX["eyeWide" + side]] *= 1.0 - blink[:, e]  # a blink closes wide eyes too

    # 6. head: slow drift + emotion posture + nods at some emphasis times
    head = _smooth_noise(rng, T, 3, timescale=1.0, fps=fps) * np.array([0.03, 0.045, 0.015])
    head += np.array(_POSTURE[emotion]) * scale
    nods = rng.uniform(size=len(emphasis)) < 0.5
    for time in emphasis[nods]:
        head[:, 0] += rng.uniform(0.015, 0.045) * np.exp(-0.5 * ((t - time - 0.05) / 0.12) ** 2)

    return ExpressionTrack(
        offsets=np.clip(offsets, 0.0, 1.0).astype(np.float32),
        head_rotation=euler_to_rotvec(head).astype(np.float32),
        blink_times=blink_times,
        emotion=emotion,
        intensity=intensity,
        fps=fps,
    )


# -------------------------------------------------------------------------------------- combine

_I = ARKIT_INDEX
_ACTIVE_JAW = 0.02  # speech jawOpen above which a lip closure counts as an active (bilabial) one
_LIP_OPENING = [_I[n] for n in ("mouthFunnel", "mouthRollLower", "mouthRollUpper", "mouthShrugUpper",
                                "mouthUpperUpLeft", "mouthUpperUpRight", "mouthLowerDownLeft",
                                "mouthLowerDownRight")]
_CORNERS = [_I[n] for n in ("mouthSmileLeft", "mouthSmileRight", "mouthDimpleLeft", "mouthDimpleRight",
                            "mouthStretchLeft", "mouthStretchRight", "mouthFrownLeft",
                            "mouthFrownRight")]


def combine(speech: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Add non-speech offsets to speech coefficients so that they interact with the visemes.

    Rule, per frame, with ``c = speech.mouthClose / speech.jawOpen`` the lip closure of the speech
    (0 open .. 1 lips together), faded out where the speech jaw is below 0.02 (at rest the lips are
    together only passively, and a surprised jaw drop parts them):

    1. everything adds: ``out = speech + offsets``;
    2. jaw: an offset on ``jawOpen`` (surprise) adds to the speech jaw, and ``mouthClose`` grows by
       ``c`` times that offset, so lips that speech holds closed stay closed on a more open jaw;
    3. lip-opening offsets (funnel, lip roll, upper-lip raise, lower-lip depress, shrugs of the
       upper lip) are scaled by ``1 - c``: a bilabial closure is never undone;
       ``mouthClose``/``mouthPress`` from speech are kept as they are;
    4. mouth-corner offsets (smile, dimple, stretch, frown) persist through speech but are halved
       at full lip rounding (``mouthPucker`` pulls the corners in);
    5. ``mouthClose <= jawOpen`` and everything is clamped to ``[0, 1]``.

    Args:
        speech: ``[T, 52]`` ARKit coefficients from :func:`~thunder3d.data.articulation.articulate`.
        offsets: ``[T, 52]`` from :class:`ExpressionTrack` (or any offsets in ARKit layout).
    Returns:
        ``[T, 52]`` float32.
    """
    speech = np.asarray(speech, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    if speech.shape != offsets.shape or speech.ndim != 2 or speech.shape[1] != len(ARKIT_NAMES):
        raise ThunderError(f"combine takes two [T, {len(ARKIT_NAMES)}] arrays, got {speech.shape} "
                           f"and {offsets.shape}")
    jaw, close = speech[:, _I["jawOpen"]], speech[:, _I["mouthClose"]]
    c = np.clip(close / np.maximum(jaw, 1e-6), 0.0, 1.0) * np.clip(jaw / _ACTIVE_JAW, 0.0, 1.0)  # [T]
    off = offsets.copy()
    off[:, _I["mouthClose"]] += c * off[:, _I["jawOpen"]]
    off[:, _LIP_OPENING] *= (1.0 - c)[:, None]
    off[:, _CORNERS] *= (1.0 - 0.5 * np.clip(speech[:, _I["mouthPucker"]], 0.0, 1.0))[:, None]
    out = np.clip(speech + off, 0.0, 1.0)
    out[:, _I["mouthClose"]] = np.minimum(out[:, _I["mouthClose"]], out[:, _I["jawOpen"]])
    return out.astype(np.float32)


__all__ = ["EMOTIONS", "EMOTION_PATTERNS", "INTENSITIES", "INTENSITY_SCALE", "ExpressionTrack",
           "blink_process", "check_emotion", "check_intensity", "combine", "expression_track"]
