"""Audio encoders: 16 kHz speech -> features aligned to the 25 fps animation frames.

Every encoder is an :class:`AudioEncoder` (an ``nn.Module``) with the same contract:

* ``forward(wav [B, N], num_frames=None) -> [B, T, out_dim]`` with ``T = N // 640``
  (:func:`~thunder3d.audio.features.num_frames`), or ``num_frames`` when given; the audio is
  zero-padded or its tail ignored to match, by at most one frame. A 1-D ``[N]`` input gives
  ``[T, out_dim]``.
* **Alignment**: feature ``t`` describes the audio around ``[t * 40 ms, (t + 1) * 40 ms)``, i.e.
  samples ``[640 t, 640 t + 640)``, centred on sample ``640 t + 320``. The receptive field of each
  encoder is symmetric about that centre (plus whatever context the encoder adds on both sides).
* ``out_dim``, ``frozen`` (no parameter of the backbone learns; a projection head may) and
  ``config()``: a JSON-able ``{"kind": ..., **options}`` from which :func:`build_audio_encoder`
  rebuilds the same encoder (weights apart: they live in the owner's ``state_dict``).

Kinds (:data:`ENCODER_KINDS`):

==========  ============================================================================================
mel         :class:`MelEncoder`, the default: log-mel (:class:`~thunder3d.audio.features.LogMel`),
            the 4 mel frames of each animation frame stacked, a small 1D conv stack over time, a
            linear output. Trained with the model that uses it; cheap, deterministic, any length.
wav2vec2    :class:`HFSpeechEncoder` over ``transformers``' ``Wav2Vec2Model`` loaded from a local
hubert      directory (``HubertModel`` for ``hubert``). Frozen (THUNDER-F) or trainable (THUNDER-T).
phonetic    :class:`PhoneticEncoder`: pocketsphinx phone recognition as smoothed one-hots over
            :data:`~thunder3d.audio.phones.PHONES`; frozen, not differentiable, slow-ish.
hybrid      :class:`HybridEncoder`: the mel encoder plus a learned projection of the recognised phones
            (added); the phones carry what is speaker-independent, the mel what they miss.
whisper     :class:`WhisperEncoder`: OpenAI's Whisper encoder pretrained on human speech (weights from a
            pinned pip package, :mod:`thunder3d.audio.whisper`), frozen by default, with a learned head.
==========  ============================================================================================

Encoders that read recognised phones (``uses_phones``: ``phonetic``, ``hybrid``) also take them
precomputed, ``forward(wav, num_frames, phones=labels [B, T])`` (indices into ``PHONES``, e.g. from
:func:`~thunder3d.audio.align.recognize_frame_labels`; negative = ``SIL``): training reads them
from the corpus's cache, inference recognises a whole input once. Without ``phones`` they
recognise each item themselves. Their ``recognizer`` option picks how
(:data:`~thunder3d.audio.align.RECOGNIZERS`): ``"phones"``, pocketsphinx's phone loop (the
default), or ``"words"``, word recognition with its language model and the phones of that
hypothesis (three times slower, half the phone errors on real speech).

Pretrained speech models are never downloaded: ``path`` must be a directory on disk holding a
``config.json`` and weights (what ``save_pretrained`` writes); it is opened with
``local_files_only=True``. ``transformers`` is imported only when such an encoder is built
(``pip install thunder3d[hf]``).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thunder3d.audio.features import LogMel
from thunder3d.audio.mel_augment import mask_mel_bands, warp_mel
from thunder3d.audio.phones import NUM_PHONES
from thunder3d.constants import MELS_PER_FRAME, N_MELS, SAMPLES_PER_FRAME
from thunder3d.errors import AudioEncoderError, AudioError

ENCODER_KINDS = ("mel", "wav2vec2", "hubert", "phonetic", "hybrid", "whisper")
"""Valid ``kind`` values of :func:`build_audio_encoder`."""

HF_KINDS = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel"}
"""``transformers`` model class of each pretrained kind (``config.json``'s ``model_type`` is the kind)."""

# Generic log-mel statistics of speech (espeak-ng voices, measured): used until set_input_stats.
DEFAULT_MEL_MEAN = -7.5
DEFAULT_MEL_STD = 3.5
_NORM_EPS = 1e-7  # variance floor of the per-utterance waveform normalisation (as wav2vec2's extractor)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")




# --------------------------------------------------------------------------- timing helpers
def target_frames(num_samples: int, num_frames: int | None = None) -> int:
    """Frames ``T`` an encoder returns for ``num_samples`` samples: ``num_samples // 640``, or
    ``num_frames`` if it differs from that by at most one frame (else :class:`AudioError`)."""
    natural = num_samples // SAMPLES_PER_FRAME
    if num_frames is None:
        return natural
    if num_frames < 0 or abs(num_frames - natural) > 1:
        raise AudioError(f"num_frames={num_frames} does not fit {num_samples} samples "
                         f"({natural} frames of {SAMPLES_PER_FRAME}); at most one frame of "
                         "padding or cropping is allowed")
    return num_frames


def pad_to_length(wav: Tensor, length: int) -> Tensor:
    """Zero-pad the last axis of ``[..., N]`` to at least ``length`` samples (never crops)."""
    return F.pad(wav, (0, length - wav.shape[-1])) if wav.shape[-1] < length else wav


def _check_wav(wav: Tensor) -> Tensor:
    if not isinstance(wav, Tensor) or not wav.is_floating_point() or wav.ndim != 2:
        what = f"{tuple(wav.shape)} {wav.dtype}" if isinstance(wav, Tensor) else type(wav).__name__
        raise AudioError(f"audio encoders take float 16 kHz audio [B, N] (or [N]), got {what}")
    return wav


def normalize_waveform(wav: Tensor) -> Tensor:
    """Zero mean, unit variance per utterance (what wav2vec 2.0 and HuBERT were trained on).

    ``[B, N]`` -> ``[B, N]``; a silent row stays zero.
    """
    mean = wav.mean(-1, keepdim=True)
    var = wav.var(-1, keepdim=True, unbiased=False)
    return (wav - mean) / torch.sqrt(var + _NORM_EPS)


# --------------------------------------------------------------------------- the learned conv head
def add_conv_head(module: nn.Module, in_dim: int, hidden: int, layers: int, kernel: int, dropout: float,
                  out_dim: int) -> None:
    """Give ``module`` the conv stack of :class:`MelEncoder` and :class:`WhisperEncoder` as its ``convs``,
    ``dropout`` and ``proj`` (those names, so checkpoints keep their keys)."""
    widths = [in_dim] + [hidden] * layers
    module.convs = nn.ModuleList(
        nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2) for c_in, c_out in itertools.pairwise(widths))
    module.dropout = nn.Dropout(dropout)
    module.proj = nn.Linear(hidden, out_dim)


