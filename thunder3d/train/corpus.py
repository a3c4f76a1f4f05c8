"""The part shared by tasks that train on one clip corpus (M2S, talker)."""

from __future__ import annotations

from typing import Any, Sequence

from thunder3d.data.dataset import ClipDataset, collate
from thunder3d.train.loop import Task


class CorpusTask(Task):
    """A :class:`Task` whose data are the ``train`` and ``val`` windows of a corpus.

    Subclasses set ``self._train`` and ``self._val`` (:class:`~thunder3d.data.ClipDataset`).
    """

    _train: ClipDataset
    _val: ClipDataset

    def train_dataset(self) -> ClipDataset:
        return self._train

    def val_dataset(self) -> ClipDataset:
        return self._val

    def collate(self, items: Sequence[Any]) -> dict:
        return collate(items)
