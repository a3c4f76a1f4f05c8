"""Inference: sample trained talkers for speech of any length.

- :class:`Animator` — the product API: ``Animator.from_pretrained(...).animate(wav)`` ->
  :class:`Animation` objects (coefficients, rig, audio, conditions), any length, any ARKit rig
- :func:`load_talker` — a trained talker (model, rig, normalizer, config) from a run folder
- :func:`generate` — ``N`` animations ``[N, T, C]`` for a wav or audio features, windowed with
  continuous seams, seeded, with emotion/intensity/style and guidance scales
"""

from thunder3d.inference.animator import Animation, Animator
from thunder3d.inference.sampling import Window, generate, plan_windows, seam_frames
from thunder3d.train.talker import load_talker

__all__ = ["Animation", "Animator", "Window", "generate", "load_talker", "plan_windows", "seam_frames"]