def run_conv_head(module: nn.Module, x: Tensor) -> Tensor:
    """``[B, in_dim, T]`` (channels first) -> ``[B, T, out_dim]``: each conv (over time), GELU, dropout,
    residual after the first; then the linear projection."""
    for i, conv in enumerate(module.convs):
        y = module.dropout(F.gelu(conv(x)))
        x = y if i == 0 else x + y
    return module.proj(x.transpose(1, 2))


# --------------------------------------------------------------------------- interface
class AudioEncoder(nn.Module):
    """Audio -> frame-aligned features at 25 fps (see the module docstring for the contract).

    Subclasses set ``kind``, implement :meth:`encode` on ``[B, N]`` audio that already covers
    ``T`` frames, and :meth:`config`; those that read recognised phones set ``uses_phones``.
    """

    kind: str = ""
    uses_phones: bool = False
    uses_pretrained: bool = False  # takes precomputed frozen features (``pretrained=``), see WhisperEncoder
    pretrained_name: str = ""
    recognizer: str = "phones"  # how a uses_phones encoder recognises audio it gets without phones
    init_optional: tuple[str, ...] = ()
    """Submodules whose weights may be missing from a checkpoint this encoder's owner is
    initialised from (``train --init``): they keep their fresh initialisation."""

    @property
    def out_dim(self) -> int:
        """Features per frame ``D``."""
        raise NotImplementedError

    @property
    def frozen(self) -> bool:
        """True when the pretrained/fixed part receives no gradient (a learned head still may)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-able ``{"kind": ..., **options}``; ``build_audio_encoder(config())`` rebuilds it."""
        raise NotImplementedError

    def encode(self, wav: Tensor, frames: int, phones: Tensor | None = None) -> Tensor:
        """``[B, N]`` float audio with ``N >= 640 * frames`` (and, for ``uses_phones`` encoders,
        optional ``[B, frames]`` phone labels) -> ``[B, frames, D]``."""
        raise NotImplementedError

    def forward(self, wav: Tensor, num_frames: int | None = None, phones: Tensor | None = None,
                pretrained: Tensor | None = None) -> Tensor:
        """Encode speech.

        Args:
            wav: ``[B, N]`` (or ``[N]``) float audio at 16 kHz.
            num_frames: frames to return; defaults to ``N // 640``. May differ from it by one
                frame (the audio is zero-padded, or its last partial frame is not used).
            phones: ``[B, T]`` (or ``[T]``) recognised phone indices for ``uses_phones`` encoders
                (negative = ``SIL``); None: they recognise the audio themselves.
            pretrained: ``[B, T, F]`` (or ``[T, F]``) precomputed frozen features for
                ``uses_pretrained`` encoders; None: they compute them from ``wav``.

        Returns:
            ``[B, T, out_dim]`` (``[T, out_dim]`` for 1-D input); feature ``t`` covers samples
            ``[640 t, 640 t + 640)``.
        """
        squeeze = isinstance(wav, Tensor) and wav.ndim == 1
        wav = _check_wav(wav[None] if squeeze else wav)
        frames = target_frames(wav.shape[-1], num_frames)
        if phones is not None:
            phones = self._check_phones(phones[None] if squeeze else phones, wav.shape[0], frames)
        extra = {}
        if pretrained is not None:
            if not self.uses_pretrained:
                raise AudioError(f"the {self.kind!r} audio encoder takes no precomputed features")
            pretrained = pretrained[None] if squeeze else pretrained
            if pretrained.ndim != 3 or tuple(pretrained.shape[:2]) != (wav.shape[0], frames):
                raise AudioError(f"precomputed features must be [B, T, F] = [{wav.shape[0]}, {frames}, F], got "
                                 f"{tuple(pretrained.shape)}")
            extra["pretrained"] = pretrained
        if frames == 0:
            out = wav.new_zeros(wav.shape[0], 0, self.out_dim)
        else:
            out = self.encode(pad_to_length(wav, frames * SAMPLES_PER_FRAME), frames, phones, **extra)
        return out[0] if squeeze else out

    def _check_phones(self, phones: Tensor, batch: int, frames: int) -> Tensor:
        if not self.uses_phones:
            raise AudioError(f"the {self.kind!r} audio encoder does not read phone labels")
        if (not isinstance(phones, Tensor) or phones.is_floating_point() or phones.is_complex()
                or tuple(phones.shape) != (batch, frames)):
            what = f"{tuple(phones.shape)} {phones.dtype}" if isinstance(phones, Tensor) else type(phones).__name__
            raise AudioError(f"phone labels must be integer [B, T] = [{batch}, {frames}], got {what}")
        return phones.long()

    def extra_repr(self) -> str:
        options = {k: v for k, v in self.config().items() if k != "kind"}
        return ", ".join(f"{k}={v!r}" for k, v in options.items())


