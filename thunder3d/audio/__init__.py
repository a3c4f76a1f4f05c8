"""Audio: loading and validation (:mod:`.io`) and log-mel features with frame helpers (:mod:`.features`)."""

from thunder3d.audio.features import (
    LogMel,
    frame_times,
    frames_to_mel,
    frames_to_samples,
    log_mel,
    mel_filterbank,
    mel_to_frames,
    num_frames,
    pad_to_frames,
    rms_envelope,
)
from thunder3d.audio.io import (
    AudioInfo,
    audio_info,
    is_silent,
    iter_audio_blocks,
    load_audio,
    save_audio,
    to_mono_16k,
)

__all__ = [
    "AudioInfo", "LogMel", "audio_info", "frame_times", "frames_to_mel", "frames_to_samples",
    "is_silent", "iter_audio_blocks", "load_audio", "log_mel", "mel_filterbank", "mel_to_frames",
    "num_frames", "pad_to_frames", "rms_envelope", "save_audio", "to_mono_16k",
]
