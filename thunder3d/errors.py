"""Every exception thunder3d raises on purpose. The CLI prints their message in one line, exit code 2.

All of them derive from :class:`ThunderError`; catch that to handle any bad input.
"""


class ThunderError(Exception):
    """Base class of every error thunder3d raises on purpose (bad input, bad files)."""


class AudioError(ThunderError):
    """Audio that cannot be used: missing, empty, corrupt, non-finite, too short."""


class AudioTooLongError(AudioError):
    """Audio longer than a limit the caller set (``max_seconds``)."""


class AudioEncoderError(AudioError):
    """An audio encoder that cannot be built: unknown kind or option, missing or wrong model folder."""


class RigError(ThunderError):
    """A face rig that cannot be built or loaded, or an unknown rig spec."""


class UnsafePickleError(RigError):
    """A pickle asked for something other than plain arrays and containers."""


class CheckpointError(ThunderError):
    """A checkpoint that is missing, truncated, or built for another rig or input."""


class ConfigError(ThunderError, ValueError):
    """A configuration that cannot be used: unknown or missing keys, values out of range."""


class ModelConfigError(ConfigError):
    """A model configuration that cannot be built (bad sizes, unknown options or keys)."""


class TrainError(ConfigError):
    """A training run that cannot start or go on: bad settings, an ``out`` folder holding
    another run, non-finite gradients."""


class DataError(ThunderError):
    """A clip, corpus or capture file that cannot be used; the message names the clip or file."""


class TextError(ThunderError):
    """The word source (pocketsphinx dictionary and language model) is missing or unusable."""


class EvalError(ThunderError):
    """Predictions that cannot be scored: missing clips, wrong shapes or lengths, wrong rig."""


class ExportError(ThunderError):
    """An animation that cannot be exported: bad coefficients, names, format, folder or audio."""


class RenderError(ThunderError):
    """Rendering is impossible (no EGL/OpenGL, bad view name, bad mesh) — never a black frame."""


class DeviceError(ThunderError):
    """A torch device that does not exist or is not available on this machine."""


class LiveError(ThunderError):
    """Real-time output: a malformed Live Link packet, a bad address, a bad stream message."""


__all__ = [
    "AudioEncoderError", "AudioError", "CheckpointError", "ConfigError", "DataError", "DeviceError",
    "EvalError", "ExportError", "LiveError", "ModelConfigError", "RenderError", "RigError", "TextError",
    "ThunderError", "TrainError", "UnsafePickleError",
]