# --------------------------------------------------------------------------- mel
class MelEncoder(AudioEncoder):
    """Learned encoder over log-mel: the default audio features, trained with the talker.

    ``wav [B, N]`` -> log-mel ``[B, 4T, 80]`` -> per-bin normalisation (buffers ``mel_mean``,
    ``mel_std``: generic speech values until :meth:`set_input_stats`; optionally minus each
    utterance's mean per bin, ``cmn``) -> the 4 mel frames of each animation frame stacked
    ``[B, T, 320]`` -> ``layers`` x (Conv1d over time, ``kernel``, "same" zero padding, GELU,
    dropout; residual after the first) -> Linear ``[B, T, out_dim]``.

    Each output frame sees ``layers * (kernel - 1) / 2`` frames of context on each side (2 with the
    defaults, 80 ms) plus the 12.5 ms the mel window reaches past its frame.

    Args:
        out_dim: features per frame.
        hidden: channels of the conv stack.
        layers: conv layers (>= 1).
        kernel: odd conv kernel over animation frames (1 = no context).
        dropout: dropout after each activation.
        cmn: subtract each utterance's mean log-mel per bin (blind to gain and microphone colour;
            features then depend on the whole input, so use it with windows of a few seconds).
        warp: training only: each item's frequency axis is warped by a factor drawn from
            ``[1 - warp, 1 + warp]`` (vocal-tract-length perturbation, :func:`.mel_augment.warp_mel`;
            0 = off).
        band_mask: training only: one band of up to this many mel bins per item is masked
            (:func:`.mel_augment.mask_mel_bands`; 0 = off).

    The two augmentations act in ``train()`` mode only; in ``eval()`` the features are exact.
    """

    kind = "mel"

    def __init__(self, out_dim: int = 256, *, hidden: int = 256, layers: int = 2, kernel: int = 3,
                 dropout: float = 0.0, cmn: bool = False, warp: float = 0.0, band_mask: int = 0) -> None:
        super().__init__()
        _check_int("out_dim", out_dim, 1)
        _check_int("hidden", hidden, 1)
        _check_int("layers", layers, 1)
        _check_int("kernel", kernel, 1)
        if kernel % 2 == 0:
            raise AudioEncoderError(f"mel encoder kernel must be odd (symmetric context), got {kernel}")
        if not 0.0 <= dropout < 1.0:
            raise AudioEncoderError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= warp < 0.5:
            raise AudioEncoderError(f"warp must be in [0, 0.5), got {warp}")
        _check_int("band_mask", band_mask, 0)
        if band_mask >= N_MELS:
            raise AudioEncoderError(f"band_mask must be < {N_MELS} bins, got {band_mask}")
        self._options = {"out_dim": out_dim, "hidden": hidden, "layers": layers, "kernel": kernel,
                         "dropout": float(dropout), "cmn": bool(cmn)}
        if warp or band_mask:  # only when set: configs of earlier models stay identical
            self._options.update(warp=float(warp), band_mask=int(band_mask))
        self.log_mel = LogMel()
        self.register_buffer("mel_mean", torch.full((N_MELS,), DEFAULT_MEL_MEAN))
        self.register_buffer("mel_std", torch.full((N_MELS,), DEFAULT_MEL_STD))
        add_conv_head(self, MELS_PER_FRAME * N_MELS, hidden, layers, kernel, dropout, out_dim)

    @property
    def out_dim(self) -> int:
        return self._options["out_dim"]

    @property
    def frozen(self) -> bool:
        return False

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._options}

    @torch.no_grad()
    def set_input_stats(self, mean: Tensor | np.ndarray, std: Tensor | np.ndarray) -> None:
        """Set the log-mel normalisation from training statistics: ``[80]`` each (or scalars).

        ``std`` is floored at 1e-3 so a constant bin cannot blow up.
        """
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).expand(N_MELS)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).expand(N_MELS)
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all()):
            raise AudioError("log-mel statistics must be finite")
        self.mel_mean.copy_(mean_t)
        self.mel_std.copy_(std_t.clamp(min=1e-3))

    def mel_features(self, wav: Tensor, frames: int) -> Tensor:
        """Normalised log-mel stacked per animation frame: ``[B, N >= 640 T]`` -> ``[B, T, 320]``."""
        mel = self.log_mel(wav)[:, : frames * MELS_PER_FRAME]  # [B, 4T, 80]
        warp, band_mask = self._options.get("warp", 0.0), self._options.get("band_mask", 0)
        if self.training and warp > 0:
            alpha = 1.0 + warp * (2.0 * torch.rand(mel.shape[0]) - 1.0)  # [B]
            mel = warp_mel(mel, alpha)
        mel = (mel - self.mel_mean) / self.mel_std
        if self._options["cmn"]:
            mel = mel - mel.mean(1, keepdim=True)
        if self.training and band_mask > 0:
            mel = mask_mel_bands(mel, band_mask)
        return mel.reshape(mel.shape[0], frames, MELS_PER_FRAME * N_MELS)  # row t = mel 4t..4t+3

    def encode(self, wav: Tensor, frames: int, phones: Tensor | None = None) -> Tensor:
        return run_conv_head(self, self.mel_features(wav, frames).transpose(1, 2))  # [B, T, out_dim]


