"""Animation exports: coefficients -> npz, OBJ/PLY sequences, Live Link CSV, glTF (GLB), MP4.

==================================  =========================================================
:func:`write_npz`                   coefficients, fps, names, audio, rig (+ FLAME-style keys)
:func:`write_mesh_sequence`         one OBJ or binary PLY per frame, in the rig's units
:func:`write_arkit_csv`             Live Link Face CSV (ARKit layouts)
:func:`write_glb`                   morph-target mesh + weights animation, audio beside
:func:`write_mp4`                   rendered video, h264 + AAC (renderer imported lazily)
:func:`export_animation`            all requested formats of N samples into one folder
:func:`check_export_options`        formats and MP4 size, checked before any animation is computed
:func:`retarget`                    coefficients of one layout onto a rig of another, by name
==================================  =========================================================

Every writer validates its input before writing anything and writes each file atomically; bad
input raises :class:`ExportError` (a :class:`~thunder3d.errors.ThunderError`).
"""

from thunder3d.errors import ExportError
from thunder3d.export.animation import export_animation, written_summary
from thunder3d.export.common import check_export_options, check_video_size

from thunder3d.export.formats import FORMATS, parse_formats
from thunder3d.export.glb import write_glb
from thunder3d.export.livelink import write_arkit_csv
from thunder3d.export.mesh import write_mesh_sequence
from thunder3d.export.npz import write_npz
from thunder3d.export.retarget import retarget, retarget_matrix
from thunder3d.export.video import write_mp4

__all__ = [
    "FORMATS", "ExportError", "check_export_options", "check_video_size", "export_animation", "written_summary", "parse_formats",
    "retarget", "retarget_matrix",
    "write_arkit_csv", "write_glb", "write_mesh_sequence", "write_mp4", "write_npz",
]
