"""Inference: sample trained talkers for speech of any length.

- :class:`Animator` — the product API: ``Animator.from_pretrained(...).animate(wav)`` ->
  :class:`Animation` objects (coefficients, rig, audio, conditions), any length, any ARKit rig
- :func:`generate` — ``N`` animations ``[N, T, C]`` for a wav or audio features, windowed with
  continuous seams, seeded, with emotion/intensity/style and guidance scales
"""

from thunder3d.inference.animator import AUDIO_SUFFIXES, Animation, Animator, audio_inputs
from thunder3d.inference.sampling import Window, generate, plan_windows, seam_frames

__all__ = ["AUDIO_SUFFIXES", "Animation", "Animator", "audio_inputs", "Window", "generate", "plan_windows", "seam_frames"]