# --------------------------------------------------------------------------- wav2vec 2.0 / HuBERT
def _import_transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AudioEncoderError("wav2vec2/hubert encoders need the 'transformers' package: "
                                "pip install 'thunder3d[hf]'") from exc
    return transformers


def check_pretrained_dir(path: str | Path, kind: str) -> Path:
    """Check that ``path`` is a local ``save_pretrained`` folder of a ``kind`` model; return it.

    Raises:
        AudioEncoderError: naming the folder and what is wrong (missing, no ``config.json``, another
            model type, no weights). Never looks anything up online.
    """
    folder = Path(path).expanduser()
    hint = (f"{kind} encoders load from a local folder written by save_pretrained (config.json + "
            "model.safetensors); thunder3d never downloads models")
    if not folder.is_dir():
        raise AudioEncoderError(f"{kind} model folder not found: {str(folder)!r} ({hint})")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise AudioEncoderError(f"{str(folder)!r} is not a {kind} model folder: no config.json ({hint})")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise AudioEncoderError(f"unreadable model config {str(config_file)!r}: {exc}") from None
    if model_type != kind:
        raise AudioEncoderError(f"{str(folder)!r} holds a {model_type!r} model, not {kind!r}; "
                                f"use kind {model_type!r} if it is one of {list(HF_KINDS)}")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise AudioEncoderError(f"{str(folder)!r} has no weights (expected one of {list(_WEIGHT_FILES)})")
    return folder


def conv_geometry(kernels: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, int]:
    """``(receptive field, total stride)`` in samples of a stack of unpadded 1D convolutions."""
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return field, jump


