"""The talker task: speech -> motion coefficients, diffusion (THUNDER) or deterministic baseline.

``thunder3d train talker --corpus DIR [--m2s RUN --lambda-m2s X] [--deterministic] --out RUN2``
builds a :class:`TalkerTask` and runs it on the shared loop (:func:`thunder3d.train.loop.train`).

The trained module is one :class:`TalkerModel` (audio encoder + :class:`~thunder3d.models.denoiser.Denoiser`,
or + :class:`~thunder3d.models.regressor.Regressor` when ``deterministic``), so the loop's DDP wraps
a single module whose ``forward`` carries all trainable computation. The frozen M2S and the rig are
plain attributes of the task, never children of the trained module: they get no gradient and are
not in the checkpoint's weights (the checkpoint records the rig's config and the M2S path).

Per batch (coefficients normalised by the training split's :class:`~thunder3d.data.dataset.Normalizer`)::

    diffusion:      t ~ U{0..T-1}, x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, x̂0 = model(wav, x_t, t, cond)
    deterministic:  x̂0 = model(wav, cond)

    loss =  w_coeff    * mean_{frames, coeffs} (x̂0 - x0)²          (or |.| with coeff_loss="l1";
                                                                   normalised coefficients)
         +  w_vertex   * mean_frames Σ_v ω_v ||V(x̂0)_v - V(x0)_v||² / Σ_v ω_v      (mm², all vertices,
                                                                   ω = mouth_weight on the mouth, else 1)
         +  w_velocity * mean_{frames, coeffs} (Δx̂0 - Δx0)²        (frame differences, normalised)
         +  lambda_m2s * mean_b w(t_b) [ L1_mel(M2S(rig_features(x̂0_b)), log_mel(wav_b))
                                          + phone_weight · CE(M2S phones, clip phones) ]

The last line is the THUNDER (analysis-by-audio-synthesis) loss: x̂0 is de-normalised, turned into
the M2S's input (``mouth2s``/``face2s`` vertex offsets in mm through the rig, or ``exp2s``
coefficients), heard by the frozen M2S and compared with the input speech by the M2S's own
``mel_loss`` (per sample). The timestep weighting ``w(t)`` (:data:`M2S_WEIGHTINGS`):

- ``none``: 1 for every t (``m2s_t_max > 0`` still cuts off ``t > m2s_t_max``);
- ``tmax``: ``1[t <= m2s_t_max]`` (needs ``m2s_t_max > 0``): only nearly clean predictions are judged;
- ``snr``: ``SNR/(1 + SNR) = alpha_bar(t)``, smoothly from 1 (clean) to 0 (pure noise), also cut off
  at ``m2s_t_max`` when that is set.

The deterministic model has no t: ``w = 1``. Two more levers of the THUNDER loss (studied in
``docs/results/thunder_effect.md``): ``m2s_ramp`` ramps lambda linearly from 0 to its value over the
first ``m2s_ramp`` optimizer steps, so the listener judges the talker only once it has learned the
basics; ``m2s_coeffs = "mouth"`` lets its gradient reach only the mouth coefficients (those whose
displacement lies mostly in the rig's ``mouth`` region,
:func:`~thunder3d.models.guidance.mouth_coefficients`); the listener
still hears the whole predicted face.

Training data levers: ``degrade`` (:mod:`thunder3d.data.degrade`) gives the training motion the errors
of a video reconstruction (evaluation stays clean) and ``train_fraction`` keeps only part of the
training clips (a hash of the clip id picks them; 10 % is a subset of 30 %).

Continuation (``continue_prob``, for streaming): with that probability a training window's first ``k``
frames (``k`` uniform over ``1 .. valid - 1``) are given to the denoiser as known clean values
(:class:`~thunder3d.models.denoiser.DenoiserConfig` ``known_input``, switched on by the task) while
``x_t`` stays noised on every frame, as inpainting leaves it at sampling time; the estimate keeps the
given values on those frames (as sampling's result does), so the coefficient, vertex and velocity losses
cover the other frames and the velocity across the boundary is the jump from the last given frame. A stream
gives every block the frames it already sent, so the model learns to continue them rather than being
steered onto them by inpainting alone.

Guidance distillation (``distill``): the targets are a frozen teacher talker's classifier-free
guided estimate (audio guidance ``distill_guidance``, the teacher's own recommended scale by default)
for the same ``x_t``, ``t``, audio and conditions, instead of the clip's motion: every term above then
compares the student with the guided teacher (Meng et al. 2023, "On distillation of guided diffusion
models"), so one plain pass per sampling step gives what guidance gives with three. The student drops
no audio (its own guidance is not trained) and drops conditions as the teacher was trained to, on the
labels (absent = -1) that both see. The validation samples still compare with the clips' motion.
Several teachers (``distill="RUN_A,RUN_B"``, e.g. two seeds of one recipe) give the mean of their guided
estimates (ensemble distillation: one student, one pass, the ensemble's average); the first teacher's
dropout rates and recommended scale apply to all.

The deterministic model has no t: ``w = 1``. Every term is logged on its own (``loss_coeff``,
``loss_vertex``, ``loss_velocity``, ``loss_m2s`` (weighted, as it enters the loss, before lambda),
``loss_phone``, ``m2s_mel_l1`` (unweighted mean over the samples the M2S judged)).

Evaluation (rank 0, EMA weights): the validation windows are sampled (DDIM, ``eval_steps`` steps,
seeded) and compared with the ground truth: ``val_lve`` (mm, the best-checkpoint metric),
``val_lpcc``, ``val_sdiv_u`` (mm, over ``eval_samples`` samples; 0 for the deterministic model)
and the validation losses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from thunder3d.audio.features import log_mel
from thunder3d.checkpoints import load_m2s
from thunder3d.data.clip import corpus_clips
from thunder3d.data.degrade import DegradeConfig, parse_degrade
from thunder3d.data.dataset import (
    ClipDataset,
    Normalizer,
    check_audio_context,
    collate,
    compute_stats,
    style_vocabulary,
)
from thunder3d.config import Config
from thunder3d.errors import DataError, TrainError
from thunder3d.eval.metrics import (
    aperture_indices,
    aperture_of,
    lip_pcc,
    lve,
    rig_vertices,
    sample_diversity,
)
from thunder3d.models.denoiser import DenoiserConfig, condition_drops
from thunder3d.models.diffusion import DDIMSampler, DiffusionSchedule, sample
from thunder3d.models.encoders import MelEncoder, build_audio_encoder
from thunder3d.models.guidance import mouth_coefficients
from thunder3d.models.m2s import M2S, freeze, phone_ce, rig_features
from thunder3d.models.regressor import RegressorConfig
from thunder3d.models.talker import TalkerConfig, TalkerModel
from thunder3d.rigs import LinearBlendshapeRig, Rig, load_rig
from thunder3d.train.corpus import CorpusTask

M2S_WEIGHTINGS = ("none", "tmax", "snr")
"""Timestep weightings of the THUNDER loss (module docstring)."""
M2S_COEFFS = ("all", "mouth")
"""Which coefficients the THUNDER loss's gradient reaches (module docstring)."""
COEFF_LOSSES = ("l2", "l1")


