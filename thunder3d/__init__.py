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
from thunder3d.utils.lazy import lazy_getattr

__version__ = "0.1.0"

__getattr__ = lazy_getattr(__name__, {
    **dict.fromkeys(("load_rig", "Rig", "ARKIT_NAMES"), "rigs"),
    **dict.fromkeys(("load_audio", "log_mel"), "audio"),
    **dict.fromkeys(("render_still", "render_video"), "render"),
    "synthesize": "audio.tts",
    **dict.fromkeys(("load_m2s", "load_talker"), "checkpoints"),
    "generate": "inference",
    **dict.fromkeys(("Animator", "Animation"), "inference.animator"),
})


__all__ = [
    "ARKIT_NAMES", "Animation", "Animator", "AudioError", "CheckpointError", "FPS", "HOP_LENGTH",
    "MELS_PER_FRAME", "N_MELS", "Rig", "RigError", "SAMPLE_RATE", "SAMPLES_PER_FRAME", "ThunderError",
    "__version__", "generate", "load_audio", "load_m2s", "load_rig", "load_talker", "log_mel", "render_still",
    "render_video", "synthesize",
]
