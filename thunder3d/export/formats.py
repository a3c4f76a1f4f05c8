"""The export format names and their parsing (``--formats npz,obj,mp4``)."""

from __future__ import annotations

from thunder3d.errors import ExportError

FORMATS = ("npz", "obj", "ply", "csv", "glb", "mp4")
"""Every format :func:`thunder3d.export.export_animation` writes."""


def parse_formats(text: str) -> tuple[str, ...]:
    """``"npz,obj,mp4"`` -> ``("npz", "obj", "mp4")``: comma-separated, any case, spaces and
    repeats ignored (first occurrence kept). Raises ExportError naming unknown ones and the valid ones."""
    if not isinstance(text, str):
        raise ExportError(f"formats must be a comma-separated string, got {text!r}")
    items = [item.strip().lower().lstrip(".") for item in text.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ExportError(f"no export format given; valid: {', '.join(FORMATS)}")
    unknown = [item for item in items if item not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format(s) {', '.join(unknown)}; valid: {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))
