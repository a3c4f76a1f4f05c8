"""An animation as one binary glTF 2.0 file (``.glb``): a morph-target mesh plus a weights animation.

Layout of the file:

- **Mesh** (node 0, ``"face"``): one TRIANGLES primitive with ``POSITION`` (float32, with the
  ``min``/``max`` the spec requires), smooth area-weighted ``NORMAL`` of the neutral and ``indices``
  (uint16, or uint32 above 65535 vertices). Positions are in **metres**, as glTF requires (the rig's
  units are converted with ``rig.mm_per_unit``); axes are the rig's (+y up, +z towards the viewer),
  which are glTF's. Morph targets hold ``POSITION`` offsets only (viewers keep the neutral normals),
  stored as sparse accessors where fewer than 3/4 of the vertices move (all-zero targets have no
  data at all); ``mesh.extras.targetNames`` names them, ``mesh.weights`` is all zeros.
- **Morph targets**, chosen by ``targets``:

  - ``"coefficients"``: one target per coefficient of a :class:`~thunder3d.rigs.base.LinearBlendshapeRig`
    (the rig's deltas, so 52 ARKit shapes for builtin/ICT/ARKit sets), weights = the coefficients.
    Exactly the rig: ``neutral + weights · targets == rig(coeffs)`` at every frame.
  - ``"frames"``: for rigs that are not linear in their coefficients (FLAME's jaw is skinned), each
    frame is baked as its own target (``frame_00000``: that frame's vertices minus the neutral) and
    the weights are one-hot, so the file plays the rig's exact vertices at every frame and blends
    linearly between frames, like a mesh sequence. It grows as ``T * V * 12`` bytes.
  - ``"auto"`` (default): ``coefficients`` for linear blendshape rigs, ``frames`` otherwise.
- **Animation** ``"speech"``: one LINEAR sampler on channel ``weights`` of node 0. Its input holds
  ``T + 1`` key times ``t / fps`` for ``t = 0..T``: frame ``t`` at ``t / fps`` and the last frame
  once more at ``T / fps``, so the clip lasts ``T / fps`` seconds, exactly as long as the audio and
  the MP4 (each frame is shown for one frame period; looping players stay in sync). The output
  holds ``(T + 1) * S`` weights, key by key.
- **Audio** cannot live in glTF 2.0: it is written beside as ``<stem>.wav`` (16 kHz, 16-bit,
  trimmed/padded to ``T / fps``) and named in ``asset.extras.audio`` (a path relative to the file).
  ``asset.extras`` also records ``fps``, ``frames``, ``duration``, ``targets`` and the rig's config.
- A ``<stem>.regions.json`` sidecar (the rig's regions and lip landmarks) is written beside, so
  ``load_rig("blendshapes:<stem>.glb")`` rebuilds the rig with the same regions
  (``names="native"`` for a ``frames`` file).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from thunder3d.errors import ExportError
from thunder3d.export.common import (check_coeffs, check_fps, check_names, ensure_folder,
                                     fit_duration, load_wav, rig_frames)
from thunder3d.rigs.base import LinearBlendshapeRig
from thunder3d.utils.io import atomic_path, atomic_write_text

TARGET_MODES = ("auto", "coefficients", "frames")
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
GLB_MAGIC, GLB_VERSION, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 2, 0x4E4F534A, 0x004E4942
MAX_GLB_BYTES = 2**32 - 1
SPARSE_FRACTION = 0.75
"""A target is stored sparse when fewer than this fraction of the vertices move (16 bytes per
moved vertex instead of 12 per vertex)."""


@dataclass
class MorphAnimation:
    """What a GLB holds, in glTF units (metres).

    Attributes:
        neutral: ``[V, 3]`` float32 base positions.
        faces: ``[F, 3]`` triangles.
        target_names: the S morph target names.
        targets: ``[S, V, 3]`` float32 position offsets.
        times: ``[K]`` float32 key times in seconds.
        weights: ``[K, S]`` float32 morph weights per key.
    """

    neutral: np.ndarray
    faces: np.ndarray
    target_names: list[str]
    targets: np.ndarray
    times: np.ndarray
    weights: np.ndarray


# --------------------------------------------------------------------------- geometry
def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit ``[V, 3]`` float32 normals: area-weighted sums of the adjacent face normals (+z where
    a vertex has no area)."""
    v = vertices.astype(np.float64)
    face_normals = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])  # [F, 3], |n| = 2 area
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 0, normals / np.where(length > 0, length, 1.0), (0.0, 0.0, 1.0))
    return normals.astype(np.float32)