class HFSpeechEncoder(AudioEncoder):
    """wav2vec 2.0 or HuBERT from a local folder, resampled to the animation frames.

    ``wav [B, N]`` -> per-utterance zero-mean unit-variance (``normalize``) -> zero padding so the
    model's frames are centred on the middle of each 20 ms half of an animation frame (``(field -
    stride) / 2`` samples left; 40 for the 400-sample field and 320 stride of these models) -> the
    model ``[B, L, H]`` at 50 Hz, hidden layer ``layer`` or a learned softmax-weighted sum of all
    layers -> linear interpolation to ``T`` frames (``F.interpolate(mode="linear",
    align_corners=False)``: frame ``t`` is the mean of 50 Hz frames ``2t`` and ``2t + 1``, centred
    on sample ``640 t + 320``) -> optional Linear to ``out_dim``.

    Frozen (THUNDER-F): the backbone stays in eval mode whatever ``train()`` says, its parameters
    have ``requires_grad=False`` and it runs under ``torch.no_grad``; layer weights and projection
    still learn. Trainable (THUNDER-T): everything learns, except the convolutional feature
    encoder when ``freeze_feature_encoder`` (the usual fine-tuning recipe); the model's own
    training-time masking and dropout (from its config) apply in train mode.

    Args:
        kind: ``"wav2vec2"`` or ``"hubert"``; must match ``config.json``'s ``model_type``.
        path: local folder written by ``save_pretrained``.
        frozen: freeze the backbone.
        layer: hidden state to use: ``-1`` the last (the model's output), an index into the
            ``num_hidden_layers + 1`` hidden states (0 = the transformer's input), or
            ``"weighted"`` for a learned softmax-weighted sum of all of them.
        out_dim: size of a Linear projection after resampling; None keeps the hidden size.
        normalize: per-utterance waveform normalisation; None reads ``do_normalize`` from the
            folder's ``preprocessor_config.json`` (True if there is none).
        freeze_feature_encoder: when trainable, keep the convolutional feature encoder fixed.
    """

    def __init__(self, kind: str, path: str | Path, *, frozen: bool = True, layer: int | str = -1,
                 out_dim: int | None = None, normalize: bool | None = None,
                 freeze_feature_encoder: bool = True) -> None:
        super().__init__()
        if kind not in HF_KINDS:
            raise AudioEncoderError(f"unknown pretrained encoder kind {kind!r}; valid: {list(HF_KINDS)}")
        self.kind = kind
        folder = check_pretrained_dir(path, kind)
        transformers = _import_transformers()
        model_class = getattr(transformers, HF_KINDS[kind])
        try:
            backbone, info = model_class.from_pretrained(str(folder), local_files_only=True,
                                                         output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise AudioEncoderError(f"cannot load the {kind} model in {str(folder)!r}: {exc}") from exc
        missing = sorted(k for k in info.get("missing_keys", ()) if "masked_spec_embed" not in k)
        if missing:
            raise AudioEncoderError(f"the {kind} model in {str(folder)!r} lacks weights for "
                                    f"{len(missing)} parameters (e.g. {missing[:3]}); refusing to use "
                                    "randomly initialised layers")
        self.backbone = backbone
        cfg = backbone.config
        self.field, self.stride = conv_geometry(tuple(cfg.conv_kernel), tuple(cfg.conv_stride))
        self.hidden_size = int(cfg.hidden_size)
        num_states = int(cfg.num_hidden_layers) + 1

        if layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(num_states))  # softmax -> uniform at start
        elif isinstance(layer, int) and not isinstance(layer, bool) and -num_states <= layer < num_states:
            self.layer_weights = None
        else:
            raise AudioEncoderError(f"layer must be 'weighted' or an int in [{-num_states}, "
                                    f"{num_states - 1}] for this {num_states - 1}-layer model, got {layer!r}")
        if out_dim is not None:
            _check_int("out_dim", out_dim, 1)
        self.proj = nn.Linear(self.hidden_size, out_dim) if out_dim is not None else None
        if normalize is None:
            normalize = _read_do_normalize(folder)

        self._options = {"path": str(folder), "frozen": bool(frozen), "layer": layer, "out_dim": out_dim,
                         "normalize": bool(normalize),
                         "freeze_feature_encoder": bool(freeze_feature_encoder)}
        if frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        elif freeze_feature_encoder:
            self.backbone.feature_extractor.requires_grad_(False)

    @property
    def out_dim(self) -> int:
        return self._options["out_dim"] or self.hidden_size

    @property
    def frozen(self) -> bool:
        return self._options["frozen"]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._options}

    def train(self, mode: bool = True) -> HFSpeechEncoder:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # THUNDER-F: no dropout or masking, ever
        return self

    def hidden_states(self, wav: Tensor) -> Tensor:
        """The chosen (or weighted) hidden state at the model's rate: ``[B, N]`` -> ``[B, L, H]``,
        50 Hz frame ``j`` centred on sample ``stride * (j + 1/2)``."""
        wav = wav.to(self.backbone.dtype)
        if self._options["normalize"]:
            wav = normalize_waveform(wav)
        left = (self.field - self.stride) // 2
        wav = F.pad(wav, (left, self.field - self.stride - left))  # L = N // stride frames
        layer = self._options["layer"]
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            out = self.backbone(wav, output_hidden_states=layer != -1)
        if layer == -1:
            return out.last_hidden_state
        if self.layer_weights is None:
            return out.hidden_states[layer]
        states = torch.stack(out.hidden_states)  # [S, B, L, H]
        weights = self.layer_weights.softmax(0)
        return torch.einsum("s,sblh->blh", weights, states)

    def encode(self, wav: Tensor, frames: int, phones: Tensor | None = None) -> Tensor:
        states = self.hidden_states(wav)  # [B, L, H], L >= 640 T / stride
        steps = max(1, round(frames * SAMPLES_PER_FRAME / self.stride))  # 2 T model frames at 50 Hz
        states = states[:, :steps].transpose(1, 2)  # [B, H, 2T]
        feats = F.interpolate(states, size=frames, mode="linear", align_corners=False).transpose(1, 2)
        return self.proj(feats) if self.proj is not None else feats  # [B, T, D]


def _read_do_normalize(folder: Path) -> bool:
    """``do_normalize`` of a feature-extractor config in ``folder``; True when absent."""
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return True
    try:
        return bool(json.loads(file.read_text(encoding="utf-8")).get("do_normalize", True))
    except (OSError, ValueError, AttributeError):
        return True


# --------------------------------------------------------------------------- phonetic
def recognized_labels(wav: Tensor, frames: int, method: str = "phones") -> Tensor:
    """Recognised phone index per frame of each item: ``[B, N]`` audio -> ``[B, frames]`` int64
    (:func:`~thunder3d.audio.align.recognize_frame_labels`, on the CPU, one item after another)."""
    from thunder3d.audio.align import recognize_frame_labels

    audio = wav.detach().float().cpu().numpy()
    labels = np.stack([recognize_frame_labels(item, frames, method=method) for item in audio])
    return torch.from_numpy(labels).to(wav.device)


