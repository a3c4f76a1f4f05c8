"""Audio signal processing: loading and validation (:mod:`.io`), log-mel features with frame helpers
(:mod:`.features`), the phone inventory (:mod:`.phones`), speech synthesis with phone timings
(:mod:`.tts`), forced alignment / phone recognition (:mod:`.align`), augmentation (:mod:`.augment`,
:mod:`.mel_augment`) and Griffin-Lim (:mod:`.vocoder`). The trainable audio encoders are models:
:mod:`thunder3d.models.encoders`.

The names below are imported on first use, so ``import thunder3d.audio.phones`` does not load
scipy.signal (a second) or pocketsphinx.
"""

from thunder3d.utils.lazy import lazy_getattr

_LAZY = {  # name -> submodule
    **dict.fromkeys(('AlignmentResult', 'align', 'align_detailed', 'align_file', 'check_recognizer',
                    'recognize', 'recognize_frame_labels', 'recognize_phones', 'recognize_words'), 'align'),
    **dict.fromkeys(('AugmentConfig', 'augment'), 'augment'),
    **dict.fromkeys(('LogMel', 'frame_times', 'frames_to_mel', 'frames_to_samples', 'log_mel',
                    'mel_filterbank', 'mel_to_frames', 'num_frames', 'pad_to_frames', 'rms_envelope'), 'features'),
    **dict.fromkeys(('AudioInfo', 'audio_info', 'is_silent', 'iter_audio_blocks', 'load_audio', 'save_audio',
                    'speech_problem', 'to_mono_16k'), 'io'),
    **dict.fromkeys(('PHONES', 'SIL', 'Phone', 'Word', 'phone_index', 'phones_from_json', 'phones_to_json',
                    'to_frame_labels', 'validate_phones'), 'phones'),
    **dict.fromkeys(('Utterance', 'list_variants', 'list_voices', 'synthesize'), 'tts'),
    **dict.fromkeys(('griffin_lim', 'mel_to_linear', 'spectral_convergence', 'vocode'), 'vocoder'),
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "AudioInfo", "LogMel", "audio_info", "frame_times", "frames_to_mel", "frames_to_samples",
    "is_silent", "iter_audio_blocks", "load_audio", "log_mel", "mel_filterbank", "mel_to_frames",
    "num_frames", "pad_to_frames", "rms_envelope", "save_audio", "speech_problem", "to_mono_16k",
    # phones, synthesis, alignment
    "PHONES", "SIL", "Phone", "Word", "phone_index", "phones_from_json", "phones_to_json",
    "to_frame_labels", "validate_phones",
    "Utterance", "list_variants", "list_voices", "synthesize",
    "AlignmentResult", "align", "align_detailed", "align_file", "check_recognizer", "recognize",
    "recognize_frame_labels",
    "recognize_phones", "recognize_words",
    "AugmentConfig", "augment",
    "griffin_lim", "mel_to_linear", "spectral_convergence", "vocode",
]
