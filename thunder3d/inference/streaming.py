"""Streaming animation: push audio in chunks of any size, get frames as soon as the look-ahead allows.

A :class:`Stream` animates one utterance with a trained talker (an :class:`~thunder3d.inference.
Animator`), frames at 25 fps. It generates fixed blocks of ``B`` frames: block ``[n, n + B)`` is
made once the audio reaches frame ``n + B + A`` (``A`` = the look-ahead in frames), by one window of
the sampler (:func:`~thunder3d.inference.sampling.sample_window`) over frames ``[s, n + B + A)``::

    [s, n)            known: the last ``context`` frames already sent, imposed by inpainting, so the
                      new frames continue them without a seam
    [n, n + B)        new: sent
    [n + B, e)        look-ahead: generated, thrown away (made again, knowing more, by the next block)

with the window's audio features computed from the audio of ``[s - context, e)`` only: the model
never hears more than ``A`` frames of future audio. Because the blocks are fixed and every random
draw comes from the stream's own generator in a fixed order, the frames depend on the audio, the
settings and the seed, not on how the audio was cut into chunks. :meth:`Stream.end` pads the
utterance with silence for the last blocks and returns the rest: ``round(duration * 25)`` frames
in all. Input at another sample rate is resampled in fixed blocks with a margin
(:class:`_Resampler`), also independent of the chunking.

Latency: a frame's audio is complete at ``(i + 1) / 25`` s; it is sent once the audio reaches the
end of its block plus the look-ahead, and the block is computed: at most ``(B - 1) / 25 + A / 25``
seconds plus the compute time (``benchmarks/stream.py`` measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from thunder3d.conditions import check_emotion, check_intensity
from thunder3d.config import Config
from thunder3d.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.errors import AudioError, ConfigError, ThunderError
from thunder3d.inference.sampling import sample_window, window_features
from thunder3d.models.diffusion import DDIMSampler


@dataclass
class StreamConfig(Config):
    """Settings of a stream (also the command-line defaults of ``thunder3d stream`` / ``serve``).

    Attributes:
        lookahead_ms: future audio the model hears beyond a frame, in ms (rounded to whole frames).
        block: frames generated per model call (fewer: lower latency, more compute).
        context: past frames each window starts with (imposed by inpainting); the window's audio
            features also hear this many frames of audio before it.
        steps: DDIM steps per block.
        guidance: audio guidance scale of streamed blocks (None: the model's own). Default 1, plain conditional
            sampling, whatever the model recommends for files: guidance runs the denoiser twice per
            step, and on two cores that decides whether two streams keep up (measured in
            ``docs/results/stream.md``: the shipped model streamed the LibriVox recordings with the
            same closure at 1 as at its own 1.5, for two thirds of the CPU).
    """

    error = ConfigError

    lookahead_ms: float = 120.0
    block: int = 2
    context: int = 25
    steps: int = 4
    guidance: float | None = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.lookahead_ms, (int, float)) and 0 <= self.lookahead_ms <= 2000):
            raise ConfigError(f"lookahead_ms must be between 0 and 2000, got {self.lookahead_ms!r}")
        for name, low, high in (("block", 1, 25), ("context", 0, 100), ("steps", 1, 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        if self.guidance is not None and not math.isfinite(float(self.guidance)):
            raise ConfigError(f"guidance must be a finite number, got {self.guidance!r}")

    @property
    def lookahead(self) -> int:
        """Look-ahead in frames."""
        return round(self.lookahead_ms * FPS / 1000)


class _Resampler:
    """Audio of any rate to 16 kHz, in whole frames, the same whatever the chunking: frame ``j`` is
    resampled from a source window with a margin on both sides, aligned to the polyphase grid."""

    def __init__(self, rate: int) -> None:
        from thunder3d.audio.io import _FILTER_HALF_WIDTH, _resample_ratio

        self.rate = rate
        self.up, self.down = _resample_ratio(rate, SAMPLE_RATE)
        # source samples read beyond each side of a span: more than resample_poly's filter reaches
        self.margin = -(-_FILTER_HALF_WIDTH * max(self.up, self.down) // self.up) + 8
        self.source = np.zeros(0, np.float32)  # samples received (at the source rate) from `offset` on
        self.offset = 0
        self.received = 0

    def push(self, samples: np.ndarray) -> None:
        self.source = np.concatenate([self.source, samples])
        self.received += samples.size

    @property
    def total_16k(self) -> int:
        """16 kHz samples the source amounts to so far."""
        return self.received * self.up // self.down

    def forget(self, frame: int) -> None:
        """Drop the source before what frame ``frame`` and later ones need (a long stream's memory stays flat)."""
        first = frame * SAMPLES_PER_FRAME * self.down // self.up - self.margin - self.down
        drop = max(0, first // self.down * self.down - self.offset)  # stay on the grid
        if drop:
            self.source, self.offset = self.source[drop:], self.offset + drop

    def frames(self, start: int, end: int, final: bool = False) -> np.ndarray | None:
        """16 kHz samples of frames ``[start, end)``, or None while the source lacks the margin after them
        (``final``: the source is complete; zeros beyond it)."""
        a16, b16 = start * SAMPLES_PER_FRAME, end * SAMPLES_PER_FRAME
        if self.up == self.down:
            if b16 > self.received and not final:
                return None
            out = self.source[a16 - self.offset: b16 - self.offset]
            return np.pad(out, (0, b16 - a16 - out.size))
        from scipy.signal import resample_poly

        lo = max(0, (a16 * self.down // self.up - self.margin) // self.down * self.down)  # on the grid
        hi = -(-b16 * self.down // self.up) + self.margin
        if hi > self.received and not final:
            return None
        part = self.source[lo - self.offset: hi - self.offset]
        part = np.pad(part, (0, hi - lo - part.size))
        out = resample_poly(part, self.up, self.down).astype(np.float32)
        offset = lo * self.up // self.down
        return out[a16 - offset: b16 - offset]


class Stream:
    """One utterance streamed through a talker (module docstring).

    Args:
        animator: an :class:`~thunder3d.inference.Animator` of a model that reads no recognised phones.
        config: :class:`StreamConfig`.
        sample_rate: of the audio pushed (resampled to 16 kHz).
        emotion, intensity, seed: as for :meth:`~thunder3d.inference.Animator.animate`.
    """

    def __init__(self, animator, config: StreamConfig | None = None, *, sample_rate: int = SAMPLE_RATE,
                 emotion: str | None = None, intensity: int | str | None = None, seed: int = 0) -> None:
        self.config = config = config or StreamConfig()
        model = animator.model
        if model.uses_phones:
            raise ThunderError(f"the model at {animator.path} reads recognised phones (audio encoder "
                               f"{model.audio_encoder.kind!r}), which cannot be streamed; use a model with a "
                               "whisper or mel audio encoder")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
                or not 8000 <= sample_rate <= 192000:
            raise AudioError(f"sample_rate must be an integer between 8000 and 192000 Hz, got {sample_rate!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ThunderError(f"seed must be a non-negative integer, got {seed!r}")
        self.animator, self.model, self.device = animator, model, animator.device
        self.emotion = None if emotion is None else check_emotion(emotion)
        self.intensity = None if intensity is None else check_intensity(intensity)
        self.seed = int(seed)
        self._resampler = _Resampler(int(sample_rate))
        self._generator = torch.Generator().manual_seed(self.seed)
        self._sampler = None
        if not model.deterministic:
            self._sampler = DDIMSampler(model.schedule)
            self._sampler.set_timesteps(config.steps)
        guidance = animator.default_guidance if config.guidance is None else config.guidance
        self._scales = {"audio_scale": float(guidance), "cond_scale": 1.0, "mode": "nested"}
        from thunder3d.conditions import emotion_id, intensity_id

        self._labels = {"emotion": torch.full((1,), emotion_id(self.emotion), device=self.device),
                        "intensity": torch.full((1,), intensity_id(self.intensity), device=self.device),
                        "style": torch.full((1,), -1, device=self.device)}
        self._audio = np.zeros(0, np.float32)  # 16 kHz samples of frames [_audio_start, ...)
        self._audio_start = 0
        self._history = torch.zeros(0, model.coeff_dim)  # normalised frames sent, the last `context`
        self.sent = 0  # frames returned so far
        self.ended = False

    # ------------------------------------------------------------------ facts
    @property
    def lookahead_ms(self) -> float:
        return self.config.lookahead * 1000 / FPS

    @property
    def names(self) -> tuple[str, ...]:
        return self.animator.names

    # ------------------------------------------------------------------ audio in, frames out
    def push(self, audio, pcm16: bool = False) -> np.ndarray:
        """Add audio (``[N]`` float in [-1, 1], or little-endian PCM16 bytes / int16 with ``pcm16``);
        return the frames ``[k, C]`` (the animator's layout) it completes, possibly none."""
        if self.ended:
            raise ThunderError("this stream has ended; start a new one")
        samples = _samples(audio, pcm16)
        self._resampler.push(samples)
        return self._run(final=False)

    def end(self) -> np.ndarray:
        """The remaining frames: ``round(duration * 25)`` frames in all, the end padded with silence."""
        if self.ended:
            return np.zeros((0, len(self.names)), np.float32)
        self.ended = True
        return self._run(final=True)

    def _run(self, final: bool) -> np.ndarray:
        cfg, B, A = self.config, self.config.block, self.config.lookahead
        total = round(self._resampler.total_16k / SAMPLES_PER_FRAME) if final else None
        out = []
        while total is None or self.sent < total:
            n = self.sent
            e = n + B + A
            if not self._fetch(e, final):
                break
            new = self._block(n, e)  # [B, C] normalised
            keep = B if total is None else min(B, total - n)
            out.append(new[:keep])
            self._history = torch.cat([self._history, new[:keep]])[-max(cfg.context, 1):]
            self.sent += keep
        frames = torch.cat(out) if out else torch.zeros(0, self.model.coeff_dim)
        coeffs = self.animator.normalizer.denormalize(frames.numpy()) if self.animator.normalizer else frames.numpy()
        if self.animator._retarget is not None:
            coeffs = coeffs @ self.animator._retarget
        return np.ascontiguousarray(coeffs, dtype=np.float32)

    def _fetch(self, end: int, final: bool) -> bool:
        """Make the 16 kHz audio of frames up to ``end`` available; False while it has not arrived."""
        have = self._audio_start + self._audio.size // SAMPLES_PER_FRAME
        if end > have:
            more = self._resampler.frames(have, end, final)
            if more is None:
                return False
            self._audio = np.concatenate([self._audio, more])
        keep_from = max(0, end - self.config.block - self.config.lookahead - 2 * self.config.context - 1)
        if keep_from > self._audio_start:  # forget audio no window will read again
            self._audio = self._audio[(keep_from - self._audio_start) * SAMPLES_PER_FRAME:]
            self._audio_start = keep_from
            self._resampler.forget(max(have, end))  # the next fetch starts there
        return True

    def _block(self, n: int, e: int) -> torch.Tensor:
        """Frames ``[n, n + B)`` (normalised, ``[B, C]``) from the window ending at ``e``."""
        cfg = self.config
        s = max(0, n - cfg.context)
        lo = max(self._audio_start, s - cfg.context)  # the features hear `context` frames before the window
        wav = torch.from_numpy(self._audio[(lo - self._audio_start) * SAMPLES_PER_FRAME:
                                           (e - self._audio_start) * SAMPLES_PER_FRAME])
        pretrained = None
        if getattr(self.model, "uses_pretrained", False):
            pretrained = self.model.audio_encoder.pretrained_features(wav.to(self.device)[None], e - lo)[0]
        with torch.no_grad():
            feats = window_features(self.model, wav, False, e - lo, s - lo, e - lo, cfg.context, self.device,
                                    pretrained=pretrained)
            known = self._history[-(n - s):][None] if n > s else torch.zeros(1, 0, self.model.coeff_dim)
            length = e - s
            x = sample_window(self.model, feats, self._labels, self._scales, known, self._sampler,
                              lambda: torch.randn(1, length, self.model.coeff_dim,
                                                  generator=self._generator).to(self.device))
        return x[0, n - s: n - s + cfg.block]


def _samples(audio, pcm16: bool) -> np.ndarray:
    """``[N]`` float32 from float samples or PCM16 (bytes or int16); AudioError for anything else."""
    if pcm16:
        if isinstance(audio, (bytes, bytearray, memoryview)):
            if len(audio) % 2:
                raise AudioError(f"PCM16 audio comes in whole 2-byte samples, got {len(audio)} bytes")
            data = np.frombuffer(audio, dtype="<i2")
        else:
            data = np.asarray(audio)
            if data.dtype != np.int16:
                raise AudioError(f"PCM16 audio must be bytes or int16 samples, got {data.dtype}")
        return data.astype(np.float32) / 32768.0
    data = np.asarray(audio)
    if data.ndim != 1 or not np.issubdtype(data.dtype, np.floating):
        raise AudioError(f"stream audio must be mono float samples [N], got {data.dtype} {data.shape}")
    data = data.astype(np.float32)
    if not np.isfinite(data).all():
        raise AudioError("stream audio contains non-finite samples (NaN or inf)")
    return data


__all__ = ["Stream", "StreamConfig"]
