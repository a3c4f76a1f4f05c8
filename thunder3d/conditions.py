"""The conditions a talker takes besides speech: emotion, intensity and speaking style.

The emotion and intensity vocabularies are MEAD's (the synthetic corpus uses the same); models
store their sizes, and labels are indices into them. ``*_id`` turn what a user gives (a name, an
alias, an index, None) into the integer label a model reads, or raise a
:class:`~thunder3d.errors.ThunderError` naming the valid values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from thunder3d.errors import ThunderError

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprised", "fear", "disgusted", "angry",
                             "contempt")
"""The MEAD emotions, in MEAD's order (index = emotion id)."""

INTENSITIES: tuple[int, ...] = (1, 2, 3)
"""MEAD intensity levels (weak, medium, strong)."""


_ALIASES = {"surprise": "surprised", "fearful": "fear", "disgust": "disgusted", "anger": "angry",
            "happiness": "happy", "sadness": "sad"}


def check_emotion(name: str) -> str:
    """The canonical emotion name for ``name`` (case-insensitive, a few common aliases); raises
    :class:`ThunderError` listing :data:`EMOTIONS` for anything else."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in EMOTIONS:
        raise ThunderError(f"unknown emotion {name!r}; valid: {', '.join(EMOTIONS)}")
    return key


def check_intensity(value: int | str) -> int:
    """The intensity level as an int in :data:`INTENSITIES` (``2``, ``"2"`` and MEAD's ``"level_2"``
    are accepted); raises :class:`ThunderError` listing the valid levels for anything else."""
    raw = str(value).strip().lower().removeprefix("level_")
    if isinstance(value, bool) or not raw.isdigit() or int(raw) not in INTENSITIES:
        raise ThunderError(f"unknown intensity {value!r}; valid: {', '.join(map(str, INTENSITIES))}")
    return int(raw)


def emotion_id(emotion: str | int | None) -> int:
    if emotion is None:
        return -1
    if isinstance(emotion, (int, np.integer)) and not isinstance(emotion, bool):
        if not -1 <= int(emotion) < len(EMOTIONS):
            raise ThunderError(f"emotion id {emotion} out of range; valid: 0..{len(EMOTIONS) - 1} "
                               f"({', '.join(EMOTIONS)}) or -1 for none")
        return int(emotion)
    return EMOTIONS.index(check_emotion(str(emotion)))


def intensity_id(intensity: int | str | None) -> int:
    return 0 if intensity is None or intensity == 0 else check_intensity(intensity)


def style_id(style: str | int | None, styles: Sequence[str]) -> int:
    if style is None:
        return -1
    if isinstance(style, (int, np.integer)) and not isinstance(style, bool):
        if not -1 <= int(style) < max(len(styles), 0) or (int(style) >= 0 and not styles):
            raise ThunderError(f"style id {style} out of range; this model knows {len(styles)} styles")
        return int(style)
    if str(style) not in styles:
        valid = ", ".join(styles) if styles else "none (trained without styles)"
        raise ThunderError(f"unknown style {style!r}; valid: {valid}")
    return list(styles).index(str(style))


__all__ = ["EMOTIONS", "INTENSITIES", "check_emotion", "check_intensity", "emotion_id", "intensity_id",
           "style_id"]
