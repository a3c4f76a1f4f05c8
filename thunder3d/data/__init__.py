"""Data: the synthetic audio-visual corpus (articulation, expression) and, later, clips and datasets."""

from thunder3d.data.articulation import SpeakerStyle, articulate
from thunder3d.data.expression import (
    EMOTIONS,
    INTENSITIES,
    ExpressionTrack,
    check_emotion,
    check_intensity,
    combine,
    expression_track,
)

__all__ = [
    "EMOTIONS", "INTENSITIES", "ExpressionTrack", "SpeakerStyle", "articulate", "check_emotion",
    "check_intensity", "combine", "expression_track",
]
