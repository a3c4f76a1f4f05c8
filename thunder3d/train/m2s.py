"""The M2S training task: a face animation in, the speech it makes out.

``thunder3d train m2s --corpus DIR --rig SPEC --input mouth2s --out RUN`` builds an
:class:`M2STask` and runs it on the shared loop (:func:`thunder3d.train.loop.train`).

Per batch: coefficients ``[B, T, C]`` -> :func:`~thunder3d.models.m2s.rig_features` (through the
rig, no gradient needed here) with augmentation -> :class:`~thunder3d.models.m2s.M2S` ->
``L1(mel) (+ spectral convergence) (+ phone cross-entropy)`` against the clip's own log-mel.

Augmentations that make the listener robust (training only):

- **rigid jitter**: the region's vertices are rotated by a small random rotation (``jitter_deg``)
  about their centroid and shifted (``jitter_mm``), so the model does not rely on exact head pose;
- **identity** (rigs with a shape space, e.g. ICT): a random identity per sequence
  (``shape_std`` standard deviations of the identity coefficients);
- **time masking**: random spans of input frames (``time_mask`` fraction in total) are replaced
  by the mean face, so the model uses context;
- **still spans**: with probability ``still_prob`` a window gets one span (``still_seconds``, at
  least :data:`STILL_KEEP_SECONDS` of the window left as it was) in which the face is at rest
  (neutral) and the speech is replaced by the window's own background (its quietest frame,
  repeated), phones ``SIL``: a face that does not move makes no speech, which
  the listener must hear as silence rather than guess a generic spectrum.

Normalisation statistics (input features, log-mel) are measured on training windows before the
first step and stored in the model's buffers, hence in every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from thunder3d.audio.features import log_mel
from thunder3d.constants import FPS, SAMPLES_PER_FRAME
from thunder3d.data.dataset import ClipDataset, collate
from thunder3d.data.degrade import DegradeConfig, parse_degrade
from thunder3d.config import Config
from thunder3d.errors import DataError, TrainError
from thunder3d.models.m2s import (
    INPUT_REGION,
    M2S,
    M2SConfig,
    check_input,
    phone_ce,
    rig_features,
    spectral_convergence,
)
from thunder3d.rigs import Rig, load_rig
from thunder3d.rigs.lbs import batch_rodrigues
from thunder3d.train.corpus import CorpusTask


@dataclass
class M2SData(Config):
    """Data and augmentation settings of the M2S task (stored in the checkpoint).

    Attributes:
        corpus: corpus folder (``train`` and ``val`` splits).
        rig: rig spec the animation is rendered with.
        input: what the listener sees: mouth2s (mouth vertices), face2s (face vertices) or exp2s (coefficients).
        window_seconds: training window in seconds (1-8).
        phone_weight: weight of the phone cross-entropy (0 = off).
        sc_weight: weight of the spectral-convergence loss (0 = off).
        jitter_deg: rigid jitter of the input region: rotation in degrees.
        jitter_mm: rigid jitter of the input region: shift in mm.
        shape_std: identity variation for rigs with a shape space, in standard deviations.
        time_mask: fraction of input frames replaced by the mean face.
        still_prob: probability of a still-face span with background audio per window.
        still_seconds: length range LO,HI of a still span in seconds.
        stats_windows: training windows measured for the normalisation statistics.
        degrade: label degradation of the training motion: a preset (video) or KEY=VALUE,... of lag, jitter, closure, smooth, amplitude, seed (none = clean).
    """

    error = TrainError

    corpus: str
    rig: str = "builtin"
    input: str = "mouth2s"
    window_seconds: float = 4.0
    phone_weight: float = 0.2
    sc_weight: float = 0.0
    jitter_deg: float = 2.0
    jitter_mm: float = 1.0
    shape_std: float = 1.0
    time_mask: float = 0.1
    still_prob: float = 0.7
    still_seconds: tuple[float, float] = (0.4, 3.5)
    stats_windows: int = 64
    degrade: dict | None = None

    def __post_init__(self) -> None:
        try:
            degrade = parse_degrade(self.degrade)
        except DataError as e:
            raise TrainError(str(e)) from None
        self.degrade = None if degrade is None else degrade.to_dict()
        self.still_seconds = tuple(float(v) for v in self.still_seconds)
        lo, hi = self.still_seconds
        if not 0.0 <= self.still_prob <= 1.0 or not 0.0 < lo <= hi:
            raise TrainError(f"still_prob must be in [0, 1] and still_seconds 0 < lo <= hi, got "
                             f"{self.still_prob}, {self.still_seconds}")


STILL_KEEP_SECONDS = 0.5
"""A still span leaves at least this much of the window as it was: a window that is all background
would be normalised to its own background level and teach that stillness sounds like speech."""


def _random_rotation(batch: int, max_deg: float, gen: torch.Generator, device) -> Tensor:
    """``[B, 3, 3]`` rotations by at most ``max_deg`` about random axes."""
    axis = torch.randn(batch, 3, generator=gen)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    angle = (torch.rand(batch, 1, generator=gen) * 2 - 1) * math.radians(max_deg)
    return batch_rodrigues(axis * angle).to(device)


class M2STask(CorpusTask):
    """Train a mesh-to-speech model (see module docstring)."""

    name = "m2s"

    def __init__(self, data: M2SData, model: Mapping[str, Any] | None = None) -> None:
        check_input(data.input)
        self.data = data
        self.rig: Rig = load_rig(data.rig)
        self.cfg = M2SConfig.for_rig(self.rig, data.input, **dict(model or {}))
        degrade = None if data.degrade is None else DegradeConfig.from_dict(data.degrade)
        self._train = ClipDataset(data.corpus, "train", data.window_seconds,
                                  rig_coeff_names=self.rig.coeff_names, degrade=degrade)
        self._val = ClipDataset(data.corpus, "val", data.window_seconds,
                                rig_coeff_names=self.rig.coeff_names)
        self._stats: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ model and data
    def model_config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def checkpoint_config(self) -> dict[str, Any]:
        data = asdict(self.data)
        if data["degrade"] is None:  # only when set: earlier runs stay resumable
            del data["degrade"]
        return {"rig": self.rig.config(), "data": data}

    def build_model(self) -> nn.Module:
        model = M2S(self.cfg)
        feat_mean, feat_std, mel_mean, mel_std, level = self.statistics()
        model.set_input_stats(feat_mean, feat_std)
        model.set_mel_stats(mel_mean, mel_std, level)
        return model

    @torch.no_grad()
    def statistics(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Over the first ``stats_windows`` training windows: feature mean/std ``[F]``, mean/std of
        the model's target (``cfg.target``) and the mean level its normalisation removed (``level``,
        added back to hear a prediction), ``[80]`` each."""
        if self._stats is None:
            n = min(self.data.stats_windows, len(self._train))
            batch = collate([self._train[i] for i in range(n)])
            mask = batch["mask"]
            feats = rig_features(self.rig, batch["coeffs"], self.cfg.input)[mask]  # [N, F]
            raw = log_mel(batch["audio"])  # [B, 4T, 80]
            mel_mask = mask.repeat_interleave(4, dim=1)
            target = M2S(self.cfg).target_mel(raw, mask)[mel_mask]  # [4N, 80]
            level = (raw[mel_mask] - target).mean(0)  # what the normalisation took away, on average
            self._stats = (feats.mean(0), feats.std(0), target.mean(0), target.std(0), level)
        return self._stats

    # ------------------------------------------------------------------ features
    def features(self, coeffs: Tensor, mask: Tensor, train: bool) -> Tensor:
        """Model input ``[B, T, F]`` for coefficients ``[B, T, C]``, augmented when ``train``."""
        rig = self.rig.to(coeffs.device)
        region = INPUT_REGION[self.cfg.input]
        if not train or region is None:
            feats = rig_features(rig, coeffs, self.cfg.input)
            return self._time_mask(feats, mask) if train else feats
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
        B = coeffs.shape[0]
        shape = None
        if rig.num_shape and self.data.shape_std > 0:
            shape = torch.randn(B, rig.num_shape, generator=gen).to(coeffs.device) * self.data.shape_std
        feats = rig_features(rig, coeffs, self.cfg.input, shape=shape)  # [B, T, 3R] in mm
        pts = feats.reshape(B, feats.shape[1], -1, 3)
        R = _random_rotation(B, self.data.jitter_deg, gen, coeffs.device)  # [B, 3, 3]
        neutral = rig.neutral[rig.region(region)] * rig.mm_per_unit  # [R, 3] mm
        centre = neutral.mean(0)
        # rotate the whole region (rest + offset) about its centroid, then shift; keep offsets
        moved = (pts + neutral - centre) @ R.transpose(1, 2)[:, None] + centre - neutral
        shift = (torch.rand(B, 1, 1, 3, generator=gen) * 2 - 1).to(coeffs.device) * self.data.jitter_mm
        feats = (moved + shift).reshape_as(feats)
        return self._time_mask(feats, mask)

    def _time_mask(self, feats: Tensor, mask: Tensor) -> Tensor:
        """Replace random spans (``time_mask`` of the frames, spans of 2-6 frames) by the mean face."""
        if self.data.time_mask <= 0:
            return feats
        B, T, _ = feats.shape
        drop = torch.zeros(B, T, dtype=torch.bool, device=feats.device)
        spans = max(1, int(self.data.time_mask * T / 4))
        for b in range(B):
            for _ in range(spans):
                length = int(torch.randint(2, 7, (1,)))
                start = int(torch.randint(0, max(1, T - length), (1,)))
                drop[b, start:start + length] = True
        mean = self._stats[0].to(feats.device) if self._stats is not None else feats.mean((0, 1))
        return torch.where(drop[..., None], mean, feats)

    def still_spans(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The *still spans* augmentation (module docstring) on a copy of ``batch``:
        coefficients ``[B, T, C]``, audio ``[B, T * 640]`` and phones ``[B, T]``."""
        if self.data.still_prob <= 0:
            return dict(batch)
        coeffs, audio, phones = batch["coeffs"].clone(), batch["audio"].clone(), batch["phones"].clone()
        lo, hi = (max(round(v * FPS), 1) for v in self.data.still_seconds)
        keep = round(STILL_KEEP_SECONDS * FPS)
        for b in range(coeffs.shape[0]):
            frames = int(batch["mask"][b].sum())
            longest = min(hi, frames - keep)
            if float(torch.rand(())) >= self.data.still_prob or longest < lo:
                continue
            length = int(torch.randint(lo, longest + 1, (1,)))
            start = int(torch.randint(0, frames - length + 1, (1,)))
            blocks = audio[b, : frames * SAMPLES_PER_FRAME].reshape(frames, SAMPLES_PER_FRAME)
            quiet = blocks[int(blocks.square().mean(-1).argmin())].clone()  # [640] background
            coeffs[b, start:start + length] = 0.0
            audio[b, start * SAMPLES_PER_FRAME:(start + length) * SAMPLES_PER_FRAME] = quiet.repeat(length)
            phones[b, start:start + length] = 0  # SIL
        return {**batch, "coeffs": coeffs, "audio": audio, "phones": phones}

    # ------------------------------------------------------------------ loss and evaluation
    def loss(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> tuple[Tensor, dict]:
        train = step >= 0 and model.training
        if train:
            batch = self.still_spans(batch)
        mask = batch["mask"]
        with torch.no_grad():
            feats = self.features(batch["coeffs"], mask, train)
            target = log_mel(batch["audio"])  # [B, 4T, 80]
        out = model(feats, mask)
        l1 = getattr(model, "module", model).mel_loss(out.mel, target, mask)
        logs = {"mel_l1": l1.detach()}
        loss = l1
        if self.data.sc_weight > 0:
            sc = spectral_convergence(out.mel, target, mask)
            loss = loss + self.data.sc_weight * sc
            logs["sc"] = sc.detach()
        if out.phone_logits is not None and self.data.phone_weight > 0:
            ce = phone_ce(out.phone_logits, batch["phones"], mask)
            loss = loss + self.data.phone_weight * ce
            logs["phone_ce"] = ce.detach()
        return loss, logs

    @torch.no_grad()
    def evaluate(self, model: nn.Module, val_loader) -> dict[str, float]:
        """Validation mel L1, and the same with the animation shifted by 2 frames (sync margin)."""
        sums = {"val_mel_l1": 0.0, "val_mel_l1_shift2": 0.0, "val_phone_acc": 0.0}
        n = 0
        for batch in val_loader:
            mask = batch["mask"]
            target = log_mel(batch["audio"])
            feats = self.features(batch["coeffs"], mask, train=False)
            out = model(feats, mask)
            sums["val_mel_l1"] += float(model.mel_loss(out.mel, target, mask))
            shifted = torch.cat([feats[:, :1].expand(-1, 2, -1), feats[:, :-2]], dim=1)
            sums["val_mel_l1_shift2"] += float(model.mel_loss(model(shifted, mask).mel, target, mask))
            if out.phone_logits is not None:
                labels = batch["phones"]
                valid = labels >= 0
                hits = (out.phone_logits.argmax(-1) == labels) & valid
                sums["val_phone_acc"] += float(hits.sum()) / max(1, int(valid.sum()))
            n += 1
        result = {k: v / max(n, 1) for k, v in sums.items()}
        result["val_sync_margin"] = result["val_mel_l1_shift2"] - result["val_mel_l1"]
        return result