def phone_posteriors(labels: Tensor, kernel: Tensor) -> Tensor:
    """Smoothed one-hots: ``[B, T]`` phone indices (negative = ``SIL``) -> ``[B, T, P]`` float.

    Each one-hot row is smoothed over time by the 3 taps ``kernel`` (edges replicated); with taps
    ``(s, 1 - 2 s, s)`` rows still sum to 1.
    """
    B, T = labels.shape
    onehot = F.one_hot(labels.clamp(min=0), NUM_PHONES).to(kernel.dtype).transpose(1, 2)  # [B, P, T]
    padded = F.pad(onehot, (1, 1), mode="replicate")
    smooth = F.conv1d(padded.reshape(-1, 1, T + 2), kernel.view(1, 1, 3))
    return smooth.reshape(B, NUM_PHONES, T).transpose(1, 2)


def _smoothing_kernel(smoothing: float) -> Tensor:
    if not 0.0 <= smoothing < 0.25:
        raise AudioEncoderError(f"phonetic smoothing must be in [0, 0.25), got {smoothing}")
    s = float(smoothing)
    return torch.tensor([s, 1.0 - 2.0 * s, s])


class PhoneticEncoder(AudioEncoder):
    """Phone-recognition features: pocketsphinx's phones as smoothed one-hots over ``PHONES``.

    Each item is decoded on the CPU (:func:`~thunder3d.audio.align.recognize_frame_labels`,
    allphone search, no transcript), labelled per frame at the frame centre and one-hot encoded
    ``[T, 40]``; a 3-tap temporal smoothing ``(s, 1 - 2 s, s)`` then makes them posterior-like
    (rows sum to 1; the argmax is the recognised phone as long as ``smoothing < 0.25``).

    Meant to test whether a speaker-independent, symbolic representation transfers better from
    the synthetic voices to real ones. Recognition runs at about a tenth of real time, one item
    after another (training reads precomputed labels, ``phones=``); frozen and not
    differentiable: the output never requires grad. A fresh decoder per item makes the labels a
    function of the audio alone.
    """

    kind = "phonetic"
    uses_phones = True

    def __init__(self, *, smoothing: float = 0.2, recognizer: str = "phones") -> None:
        from thunder3d.audio.align import check_recognizer

        super().__init__()
        self.recognizer = check_recognizer(recognizer)
        self._options = {"smoothing": float(smoothing)}
        if recognizer != "phones":  # stored only when set: older configs stay as they were
            self._options["recognizer"] = recognizer
        self.register_buffer("kernel", _smoothing_kernel(smoothing), persistent=False)

    @property
    def out_dim(self) -> int:
        return NUM_PHONES

    @property
    def frozen(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._options}

    @torch.no_grad()
    def encode(self, wav: Tensor, frames: int, phones: Tensor | None = None) -> Tensor:
        labels = recognized_labels(wav, frames, self.recognizer) if phones is None else phones
        return phone_posteriors(labels.to(self.kernel.device), self.kernel).to(device=wav.device,
                                                                               dtype=wav.dtype)


