"""Speech augmentation that keeps phone timings valid: noise, EQ, reverb, speed, band-limit, level.

Synthetic speech is clean and always sounds the same; models trained on it must work on real
recordings. :func:`augment` applies a random chain of signal-level changes, each with its own
probability and range in :class:`AugmentConfig`:

1. **speed** (``p_speed``): resampling by a rational factor; the clip gets shorter or longer and
   its pitch moves with it. The returned ``time_scale`` (``1 / speed``) is what phone times must be
   multiplied by. This is the only step that changes the length.
2. **reverberation** (``p_reverb``): convolution with a synthetic room impulse response, a direct
   path at lag 0 plus sparse early reflections and exponentially decaying noise with a random RT60.
   The output is cut to the input's length and starts at the direct path, so nothing moves in time.
3. **additive noise** (``p_noise``): white, pink, brown or babble-like noise (speech-shaped noise
   under slow syllable-rate envelopes from several "talkers") at a random SNR, measured against the
   power of the whole clip before noise.
4. **EQ** (``p_eq``): one to three peaking / low-shelf / high-shelf biquads (RBJ cookbook),
   applied forwards and backwards (zero phase, no delay).
5. **band-limiting** (``p_bandlimit``): telephone-like band-pass (about 300-3400 Hz), zero phase.
6. **level**: the result is scaled to a random RMS level, then scaled down if its peak would
   exceed ``peak_limit``: never clipped.

Pitch perturbation is done at synthesis time instead (the espeak ``pitch`` parameter, range
``pitch_jitter`` here, applied by :mod:`thunder3d.data.synth`): it changes the voice's pitch
without touching timing or formants. Everything is pure numpy/scipy and deterministic given the
``numpy.random.Generator`` passed in; each step draws from its own child generator, so changing one
step's probability does not change what the others draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq
from scipy.signal import butter, fftconvolve, resample_poly, sosfiltfilt, tf2sos

from thunder3d.config import Config
from thunder3d.constants import SAMPLE_RATE
from thunder3d.errors import AudioError

NOISE_KINDS = ("white", "pink", "brown", "babble")
EQ_KINDS = ("peak", "lowshelf", "highshelf")
_STEPS = ("speed", "reverb", "noise", "eq", "bandlimit", "level")
_SPEED_DENOMINATOR = 40  # speed factors are k / 40: short polyphase filters, exact time scale


@dataclass(frozen=True)
class AugmentConfig(Config):
    """Probabilities and ranges of :func:`augment` (ranges are ``(low, high)``, drawn uniformly).

    ``AugmentConfig.none()`` switches every step off (level normalisation stays on).
    """

    error = AudioError

    p_speed: float = 0.4
    speed: tuple[float, float] = (0.9, 1.1)  # > 1 is faster (shorter)
    p_reverb: float = 0.35
    rt60: tuple[float, float] = (0.15, 0.7)  # seconds
    drr_db: tuple[float, float] = (0.0, 12.0)  # direct-to-reverberant energy ratio
    p_noise: float = 0.5
    snr_db: tuple[float, float] = (5.0, 35.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    p_eq: float = 0.5
    eq_bands: tuple[int, int] = (1, 3)
    eq_gain_db: tuple[float, float] = (-9.0, 9.0)
    eq_freq: tuple[float, float] = (80.0, 6000.0)  # Hz, drawn log-uniformly
    eq_q: tuple[float, float] = (0.5, 2.0)
    p_bandlimit: float = 0.1
    band_low: tuple[float, float] = (200.0, 400.0)  # Hz
    band_high: tuple[float, float] = (3000.0, 4000.0)  # Hz
    level_db: tuple[float, float] = (-32.0, -18.0)  # RMS in dBFS
    peak_limit: float = 0.99
    pitch_jitter: int = 8  # +- espeak pitch units, applied at synthesis time (see module doc)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise AudioError(f"AugmentConfig.{f.name} must be a probability in [0, 1], got {value}")
            if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], str):
                if value[0] > value[1]:
                    raise AudioError(f"AugmentConfig.{f.name}: low > high in {value}")
        bad = set(self.noise_kinds) - set(NOISE_KINDS)
        if bad or not self.noise_kinds:
            raise AudioError(f"AugmentConfig.noise_kinds: unknown {sorted(bad)}; valid: "
                             f"{', '.join(NOISE_KINDS)}")
        if self.speed[0] <= 0.5 or self.speed[1] >= 2.0:
            raise AudioError(f"AugmentConfig.speed must lie within (0.5, 2), got {self.speed}")
        if self.rt60[0] <= 0:
            raise AudioError(f"AugmentConfig.rt60 must be positive, got {self.rt60}")
        if not 0 < self.peak_limit <= 1:
            raise AudioError(f"AugmentConfig.peak_limit must be in (0, 1], got {self.peak_limit}")
        nyquist = SAMPLE_RATE / 2
        if self.band_high[1] >= nyquist or self.eq_freq[1] >= nyquist or self.band_low[0] <= 0:
            raise AudioError(f"AugmentConfig: filter frequencies must lie in (0, {nyquist:g}) Hz")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation: only level normalisation, no pitch jitter."""
        return cls(p_speed=0.0, p_reverb=0.0, p_noise=0.0, p_eq=0.0, p_bandlimit=0.0,
                   pitch_jitter=0)



