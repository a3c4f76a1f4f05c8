"""The deterministic baseline: the denoiser's backbone predicting coefficients straight from audio.

Same trunk as the diffusion model (:class:`~thunder3d.models.denoiser.ConditionedConformer`:
audio conditioning, emotion/intensity/style embeddings with nulls, FiLM, conformer, output head),
with the diffusion inputs taken away: no noisy motion, no timestep. Trained with a plain L2 (or
vertex) loss, with or without the THUNDER mesh-to-speech loss: the method reports that the M2S
loss helps deterministic models too.

Shapes: ``B`` batch, ``T`` frames, ``C`` coefficients, ``D_a`` audio features.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from thunder3d.models.denoiser import (
    ConditionedConformer,
    DenoiserConfig,
    Labels,
    ModelConfigError,
    guided_forward,
)


@dataclass
class RegressorConfig(DenoiserConfig):
    """Everything that rebuilds a :class:`Regressor`: the fields of :class:`DenoiserConfig`.

    Differences are only in the defaults: no audio dropout and no joint condition dropout (a
    deterministic model has no use for guidance), but each condition is still dropped on its own
    sometimes, so that "no emotion" or "no style" are inputs it knows.
    """

    audio_drop_prob: float = 0.0
    cond_drop_prob: float = 0.0
    cond_part_drop_prob: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.known_input:
            raise ModelConfigError("the regressor has no known-frames input (known_input is for the denoiser)")


class Regressor(nn.Module):
    """Audio features ``[B, T, D_a]`` (+ conditions) -> coefficients ``[B, T, C]``, deterministically.

    Args:
        cfg: :class:`RegressorConfig` (a :class:`DenoiserConfig` works too).
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = ConditionedConformer(cfg, has_input=False)

    def forward(self, audio: Tensor, emotion: Labels = None, intensity: Labels = None, style: Labels = None,
                mask: Tensor | None = None, drop_audio: bool | Tensor = False,
                drop_cond: bool | Tensor = False) -> Tensor:
        """Predict coefficients.

        Args:
            audio: ``[B, T, D_a]`` frame-aligned audio features.
            emotion, intensity, style, mask, drop_audio, drop_cond: as in
                :meth:`~thunder3d.models.denoiser.Denoiser.forward`.
        Returns:
            ``[B, T, C]``; padded frames are zero.
        """
        return self.trunk(audio, emotion, intensity, style, mask, drop_audio, drop_cond)

    def guided(self, audio: Tensor, emotion: Labels = None, intensity: Labels = None, style: Labels = None,
               mask: Tensor | None = None, audio_scale: float = 1.0, cond_scale: float = 1.0,
               mode: str = "nested") -> Tensor:
        """Guidance-style extrapolation as in :meth:`Denoiser.guided` (meaningful only for a model
        trained with condition dropout)."""
        batch = {"audio": audio, "emotion": emotion, "intensity": intensity, "style": style, "mask": mask}
        return guided_forward(self.forward, batch, audio_scale, cond_scale, mode)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
