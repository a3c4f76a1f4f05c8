"""Models: pure torch modules and functions, no file I/O (checkpoints live in ``thunder3d.train``).

- :mod:`~thunder3d.models.conformer`: the conformer sequence encoder (rotary positions, masks).
- :mod:`~thunder3d.models.m2s`: mesh-to-speech, its input features, freezing and losses.
"""

from thunder3d.errors import ModelConfigError
from thunder3d.models.conformer import Conformer, ConformerConfig
from thunder3d.models.m2s import (
    IGNORE_INDEX,
    M2S,
    M2S_INPUTS,
    M2SConfig,
    M2SOutput,
    expand_mask,
    feature_dim,
    freeze,
    mel_l1,
    phone_ce,
    rig_features,
    spectral_convergence,
)

__all__ = [
    "Conformer", "ConformerConfig", "ModelConfigError",
    "M2S", "M2S_INPUTS", "M2SConfig", "M2SOutput", "IGNORE_INDEX",
    "rig_features", "feature_dim", "freeze", "expand_mask",
    "mel_l1", "spectral_convergence", "phone_ce",
]

# diffusion talking head: noise math and sampler, the denoiser, the deterministic regressor
from thunder3d.models.denoiser import (
    AUDIO_CONDITIONING,
    GUIDANCE_MODES,
    ConditionedConformer,
    Denoiser,
    DenoiserConfig,
    guidance_weights,
)
from thunder3d.models.diffusion import (
    PREDICTIONS,
    SCHEDULES,
    SPACINGS,
    DDIMSampler,
    DiffusionSchedule,
    SamplerStep,
    sample,
)
from thunder3d.models.regressor import Regressor, RegressorConfig

__all__ += [
    "AUDIO_CONDITIONING", "GUIDANCE_MODES", "PREDICTIONS", "SCHEDULES", "SPACINGS",
    "ConditionedConformer", "DDIMSampler", "Denoiser", "DenoiserConfig", "DiffusionSchedule",
    "Regressor", "RegressorConfig", "SamplerStep", "guidance_weights", "sample",
]