class HybridEncoder(MelEncoder):
    """The mel encoder plus recognised phones: ``mel(wav) + Linear(phone_scale * posteriors(phones))``.

    The mel branch is :class:`MelEncoder` with the same options and parameter names (so a mel
    model's weights initialise it); the phone branch turns pocketsphinx's recognised phones
    (:func:`phone_posteriors`, ``[B, T, 40]``) into ``[B, T, out_dim]`` with a Linear that starts at
    zero: at initialisation the encoder is exactly its mel branch. The phones come from a
    recogniser trained on real speech, so they carry what the synthetic voices and real ones share;
    the mel branch keeps timing, loudness and what the recogniser misses.

    Args:
        out_dim, hidden, layers, kernel, dropout, cmn, warp, band_mask: the mel branch
            (:class:`MelEncoder`).
        smoothing: temporal smoothing of the phone one-hots (:class:`PhoneticEncoder`).
        phone_scale: the posteriors enter the projection multiplied by this. Adam moves a weight by
            about the learning rate per step whatever its input, so a scale of 100 lets the branch
            reach the magnitude of the mel features (a few units) a hundred times sooner; added to
            a trained mel model at a fine-tuning learning rate, a scale of 10 left it at a fiftieth
            of the mel branch after 500 steps.
        mel_dropout: training only: the probability that an item's mel branch is zeroed, so the
            model learns to animate from the phones alone too (0 = off).
        mel_gain: outside training, the mel branch is multiplied by this (1 = as trained). A model
            trained with ``mel_dropout`` knows both ends, 0 (phones alone) and 1; in between the
            phones weigh more against a mel spectrum unlike the training voices'.
        recognizer: how phones are recognised from audio given without them (module docstring).
    """

    kind = "hybrid"
    uses_phones = True
    init_optional = ("phone_proj",)

    def __init__(self, out_dim: int = 256, *, hidden: int = 256, layers: int = 2, kernel: int = 3,
                 dropout: float = 0.0, cmn: bool = False, warp: float = 0.0, band_mask: int = 0,
                 smoothing: float = 0.2, phone_scale: float = 100.0, mel_dropout: float = 0.0,
                 mel_gain: float = 1.0, recognizer: str = "phones") -> None:
        super().__init__(out_dim, hidden=hidden, layers=layers, kernel=kernel, dropout=dropout, cmn=cmn,
                         warp=warp, band_mask=band_mask)
        if not 0.0 <= mel_dropout < 1.0:
            raise AudioEncoderError(f"mel_dropout must be in [0, 1), got {mel_dropout}")
        if not 0.0 < phone_scale < 1e3:
            raise AudioEncoderError(f"phone_scale must be in (0, 1000), got {phone_scale}")
        from thunder3d.audio.align import check_recognizer

        self.recognizer = check_recognizer(recognizer)
        self._options.update(smoothing=float(smoothing), phone_scale=float(phone_scale),
                             mel_dropout=float(mel_dropout))
        self.mel_gain = mel_gain
        if recognizer != "phones":  # stored only when set: older configs stay as they were
            self._options["recognizer"] = recognizer
        self.register_buffer("phone_kernel", _smoothing_kernel(smoothing), persistent=False)
        self.phone_proj = nn.Linear(NUM_PHONES, out_dim)
        nn.init.zeros_(self.phone_proj.weight)
        nn.init.zeros_(self.phone_proj.bias)

    @property
    def mel_gain(self) -> float:
        """Weight of the mel branch outside training (the ``mel_gain`` option)."""
        return self._options.get("mel_gain", 1.0)

    @mel_gain.setter
    def mel_gain(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise AudioEncoderError(f"mel_gain must be in [0, 1], got {value}")
        self._options.pop("mel_gain", None)
        if value != 1.0:  # stored only when set: older configs stay as they were
            self._options["mel_gain"] = float(value)

    def encode(self, wav: Tensor, frames: int, phones: Tensor | None = None) -> Tensor:
        mel = super().encode(wav, frames)  # [B, T, D]
        p = self._options["mel_dropout"]
        if self.training and p > 0:
            keep = (torch.rand(mel.shape[0], device=mel.device) >= p).to(mel.dtype)  # [B]
            mel = mel * keep[:, None, None]
        elif not self.training:
            mel = mel * self.mel_gain
        labels = recognized_labels(wav, frames, self.recognizer) if phones is None else phones
        post = phone_posteriors(labels.to(wav.device), self.phone_kernel.to(mel.dtype))  # [B, T, 40]
        return mel + self.phone_proj(self._options["phone_scale"] * post)


# --------------------------------------------------------------------------- Whisper
class WhisperEncoder(AudioEncoder):
    """Whisper's pretrained encoder (:mod:`thunder3d.audio.whisper`) with a learned head.

    ``wav [B, N]`` -> Whisper log-mel -> the pretrained encoder (frozen unless ``trainable``) at
    50 Hz ``[B, 2T, 384]`` -> the two frames of each animation frame stacked ``[B, T, 768]`` ->
    LayerNorm -> ``layers`` x (Conv1d over time, ``kernel``, GELU, dropout; residual after the
    first) -> Linear ``[B, T, out_dim]``.

    Long inputs are encoded in chunks of ``chunk`` seconds with ``context`` seconds of audio on each
    side (:func:`~thunder3d.audio.whisper.fixed_chunks`), so that a frame's features never depend on
    audio far away, and the same audio gives the same features whatever the length of the input
    around it. Frozen (``uses_pretrained``), those features may also be given precomputed:
    ``forward(wav, T, pretrained=[B, T, 768])`` (training reads them from the corpus's cache).

    Args:
        out_dim, hidden, layers, kernel, dropout: the learned head (as :class:`MelEncoder`'s).
        model: one of :data:`~thunder3d.audio.whisper.WHISPER_PACKAGES`.
        chunk, context: seconds (``chunk + 2 context <= 30``, Whisper's window).
        trainable: fine-tune the pretrained encoder too (THUNDER-T); its weights then live in the
            owner's ``state_dict``. Frozen (the default), they are loaded from the package and never
            saved.
    """

    kind = "whisper"

    def __init__(self, out_dim: int = 256, *, model: str = "tiny.en", hidden: int = 256, layers: int = 2,
                 kernel: int = 3, dropout: float = 0.0, chunk: float = 8.0, context: float = 1.0,
                 trainable: bool = False) -> None:
        super().__init__()
        from thunder3d.audio.whisper import WHISPER_PACKAGES, load_whisper_encoder, whisper_model_file

        for name, value, minimum in (("out_dim", out_dim, 1), ("hidden", hidden, 1), ("layers", layers, 1),
                                     ("kernel", kernel, 1)):
            _check_int(name, value, minimum)
        if kernel % 2 == 0 or not 0.0 <= dropout < 1.0:
            raise AudioEncoderError(f"whisper head kernel must be odd and dropout in [0, 1), got {kernel}, {dropout}")
        if not (0.04 <= chunk and 0.0 <= context and chunk + 2 * context <= 30.0):
            raise AudioEncoderError(f"whisper chunk and context must satisfy chunk + 2 context <= 30 s, got "
                                    f"{chunk}, {context}")
        self._options = {"out_dim": out_dim, "model": model, "hidden": hidden, "layers": layers, "kernel": kernel,
                         "dropout": float(dropout), "chunk": float(chunk), "context": float(context),
                         "trainable": bool(trainable)}
        if trainable:  # its weights are trained and saved with the owner's
            self.backbone = load_whisper_encoder(model)
            width = 2 * self.backbone.cfg.dim
        else:  # shared, frozen, out of the state_dict: loaded from the package when first used, never saved
            whisper_model_file(model)  # installed and pinned, else a clear error now
            width = 2 * WHISPER_PACKAGES[model].dims[0]
        self.norm = nn.LayerNorm(width)
        add_conv_head(self, width, hidden, layers, kernel, dropout, out_dim)

    @property
    def out_dim(self) -> int:
        return self._options["out_dim"]

    @property
    def frozen(self) -> bool:
        return not self._options["trainable"]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._options}

    @property
    def uses_pretrained(self) -> bool:
        """Frozen, its pretrained features can be computed once per clip and cached (the corpus's
        ``pretrained`` cache, :mod:`thunder3d.data.pretrained`) or per input (``generate``)."""
        return self.frozen

    @property
    def pretrained_name(self) -> str:
        """Name of the cache of its pretrained features (``whisper-tiny.en``)."""
        return f"whisper-{self._options['model']}"

    def pretrained_features(self, wav: Tensor, frames: int) -> Tensor:
        """``[B, N]`` -> the pretrained encoder's features, two per frame: ``[B, T, 768]``."""
        from thunder3d.audio.whisper import whisper_features

        encoder = self.backbone if self._options["trainable"] else None
        if encoder is None and wav.device.type == "cpu":
            encoder = self.__dict__.get("_runtime_backbone")  # onnxruntime (use_onnx), or None
        return whisper_features(wav, frames, model=self._options["model"], chunk=self._options["chunk"],
                                context=self._options["context"], encoder=encoder)

    def use_onnx(self, enabled: bool = True) -> None:
        """Compute the frozen backbone's features with onnxruntime on the CPU (:mod:`thunder3d.models.onnx`)."""
        from thunder3d.models import onnx

        self.__dict__["_runtime_backbone"] = None
        if enabled and self.frozen and onnx.available():
            self.__dict__["_runtime_backbone"] = onnx.onnx_whisper(self._options["model"])

    def encode(self, wav: Tensor, frames: int, phones: Tensor | None = None,
               pretrained: Tensor | None = None) -> Tensor:
        if pretrained is None:
            pretrained = self.pretrained_features(wav, frames)  # [B, T, 768]
        return run_conv_head(self, self.norm(pretrained.to(wav.device, torch.float32)).transpose(1, 2))


