"""Exceptions raised for bad user input. The CLI prints their message without a traceback."""


class ThunderError(Exception):
    """Base class of every error thunder3d raises on purpose (bad input, bad files)."""


class AudioError(ThunderError):
    """Audio that cannot be used: missing, empty, corrupt, non-finite, too short."""


class RigError(ThunderError):
    """A face rig that cannot be built or loaded, or an unknown rig spec."""


class UnsafePickleError(RigError):
    """A pickle asked for something other than plain arrays and containers."""


class CheckpointError(ThunderError):
    """A checkpoint that is missing, truncated, or built for another rig or input."""