def key_times(num_frames: int, fps: float) -> np.ndarray:
    """``[T + 1]`` key times ``t / fps``, ``t = 0..T`` (module docstring)."""
    return (np.arange(num_frames + 1, dtype=np.float64) / fps).astype(np.float32)


def hold_last(weights: np.ndarray) -> np.ndarray:
    """``[T, S]`` -> ``[T + 1, S]``: the last frame repeated as the closing key."""
    return np.concatenate([weights, weights[-1:]], axis=0)


def coefficient_morphs(rig: LinearBlendshapeRig, coeffs: np.ndarray, fps: float) -> MorphAnimation:
    """One target per coefficient: the rig's deltas, weighted by ``coeffs [T, C]``."""
    scale = rig.mm_per_unit / 1000.0  # rig units -> metres
    return MorphAnimation(
        neutral=(rig.neutral.cpu().numpy() * scale).astype(np.float32),
        faces=rig.faces.cpu().numpy(),
        target_names=list(rig.coeff_names),
        targets=(rig.deltas.cpu().numpy() * scale).astype(np.float32),
        times=key_times(len(coeffs), fps),
        weights=hold_last(coeffs.astype(np.float32)),
    )


def frame_morphs(rig, coeffs: np.ndarray, fps: float) -> MorphAnimation:
    """One target per frame of ``coeffs [T, C]`` (its vertices minus the neutral), one-hot weights."""
    scale = rig.mm_per_unit / 1000.0
    neutral = rig.neutral.cpu().numpy()
    num_frames = len(coeffs)
    targets = np.empty((num_frames, rig.num_vertices, 3), dtype=np.float32)
    for t, vertices in enumerate(rig_frames(rig, coeffs)):
        targets[t] = (vertices - neutral) * scale
    digits = max(5, len(str(num_frames - 1)))
    return MorphAnimation(
        neutral=(neutral * scale).astype(np.float32),
        faces=rig.faces.cpu().numpy(),
        target_names=[f"frame_{t:0{digits}d}" for t in range(num_frames)],
        targets=targets,
        times=key_times(num_frames, fps),
        weights=hold_last(np.eye(num_frames, dtype=np.float32)),
    )


