"""Label degradation: the errors a video face reconstruction makes, applied to a clip's motion.

The synthetic corpus has perfect motion labels (the articulation model made them from the exact
phone timings). The paper's talkers are trained on pseudo-ground-truth reconstructed from video,
whose lips are imperfect; a listener has more to add there. :class:`DegradeConfig` reproduces those
errors on the *training* motion only (evaluation stays on clean held-out clips), so the effect of the
THUNDER loss can be measured in that regime (``docs/results/thunder_effect.md``):

=============  ==============================================================================
``lag``        a per-clip constant time offset, uniform in ``[-lag, lag]`` frames (audio-video
               sync error of a capture)
``jitter``     a smooth per-frame time warp with this standard deviation in frames (tracking
               jitter: the reconstruction is early here and late there)
``closure``    bilabial under-closure: on frames whose phone is P, B or M, the motion is blended by
               this fraction towards its heavily smoothed version, so short closures stop closing
               (trackers miss the lip contact)
``smooth``     Gaussian temporal smoothing with this sigma in frames (over-regularised tracking)
``amplitude``  a per-clip gain on every coefficient, uniform in ``[1 - amplitude, 1 + amplitude]``
               (expression-scale errors of the fitted model)
=============  ==============================================================================

Every draw comes from a generator seeded by ``(seed, crc32(clip id))``, so a clip is degraded
the same way in every run, epoch and process, and the talker and the M2S listener trained on
"the same degraded labels" really see the same ones. Operations apply in the order above
(``lag`` and ``jitter`` as one resampling of the clip's frames, then closure, smoothing, gain).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from thunder3d.audio.phones import BILABIAL, PHONES
from thunder3d.config import Config
from thunder3d.errors import DataError

PRESETS: dict[str, dict[str, float]] = {
    "video": {"lag": 2.0, "jitter": 0.7, "closure": 0.6, "smooth": 1.0, "amplitude": 0.25},
}
"""Named settings (``--degrade video``): roughly the errors of a monocular video tracker at 25 fps."""

_BILABIAL_INDEX = np.array(sorted(PHONES.index(p) for p in BILABIAL), dtype=np.int64)


@dataclass
class DegradeConfig(Config):
    """Label degradation of training motion (module docstring).

    Attributes:
        lag: per-clip time offset, uniform in [-lag, lag] frames.
        jitter: standard deviation of a smooth time warp, in frames.
        closure: fraction by which bilabial frames are blended towards the smoothed motion (0-1).
        smooth: sigma of a Gaussian temporal smoothing, in frames.
        amplitude: per-clip gain range: uniform in [1 - amplitude, 1 + amplitude] (0-1).
        seed: seed of the per-clip draws (the same for the talker and its listener).
    """

    error = DataError

    lag: float = 0.0
    jitter: float = 0.0
    closure: float = 0.0
    smooth: float = 0.0
    amplitude: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "seed":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise DataError(f"degrade {f.name} must be a finite number >= 0, got {value!r}")
            setattr(self, f.name, float(value))
        for name in ("closure", "amplitude"):
            if getattr(self, name) > 1:
                raise DataError(f"degrade {name} must be at most 1, got {getattr(self, name)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise DataError(f"degrade seed must be an integer, got {self.seed!r}")

    @property
    def active(self) -> bool:
        return any(getattr(self, n) > 0 for n in ("lag", "jitter", "closure", "smooth", "amplitude"))


def parse_degrade(spec: str | Mapping[str, Any] | DegradeConfig | None) -> DegradeConfig | None:
    """``"video"``, ``"lag=2,closure=0.5"``, a dict or a config -> :class:`DegradeConfig`;
    None for ``None``, ``""``, ``"none"`` or a config that changes nothing."""
    if spec is None or isinstance(spec, DegradeConfig):
        cfg = spec
    elif isinstance(spec, Mapping):
        cfg = DegradeConfig.from_dict(dict(spec))
    else:
        text = str(spec).strip()
        if text in ("", "none"):
            return None
        values: dict[str, Any] = {}
        for part in text.split(","):
            part = part.strip()
            if part in PRESETS:
                values.update(PRESETS[part])
                continue
            key, sep, value = part.partition("=")
            names = [f.name for f in fields(DegradeConfig)]
            if not sep or key.strip() not in names:
                raise DataError(f"degrade {part!r}: expected a preset ({', '.join(PRESETS)}) or KEY=VALUE "
                                f"with KEY one of {', '.join(names)}")
            try:
                values[key.strip()] = int(value) if key.strip() == "seed" else float(value)
            except ValueError:
                raise DataError(f"degrade {part!r}: {value!r} is not a number") from None
        cfg = DegradeConfig(**values)
    return cfg if cfg is not None and cfg.active else None


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """``[T, C]`` smoothed along time by a Gaussian of ``sigma`` frames (edges reflected)."""
    if sigma <= 0 or len(x) < 2:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, ((radius, radius), (0, 0)), mode="reflect" if len(x) > radius else "edge")
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        out[:, c] = np.convolve(padded[:, c], k, mode="valid")
    return out


def degrade_motion(coeffs: np.ndarray, phones: np.ndarray | None, clip_id: str,
                   cfg: DegradeConfig) -> np.ndarray:
    """Degrade one clip's raw coefficients (module docstring).

    Args:
        coeffs: ``[T, C]`` raw (not normalised) coefficients.
        phones: ``[T]`` phone index per frame (``PHONES``; anything else = no phone), or None
            (then ``closure`` does nothing).
        clip_id: the clip's id (seeds the draws).
        cfg: the degradation.

    Returns:
        ``[T, C]`` float32, the same length.
    """
    x = np.asarray(coeffs, dtype=np.float64)
    T = len(x)
    if T == 0 or not cfg.active:
        return np.asarray(coeffs, dtype=np.float32)
    rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, zlib.crc32(clip_id.encode("utf-8"))])
    # draws in a fixed order, whatever is enabled, so one setting does not change another's draws
    lag = rng.uniform(-cfg.lag, cfg.lag)
    warp = rng.standard_normal(T + 8)
    gain = rng.uniform(1.0 - cfg.amplitude, 1.0 + cfg.amplitude)
    if cfg.lag > 0 or cfg.jitter > 0:
        offset = np.full(T, lag)
        if cfg.jitter > 0:  # smooth noise (about 4-frame correlation) rescaled to the asked std
            smooth = _gaussian_smooth(warp[:, None], 2.0)[4:4 + T, 0]
            std = smooth.std()
            offset = offset + (smooth / std * cfg.jitter if std > 0 else 0.0)
        # the degraded frame t shows the motion at t - offset: positive lag = late motion
        src = np.clip(np.arange(T) - offset, 0, T - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, T - 1)
        frac = (src - lo)[:, None]
        x = x[lo] * (1 - frac) + x[hi] * frac
    if cfg.closure > 0 and phones is not None:
        bilabial = np.isin(np.asarray(phones), _BILABIAL_INDEX)
        if bilabial.any():
            blurred = _gaussian_smooth(x, 3.0)
            w = cfg.closure * bilabial[:, None]
            x = x * (1 - w) + blurred * w
    if cfg.smooth > 0:
        x = _gaussian_smooth(x, cfg.smooth)
    if cfg.amplitude > 0:
        x = x * gain
    return x.astype(np.float32)


__all__ = ["DegradeConfig", "PRESETS", "degrade_motion", "parse_degrade"]