# ---- individual steps (plain functions) ---------------------------------------------------------
def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[1] > bounds[0] else float(bounds[0])


def speed_perturb(wav: np.ndarray, speed: float) -> tuple[np.ndarray, float]:
    """Play ``[N]`` audio ``speed`` times faster by resampling (pitch moves with it).

    ``speed`` is rounded to a multiple of 1/40. Returns the ``[ceil(N / speed)]`` float32 result
    and the exact ``time_scale = 1 / speed`` that maps input times to output times.
    """
    ratio = Fraction(round(speed * _SPEED_DENOMINATOR), _SPEED_DENOMINATOR)  # speed, exactly
    if ratio <= 0:
        raise AudioError(f"speed must be positive, got {speed}")
    if ratio == 1:
        return wav.astype(np.float32, copy=False), 1.0
    up, down = ratio.denominator, ratio.numerator  # output / input length = 1 / speed
    return resample_poly(wav, up, down).astype(np.float32), up / down


def room_impulse_response(rng: np.random.Generator, rt60: float, drr_db: float,
                          sr: int = SAMPLE_RATE) -> np.ndarray:
    """A synthetic room impulse response ``[L]`` with its direct path at index 0.

    Direct path 1.0 at lag 0; 3-8 sparse early reflections between 2 and 25 ms; a diffuse tail of
    Gaussian noise under ``exp(-6.91 t / rt60)`` (60 dB of decay at ``rt60``) starting after a
    short pre-delay, scaled so the direct-to-reverberant energy ratio is ``drr_db``. All
    reflections come later than the direct path, so convolution does not move the speech.
    """
    length = int(min(1.2 * rt60, 1.5) * sr)
    t = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.91 * t / rt60)
    predelay = int(rng.uniform(0.003, 0.012) * sr)
    tail[:predelay] = 0.0
    onset = min(int(0.005 * sr), length - predelay)  # 5 ms fade-in of the diffuse tail
    tail[predelay:predelay + onset] *= np.linspace(0.0, 1.0, onset, endpoint=False)
    for _ in range(int(rng.integers(3, 9))):
        k = int(rng.uniform(0.002, 0.025) * sr)
        if k < length:
            tail[k] += rng.choice((-1.0, 1.0)) * rng.uniform(0.2, 0.6) * math.exp(-6.91 * k / sr / rt60)
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / max(float(np.sum(tail**2)), 1e-20))
    rir = tail
    rir[0] = 1.0  # direct path (the tail is zero there: predelay >= 3 ms)
    return rir.astype(np.float64)


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` and keep the first ``len(wav)`` samples: no delay, same length."""
    return fftconvolve(wav.astype(np.float64), rir)[: wav.size]


def _shaped_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ``~ 1 / f**exponent`` (0 white, 1 pink, 2 brown)."""
    if exponent == 0.0:
        return rng.standard_normal(n)
    m = next_fast_len(n, real=True)  # shaped at a fast FFT length, then cut to n
    spec = rfft(rng.standard_normal(m))
    f = rfftfreq(m, 1.0 / SAMPLE_RATE)
    f[0] = f[1] if m > 1 else 1.0
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0  # no DC
    return irfft(spec, m)[:n]


def _babble(rng: np.random.Generator, n: int) -> np.ndarray:
    """Babble-like noise: speech-shaped noise under 3-7 independent syllable-rate envelopes."""
    m = next_fast_len(n, real=True)
    f = rfftfreq(m, 1.0 / SAMPLE_RATE)
    # long-term speech spectrum, roughly: flat to ~500 Hz, then -9 dB per octave, cut below 80 Hz
    shape = 1.0 / (1.0 + (f / 500.0) ** 1.5) * (f / (f + 80.0))
    out = np.zeros(n)
    t = np.arange(n) / SAMPLE_RATE
    for _ in range(int(rng.integers(3, 8))):
        voice = irfft(rfft(rng.standard_normal(m)) * shape, m)[:n]
        rate = rng.uniform(3.0, 6.0)  # syllables per second
        phase = rng.uniform(0, 2 * np.pi)
        env = np.clip(np.sin(2 * np.pi * rate * t + phase + 0.8 * np.sin(2 * np.pi * 0.5 * t)), 0, None)
        out += voice * env**1.5
    return out


def make_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """``[n]`` float64 noise of ``kind`` (one of :data:`NOISE_KINDS`), unit RMS."""
    if kind not in NOISE_KINDS:
        raise AudioError(f"unknown noise kind {kind!r}; valid: {', '.join(NOISE_KINDS)}")
    if kind == "babble":
        noise = _babble(rng, n)
    else:
        noise = _shaped_noise(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    rms = float(np.sqrt(np.mean(noise**2)))
    return noise / rms if rms > 0 else noise


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wav + g * noise`` with ``g`` chosen so that power(wav) / power(g * noise) is ``snr_db``."""
    p_signal = float(np.mean(np.square(wav, dtype=np.float64)))
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_signal == 0.0 or p_noise == 0.0:
        return wav.astype(np.float64)
    gain = math.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return wav + gain * noise


def biquad(kind: str, freq: float, gain_db: float, q: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Second-order sections ``[1, 6]`` of an RBJ-cookbook peaking or shelving filter."""
    a_gain = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / sr
    cos_w0, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    if kind == "peak":
        b = [1 + alpha * a_gain, -2 * cos_w0, 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * cos_w0, 1 - alpha / a_gain]
    elif kind in ("lowshelf", "highshelf"):
        s = 2.0 * math.sqrt(a_gain) * alpha
        sign = 1.0 if kind == "lowshelf" else -1.0
        b = [a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos_w0 + s),
             sign * 2 * a_gain * ((a_gain - 1) - sign * (a_gain + 1) * cos_w0),
             a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos_w0 - s)]
        a = [(a_gain + 1) + sign * (a_gain - 1) * cos_w0 + s,
             -sign * 2 * ((a_gain - 1) + sign * (a_gain + 1) * cos_w0),
             (a_gain + 1) + sign * (a_gain - 1) * cos_w0 - s]
    else:
        raise AudioError(f"unknown EQ filter kind {kind!r}; valid: {', '.join(EQ_KINDS)}")
    return tf2sos(b, a)


def _zero_phase(sos: np.ndarray, wav: np.ndarray) -> np.ndarray:
    """Filter forwards and backwards (no delay); short clips fall back to a shorter pad."""
    padlen = min(3 * (2 * len(sos) + 1) * 10, wav.size - 1)
    return sosfiltfilt(sos, wav, padlen=max(padlen, 0))


def normalize_level(wav: np.ndarray, level_db: float, peak_limit: float = 0.99) -> np.ndarray:
    """Scale to RMS ``level_db`` dBFS, then down (never up) so that ``max|wav| <= peak_limit``."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms == 0.0:
        return wav.astype(np.float32)
    out = wav * (10.0 ** (level_db / 20.0) / rms)
    peak = float(np.max(np.abs(out)))
    if peak > peak_limit:
        out = out * (peak_limit / peak)
    return out.astype(np.float32)


# ---- the chain ----------------------------------------------------------------------------------
def augment(wav: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig(),
            *, log: dict[str, Any] | None = None) -> tuple[np.ndarray, float]:
    """Apply a random augmentation chain to ``[N]`` 16 kHz speech (see the module docstring).

    Args:
        wav: ``[N]`` float audio at 16 kHz.
        rng: the only source of randomness; the same generator state gives the same output.
        config: probabilities and ranges.
        log: if given, filled with what was applied (step name -> parameters), for clip metadata.

    Returns:
        ``(wav, time_scale)``: ``[M]`` float32 audio, ``M = N`` unless speed perturbation ran
        (then ``M = ceil(N * time_scale)``); multiply phone times by ``time_scale``. Finite, peak
        at most ``config.peak_limit``.
    """
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise AudioError(f"augment expects non-empty [N] audio, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise AudioError("augment: input audio contains NaN or inf")
    # one child generator per step, drawn up front: steps do not shift each other's random streams
    seeds = np.random.SeedSequence([int(v) for v in rng.integers(0, 2**32, size=4)])
    step_rng = dict(zip(_STEPS, (np.random.default_rng(s) for s in seeds.spawn(len(_STEPS)))))
    applied: dict[str, Any] = {}
    time_scale = 1.0

    r = step_rng["speed"]
    if r.random() < config.p_speed:
        speed = _uniform(r, config.speed)
        y, time_scale = speed_perturb(x, speed)
        x = y.astype(np.float64)
        applied["speed"] = {"speed": round(1.0 / time_scale, 6)}

    r = step_rng["reverb"]
    if r.random() < config.p_reverb:
        rt60, drr = _uniform(r, config.rt60), _uniform(r, config.drr_db)
        x = reverberate(x, room_impulse_response(r, rt60, drr))
        applied["reverb"] = {"rt60": round(rt60, 4), "drr_db": round(drr, 3)}

    r = step_rng["noise"]
    if r.random() < config.p_noise:
        kind = config.noise_kinds[int(r.integers(len(config.noise_kinds)))]
        snr = _uniform(r, config.snr_db)
        x = add_noise(x, make_noise(r, x.size, kind), snr)
        applied["noise"] = {"kind": kind, "snr_db": round(snr, 3)}

    r = step_rng["eq"]
    if r.random() < config.p_eq:
        bands = []
        sos = []
        lo, hi = math.log(config.eq_freq[0]), math.log(config.eq_freq[1])
        for _ in range(int(r.integers(config.eq_bands[0], config.eq_bands[1] + 1))):
            kind = EQ_KINDS[int(r.integers(len(EQ_KINDS)))]
            freq = math.exp(r.uniform(lo, hi))
            gain, q = _uniform(r, config.eq_gain_db), _uniform(r, config.eq_q)
            sos.append(biquad(kind, freq, gain / 2.0, q))  # applied twice (zero phase): half gain
            bands.append({"kind": kind, "freq": round(freq, 2), "gain_db": round(gain, 3),
                          "q": round(q, 3)})
        if x.size > 1:
            x = _zero_phase(np.concatenate(sos), x)
        applied["eq"] = bands

    r = step_rng["bandlimit"]
    if r.random() < config.p_bandlimit:
        low, high = _uniform(r, config.band_low), _uniform(r, config.band_high)
        sos = butter(2, (low, high), btype="bandpass", fs=SAMPLE_RATE, output="sos")  # x2 = order 4
        if x.size > 1:
            x = _zero_phase(sos, x)
        applied["bandlimit"] = {"low": round(low, 2), "high": round(high, 2)}

    level = _uniform(step_rng["level"], config.level_db)
    out = normalize_level(x, level, config.peak_limit)
    applied["level"] = {"rms_db": round(level, 3)}
    if log is not None:
        log.update(applied)
    return out, time_scale