# --------------------------------------------------------------------------- the binary container
class _Document:
    """A glTF document being assembled: pygltflib objects plus one binary buffer."""

    def __init__(self) -> None:
        import pygltflib

        self.lib = pygltflib
        self.gltf = pygltflib.GLTF2()
        self.chunks: list[bytes] = []
        self.size = 0

    def view(self, data: bytes, target: int | None = None) -> int:
        """Append ``data`` (4-byte aligned) as a new buffer view; its index."""
        self.gltf.bufferViews.append(self.lib.BufferView(buffer=0, byteOffset=self.size,
                                                         byteLength=len(data), target=target))
        padding = -len(data) % 4
        self.chunks += [data, b"\0" * padding]
        self.size += len(data) + padding
        if self.size > MAX_GLB_BYTES:
            raise ExportError("the GLB would exceed glTF's 4 GiB limit; export fewer frames or a mesh sequence")
        return len(self.gltf.bufferViews) - 1

    def accessor(self, **fields) -> int:
        if fields.get("bufferView") is None:
            fields["byteOffset"] = None  # pygltflib's default 0 is invalid without a bufferView
        self.gltf.accessors.append(self.lib.Accessor(**fields))
        return len(self.gltf.accessors) - 1

    def floats(self, values: np.ndarray, kind: str, target: int | None = None, bounds: bool = False) -> int:
        """A float32 accessor of ``values`` ``[N, k]`` (``[N]`` for SCALAR), with min/max if asked."""
        values = np.ascontiguousarray(values, dtype="<f4")
        rows = values.reshape(len(values), -1)
        extra = {"min": rows.min(axis=0).tolist(), "max": rows.max(axis=0).tolist()} if bounds else {}
        return self.accessor(bufferView=self.view(values.tobytes(), target), componentType=FLOAT,
                             count=len(values), type=kind, **extra)

    def indices(self, faces: np.ndarray, num_vertices: int) -> int:
        dtype, component = ("<u2", UNSIGNED_SHORT) if num_vertices <= 65535 else ("<u4", UNSIGNED_INT)
        flat = np.ascontiguousarray(faces, dtype=dtype).reshape(-1)
        return self.accessor(bufferView=self.view(flat.tobytes(), ELEMENT_ARRAY_BUFFER), componentType=component,
                             count=flat.size, type="SCALAR")

    def target(self, delta: np.ndarray) -> int:
        """A morph target's POSITION accessor: dense, sparse, or data-less for an all-zero target."""
        delta = np.ascontiguousarray(delta, dtype="<f4")
        count = len(delta)
        moved = np.flatnonzero(np.any(delta != 0, axis=1))
        bounds = {"min": delta.min(axis=0).tolist(), "max": delta.max(axis=0).tolist()}
        if moved.size == 0:
            return self.accessor(componentType=FLOAT, count=count, type="VEC3", **bounds)  # zeros (glTF 3.6.2.3)
        if moved.size >= SPARSE_FRACTION * count:
            return self.accessor(bufferView=self.view(delta.tobytes(), ARRAY_BUFFER), componentType=FLOAT,
                                 count=count, type="VEC3", **bounds)
        index_type, component = ("<u2", UNSIGNED_SHORT) if count <= 65535 else ("<u4", UNSIGNED_INT)
        sparse = self.lib.Sparse(
            count=int(moved.size),
            indices=self.lib.AccessorSparseIndices(bufferView=self.view(moved.astype(index_type).tobytes()),
                                                   componentType=component),
            values=self.lib.AccessorSparseValues(bufferView=self.view(delta[moved].tobytes())))
        return self.accessor(componentType=FLOAT, count=count, type="VEC3", sparse=sparse, **bounds)

    def glb(self) -> bytes:
        """The binary container: header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
        self.gltf.buffers = [self.lib.Buffer(byteLength=self.size)]
        text = self.gltf.gltf_to_json(separators=(",", ":"), indent=None).encode("utf-8")
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + 8 + self.size
        if total > MAX_GLB_BYTES:
            raise ExportError("the GLB would exceed glTF's 4 GiB limit; export fewer frames or a mesh sequence")
        header = struct.pack("<III", GLB_MAGIC, GLB_VERSION, total)
        return b"".join([header, struct.pack("<II", len(text), JSON_CHUNK), text,
                         struct.pack("<II", self.size, BIN_CHUNK), *self.chunks])


def encode_glb(morphs: MorphAnimation, extras: dict) -> bytes:
    """The ``.glb`` bytes of ``morphs`` (layout in the module docstring)."""
    doc = _Document()
    lib = doc.lib
    num_vertices = len(morphs.neutral)
    primitive = lib.Primitive(
        attributes=lib.Attributes(POSITION=doc.floats(morphs.neutral, "VEC3", ARRAY_BUFFER, bounds=True),
                                  NORMAL=doc.floats(vertex_normals(morphs.neutral, morphs.faces), "VEC3",
                                                    ARRAY_BUFFER)),
        indices=doc.indices(morphs.faces, num_vertices),
        targets=[{"POSITION": doc.target(delta)} for delta in morphs.targets],
        mode=lib.TRIANGLES,
    )
    num_targets = len(morphs.target_names)
    doc.gltf.meshes = [lib.Mesh(name="face", primitives=[primitive], weights=[0.0] * num_targets,
                                extras={"targetNames": list(morphs.target_names)})]
    doc.gltf.nodes = [lib.Node(name="face", mesh=0)]
    doc.gltf.scenes = [lib.Scene(nodes=[0])]
    doc.gltf.scene = 0
    sampler = lib.AnimationSampler(input=doc.floats(morphs.times, "SCALAR", bounds=True),
                                   output=doc.floats(morphs.weights.reshape(-1), "SCALAR"),
                                   interpolation="LINEAR")
    doc.gltf.animations = [lib.Animation(
        name="speech", samplers=[sampler],
        channels=[lib.AnimationChannel(sampler=0, target=lib.AnimationChannelTarget(node=0, path="weights"))])]
    doc.gltf.asset = lib.Asset(version="2.0", generator="thunder3d", extras=extras)
    return doc.glb()


# --------------------------------------------------------------------------- the writer
def choose_targets(rig, targets: str) -> str:
    """``"coefficients"`` or ``"frames"`` for ``rig`` (module docstring)."""
    if targets not in TARGET_MODES:
        raise ExportError(f"unknown GLB targets={targets!r}; valid: {list(TARGET_MODES)}")
    # a subclass with its own forward may not be neutral + coeffs · deltas any more
    linear = isinstance(rig, LinearBlendshapeRig) and type(rig).forward is LinearBlendshapeRig.forward
    if targets == "auto":
        return "coefficients" if linear else "frames"
    if targets == "coefficients" and not linear:
        raise ExportError(f"rig {rig.spec!r} is not a linear blendshape rig, so its coefficients cannot be "
                          "glTF morph weights; use targets='frames' (one baked target per frame)")
    return targets


def regions_sidecar(rig) -> str:
    """The rig's regions and lip landmarks in the sidecar format of :mod:`thunder3d.rigs.regions`."""
    regions = {name: rig.region(name).cpu().tolist() for name in rig.region_names}
    return json.dumps({"regions": regions, "lip_landmarks": dict(rig.lip_landmarks)})


