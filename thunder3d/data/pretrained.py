"""Frozen pretrained speech features of a corpus's clips, cached beside them for training.

An audio encoder whose pretrained part is frozen (``uses_pretrained``: the ``whisper`` encoder of
:mod:`thunder3d.models.encoders`) reads the same features of a clip at every epoch, so they are
computed once per whole clip (:func:`~thunder3d.audio.whisper.whisper_features`: fixed chunks with
context, as at inference) and stored as ``<corpus>/features-<name>/<id>.npy`` (float16 ``[T, F]``),
with the settings in ``config.json`` beside them. ``thunder3d data features CORPUS`` writes them
(:func:`cache_pretrained`), resumably and atomically; training windows are slices of them
(``ClipDataset(pretrained=name)``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thunder3d.data.clip import corpus_clips, load_clip
from thunder3d.errors import DataError
from thunder3d.utils.io import atomic_path, atomic_write_text

PRETRAINED_PREFIX = "features-"
FEATURE_KINDS = ("whisper",)


def _parse(name: str) -> tuple[str, str]:
    kind, _, model = name.partition("-")
    if kind not in FEATURE_KINDS or not model:
        raise DataError(f"unknown pretrained feature name {name!r}; valid: whisper-MODEL (e.g. whisper-tiny.en)")
    return kind, model


def pretrained_dir(root: str | os.PathLike, name: str = "whisper-tiny.en") -> Path:
    _parse(name)
    return Path(root) / f"{PRETRAINED_PREFIX}{name}"


def pretrained_path(root: str | os.PathLike, clip_id: str, name: str = "whisper-tiny.en") -> Path:
    return pretrained_dir(root, name) / f"{clip_id}.npy"


def _command(root, name: str) -> str:
    return f"thunder3d data features {root}" + ("" if name == "whisper-tiny.en" else f" --name {name}")


def check_settings(root: str | os.PathLike, name: str, settings: dict) -> None:
    """Refuse a cache made with other settings (chunking) than ``settings``."""
    file = pretrained_dir(root, name) / "config.json"
    if file.is_file():
        saved = json.loads(file.read_text(encoding="utf-8"))
        if saved != settings:
            raise DataError(f"{file}: cached with {saved}, this encoder needs {settings}; delete the folder and "
                            f"run `{_command(root, name)}` again")


def read_pretrained(root: str | os.PathLike, clip_id: str, num_frames: int,
                    name: str = "whisper-tiny.en") -> np.ndarray:
    """The cached features of a clip, ``[num_frames, F]`` float16 (one frame more or less is padded or cut).

    Raises:
        DataError: no cache for the clip (naming the command that writes it) or an unreadable one.
    """
    path = pretrained_path(root, clip_id, name)
    if not path.is_file():
        raise DataError(f"clip {clip_id!r} has no cached {name} features ({path}); run `{_command(root, name)}` once")
    try:
        feats = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable features ({exc}); delete it and run `{_command(root, name)}`") from None
    if feats.ndim != 2 or abs(len(feats) - num_frames) > 1:
        raise DataError(f"{path}: features of shape {feats.shape} for a clip of {num_frames} frames")
    if len(feats) < num_frames:
        feats = np.concatenate([feats, feats[-1:]])
    return feats[:num_frames]


@dataclass
class FeatureReport:
    """What :func:`cache_pretrained` did."""

    written: list[str] = field(default_factory=list)
    skipped: int = 0  # already cached

    def summary(self) -> str:
        return f"computed features of {len(self.written)} clips ({self.skipped} already cached)"


def cache_pretrained(root: str | os.PathLike, split: str | None = None, *, name: str = "whisper-tiny.en",
                     chunk: float | None = None, context: float | None = None, overwrite: bool = False,
                     progress: bool = False) -> FeatureReport:
    """Compute and cache the ``name`` features of every clip (of ``split``, or all); resumable.

    ``chunk``/``context``: seconds of :func:`~thunder3d.audio.whisper.whisper_features` (defaults: its own).
    """
    import torch

    from thunder3d.audio.whisper import CHUNK_SECONDS, CONTEXT_SECONDS, whisper_features

    root = Path(root)
    _, model = _parse(name)
    settings = {"model": model, "chunk": float(chunk or CHUNK_SECONDS),
                "context": float(CONTEXT_SECONDS if context is None else context)}
    folder = pretrained_dir(root, name)
    ids = corpus_clips(root, split)
    if not overwrite:
        check_settings(root, name, settings)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.json", json.dumps(settings, indent=1))
    report = FeatureReport()
    todo = []
    for cid in ids:
        if not overwrite and pretrained_path(root, cid, name).is_file():
            report.skipped += 1
        else:
            todo.append(cid)
    from tqdm import tqdm

    with torch.no_grad(), tqdm(total=len(todo), unit="clip", desc=name, disable=not progress) as bar:
        for cid in todo:
            clip = load_clip(root, cid)
            feats = whisper_features(clip.audio, clip.num_frames, model=model, chunk=settings["chunk"],
                                     context=settings["context"])
            with atomic_path(pretrained_path(root, cid, name)) as tmp:
                np.save(tmp, feats.numpy().astype(np.float16))
            report.written.append(cid)
            bar.update(1)
    return report


__all__ = ["FeatureReport", "PRETRAINED_PREFIX", "cache_pretrained", "check_settings", "pretrained_dir",
           "pretrained_path", "read_pretrained"]
