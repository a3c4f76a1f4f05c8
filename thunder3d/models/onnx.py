"""ONNX Runtime for the networks inference runs many times on a CPU: the denoiser (every DDIM step of every
window or stream block) and the frozen Whisper encoder.

On a CPU, onnxruntime runs these small-batch transformer passes about twice as fast as eager torch (a
192-wide, 4-layer denoiser on 100 frames: 15 ms against 27 ms on 2 cores; 9 against 21 ms on 50 frames).
:func:`onnx_denoiser` exports a trained :class:`~thunder3d.models.denoiser.Denoiser` once (torch's
exporter) to ``$THUNDER3D_CACHE/onnx/`` under a key hashed from its config and weights, and wraps the
graph in :class:`OnnxDenoiser`, which takes and returns torch tensors like the module (guidance included),
so the sampling loop is the same one. The graph is a snapshot of the weights: a model whose weights change
afterwards must call ``use_onnx()`` again (a deep copy of a model runs torch). :func:`onnx_whisper` does the same for
the pinned :class:`~thunder3d.audio.whisper.WhisperNet`, keyed by the pinned weights' hash, so that a cached graph
starts without loading the encoder into torch. The graphs are derived files: safe to delete, rebuilt when
needed, never loaded from anywhere else. Outputs match torch's to about 1e-5.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from thunder3d.utils.io import atomic_path, cache_dir

GRAPH_VERSION = 1  # bump when the exported graphs change
MAX_FRAMES = 4096  # the longest window the denoiser graph takes (rotary tables are baked in)
_INPUTS = ("x_t", "t", "audio", "emotion", "intensity", "style", "drop_audio", "drop_cond")
_KNOWN = ("known", "known_mask")  # inputs of a denoiser with known_input


def available() -> bool:
    """Whether onnxruntime can be imported."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _key(module: nn.Module, config: dict[str, Any], kind: str) -> str:
    digest = hashlib.sha256(f"{kind}-{GRAPH_VERSION}-{torch.__version__}".encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _export(module: nn.Module, args: tuple, path: Path, names: list[str], dynamic: dict) -> None:
    """Export ``module`` in eval mode to ``path`` atomically (torch's TorchScript-based exporter, opset 17);
    the modules' train/eval modes are left as they were."""
    modes = {m: m.training for m in module.modules()}
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's tracer warnings are about shapes it handles
            torch.onnx.export(module.eval(), args, str(tmp), dynamo=False, input_names=names[:-1],
                              output_names=names[-1:], dynamic_axes=dynamic, opset_version=17,
                              do_constant_folding=True)
    finally:
        for m, training in modes.items():
            m.training = training


def _session(path: Path):
    """An inference session of the graph at ``path``. The first session also saves the graph as
    onnxruntime optimised it (``*.opt`` beside it; ``EXTENDED`` level, for this CPU provider), which
    later sessions load without optimising again: a process starts about 0.1 s sooner."""
    import onnxruntime as ort

    def options(level):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.graph_optimization_level = level
        return opts

    optimised = path.with_suffix(".opt")
    if optimised.is_file():
        try:
            return ort.InferenceSession(str(optimised), options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                                        providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 -- a derived file another onnxruntime wrote: make it again
            optimised.unlink(missing_ok=True)
    with atomic_path(optimised) as tmp:
        opts = options(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        opts.optimized_model_filepath = str(tmp)
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- denoiser
class _DenoiserGraph(nn.Module):
    """The exported signature: every input a tensor, no mask (and, with ``known_input``, the known
    frames and their flags)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_t, t, audio, emotion, intensity, style, drop_audio, drop_cond, known=None, known_mask=None):
        return self.net(x_t, t, audio, emotion, intensity, style, None, drop_audio, drop_cond, known, known_mask)


class OnnxDenoiser:
    """A :class:`~thunder3d.models.denoiser.Denoiser` run by onnxruntime; called like the module.

    Masks are not part of the graph: a call with a mask that hides frames goes to the torch module.
    """

    def __init__(self, net: nn.Module, path: Path) -> None:
        self.net, self.path = net, path
        self.cfg = net.cfg
        self._session = _session(path)
        # the exporter drops inputs the network ignores (style without styles, say): feed only the graph's
        self._inputs = frozenset(i.name for i in self._session.get_inputs())

    def __call__(self, x_t: Tensor, t: Tensor | int, audio: Tensor, emotion=None, intensity=None, style=None,
                 mask: Tensor | None = None, drop_audio: bool | Tensor = False,
                 drop_cond: bool | Tensor = False, known: Tensor | None = None,
                 known_mask: Tensor | None = None) -> Tensor:
        unused = not self.cfg.known_input and (known is not None or known_mask is not None)  # torch refuses them
        if mask is not None and not bool(mask.all()) or x_t.shape[1] > MAX_FRAMES or unused:
            return self.net(x_t, t, audio, emotion, intensity, style, mask, drop_audio, drop_cond, known, known_mask)
        B = x_t.shape[0]

        def batch(value, fill) -> np.ndarray:
            v = torch.as_tensor(fill if value is None else value)
            return (v.expand(B) if v.ndim == 0 else v).detach().cpu().numpy()

        feed = {"x_t": x_t.detach().float().cpu().numpy(), "t": batch(t, 0).astype(np.int64),
                "audio": audio.detach().float().cpu().numpy(), "emotion": batch(emotion, -1).astype(np.int64),
                "intensity": batch(intensity, -1).astype(np.int64), "style": batch(style, -1).astype(np.int64),
                "drop_audio": batch(drop_audio, False).astype(bool), "drop_cond": batch(drop_cond, False).astype(bool)}
        if self.cfg.known_input:
            from thunder3d.models.denoiser import known_features

            given = known_features(known, known_mask, x_t)  # checks the shapes; [B, T, C + 1]
            feed["known"] = given[..., :-1].detach().float().cpu().numpy()
            feed["known_mask"] = given[..., -1].detach().cpu().numpy() > 0.5
        out = self._session.run(None, {name: value for name, value in feed.items() if name in self._inputs})[0]
        return torch.from_numpy(out).to(x_t.device)

    forward = __call__

    def __deepcopy__(self, memo) -> None:
        return None  # a copy of a model runs torch (its weights may change; the graph would not)

    def guided(self, *args, **kwargs) -> Tensor:
        """:meth:`Denoiser.guided <thunder3d.models.denoiser.Denoiser.guided>` around this graph."""
        from thunder3d.models.denoiser import guided_denoise

        return guided_denoise(self, *args, **kwargs)


def onnx_denoiser(net: nn.Module) -> OnnxDenoiser:
    """``net`` (a :class:`~thunder3d.models.denoiser.Denoiser` in eval mode) as an :class:`OnnxDenoiser`,
    exported on first use (a few seconds) and cached."""
    cfg = net.cfg
    path = cache_dir() / "onnx" / f"denoiser-{_key(net, cfg.to_dict(), 'denoiser')}.onnx"
    if not path.is_file():
        for module in net.modules():  # bake rotary tables long enough for any window
            if hasattr(module, "head_dim") and hasattr(module, "cos"):
                module(MAX_FRAMES, torch.device("cpu"))
        T, C, D = 16, cfg.coeff_dim, cfg.audio_dim
        args = (torch.randn(2, T, C), torch.tensor([500, 10]), torch.randn(2, T, D), torch.tensor([0, -1]),
                torch.tensor([1, 0]), torch.tensor([-1, -1]), torch.tensor([False, True]), torch.tensor([False, True]))
        names = list(_INPUTS)
        batch_time = {0: "B", 1: "T"}
        dynamic = {"x_t": batch_time, "audio": batch_time, "x0": batch_time,
                   **{name: {0: "B"} for name in _INPUTS if name not in ("x_t", "audio")}}
        if cfg.known_input:
            args += (torch.randn(2, T, C), torch.arange(T)[None].expand(2, T) < torch.tensor([[4], [0]]))
            names += _KNOWN
            dynamic.update({name: batch_time for name in _KNOWN})
        _export(_DenoiserGraph(net), args, path, [*names, "x0"], dynamic)
    return OnnxDenoiser(net, path)


# --------------------------------------------------------------------------- whisper
class OnnxWhisper:
    """A pinned, frozen :class:`~thunder3d.audio.whisper.WhisperNet` run by onnxruntime:
    ``mel [B, M, 80] -> [B, M / 2, D]``. The torch encoder (``net``) is loaded only when it is needed:
    to export the graph, or for a call that needs gradients."""

    def __init__(self, name: str, path: Path) -> None:
        from thunder3d.audio.whisper import WHISPER_PACKAGES, WhisperConfig

        dim, layers, heads = WHISPER_PACKAGES[name].dims
        self.name, self.path, self.cfg = name, path, WhisperConfig(dim=dim, layers=layers, heads=heads)
        self._session = _session(path)

    @property
    def net(self) -> nn.Module:
        from thunder3d.audio.whisper import shared_encoder

        return shared_encoder(self.name)

    def __call__(self, mel: Tensor) -> Tensor:
        if torch.is_grad_enabled() and mel.requires_grad:
            return self.net(mel)
        out = self._session.run(None, {"mel": mel.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(mel.device)

    def to(self, device) -> OnnxWhisper:
        return self

    def __deepcopy__(self, memo) -> None:
        return None


def onnx_whisper(name: str = "tiny.en") -> OnnxWhisper:
    """The frozen pinned encoder ``name`` (:data:`~thunder3d.audio.whisper.WHISPER_PACKAGES`) as an
    :class:`OnnxWhisper`, exported on first use and cached. The cache key is the pinned weights' hash:
    once the graph exists, the weights are checked (:func:`~thunder3d.audio.whisper.whisper_model_file`)
    but not loaded into torch."""
    from thunder3d.audio.whisper import WHISPER_PACKAGES, shared_encoder, whisper_model_file

    whisper_model_file(name)  # installed and the pinned file (a clear error otherwise)
    pkg = WHISPER_PACKAGES[name]
    digest = hashlib.sha256(f"whisper-{GRAPH_VERSION}-{torch.__version__}-{name}-{pkg.sha256}".encode())
    path = cache_dir() / "onnx" / f"whisper-{digest.hexdigest()[:20]}.onnx"
    if not path.is_file():
        net = shared_encoder(name)
        _export(net, (torch.randn(1, 200, net.cfg.n_mels),), path, ["mel", "features"],
                {"mel": {0: "B", 1: "M"}, "features": {0: "B", 1: "F"}})
    return OnnxWhisper(name, path)


__all__ = ["MAX_FRAMES", "OnnxDenoiser", "OnnxWhisper", "available", "onnx_denoiser", "onnx_whisper"]