def write_glb(path: str | os.PathLike, rig, coeffs, *, names: Sequence[str], fps: float, audio=None,
              audio_file: str | None = None, targets: str = "auto") -> Path:
    """Write ``coeffs [T, C]`` on ``rig`` as a ``.glb`` (layout in the module docstring), atomically.

    Args:
        path: the output ``.glb``.
        rig: the :class:`~thunder3d.rigs.Rig` the coefficients drive (its layout: ``names`` must be
            ``rig.coeff_names``; map other layouts with :func:`thunder3d.export.retarget`).
        coeffs: ``[T, C]``.
        names: the coefficient names.
        fps: frame rate.
        audio: optional ``[N]`` 16 kHz array or audio file, written beside as ``<stem>.wav``.
        audio_file: instead of ``audio``: an existing audio file to name in ``asset.extras.audio``
            (relative to the GLB's folder), e.g. one wav shared by several samples.
        targets: ``"auto"``, ``"coefficients"`` or ``"frames"`` (module docstring).
    Returns:
        ``path``. Beside it: ``<stem>.regions.json`` and, with ``audio``, ``<stem>.wav``.
    Raises:
        ExportError: bad coefficients/names/fps/targets, unwritable folder (nothing is written then).
    """
    path = Path(path)
    values = check_coeffs(coeffs, num_coeffs=rig.num_coeffs, ndims=(2,))
    names = check_names(names, values.shape[-1])
    if names != tuple(rig.coeff_names):
        raise ExportError(f"the names given are not the coefficient layout of rig {rig.spec!r}; retarget "
                          "the coefficients to the rig first (thunder3d.export.retarget)")
    fps = check_fps(fps)
    mode = choose_targets(rig, targets)
    if audio is not None and audio_file is not None:
        raise ExportError("give audio (written beside the GLB) or audio_file (an existing file), not both")
    wav = load_wav(audio)
    ensure_folder(path.parent)
    morphs = coefficient_morphs(rig, values, fps) if mode == "coefficients" else frame_morphs(rig, values, fps)
    wav_path = path.with_suffix(".wav") if wav is not None else None
    reference = wav_path.name if wav_path is not None else audio_file
    extras = {"fps": fps, "frames": int(values.shape[0]), "duration": values.shape[0] / fps, "units": "m",
              "targets": mode, "rig": rig.config(), "source_units": rig.units}
    if reference is not None:
        extras["audio"] = str(reference)
    data = encode_glb(morphs, json.loads(json.dumps(extras, default=str)))
    if wav_path is not None:
        from thunder3d.audio.io import save_audio

        save_audio(wav_path, fit_duration(wav, values.shape[0], fps))
    atomic_write_text(path.with_name(f"{path.stem}.regions.json"), regions_sidecar(rig))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