# --------------------------------------------------------------------------- factory
_CLASSES: dict[str, type[AudioEncoder]] = {
    "mel": MelEncoder, "wav2vec2": HFSpeechEncoder, "hubert": HFSpeechEncoder, "phonetic": PhoneticEncoder,
    "hybrid": HybridEncoder, "whisper": WhisperEncoder,
}


def encoder_options(kind: str) -> list[str]:
    """Option names that :func:`build_audio_encoder` accepts for ``kind`` (besides ``kind``)."""
    if kind not in _CLASSES:
        raise AudioEncoderError(f"unknown audio encoder kind {kind!r}; valid: {list(ENCODER_KINDS)}")
    params = inspect.signature(_CLASSES[kind].__init__).parameters
    return [name for name in params if name not in ("self", "kind")]


def build_audio_encoder(config: Mapping[str, Any] | str | None = None) -> AudioEncoder:
    """Build an encoder from ``{"kind": ..., **options}`` (what :meth:`AudioEncoder.config` returns).

    A bare kind string or None (the ``mel`` default) are accepted too.

    Raises:
        AudioEncoderError: unknown kind or option (listing the valid ones), bad option values,
            or a pretrained folder that is missing or not a model of that kind.
    """
    if config is None:
        config = {"kind": "mel"}
    elif isinstance(config, str):
        config = {"kind": config}
    if not isinstance(config, Mapping):
        raise AudioEncoderError("audio encoder config must be a dict with a 'kind', "
                                f"got {type(config).__name__}")
    options = dict(config)
    kind = options.pop("kind", "mel")
    valid = encoder_options(kind)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise AudioEncoderError(f"unknown option(s) {unknown} for {kind!r} audio encoder; valid: {valid}")
    if kind in HF_KINDS:
        if "path" not in options:
            raise AudioEncoderError(f"{kind!r} audio encoder needs 'path': a local model folder")
        return HFSpeechEncoder(kind, **options)
    return _CLASSES[kind](**options)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise AudioEncoderError(f"{name} must be an integer >= {minimum}, got {value!r}")


__all__ = [
    "ENCODER_KINDS", "AudioEncoder", "AudioEncoderError", "HFSpeechEncoder", "HybridEncoder",
    "MelEncoder", "PhoneticEncoder", "WhisperEncoder", "build_audio_encoder", "check_pretrained_dir",
    "conv_geometry",
    "encoder_options", "normalize_waveform", "phone_posteriors", "recognized_labels", "target_frames",
]
