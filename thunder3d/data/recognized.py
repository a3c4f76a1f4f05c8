"""Recognised phones of a corpus's clips, cached beside them for encoders that read phones.

The ``phonetic`` and ``hybrid`` audio encoders (:mod:`thunder3d.models.encoders`) take pocketsphinx's
recognised phones (no transcript) as input. At inference they are recognised from the audio;
training reads them from ``<corpus>/recognized/<id>.json`` (the phones JSON of
:func:`~thunder3d.audio.phones.phones_to_json`, from
:func:`~thunder3d.audio.align.recognize_phones` on the clip's wav), written once by
``thunder3d data recognize CORPUS`` (:func:`recognize_corpus`). The phones of the ``"words"``
recogniser (:func:`~thunder3d.audio.align.recognize_words`) live beside them in
``<corpus>/recognized-words/`` (``data recognize CORPUS --recognizer words``). These are not the clip's own
``phones`` (the TTS timings): a model should learn from what the recogniser hears, errors included,
because that is what it gets on new speech.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thunder3d.audio.phones import phones_from_json, phones_to_json, to_frame_labels
from thunder3d.constants import FPS
from thunder3d.data.clip import corpus_clips, load_clip
from thunder3d.errors import AudioError, DataError
from thunder3d.utils.io import atomic_write_text

RECOGNIZED_DIR = "recognized"


def recognized_dir(root: str | os.PathLike, recognizer: str = "phones") -> Path:
    """``<root>/recognized`` for the phone recogniser, ``<root>/recognized-<recognizer>`` for others."""
    from thunder3d.audio.align import check_recognizer

    try:
        check_recognizer(recognizer)
    except AudioError as exc:
        raise DataError(str(exc)) from None
    return Path(root) / (RECOGNIZED_DIR if recognizer == "phones" else f"{RECOGNIZED_DIR}-{recognizer}")


def _command(root, recognizer: str) -> str:
    return f"thunder3d data recognize {root}" + ("" if recognizer == "phones" else f" --recognizer {recognizer}")


def recognized_path(root: str | os.PathLike, clip_id: str, recognizer: str = "phones") -> Path:
    """``<root>/recognized[-<recognizer>]/<id>.json``."""
    return recognized_dir(root, recognizer) / f"{clip_id}.json"


def read_recognized(root: str | os.PathLike, clip_id: str, num_frames: int,
                    recognizer: str = "phones") -> np.ndarray:
    """The cached recognised phones of a clip as frame labels ``[num_frames]`` int64.

    Raises:
        DataError: no cache for the clip (naming the command that writes it) or an unreadable one.
    """
    path = recognized_path(root, clip_id, recognizer)
    if not path.is_file():
        raise DataError(f"clip {clip_id!r} has no recognised phones ({path}); this audio encoder reads "
                        f"them: run `{_command(root, recognizer)}` once")
    try:
        phones = phones_from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, AudioError) as exc:
        raise DataError(f"{path}: unreadable recognised phones ({exc}); delete it and run "
                        f"`{_command(root, recognizer)}` again") from None
    return to_frame_labels(phones, num_frames, fps=FPS)


@dataclass
class RecognizeReport:
    """What :func:`recognize_corpus` did."""

    written: list[str] = field(default_factory=list)
    skipped: int = 0  # already cached

    def summary(self) -> str:
        return f"recognised {len(self.written)} clips ({self.skipped} already cached)"


def recognize_corpus(root: str | os.PathLike, split: str | None = None, *, recognizer: str = "phones",
                     overwrite: bool = False, progress: bool = False) -> RecognizeReport:
    """Recognise the phones of every clip (of ``split``, or all) and cache them (module docstring).

    ``recognizer``: ``"phones"`` or ``"words"`` (:data:`~thunder3d.audio.align.RECOGNIZERS`).
    Resumable: clips that already have a cache are skipped unless ``overwrite``. Each file is
    written to a temporary name and renamed, so an interruption leaves no half file.
    """
    from thunder3d.audio.align import recognize_all

    root = Path(root)
    recognized_dir(root, recognizer)  # an unknown recogniser fails before any work
    ids = corpus_clips(root, split)
    report = RecognizeReport()
    todo = []
    for cid in ids:
        if not overwrite and recognized_path(root, cid, recognizer).is_file():
            report.skipped += 1
        else:
            todo.append(cid)
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="clip", desc="recognise", dynamic_ncols=True)
    try:
        audio = (load_clip(root, cid).audio for cid in todo)  # read one clip ahead per worker
        for cid, phones in zip(todo, recognize_all(audio, recognizer)):
            atomic_write_text(recognized_path(root, cid, recognizer), phones_to_json(phones))
            report.written.append(cid)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return report


__all__ = ["RECOGNIZED_DIR", "RecognizeReport", "read_recognized", "recognize_corpus", "recognized_dir",
           "recognized_path"]
