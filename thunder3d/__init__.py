"""thunder3d: speech-driven 3D talking heads with analysis-by-audio-synthesis (THUNDER).

Public API (lazy, so ``import thunder3d`` stays cheap):

- :func:`load_rig` — build a face rig from ``builtin``, ``ict:PATH``, ``flame:PATH``, ``blendshapes:PATH``
- :func:`load_audio` — any wav/flac/ogg to 16 kHz mono float32, with clear errors
- :func:`log_mel` — 80-bin log-mel frames (4 per animation frame)
- :func:`render_still` / :func:`render_video` — headless OpenGL stills and MP4s with sound
- :func:`synthesize` — espeak-ng speech with phone timings
- :func:`load_m2s`, :func:`load_talker`, :func:`generate` — trained models and windowed sampling
- :class:`Animator` / :class:`Animation` — ``Animator.from_pretrained().animate("speech.wav")``:
  speech of any length -> animations on any ARKit rig (the product API)
"""

from __future__ import annotations

from thunder3d.constants import FPS, HOP_LENGTH, MELS_PER_FRAME, N_MELS, SAMPLE_RATE, SAMPLES_PER_FRAME
from thunder3d.errors import AudioError, CheckpointError, RigError, ThunderError

__version__ = "0.1.0"

_LAZY = {
    "load_rig": ("thunder3d.rigs", "load_rig"),
    "Rig": ("thunder3d.rigs", "Rig"),
    "ARKIT_NAMES": ("thunder3d.rigs", "ARKIT_NAMES"),
    "load_audio": ("thunder3d.audio", "load_audio"),
    "log_mel": ("thunder3d.audio", "log_mel"),
    "render_still": ("thunder3d.render", "render_still"),
    "render_video": ("thunder3d.render", "render_video"),
    "synthesize": ("thunder3d.audio.tts", "synthesize"),
    "load_m2s": ("thunder3d.checkpoints", "load_m2s"),
    "load_talker": ("thunder3d.checkpoints", "load_talker"),
    "generate": ("thunder3d.inference", "generate"),
    "Animator": ("thunder3d.inference.animator", "Animator"),
    "Animation": ("thunder3d.inference.animator", "Animation"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'thunder3d' has no attribute {name!r}")


__all__ = [
    "ARKIT_NAMES", "Animation", "Animator", "AudioError", "CheckpointError", "FPS", "HOP_LENGTH",
    "MELS_PER_FRAME", "N_MELS", "Rig", "RigError", "SAMPLE_RATE", "SAMPLES_PER_FRAME", "ThunderError",
    "__version__", "generate", "load_audio", "load_m2s", "load_rig", "load_talker", "log_mel", "render_still",
    "render_video", "synthesize",
]
