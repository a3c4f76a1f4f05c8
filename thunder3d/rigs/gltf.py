"""Reading a mesh with morph targets (blendshapes) out of a glTF 2.0 file (``.glb`` or ``.gltf``).

Supported: binary GLB chunks, base64 ``data:`` buffers and external ``.bin`` files beside a
``.gltf``; interleaved (``byteStride``), normalized-integer and sparse accessors; indexed and
non-indexed TRIANGLES primitives, all primitives of the chosen mesh concatenated; the transform of
the node that places the mesh (for a skinned mesh, the bind transform of its first joint, per the
glTF rule that a skinned mesh's own node transform is ignored; the file is assumed to be in its
bind pose). Not supported, with a clear error: other primitive modes (strips, fans, lines,
points), Draco/meshopt-compressed geometry, buffers behind URLs.
"""

from __future__ import annotations

import base64
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from thunder3d.errors import RigError

COMPONENT_DTYPES = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
NUM_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
TRIANGLES = 4
COMPRESSION_EXTENSIONS = ("KHR_draco_mesh_compression", "EXT_meshopt_compression")
MODE_NAMES = {0: "POINTS", 1: "LINES", 2: "LINE_LOOP", 3: "LINE_STRIP", 5: "TRIANGLE_STRIP",
              6: "TRIANGLE_FAN"}


@dataclass
class MorphMesh:
    """A mesh and its morph targets, in the scene's coordinates (node transform applied).

    Attributes:
        vertices: ``[V, 3]`` float64 base positions.
        triangles: ``[F, 3]`` int64 vertex indices.
        target_names: the S morph target names, in file order.
        target_deltas: ``[S, V, 3]`` float64 position offsets, one per target.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    target_names: list[str]
    target_deltas: np.ndarray


def read_gltf_morphs(path: str | os.PathLike, mesh: str | int | None = None) -> MorphMesh:
    """Read one mesh with morph targets from a ``.glb``/``.gltf`` file.

    Args:
        path: the file.
        mesh: the mesh to read, by name or index; by default the mesh with the most morph targets
            (then the most vertices; then the first), so a head wins over eyes and teeth.
    Raises:
        RigError: unreadable file, no mesh with morph targets, unsupported primitive or accessor.
    """
    import pygltflib

    path = Path(path)
    if not path.is_file():
        raise RigError(f"glTF file not found: {path}")
    try:
        with warnings.catch_warnings():  # pygltflib warns before failing; its failure is reported
            warnings.simplefilter("ignore")
            gltf = pygltflib.GLTF2().load(str(path))
    except Exception as exc:  # pygltflib raises assorted errors on malformed files
        raise RigError(f"cannot read glTF file {path}: {exc}") from None
    if gltf is None:
        raise RigError(f"cannot read glTF file {path}")
    compressed = [e for e in COMPRESSION_EXTENSIONS if e in (gltf.extensionsUsed or [])]
    if compressed:
        raise RigError(f"{path} uses compressed geometry ({compressed[0]}), which is not supported; "
                       "re-export without mesh compression")
    try:
        return _Reader(gltf, path).mesh(_choose_mesh(gltf, mesh, path))
    except IndexError:  # an accessor, buffer view, buffer, node or skin index that does not exist
        raise RigError(f"{path} refers to glTF objects that it does not contain (corrupt file)") from None


def _target_count(mesh) -> int:
    return max((len(p.targets or []) for p in mesh.primitives), default=0)


def _choose_mesh(gltf, wanted: str | int | None, path: Path) -> int:
    """Index of the mesh to read (see :func:`read_gltf_morphs`)."""
    meshes = gltf.meshes or []
    if wanted is not None:
        for i, m in enumerate(meshes):
            if wanted == i or wanted == m.name:
                if _target_count(m) == 0:
                    raise RigError(f"mesh {wanted!r} in {path} has no morph targets")
                return i
        raise RigError(f"{path} has no mesh {wanted!r}; meshes: {[m.name for m in meshes]}")
    candidates = [i for i, m in enumerate(meshes) if _target_count(m) > 0]
    if not candidates:
        raise RigError(f"{path} has no mesh with morph targets (blendshapes); export the "
                       "shape keys / morph targets with the mesh")

    def size(i: int) -> tuple[int, int]:
        vertex_count = sum(gltf.accessors[p.attributes.POSITION].count for p in meshes[i].primitives
                           if p.attributes.POSITION is not None)
        return _target_count(meshes[i]), vertex_count

    return max(candidates, key=lambda i: (size(i), -i))


def _attr(attributes, name: str) -> int | None:
    """An attribute's accessor index from a pygltflib ``Attributes`` object or a plain dict."""
    if isinstance(attributes, dict):
        return attributes.get(name)
    return getattr(attributes, name, None)


