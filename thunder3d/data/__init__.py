"""Data: clips on disk, corpora (synthetic, imported, from real recordings) and datasets.

The synthetic corpus is made from real speech synthesis with known phone timings, driven through
a coarticulation model (:mod:`.articulation`) plus stochastic non-speech motion (:mod:`.expression`).

Names are imported on first use (:func:`thunder3d.utils.lazy.lazy_getattr`): reading a clip does not
load the corpus synthesiser (scipy.signal, espeak, festival).
"""

from thunder3d.utils.lazy import lazy_getattr

_LAZY = {
    **dict.fromkeys(("SpeakerStyle", "articulate"), "articulation"),
    **dict.fromkeys(("EMOTIONS", "INTENSITIES", "ExpressionTrack", "check_emotion", "check_intensity", "combine",
                     "expression_track"), "expression"),
    **dict.fromkeys(("SPLITS", "Clip", "DataError", "append_manifest", "assign_split", "clip_exists", "corpus_clips",
                     "load_clip", "manifest_entry", "read_manifest", "rebuild_manifest", "save_clip", "validate_clip",
                     "write_manifest"), "clip"),
    **dict.fromkeys(("PAD_PHONE", "ClipDataset", "Normalizer", "collate", "compute_stats"), "dataset"),
    **dict.fromkeys(("read_livelink_csv", "write_livelink_csv"), "import_livelink"),
    "IMPORT_FORMATS": "importers:FORMATS",
    **dict.fromkeys(("ImportReport", "import_corpus"), "importers"),
    **dict.fromkeys(("SynthReport", "VoiceSource", "available_voices", "plan_corpus", "synthesize_corpus"), "synth"),
    **dict.fromkeys(("SentenceGenerator", "sentence_split"), "text"),
}
__getattr__ = lazy_getattr(__name__, _LAZY)

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