def parse_oversample(spec: Mapping[str, int] | Sequence[str] | None) -> dict[str, int] | None:
    """``["festival:=3"]`` or ``{"festival:": 3}`` -> ``{"festival:": 3}``; None when empty."""
    if isinstance(spec, Mapping) or not spec:
        return dict(spec) if spec else None
    out: dict[str, int] = {}
    for item in spec:
        prefix, sep, count = str(item).rpartition("=")
        if not sep or not prefix or not count.isdigit() or int(count) < 1:
            raise TrainError(f"oversample {item!r}: expected VOICE_PREFIX=K with an integer K >= 1")
        out[prefix] = int(count)
    return out


# --------------------------------------------------------------------------- settings
@dataclass
class TalkerData(Config):
    """Data, loss and evaluation settings of the talker task (stored in the checkpoint as ``data``).

    Attributes:
        corpus: corpus folder (``train`` and, for evaluation, ``val`` splits).
        rig: rig spec; default: the M2S's rig when ``m2s`` is given, else ``builtin``. With both,
            they must match (checked by :func:`~thunder3d.checkpoints.load_m2s`).
        window_seconds: training window (1-8 s).
        audio_context: seconds of speech before each training window that the audio encoder also
            hears (its features are computed from that speech and the window's, then cropped to the
            window), as a stream's blocks hear the past: with ``window_seconds`` as long as a stream's
            window (context + block + look-ahead, e.g. 1.2 s) this trains a streaming variant whose
            encoder never hears beyond the window's end. Frozen features (``whisper``) are then
            computed from the speech at every step, not read from the corpus's cache; not for
            encoders that read recognised phones. 0 = the window's speech only (stored only when set).
        audio: audio encoder config (:func:`~thunder3d.models.encoders.build_audio_encoder`);
            None = the learned ``mel`` encoder.
        deterministic: train the :class:`~thunder3d.models.regressor.Regressor` baseline instead of
            the diffusion denoiser.
        w_coeff: weight of the x0 loss on normalised coefficients.
        coeff_loss: kind of that loss: l2 or l1.
        w_vertex: weight of the vertex loss (mm²).
        mouth_weight: weight of the mouth's vertices in the vertex loss (the others weigh 1).
        w_velocity: weight of the frame-difference loss on normalised coefficients.
        lambda_m2s: weight of the THUNDER loss (0 = off; more needs an M2S listener, --m2s).
        m2s: M2S run folder or checkpoint.
        m2s_weighting: timestep weighting of the THUNDER loss: none, tmax (only t <= --m2s-t-max) or snr.
        m2s_t_max: apply the THUNDER loss only for t <= this (0 = every t).
        phone_weight: weight of the M2S phone cross-entropy inside the THUNDER loss (0 = off).
        eval_steps: DDIM steps of the validation samples.
        eval_samples: samples per validation window (S-DIV-U).
        eval_windows: validation windows evaluated.
        stats_windows: training windows measured for the audio encoder's log-mel statistics.
        oversample: ``{voice prefix: k}`` (or ``["PREFIX=K", ...]``): training clips of those voices count ``k`` times per
            epoch (:class:`~thunder3d.data.ClipDataset`); the normalisation statistics are those
            of the plain training set. Stored only when set.
        clean_phone_prob: for audio encoders that read recognised phones: the probability that a
            training item gets its clip's true phones (the TTS timings) instead of the recognised
            ones, so the model also learns what exact phones mean. Stored only when set.
        m2s_ramp: ramp the THUNDER loss's weight linearly in over this many optimizer steps (0 = full weight from the start).
        m2s_coeffs: which coefficients the THUNDER loss's gradient reaches: all, or mouth (the rig's mouth coefficients only).
        degrade: label degradation of the training motion: a preset (video) or KEY=VALUE,... of lag, jitter, closure, smooth, amplitude, seed (none = clean).
        train_fraction: train on this fraction of the training clips (0 < f <= 1; picked by clip id hash).
        continue_prob: probability that a training window continues frames it is given: its first frames are given to the denoiser as known, the loss covers the rest (streaming; diffusion only).
        distill: teacher talker run or checkpoint (several: comma-separated, their mean): learn its guided estimate instead of the clips' motion (guidance distillation; module docstring).
        distill_guidance: the teacher's audio guidance scale to distil (0 = the scale its checkpoint recommends).
    """

    error = TrainError

    corpus: str
    rig: str | None = None
    window_seconds: float = 4.0
    audio_context: float = 0.0
    audio: dict | None = None
    deterministic: bool = False
    w_coeff: float = 1.0
    coeff_loss: str = "l2"
    w_vertex: float = 0.1
    mouth_weight: float = 4.0
    w_velocity: float = 1.0
    lambda_m2s: float = 0.0
    m2s: str | None = None
    m2s_weighting: str = "none"
    m2s_t_max: int = 0
    phone_weight: float = 0.0
    eval_steps: int = 10
    eval_samples: int = 2
    eval_windows: int = 64
    stats_windows: int = 64
    oversample: dict | None = None
    clean_phone_prob: float = 0.0
    m2s_ramp: int = 0
    m2s_coeffs: str = "all"
    degrade: dict | None = None
    train_fraction: float = 1.0
    continue_prob: float = 0.0
    distill: str | None = None
    distill_guidance: float = 0.0

    def __post_init__(self) -> None:
        self.corpus = str(self.corpus)
        try:
            degrade = parse_degrade(self.degrade)
        except DataError as e:
            raise TrainError(str(e)) from None
        self.degrade = None if degrade is None else degrade.to_dict()
        if self.m2s_coeffs not in M2S_COEFFS:
            raise TrainError(f"unknown m2s_coeffs {self.m2s_coeffs!r}; valid: {', '.join(M2S_COEFFS)}")
        if int(self.m2s_ramp) < 0:
            raise TrainError(f"m2s_ramp must be >= 0 steps, got {self.m2s_ramp}")
        if not 0.0 < float(self.train_fraction) <= 1.0:
            raise TrainError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        check_audio_context(self.audio_context, TrainError)
        self.oversample = parse_oversample(self.oversample)
        self.m2s = None if self.m2s in (None, "") else str(self.m2s)
        if self.coeff_loss not in COEFF_LOSSES:
            raise TrainError(f"unknown coeff_loss {self.coeff_loss!r}; valid: {', '.join(COEFF_LOSSES)}")
        if self.m2s_weighting not in M2S_WEIGHTINGS:
            raise TrainError(f"unknown m2s_weighting {self.m2s_weighting!r}; "
                             f"valid: {', '.join(M2S_WEIGHTINGS)}")
        for name in ("w_coeff", "w_vertex", "mouth_weight", "w_velocity", "lambda_m2s", "phone_weight"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise TrainError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("clean_phone_prob", "continue_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise TrainError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.continue_prob > 0 and self.deterministic:
            raise TrainError("continue_prob is for the diffusion denoiser (the regressor has no known-frames input)")
        self.distill = None if self.distill in (None, "") else str(self.distill)
        if not math.isfinite(float(self.distill_guidance)) or float(self.distill_guidance) < 0:
            raise TrainError(f"distill_guidance must be a finite number >= 0 (0 = the teacher's), "
                             f"got {self.distill_guidance}")
        if self.distill is None and self.distill_guidance:
            raise TrainError("distill_guidance needs a teacher (distill / --distill RUN)")
        if self.distill is not None and (self.deterministic or self.continue_prob > 0):
            raise TrainError("distill is for the plain diffusion denoiser (not with deterministic or continue_prob)")
        if int(self.m2s_t_max) < 0:
            raise TrainError(f"m2s_t_max must be >= 0 (0 = no cut-off), got {self.m2s_t_max}")
        if self.m2s_weighting == "tmax" and int(self.m2s_t_max) == 0:
            raise TrainError("m2s_weighting 'tmax' needs m2s_t_max > 0")
        if self.lambda_m2s > 0 and self.m2s is None:
            raise TrainError("lambda_m2s > 0 needs an M2S checkpoint (m2s / --m2s RUN)")
        for name in ("eval_steps", "eval_samples", "eval_windows", "stats_windows"):
            if int(getattr(self, name)) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")


# --------------------------------------------------------------------------- loss helpers
def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values [B, T]`` over the True frames of ``mask [B, T]``."""
    w = mask.to(values.dtype)
    return (values * w).sum() / w.sum().clamp(min=1.0)


def continuation_mask(mask: Tensor, prob: float) -> Tensor:
    """``[B, T]`` bool: the known prefix of each window that continues given frames (module docstring).

    With probability ``prob`` (global torch RNG) window ``b`` gets its first ``k_b`` frames, ``k_b``
    uniform over ``1 .. n_b - 1`` for its ``n_b`` valid frames (none when ``n_b < 2``); the other
    windows get none. ``mask``: ``[B, T]`` bool, True on valid frames (a valid prefix, as collated).
    """
    B, T = mask.shape
    valid = mask.sum(1)  # [B]
    chosen = torch.rand(B, device=mask.device) < prob
    k = 1 + (torch.rand(B, device=mask.device) * (valid - 1).clamp(min=0)).long()  # 1 .. n - 1
    k = torch.where(chosen & (valid >= 2), k, torch.zeros_like(k))
    return torch.arange(T, device=mask.device)[None] < k[:, None]


class VertexLoss:
    """Weighted mean squared vertex distance, mm², between two coefficient sequences of a rig.

    ``per_frame(a, b) = Σ_v ω_v ||V(a)_v − V(b)_v||² / Σ_v ω_v`` with ``ω_v = mouth_weight`` on the
    rig's ``mouth`` region, 1 elsewhere. For blendshape rigs ``V(a) − V(b) = (a − b) · deltas`` is
    linear, so the sum is the quadratic form ``(a − b) G (a − b)ᵀ`` with the ``[C, C]`` matrix
    ``G = Σ_v ω_v D_v D_vᵀ / Σ ω`` (mm²), computed once: no vertices are ever built. Other rigs
    (FLAME's jaw rotation) evaluate both meshes.
    """

    def __init__(self, rig: Rig, mouth_weight: float) -> None:
        self.rig = rig
        weights = torch.ones(rig.num_vertices)
        weights[rig.region("mouth").cpu()] = float(mouth_weight)
        self.weights = weights / weights.sum()  # [V]
        self.gram: Tensor | None = None
        if isinstance(rig, LinearBlendshapeRig) and rig.identity is None:
            d = rig.deltas.detach().cpu().double() * rig.mm_per_unit  # [C, V, 3] mm
            self.gram = torch.einsum("cvk,v,dvk->cd", d, self.weights.double(), d).float()  # [C, C]
        self._on: dict[torch.device, tuple[Tensor, Tensor | None]] = {}

    def per_frame(self, pred: Tensor, target: Tensor) -> Tensor:
        """``[B, T]`` weighted mean squared distance (mm²) of raw coefficients ``[B, T, C]``."""
        device = pred.device
        if device not in self._on:
            self._on[device] = (self.weights.to(device),
                                None if self.gram is None else self.gram.to(device))
        weights, gram = self._on[device]
        diff = pred - target
        if gram is not None:
            return ((diff @ gram.to(diff.dtype)) * diff).sum(-1).clamp(min=0.0)
        rig = self.rig.to(device)
        d = (rig(pred) - rig(target)) * rig.mm_per_unit  # [B, T, V, 3]
        return (d.square().sum(-1) * weights.to(d.dtype)).sum(-1)


# --------------------------------------------------------------------------- the task
class TalkerTask(CorpusTask):
    """Train the talking head (module docstring).

    Args:
        data: :class:`TalkerData`.
        model: overrides of the network config (:class:`DenoiserConfig` fields such as ``dim``,
            ``layers``, ``heads``, ``audio_conditioning``, drop probabilities).
        diffusion: :class:`DiffusionSchedule` options (``num_train_timesteps``, ``schedule``,
            ``prediction``); ignored by the deterministic model.
    """

    name = "talker"

    def __init__(self, data: TalkerData, model: Mapping[str, Any] | None = None,
                 diffusion: Mapping[str, Any] | None = None) -> None:
        self.data = data
        # ---- rig and frozen M2S (kept out of the trained module)
        self.m2s: M2S | None = None
        if data.m2s is not None:
            wanted = load_rig(data.rig) if data.rig else None
            m2s, rig = load_m2s(data.m2s, rig=wanted)
            m2s.check_rig(rig)
            self.m2s = freeze(m2s)
        else:
            rig = load_rig(data.rig or "builtin")
        self.rig: Rig = rig
        # ---- data: normalisation over every training frame, style vocabulary
        self.styles = style_vocabulary(data.corpus)
        names = rig.coeff_names
        encoder = build_audio_encoder(data.audio)
        if data.clean_phone_prob > 0 and not encoder.uses_phones:
            raise TrainError(f"clean_phone_prob needs an audio encoder that reads phones, not {encoder.kind!r}")
        if data.audio_context > 0 and encoder.uses_phones:
            raise TrainError(f"audio_context: the {encoder.kind!r} encoder reads phones recognised per clip; "
                             "hearing past speech needs an encoder that only hears audio (mel, whisper)")
        degrade = None if data.degrade is None else DegradeConfig.from_dict(data.degrade)
        probe = ClipDataset(data.corpus, "train", data.window_seconds, rig_coeff_names=names,
                            styles=self.styles, fraction=data.train_fraction)
        self.normalizer: Normalizer = compute_stats(probe)
        heard = encoder.uses_phones  # the recognised phones cached in the corpus
        cached = {"recognized": heard, "recognizer": encoder.recognizer, "audio_context": data.audio_context}
        if encoder.uses_pretrained and not data.audio_context:  # the frozen features cached in the corpus
            from thunder3d.data.pretrained import check_settings

            cached["pretrained"] = encoder.pretrained_name
            options = encoder.config()
            check_settings(data.corpus, encoder.pretrained_name, {k: options[k] for k in ("model", "chunk", "context")})
        self._train = ClipDataset(data.corpus, "train", data.window_seconds, rig_coeff_names=names,
                                  normalizer=self.normalizer, styles=self.styles, oversample=data.oversample,
                                  degrade=degrade, fraction=data.train_fraction, **cached)
        try:
            has_val = bool(corpus_clips(data.corpus, "val"))
        except DataError:
            has_val = False  # a corpus without a val split: no evaluation, no best/
        val = ClipDataset(data.corpus, "val", data.window_seconds, rig_coeff_names=names, normalizer=self.normalizer,
                          styles=self.styles, **cached) if has_val else None
        if val is not None and len(val) > data.eval_windows:
            val = torch.utils.data.Subset(val, range(data.eval_windows))
        self._val = val
        # ---- model config
        net_cls = RegressorConfig if data.deterministic else DenoiserConfig
        known = {"known_input": True} if data.continue_prob > 0 else {}
        self.teachers: list[TalkerModel] = []
        self._teacher_styles: list[Tensor] = []
        self._teacher_files: list[list[str]] = []  # their weights' sha256, recorded in the checkpoint
        if data.distill is not None:  # the student drops conditions on the labels (loss), never its audio
            for path in data.distill.split(","):
                self._load_teacher(path.strip(), encoder)
            known = {**known, "audio_drop_prob": 0.0, "cond_drop_prob": 0.0, "cond_part_drop_prob": 0.0}
        net = net_cls.from_dict({"coeff_dim": rig.num_coeffs, "audio_dim": encoder.out_dim,
                                 "num_styles": len(self.styles), **dict(model or {}), **known})
        schedule = None if data.deterministic else DiffusionSchedule(**dict(diffusion or {}))
        for teacher in self.teachers:
            if teacher.schedule.to_dict() != schedule.to_dict():
                raise TrainError(f"distill: a teacher's diffusion schedule {teacher.schedule.to_dict()} differs "
                                 f"from this run's {schedule.to_dict()}")
        self.talker_config = TalkerConfig(kind="regressor" if data.deterministic else "denoiser", net=net,
                                          audio=encoder.config(),
                                          diffusion=None if schedule is None else schedule.to_dict())
        self.schedule = schedule
        self.vertex_loss = VertexLoss(rig, data.mouth_weight) if data.w_vertex > 0 else None
        self.mouth_mask = torch.as_tensor(mouth_coefficients(rig)) if data.m2s_coeffs == "mouth" else None
        self._norm: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def _load_teacher(self, path: str, encoder: nn.Module) -> None:
        """Add a frozen teacher of guidance distillation, checked against this run (module docstring)."""
        from thunder3d.checkpoints import load_talker
        from thunder3d.errors import CheckpointError

        try:
            teacher, _, normalizer, config = load_talker(path)
        except CheckpointError as exc:
            raise TrainError(f"distill: {exc}") from None
        if teacher.deterministic:
            raise TrainError(f"distill: {path} is a deterministic talker; a teacher must be a diffusion model")
        if teacher.cfg.audio_drop_prob == 0:
            raise TrainError(f"distill: {path} never learned to predict without audio (a distilled model?): "
                             "its guidance is untrained; distil a model trained with guidance dropout")
        if teacher.uses_phones:
            raise TrainError(f"distill: the teacher's {teacher.audio_encoder.kind!r} encoder reads recognised phones; "
                             "a teacher must hear the audio (mel, whisper)")
        if teacher.uses_pretrained:
            theirs, mine = teacher.audio_encoder.config(), encoder.config()
            keys = ("kind", "model", "chunk", "context")
            if not encoder.uses_pretrained or any(theirs.get(k) != mine.get(k) for k in keys):
                raise TrainError(f"distill: the teacher hears {', '.join(f'{k} {theirs.get(k)}' for k in keys)}; "
                                 "train the student with the same --audio encoder and settings")
        mine = self.normalizer
        if (tuple(normalizer.coeff_names) != tuple(mine.coeff_names)
                or not np.allclose(normalizer.mean, mine.mean, atol=1e-5)
                or not np.allclose(normalizer.std, mine.std, atol=1e-5)):
            raise TrainError(f"distill: {path} was trained with another rig or normalisation (another corpus?); "
                             "a teacher must share this corpus's coefficients and statistics")
        if self.data.distill_guidance == 0:  # the first teacher's recommendation
            if "guidance" not in (config.get("sampling") or {}):
                raise TrainError(f"distill: {path} recommends no guidance scale (a run folder, not packed with "
                                 "--guidance): give --distill-guidance")
            self.data.distill_guidance = float(teacher.default_guidance)
        if self.data.distill_guidance == 1:
            raise TrainError("distill: at guidance 1 the teacher's estimate is its plain one: nothing to distil "
                             "(give --distill-guidance above 1)")
        self._teacher_files.append(sorted(record["sha256"] for record in (config.get("files") or {}).values()))
        # style ids of this corpus -> the teacher's (absent where the teacher never saw the style)
        index = {name: i for i, name in enumerate(teacher.styles)}
        self._teacher_styles.append(torch.tensor([index.get(name, -1) for name in self.styles] + [-1], dtype=torch.long))
        self.teachers.append(freeze(teacher))

    @torch.no_grad()
    def teacher_estimate(self, batch: Mapping[str, Any], cond: Mapping[str, Tensor], x_t: Tensor,
                         t: Tensor) -> Tensor:
        """``[B, T, C]`` the teachers' mean guided x0 estimate (normalised) for the student's ``x_t``, ``t``."""
        mask = batch["mask"]
        total = torch.zeros_like(x_t, dtype=torch.float32)
        for teacher, styles in zip(self.teachers, self._teacher_styles):
            teacher = teacher.to(x_t.device)
            features = teacher.encode_audio(batch["audio"], mask.shape[1], None, batch.get("pretrained"),
                                            batch.get("audio_context"))
            style = styles.to(x_t.device)[cond["style"]]  # -1 (absent) picks the last row: absent
            out = teacher.predict(features, mask, cond["emotion"], cond["intensity"], style, x_t=x_t, t=t,
                                  audio_scale=self.data.distill_guidance)
            total = total + teacher.schedule.pred_x0(out.float(), x_t.float(), t)
        return (total / len(self.teachers) * mask[..., None]).to(x_t.dtype)

    def distill_conditions(self, cond: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Conditions dropped (to -1, absent) as the teacher was trained to drop them: all three with
        ``cond_drop_prob``, each with ``cond_part_drop_prob`` (global torch RNG)."""
        every, part = condition_drops(self.teachers[0].cfg, cond["emotion"].shape[0], cond["emotion"].device)
        return {key: torch.where(every | part[k], torch.full_like(cond[key], -1), cond[key])
                for k, key in enumerate(("emotion", "intensity", "style"))}

    # ------------------------------------------------------------------ model and data
    def model_config(self) -> dict[str, Any]:
        return self.talker_config.to_dict()

    def checkpoint_config(self) -> dict[str, Any]:
        data = asdict(self.data)
        for key, unset in (("oversample", None), ("clean_phone_prob", 0.0), ("m2s_ramp", 0), ("m2s_coeffs", "all"),
                           ("degrade", None), ("train_fraction", 1.0), ("audio_context", 0.0),
                           ("continue_prob", 0.0), ("distill", None), ("distill_guidance", 0.0)):
            if data[key] == unset:  # only when set: earlier runs stay resumable
                del data[key]
        if self.teachers:  # which teachers, by their weights: a resume against changed ones is refused
            data["distill_files"] = self._teacher_files
        return {"rig": self.rig.config(), "normalizer": self.normalizer.to_dict(),
                "styles": list(self.styles), "data": data}

    def build_model(self) -> nn.Module:
        model = TalkerModel(self.talker_config)
        if isinstance(model.audio_encoder, MelEncoder):
            model.audio_encoder.set_input_stats(*self.mel_statistics())
        model.normalizer, model.styles = self.normalizer, tuple(self.styles)
        return model

    @torch.no_grad()
    def mel_statistics(self) -> tuple[Tensor, Tensor]:
        """Log-mel mean and std ``[80]`` over the first ``stats_windows`` training windows."""
        n = min(self.data.stats_windows, len(self._train))
        batch = collate([self._train[i] for i in range(n)])
        mels = log_mel(batch["audio"])[batch["mask"].repeat_interleave(4, dim=1)]  # [M, 80]
        return mels.mean(0), mels.std(0)

    # ------------------------------------------------------------------ loss
    def denormalize(self, x: Tensor) -> Tensor:
        """Normalised ``[..., C]`` -> rig coefficients (cached statistics per device)."""
        if x.device not in self._norm:
            self._norm[x.device] = (torch.as_tensor(self.normalizer.mean, device=x.device),
                                    torch.as_tensor(self.normalizer.std, device=x.device))
        mean, std = self._norm[x.device]
        return x * std.to(x.dtype) + mean.to(x.dtype)

    def m2s_weights(self, t: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """``[B]`` timestep weights of the THUNDER loss (module docstring)."""
        if t is None or self.schedule is None:
            return torch.ones(batch, device=device)
        mode, t_max = self.data.m2s_weighting, int(self.data.m2s_t_max)
        if mode == "snr":
            w = self.schedule.alpha_bar(t, torch.zeros(batch, device=device)).float()
        else:
            w = torch.ones(batch, device=device)
        if t_max > 0:
            w = w * (t <= t_max).to(w.dtype)
        return w

    def loss(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> tuple[Tensor, dict]:
        coeffs, mask = batch["coeffs"], batch["mask"]  # [B, T, C] normalised, [B, T]
        B = coeffs.shape[0]
        cond = {"emotion": batch["emotion"], "intensity": batch["intensity"], "style": batch["style"]}
        t = None
        judged = mask  # frames the losses cover: all but a continuation's given ones
        heard = batch.get("heard")
        if heard is not None and self.data.clean_phone_prob > 0 and model.training:
            clean = torch.rand(B, device=heard.device) < self.data.clean_phone_prob  # [B]
            heard = torch.where(clean[:, None], batch["phones"], heard)
        if self.schedule is None:
            x0_hat = model(batch["audio"], mask, **cond, phones=heard, pretrained=batch.get("pretrained"),
                           context=batch.get("audio_context"))
        else:
            given = {}
            if self.data.continue_prob > 0:  # in evaluation too: the validation losses measure what is trained
                known = continuation_mask(mask, self.data.continue_prob)
                given = {"known": coeffs, "known_mask": known}
                judged = mask & ~known
            t = torch.randint(0, self.schedule.num_train_timesteps, (B,), device=coeffs.device)
            noise = torch.randn_like(coeffs)
            x_t = self.schedule.add_noise(coeffs, noise, t)
            if self.teachers:  # guidance distillation: the guided teacher(s) give the target
                if model.training:
                    cond = self.distill_conditions(cond)
                coeffs = self.teacher_estimate(batch, cond, x_t, t)
            out = model(batch["audio"], mask, **cond, x_t=x_t, t=t, phones=heard, pretrained=batch.get("pretrained"),
                        context=batch.get("audio_context"), **given)
            x0_hat = self.schedule.pred_x0(out, x_t, t)
            if given:  # the given frames as sampling leaves them: the boundary velocity is the jump a stream shows
                x0_hat = torch.where(known[..., None], coeffs, x0_hat)
        d = self.data
        logs: dict[str, Tensor] = {}
        total = coeffs.new_zeros(())
        err = x0_hat - coeffs
        per = err.square() if d.coeff_loss == "l2" else err.abs()
        logs["loss_coeff"] = _masked_mean(per.mean(-1), judged)
        total = total + d.w_coeff * logs["loss_coeff"]
        if d.w_velocity > 0:
            vel = (err[:, 1:] - err[:, :-1]).square().mean(-1)  # Δx̂0 - Δx0 = Δ(x̂0 - x0)
            logs["loss_velocity"] = _masked_mean(vel, mask[:, :-1] & judged[:, 1:])
            total = total + d.w_velocity * logs["loss_velocity"]
        raw_hat = self.denormalize(x0_hat)
        if self.vertex_loss is not None:
            raw_gt = self.denormalize(coeffs)
            logs["loss_vertex"] = _masked_mean(self.vertex_loss.per_frame(raw_hat, raw_gt), judged)
            total = total + d.w_vertex * logs["loss_vertex"]
        if d.lambda_m2s > 0 and self.m2s is not None:
            heard = raw_hat
            if self.mouth_mask is not None:  # the gradient reaches the mouth coefficients only
                keep = self.mouth_mask.to(raw_hat.device)
                heard = torch.where(keep, raw_hat, raw_hat.detach())
            thunder = self.thunder_loss(heard, batch, t, logs)
            total = total + self.lambda_at(step) * thunder
        logs = {k: v.detach() for k, v in logs.items()}
        return total, logs

    def lambda_at(self, step: int) -> float:
        """The THUNDER loss's weight at optimizer ``step`` (``m2s_ramp``; evaluation, step < 0: full)."""
        ramp = int(self.data.m2s_ramp)
        if ramp <= 0 or step < 0:
            return self.data.lambda_m2s
        return self.data.lambda_m2s * min(1.0, step / ramp)

    def thunder_loss(self, raw_hat: Tensor, batch: Mapping[str, Any], t: Tensor | None,
                     logs: dict[str, Tensor]) -> Tensor:
        """``mean_b w_b (mel L1_b + phone_weight CE_b)`` of the frozen M2S on ``raw_hat [B, T, C]``
        (de-normalised x̂0); gradients reach ``raw_hat`` only. Fills ``logs``."""
        B, device = raw_hat.shape[0], raw_hat.device
        w = self.m2s_weights(t, B, device)
        chosen = torch.nonzero(w > 0).flatten()
        if chosen.numel() == 0:  # no sample at a judged noise level: skip the M2S altogether
            logs["loss_m2s"] = raw_hat.new_zeros(())
            return logs["loss_m2s"]
        m2s, rig = self.m2s.to(device), self.rig.to(device)
        mask = batch["mask"][chosen]
        with torch.no_grad():
            target = log_mel(batch["audio"][chosen])  # [b, 4T, 80]
        out = m2s(rig_features(rig, raw_hat[chosen], m2s.cfg.input), mask)
        mel = torch.stack([m2s.mel_loss(out.mel[i:i + 1], target[i:i + 1], mask[i:i + 1])
                           for i in range(len(chosen))])  # [b] per-sample L1
        wc = w[chosen].to(mel.dtype)
        logs["m2s_mel_l1"] = mel.mean()
        logs["loss_m2s"] = (wc * mel).sum() / B
        term = logs["loss_m2s"]
        if self.data.phone_weight > 0 and out.phone_logits is not None:
            phones = batch["phones"][chosen]
            ce = torch.stack([phone_ce(out.phone_logits[i:i + 1], phones[i:i + 1], mask[i:i + 1])
                              for i in range(len(chosen))])
            logs["loss_phone"] = (wc * ce).sum() / B
            term = term + self.data.phone_weight * logs["loss_phone"]
        return term

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def sample_normalised(self, model: TalkerModel, features: Tensor, batch: Mapping[str, Any],
                          generator: torch.Generator) -> Tensor:
        """One sample ``[B, T, C]`` (normalised) per window: DDIM with ``eval_steps`` steps, or the
        regressor's prediction."""
        mask = batch["mask"]
        cond = (batch["emotion"], batch["intensity"], batch["style"])
        if model.deterministic:
            return model.predict(features, mask, *cond)
        sampler = DDIMSampler(model.schedule)
        shape = (*mask.shape, model.coeff_dim)
        return sample(lambda x, t: model.predict(features, mask, *cond, x_t=x, t=t), shape, sampler,
                      steps=self.data.eval_steps, generator=generator, device=features.device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, val_loader) -> dict[str, float]:
        """Validation losses and lip metrics of sampled windows (module docstring)."""
        model = getattr(model, "module", model)
        rig = self.rig
        lips, upper = rig.region("lips"), rig.region("upper_face")
        ap = torch.tensor(aperture_indices(rig))
        mm = rig.mm_per_unit
        n_samples = 1 if model.deterministic else self.data.eval_samples
        sums: dict[str, float] = {}
        lve_sum, lve_frames, pccs, divs, batches = 0.0, 0, [], [], 0
        generator = torch.Generator().manual_seed(1234)  # the same noise at every evaluation
        for batch in val_loader:
            loss, logs = self.loss(model, batch, -1)
            for key, value in {"loss": loss, **logs}.items():
                sums[f"val_{key}"] = sums.get(f"val_{key}", 0.0) + float(value)
            batches += 1
            mask = batch["mask"]
            device = mask.device
            rig = rig.to(device)
            features = model.encode_audio(batch["audio"], mask.shape[1], batch.get("heard"), batch.get("pretrained"),
                                          batch.get("audio_context"))
            preds = [self.denormalize(self.sample_normalised(model, features, batch, generator))
                     for _ in range(n_samples)]
            gt = self.denormalize(batch["coeffs"])
            gt_lips, gt_ap = rig_vertices(rig, gt, lips), aperture_of(rig_vertices(rig, gt, ap))
            pred_lips = rig_vertices(rig, preds[0], lips)
            pred_ap = aperture_of(rig_vertices(rig, preds[0], ap))
            uppers = [rig_vertices(rig, p, upper) for p in preds] if n_samples > 1 else None
            for b in range(mask.shape[0]):
                m = mask[b]
                frames = int(m.sum())
                if frames < 2:
                    continue
                lve_sum += lve(pred_lips[b, m], gt_lips[b, m], None, mm) * frames
                lve_frames += frames
                pccs.append(lip_pcc(pred_ap[b, m], gt_ap[b, m]))
                if uppers is not None:
                    divs.append(sample_diversity(torch.stack([u[b, m] for u in uppers]), None, mm))
        result = {k: v / max(batches, 1) for k, v in sums.items()}
        result["val_lve"] = lve_sum / lve_frames if lve_frames else float("nan")
        finite = [p for p in pccs if math.isfinite(p)]
        result["val_lpcc"] = float(np.mean(finite)) if finite else float("nan")
        result["val_sdiv_u"] = float(np.mean(divs)) if divs else 0.0
        return result


__all__ = ["COEFF_LOSSES", "M2S_COEFFS", "M2S_WEIGHTINGS", "TalkerData", "TalkerTask", "VertexLoss",
           "continuation_mask"]
