"""Torch devices named by the user: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked before any work."""

from __future__ import annotations

import re

from thunder3d.errors import DeviceError

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


def resolve_device(name: str | None) -> str:
    """The torch device string for ``name`` (``auto``/None: ``cuda`` when available, else ``cpu``).

    Raises :class:`~thunder3d.errors.DeviceError` (one line) for an unknown name or a device this
    machine does not have.
    """
    import torch

    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise DeviceError(f"unknown device {name!r}; valid: {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} is not available: this machine has no usable CUDA GPU "
                          "(use --device cpu or auto)")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} is not available: this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    return text


__all__ = ["DEVICE_CHOICES", "resolve_device"]
