"""Checkpoints: the folder format (safetensors + JSON, atomic, verified) and loading trained models.

- :mod:`.format`: :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`pack_checkpoint`,
  :func:`resolve_run` (a run folder's ``best/``, else ``last/``), :func:`recover_checkpoint` and
  :func:`clean_stale` (what interrupted saves leave behind).
- :mod:`.loading`: :func:`load_talker`, :func:`load_m2s`, :func:`load_listener` (the shipped M2S or a run).
"""

from thunder3d.checkpoints.format import (
    FORMAT_VERSION,
    Checkpoint,
    check_expected,
    clean_stale,
    config_differences,
    load_checkpoint,
    load_training_state,
    pack_checkpoint,
    recover_checkpoint,
    resolve_run,
    save_checkpoint,
)
from thunder3d.checkpoints.loading import LISTENER_DIR, load_listener, load_m2s, load_talker

__all__ = [
    "FORMAT_VERSION", "LISTENER_DIR", "Checkpoint", "check_expected", "clean_stale", "config_differences", "load_checkpoint",
    "load_listener", "load_m2s", "load_talker", "load_training_state", "pack_checkpoint", "recover_checkpoint", "resolve_run",
    "save_checkpoint",
]