class _Reader:
    """Accessor and buffer decoding for one loaded glTF document."""

    def __init__(self, gltf, path: Path) -> None:
        self.gltf = gltf
        self.path = path
        self._buffers: dict[int, bytes] = {}

    # ----------------------------------------------------------------- buffers
    def buffer(self, index: int) -> bytes:
        """The bytes of buffer ``index`` (GLB chunk, data URI or external file), cached."""
        if index not in self._buffers:
            buf = self.gltf.buffers[index]
            uri = buf.uri
            if uri is None:
                data = self.gltf.binary_blob()
                if data is None:
                    raise RigError(f"{self.path}: buffer {index} has no URI and there is no GLB chunk")
            elif uri.startswith("data:"):
                try:
                    data = base64.b64decode(uri.split(",", 1)[1], validate=True)
                except (IndexError, ValueError):
                    raise RigError(f"{self.path}: buffer {index} has a malformed data URI") from None
            elif "://" in uri:
                raise RigError(f"{self.path}: buffer {index} points to a URL ({uri}); "
                               "download it and save a .glb")
            else:
                file = self.path.parent / unquote(uri)
                if not file.is_file():
                    raise RigError(f"{self.path}: buffer file {file} not found")
                data = file.read_bytes()
            if len(data) < (buf.byteLength or 0):
                raise RigError(f"{self.path}: buffer {index} is shorter than its byteLength")
            self._buffers[index] = data
        return self._buffers[index]

    def view_bytes(self, view_index: int) -> tuple[bytes, int, int, int | None]:
        """``(buffer bytes, start, length, byteStride)`` of a buffer view, bounds-checked."""
        view = self.gltf.bufferViews[view_index]
        data = self.buffer(view.buffer)
        start = view.byteOffset or 0
        if start + view.byteLength > len(data):
            raise RigError(f"{self.path}: buffer view {view_index} runs past the end of its buffer")
        return data, start, view.byteLength, view.byteStride

    def strided(self, view_index: int, offset: int, count: int, dtype: str, width: int) -> np.ndarray:
        """``[count, width]`` elements of ``dtype`` read from a buffer view, honouring byteStride."""
        data, start, length, stride = self.view_bytes(view_index)
        item = np.dtype(dtype).itemsize * width
        stride = stride or item
        end = offset + (count - 1) * stride + item if count else offset
        if end > length:
            raise RigError(f"{self.path}: an accessor reads past the end of buffer view {view_index}")
        raw = np.frombuffer(data, dtype=np.uint8, count=end - offset, offset=start + offset)
        rows = np.arange(count)[:, None] * stride + np.arange(item)[None, :]  # [count, item] bytes
        return raw[rows].copy().view(dtype).reshape(count, width)

    # ----------------------------------------------------------------- accessors
    def accessor(self, index: int) -> np.ndarray:
        """Accessor ``index`` as ``[count, components]`` float64 (normalized ints scaled to -1..1/0..1)."""
        acc = self.gltf.accessors[index]
        if acc.componentType not in COMPONENT_DTYPES or acc.type not in NUM_COMPONENTS:
            raise RigError(f"{self.path}: accessor {index} has an unsupported layout "
                           f"({acc.type}, componentType {acc.componentType})")
        dtype, width = COMPONENT_DTYPES[acc.componentType], NUM_COMPONENTS[acc.type]
        if acc.type == "MAT4" and dtype != "<f4":
            raise RigError(f"{self.path}: accessor {index}: only float MAT4 is supported")
        if acc.bufferView is None:
            values = np.zeros((acc.count, width), dtype=dtype)
        else:
            values = self.strided(acc.bufferView, acc.byteOffset or 0, acc.count, dtype, width)
        if acc.sparse is not None and acc.sparse.count:
            values = values.copy()
            self.apply_sparse(acc.sparse, values, dtype, width, index)
        return dequantize(values, acc.normalized)

    def apply_sparse(self, sparse, values: np.ndarray, dtype: str, width: int, index: int) -> None:
        """Overwrite rows of ``values [count, width]`` with an accessor's sparse substitutions."""
        ind, val = sparse.indices, sparse.values
        if ind.componentType not in (5121, 5123, 5125):
            raise RigError(f"{self.path}: accessor {index} has sparse indices of a non-integer type")
        rows = self.strided(ind.bufferView, ind.byteOffset or 0, sparse.count,
                            COMPONENT_DTYPES[ind.componentType], 1)[:, 0]
        if rows.size and rows.max() >= len(values):
            raise RigError(f"{self.path}: accessor {index} has sparse indices out of range")
        values[rows] = self.strided(val.bufferView, val.byteOffset or 0, sparse.count, dtype, width)

    def indices(self, index: int, num_vertices: int) -> np.ndarray:
        """An index accessor as ``[N]`` int64, range-checked against ``num_vertices``."""
        acc = self.gltf.accessors[index]
        if acc.componentType not in (5121, 5123, 5125) or acc.type != "SCALAR" or acc.normalized:
            raise RigError(f"{self.path}: index accessor {index} is not unsigned integer scalars")
        out = self.accessor(index)[:, 0].astype(np.int64)
        if out.size and out.max() >= num_vertices:
            raise RigError(f"{self.path}: index accessor {index} points past the vertices")
        return out

    # ----------------------------------------------------------------- meshes and nodes
    def primitive(self, prim, num_targets: int, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(vertices [V, 3], triangles [F, 3], deltas [S, V, 3])`` of one primitive."""
        mode = TRIANGLES if prim.mode is None else prim.mode
        if mode != TRIANGLES:
            raise RigError(f"{where} uses {MODE_NAMES.get(mode, f'mode {mode}')} primitives; only "
                           "TRIANGLES (mode 4) meshes are supported: re-export with triangulated faces")
        position = _attr(prim.attributes, "POSITION")
        if position is None:
            raise RigError(f"{where} has no POSITION attribute")
        vertices = self.accessor(position)
        if vertices.shape[1] != 3:
            raise RigError(f"{where}: POSITION must be VEC3")
        flat = (self.indices(prim.indices, len(vertices)) if prim.indices is not None
                else np.arange(len(vertices)))
        if flat.size % 3:
            raise RigError(f"{where}: the index count {flat.size} is not a multiple of 3")
        deltas = np.zeros((num_targets, len(vertices), 3))
        targets = prim.targets or []
        if targets and len(targets) != num_targets:
            raise RigError(f"{where} has {len(targets)} morph targets, other primitives {num_targets}")
        for s, target in enumerate(targets):
            target_position = _attr(target, "POSITION")
            if target_position is not None:
                delta = self.accessor(target_position)
                if delta.shape != vertices.shape:
                    raise RigError(f"{where}: morph target {s} does not match POSITION's size")
                deltas[s] = delta
        return vertices, flat.reshape(-1, 3), deltas

    def mesh(self, index: int) -> MorphMesh:
        """All primitives of mesh ``index`` concatenated, placed by its node's transform."""
        mesh = self.gltf.meshes[index]
        name = mesh.name or f"mesh {index}"
        num_targets = _target_count(mesh)
        parts = [self.primitive(p, num_targets, f"{self.path}: mesh {name!r} primitive {k}")
                 for k, p in enumerate(mesh.primitives)]
        offsets = np.cumsum([0] + [len(v) for v, _, _ in parts])
        vertices = np.concatenate([v for v, _, _ in parts])
        triangles = np.concatenate([t + o for (_, t, _), o in zip(parts, offsets)])
        deltas = np.concatenate([d for _, _, d in parts], axis=1)
        matrix = self.placement(index)
        vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
        deltas = deltas @ matrix[:3, :3].T  # offsets take the linear part only
        return MorphMesh(vertices, triangles, self.target_names(mesh, num_targets, name), deltas)

    def target_names(self, mesh, num_targets: int, name: str) -> list[str]:
        """``mesh.extras.targetNames`` (or a primitive's), else ``target0``, ``target1``, ..."""
        sources = [mesh.extras or {}] + [p.extras or {} for p in mesh.primitives]
        for extras in sources:
            names = extras.get("targetNames") if isinstance(extras, dict) else None
            if names is not None:
                if len(names) != num_targets:
                    raise RigError(f"{self.path}: mesh {name!r} lists {len(names)} targetNames "
                                   f"for {num_targets} morph targets")
                return [str(n) for n in names]
        return [f"target{s}" for s in range(num_targets)]

    def placement(self, mesh_index: int) -> np.ndarray:
        """The ``[4, 4]`` transform from the mesh's coordinates to the scene (identity if unplaced)."""
        nodes = self.gltf.nodes or []
        users = [i for i, n in enumerate(nodes) if n.mesh == mesh_index]
        if not users:
            return np.eye(4)
        node = nodes[users[0]]
        if node.skin is None:
            return self.world(users[0])
        skin = self.gltf.skins[node.skin]
        if not skin.joints:
            return self.world(users[0])
        inverse_bind = np.eye(4)
        if skin.inverseBindMatrices is not None:
            inverse_bind = self.accessor(skin.inverseBindMatrices)[0].reshape(4, 4).T  # column-major
        return self.world(skin.joints[0]) @ inverse_bind

    def world(self, node_index: int) -> np.ndarray:
        """The ``[4, 4]`` world matrix of a node (its local transform times its ancestors')."""
        nodes = self.gltf.nodes
        parent = {c: i for i, n in enumerate(nodes) for c in (n.children or [])}
        matrix = np.eye(4)
        seen = set()
        while node_index is not None and node_index not in seen:
            seen.add(node_index)
            matrix = local_matrix(nodes[node_index]) @ matrix
            node_index = parent.get(node_index)
        return matrix


def dequantize(values: np.ndarray, normalized: bool | None) -> np.ndarray:
    """Integer or float accessor values ``[N, C]`` as float64, mapping normalized ints per glTF."""
    if not normalized or values.dtype.kind == "f":
        return values.astype(np.float64)
    info = np.iinfo(values.dtype)
    if info.min < 0:
        return np.maximum(values / info.max, -1.0)
    return values / info.max


def local_matrix(node) -> np.ndarray:
    """A node's ``[4, 4]`` local transform from ``matrix`` or translation·rotation·scale."""
    if node.matrix is not None and len(node.matrix) == 16:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T  # column-major
    x, y, z, w = node.rotation if node.rotation is not None else (0.0, 0.0, 0.0, 1.0)
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    out = np.eye(4)
    out[:3, :3] = rotation * np.asarray(node.scale if node.scale is not None else (1, 1, 1))[None, :]
    out[:3, 3] = node.translation if node.translation is not None else (0.0, 0.0, 0.0)
    return out
