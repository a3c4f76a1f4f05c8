"""Data: clips on disk, corpora (synthetic, imported, from real recordings) and datasets.

The synthetic corpus is made from real speech synthesis with known phone timings, driven through
a coarticulation model (:mod:`.articulation`) plus stochastic non-speech motion (:mod:`.expression`).
"""

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
from thunder3d.data.clip import (  # noqa: E402  (clip.py imports EMOTIONS from expression)
    SPLITS,
    Clip,
    DataError,
    append_manifest,
    assign_split,
    clip_exists,
    corpus_clips,
    load_clip,
    manifest_entry,
    read_manifest,
    rebuild_manifest,
    save_clip,
    validate_clip,
    write_manifest,
)
from thunder3d.data.dataset import PAD_PHONE, ClipDataset, Normalizer, collate, compute_stats
from thunder3d.data.import_livelink import read_livelink_csv, write_livelink_csv
from thunder3d.data.importers import FORMATS as IMPORT_FORMATS
from thunder3d.data.importers import ImportReport, import_corpus
from thunder3d.data.synth import SynthReport, VoiceSource, available_voices, plan_corpus, synthesize_corpus
from thunder3d.data.text import SentenceGenerator, sentence_split

__all__ = [
    "EMOTIONS", "IMPORT_FORMATS", "INTENSITIES", "PAD_PHONE", "SPLITS", "Clip", "ClipDataset",
    "DataError", "ExpressionTrack", "ImportReport", "Normalizer", "SpeakerStyle", "append_manifest",
    "articulate", "assign_split", "check_emotion", "check_intensity", "clip_exists", "collate",
    "combine", "compute_stats", "corpus_clips", "expression_track", "import_corpus", "load_clip",
    "manifest_entry", "read_livelink_csv", "read_manifest", "rebuild_manifest", "save_clip",
    "validate_clip", "write_livelink_csv", "write_manifest",
    "SentenceGenerator", "SynthReport", "VoiceSource", "available_voices", "plan_corpus",
    "sentence_split", "synthesize_corpus",
]
