"""Users' blendshape sets as rigs: OBJ folders and glTF/GLB files, naming, units, regions.

The data is a small synthetic face made here: a curved grid (cm) with a nose bump, a mouth slit
(upper and lower inner-lip rows 0.05 cm apart, no triangles between them), eye and brow patches,
and 15 shapes with assorted spellings of ARKit names plus one non-ARKit shape.
"""

from __future__ import annotations

import base64
import json
import warnings

import numpy as np
import pygltflib
import pytest
import torch

from thunder3d.errors import RigError
from thunder3d.rigs import ARKIT_NAMES, load_rig
from thunder3d.rigs.blendshapes import guess_units, load_blendshapes
from thunder3d.rigs.gltf import dequantize
from thunder3d.rigs.meshio import write_obj

MOUTH_Y, SLIT, MOUTH_HALF_WIDTH = -4.0, 0.05, 3.0


# --------------------------------------------------------------------------- synthetic face
def face_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` (cm) and triangles ``[F, 3]`` of a grid face with a mouth slit."""
    xs = np.arange(-8.0, 8.5, 1.0)
    ys = np.concatenate([np.arange(-10.0, -4.5, 1.0), [MOUTH_Y - SLIT / 2, MOUTH_Y + SLIT / 2],
                         np.arange(-3.0, 12.5, 1.0)])
    gx, gy = np.meshgrid(xs, ys)  # [rows, cols]
    gz = 6 - 0.06 * gx**2 - 0.02 * gy**2 + 2.5 * np.exp(-((gx / 1.2) ** 2 + (gy / 1.5) ** 2))
    vertices = np.stack([gx, gy, gz], axis=-1).reshape(-1, 3)
    cols = len(xs)
    slit_row = int(np.searchsorted(ys, MOUTH_Y))  # quads between rows slit_row-1 and slit_row
    faces = []
    for r in range(len(ys) - 1):
        for c in range(cols - 1):
            if r == slit_row - 1 and max(abs(xs[c]), abs(xs[c + 1])) <= MOUTH_HALF_WIDTH:
                continue  # the mouth opening
            a, b, d, e = r * cols + c, r * cols + c + 1, (r + 1) * cols + c, (r + 1) * cols + c + 1
            faces += [(a, b, e), (a, e, d)]
    return vertices, np.asarray(faces, dtype=np.int64)


def bump(v: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """A Gaussian weight ``[V]`` centred at (cx, cy)."""
    return np.exp(-((v[:, 0] - cx) ** 2 + (v[:, 1] - cy) ** 2) / radius**2)


def face_shapes(v: np.ndarray) -> dict[str, np.ndarray]:
    """Shape name (as a user's file would spell it) -> deltas ``[V, 3]``."""
    x, y = v[:, 0], v[:, 1]
    lips = np.exp(-((x / 3.6) ** 6 + ((y - MOUTH_Y) / 1.3) ** 4))  # reaches the corners
    jaw = np.where(y < MOUTH_Y, 1.0, 0.0)

    def delta(dx=0.0, dy=0.0, dz=0.0):
        return np.stack(np.broadcast_arrays(dx, dy, dz), axis=-1).astype(np.float64) * np.ones((len(v), 1))

    return {
        "JawOpen": delta(dy=-1.5 * jaw, dz=-0.3 * jaw),
        "mouthPucker": delta(dx=-0.1 * x * lips, dz=0.8 * lips),
        "mouth_funnel": delta(dy=0.2 * np.sign(y - MOUTH_Y) * lips, dz=0.6 * lips),
        "mouthSmile_L": delta(dx=0.5 * bump(v, 3, MOUTH_Y, 1.2), dy=0.4 * bump(v, 3, MOUTH_Y, 1.2)),
        "mouthSmile_R": delta(dx=-0.5 * bump(v, -3, MOUTH_Y, 1.2), dy=0.4 * bump(v, -3, MOUTH_Y, 1.2)),
        "mouthStretch_L": delta(dx=0.4 * bump(v, 3, MOUTH_Y, 1.0)),
        "mouthStretch_R": delta(dx=-0.4 * bump(v, -3, MOUTH_Y, 1.0)),
        "eyeBlinkLeft": delta(dy=-0.6 * bump(v, 3.5, 5, 1.0)),
        "eyeBlink.R": delta(dy=-0.6 * bump(v, -3.5, 5, 1.0)),
        "browInnerUp_L": delta(dy=0.5 * bump(v, 1.5, 7.5, 1.0)),
        "browInnerUp_R": delta(dy=0.5 * bump(v, -1.5, 7.5, 1.0)),
        "browDown-L": delta(dy=-0.4 * bump(v, 3, 7.5, 1.5)),
        "browDown-R": delta(dy=-0.4 * bump(v, -3, 7.5, 1.5)),
        "cheekPuff": delta(dz=0.5 * (bump(v, 4, -2, 1.5) + bump(v, -4, -2, 1.5))),
        "viseme_aa": delta(dy=-0.5 * jaw),
    }


def vertex_at(v: np.ndarray, x: float, y: float) -> int:
    return int(np.argmin((v[:, 0] - x) ** 2 + (v[:, 1] - y) ** 2))


# --------------------------------------------------------------------------- writers
def write_obj_folder(folder, vertices, faces, shapes, neutral_name="neutral.obj"):
    folder.mkdir(parents=True, exist_ok=True)
    write_obj(folder / neutral_name, vertices, faces)
    for name, delta in shapes.items():
        write_obj(folder / f"{name}.obj", vertices + delta, faces)
    return folder


class GltfBuilder:
    """A one-mesh glTF document with morph targets, assembled with pygltflib."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.gltf = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0"))

    def view(self, data: bytes, stride: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        self.gltf.bufferViews.append(pygltflib.BufferView(
            buffer=0, byteOffset=len(self.blob), byteLength=len(data), byteStride=stride))
        self.blob += data
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, kind: str, stride: int | None = None, sparse: bool = False) -> int:
        """Add ``array`` (float32 VEC3 or uint32 SCALAR); ``stride`` pads rows; ``sparse`` stores
        only the non-zero rows."""
        component = pygltflib.FLOAT if kind == "VEC3" else pygltflib.UNSIGNED_INT
        array = np.ascontiguousarray(array, dtype=np.float32 if kind == "VEC3" else np.uint32)
        acc = pygltflib.Accessor(componentType=component, count=len(array), type=kind)
        if sparse:
            rows = np.flatnonzero(np.abs(array).sum(axis=1) > 0).astype(np.uint32)
            acc.sparse = pygltflib.Sparse(
                count=len(rows),
                indices=pygltflib.AccessorSparseIndices(bufferView=self.view(rows.tobytes()),
                                                        componentType=pygltflib.UNSIGNED_INT),
                values=pygltflib.AccessorSparseValues(bufferView=self.view(array[rows].tobytes())))
        elif stride:
            padded = np.zeros((len(array), stride // 4), dtype=np.float32)
            padded[:, :3] = array
            acc.bufferView = self.view(padded.tobytes(), stride=stride)
        else:
            acc.bufferView = self.view(array.tobytes())
        if kind == "VEC3":
            acc.min, acc.max = array.min(axis=0).tolist(), array.max(axis=0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def mesh(self, vertices, faces, shapes, mode=pygltflib.TRIANGLES, scale=None, names_on_primitive=False,
             name="head"):
        targets = [pygltflib.Attributes(POSITION=self.accessor(d, "VEC3", sparse=(s == 0)))
                   for s, d in enumerate(shapes.values())]
        prim = pygltflib.Primitive(
            attributes=pygltflib.Attributes(POSITION=self.accessor(vertices, "VEC3", stride=16)),
            indices=self.accessor(faces.reshape(-1), "SCALAR"), mode=mode, targets=targets)
        names = {"targetNames": list(shapes)}
        mesh = pygltflib.Mesh(name=name, primitives=[prim],
                              extras={} if names_on_primitive else names)
        if names_on_primitive:
            prim.extras = names
        self.gltf.meshes.append(mesh)
        self.gltf.nodes.append(pygltflib.Node(mesh=len(self.gltf.meshes) - 1, scale=scale))
        return self

    def skin(self, joint_scale):
        """Skin the last mesh to a new joint node scaled by ``joint_scale`` (no inverse bind
        matrices, so the joint's transform places the mesh; the mesh node's own is ignored)."""
        self.gltf.nodes.append(pygltflib.Node(scale=joint_scale))
        self.gltf.skins.append(pygltflib.Skin(joints=[len(self.gltf.nodes) - 1]))
        self.gltf.nodes[-2].skin = len(self.gltf.skins) - 1
        return self

    def save_glb(self, path):
        self.gltf.buffers = [pygltflib.Buffer(byteLength=len(self.blob))]
        self.gltf.set_binary_blob(bytes(self.blob))
        self.gltf.save_binary(str(path))
        return path

    def save_gltf(self, path, external: bool):
        if external:
            (path.parent / "shapes.bin").write_bytes(bytes(self.blob))
            uri = "shapes.bin"
        else:
            uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(self.blob)).decode()
        self.gltf.buffers = [pygltflib.Buffer(byteLength=len(self.blob), uri=uri)]
        self.gltf.save_json(str(path))
        return path


def quiet_load(path, **kwargs):
    """``load_blendshapes`` with its (expected) warnings about absent/extra shapes silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_blendshapes(path, **kwargs)


@pytest.fixture(scope="module")
def face():
    vertices, faces = face_mesh()
    return vertices, faces, face_shapes(vertices)


@pytest.fixture(scope="module")
def obj_dir(face, tmp_path_factory):
    return write_obj_folder(tmp_path_factory.mktemp("objs") / "set", *face)


@pytest.fixture(scope="module")
def glb_path(face, tmp_path_factory):
    return GltfBuilder().mesh(*face).save_glb(tmp_path_factory.mktemp("glb") / "avatar.glb")


@pytest.fixture(scope="module")
def obj_rig(obj_dir):
    return quiet_load(obj_dir)


# --------------------------------------------------------------------------- loading and naming
def test_obj_folder_arkit_layout(obj_dir, face):
    vertices, _, shapes = face
    with pytest.warns(UserWarning) as record:
        rig = load_rig(f"blendshapes:{obj_dir}")
    messages = " ".join(str(w.message) for w in record)
    assert "lacks 39 ARKit shapes" in messages and "viseme_aa" in messages
    assert rig.name == "blendshapes" and rig.spec == f"blendshapes:{obj_dir}"
    assert rig.coeff_names == ARKIT_NAMES and rig.units == "cm"
    # coefficient 1 on one shape reproduces that OBJ (within the OBJ's 6 decimals)
    out = rig(rig.coeffs({"jawOpen": 1.0}))[0].numpy()
    np.testing.assert_allclose(out, vertices + shapes["JawOpen"], atol=1e-5)
    # split halves are summed, absent shapes are zero
    brow = rig.deltas[rig.coeff_index("browInnerUp")].numpy()
    np.testing.assert_allclose(brow, shapes["browInnerUp_L"] + shapes["browInnerUp_R"], atol=2e-5)
    assert rig.deltas[rig.coeff_index("tongueOut")].abs().sum() == 0
    np.testing.assert_allclose(rig.deltas[rig.coeff_index("eyeBlinkRight")].numpy(), shapes["eyeBlink.R"],
                               atol=1e-5)


def test_glb_matches_obj_folder(obj_rig, glb_path):
    rig = quiet_load(glb_path)
    assert rig.spec == f"blendshapes:{glb_path}" and rig.coeff_names == obj_rig.coeff_names
    coeffs = torch.rand(3, 52, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rig(coeffs), obj_rig(coeffs), atol=1e-4, rtol=0)
    torch.testing.assert_close(rig.faces, obj_rig.faces)
    assert rig.lip_landmarks == obj_rig.lip_landmarks
    for name in obj_rig.region_names:
        assert torch.equal(rig.region(name), obj_rig.region(name)), name


@pytest.mark.parametrize("variant", ["node_scale", "skin", "primitive_names", "gltf_base64", "gltf_bin"])
def test_gltf_variants(variant, face, obj_rig, tmp_path):
    vertices, faces, shapes = face
    if variant == "node_scale":  # stored in decimetres, placed by a node scale of 10
        builder = GltfBuilder().mesh(vertices / 10, faces, {k: d / 10 for k, d in shapes.items()},
                                     scale=[10.0, 10.0, 10.0])
    elif variant == "skin":  # the skinned mesh's node scale is ignored, the joint's applies
        builder = GltfBuilder().mesh(vertices / 10, faces, {k: d / 10 for k, d in shapes.items()},
                                     scale=[1e3, 1e3, 1e3]).skin([10.0, 10.0, 10.0])
    else:
        builder = GltfBuilder().mesh(vertices, faces, shapes, names_on_primitive=variant == "primitive_names")
    if variant.startswith("gltf"):
        path = builder.save_gltf(tmp_path / "avatar.gltf", external=variant == "gltf_bin")
    else:
        path = builder.save_glb(tmp_path / "avatar.glb")
    rig = quiet_load(path)
    coeffs = obj_rig.coeffs({"jawOpen": 0.7, "browInnerUp": 1.0, "mouthSmileLeft": 0.5})
    torch.testing.assert_close(rig(coeffs), obj_rig(coeffs), atol=1e-4, rtol=0)


def test_mesh_choice(face, obj_rig, tmp_path):
    vertices, faces, shapes = face
    eyes = {k: shapes[k] for k in ("eyeBlinkLeft", "eyeBlink.R")}
    builder = GltfBuilder().mesh(vertices, faces, eyes, name="eyes").mesh(vertices, faces, shapes)
    path = builder.save_glb(tmp_path / "two.glb")
    coeffs = obj_rig.coeffs({"jawOpen": 1.0})
    torch.testing.assert_close(quiet_load(path)(coeffs), obj_rig(coeffs), atol=1e-4, rtol=0)
    eyes_rig = quiet_load(path, mesh="eyes", names="native", regions=sidecar_of(obj_rig))
    assert eyes_rig.coeff_names == tuple(eyes)
    with pytest.raises(RigError, match="no mesh 'nose'.*'eyes', 'head'"):
        load_blendshapes(path, mesh="nose")


def sidecar_of(rig) -> dict:
    """A complete sidecar mapping with the regions and landmarks of ``rig``."""
    return {"regions": {name: rig.region(name).tolist() for name in rig.region_names},
            "lip_landmarks": dict(rig.lip_landmarks)}


def test_native_names(obj_dir, face):
    rig = quiet_load(obj_dir, names="native")
    assert rig.coeff_names == tuple(sorted(face[2]))
    out = rig(rig.coeffs({"browInnerUp_L": 1.0}))[0].numpy()
    np.testing.assert_allclose(out, face[0] + face[2]["browInnerUp_L"], atol=1e-5)
    assert rig.lip_landmarks == quiet_load(obj_dir).lip_landmarks


def test_too_few_arkit_names_suggests_native(face, tmp_path):
    vertices, faces, shapes = face
    folder = write_obj_folder(tmp_path / "few", vertices, faces,
                              {k: shapes[k] for k in ("JawOpen", "mouthPucker", "viseme_aa")})
    with pytest.raises(RigError, match="names='native'"):
        load_blendshapes(folder)


def test_gradients_reach_coefficients(obj_rig):
    coeffs = torch.zeros(2, 52, requires_grad=True)
    obj_rig(coeffs)[..., obj_rig.region("mouth"), :].square().sum().backward()
    assert coeffs.grad[:, obj_rig.coeff_index("jawOpen")].abs().min() > 0
    assert coeffs.grad[:, obj_rig.coeff_index("tongueOut")].abs().max() == 0


# --------------------------------------------------------------------------- units
def test_units_guess_and_override(face, obj_dir):
    vertices = face[0]
    assert guess_units(vertices) == "cm"
    assert guess_units(vertices / 100) == "m"
    assert guess_units(vertices * 10) == "mm"
    with pytest.warns(UserWarning, match="not head-sized"):
        assert guess_units(vertices * 100) == "mm"
    assert quiet_load(obj_dir, units="mm").units == "mm"
    with pytest.raises(RigError, match="valid"):
        load_blendshapes(obj_dir, units="inch")
    with pytest.raises(RigError, match="valid"):
        load_blendshapes(obj_dir, names="ict")


# --------------------------------------------------------------------------- regions
def test_auto_regions_and_landmarks(obj_rig, face):
    vertices = face[0]
    region = {name: set(obj_rig.region(name).tolist()) for name in obj_rig.region_names}
    mid_upper, mid_lower = vertex_at(vertices, 0, MOUTH_Y + 0.1), vertex_at(vertices, 0, MOUTH_Y - 0.1)
    assert obj_rig.lip_landmarks["upper_inner"] == mid_upper
    assert obj_rig.lip_landmarks["lower_inner"] == mid_lower
    assert vertices[obj_rig.lip_landmarks["left_corner"], 0] == MOUTH_HALF_WIDTH
    assert vertices[obj_rig.lip_landmarks["right_corner"], 0] == -MOUTH_HALF_WIDTH
    assert {mid_upper, mid_lower} <= region["lips"] <= region["mouth"] <= region["face"]
    assert vertex_at(vertices, 0, 10) not in region["mouth"]
    assert vertex_at(vertices, 6, MOUTH_Y) not in region["lips"]
    assert {vertex_at(vertices, 3.5, 5), vertex_at(vertices, -3.5, 5)} <= region["eyes"]
    assert vertex_at(vertices, 0, -2) not in region["eyes"]
    assert vertex_at(vertices, 0, 8) in region["upper_face"]
    assert vertex_at(vertices, 0, -8) in region["face"] - region["upper_face"]
    rest = obj_rig.neutral
    opened = obj_rig(obj_rig.coeffs({"jawOpen": 1.0}))[0]
    assert obj_rig.lip_aperture(rest) < 0.06 and obj_rig.lip_aperture(opened) > 1.4
    assert obj_rig.lip_width(rest) == pytest.approx(2 * MOUTH_HALF_WIDTH, abs=0.01)


def test_sidecar_overrides(face, tmp_path):
    vertices, faces, shapes = face
    folder = write_obj_folder(tmp_path / "sidecar", vertices, faces, shapes)
    sidecar = {"regions": {"lips": [1, 2, 3], "nose": [5, 6]}, "lip_landmarks": {"upper_inner": 7}}
    (folder / "regions.json").write_text(json.dumps(sidecar))
    rig = quiet_load(folder)
    assert rig.region("lips").tolist() == [1, 2, 3] and rig.region("nose").tolist() == [5, 6]
    assert rig.lip_landmarks["upper_inner"] == 7
    assert rig.lip_landmarks["lower_inner"] == vertex_at(vertices, 0, MOUTH_Y - 0.1)  # derived
    # an explicit argument wins over the folder's file
    assert quiet_load(folder, regions={"regions": {"lips": [9]}}).region("lips").tolist() == [9]
    (folder / "regions.json").write_text(json.dumps({"regions": {"lips": [0, len(vertices)]}}))
    with pytest.raises(RigError, match="outside"):
        quiet_load(folder)


def test_complete_sidecar_needs_no_arkit_shapes(face, tmp_path):
    vertices, faces, shapes = face
    folder = write_obj_folder(tmp_path / "custom", vertices, faces, {"smirk": shapes["mouthSmile_L"]})
    with pytest.raises(RigError, match="jawOpen.*sidecar JSON"):
        load_blendshapes(folder, names="native")
    regions = {name: [0, 1] for name in ("lips", "mouth", "face", "upper_face", "eyes")}
    landmarks = {"upper_inner": 0, "lower_inner": 1, "left_corner": 2, "right_corner": 3}
    path = tmp_path / "regions.json"
    path.write_text(json.dumps({"regions": regions, "lip_landmarks": landmarks}))
    rig = load_blendshapes(folder, names="native", regions=path)
    assert rig.coeff_names == ("smirk",) and rig.lip_landmarks == landmarks


# --------------------------------------------------------------------------- errors
def test_obj_folder_errors(face, tmp_path):
    vertices, faces, shapes = face
    with pytest.raises(RigError, match="no OBJ files"):
        load_blendshapes(tmp_path)
    with pytest.raises(RigError, match="not found"):
        load_blendshapes(tmp_path / "missing")
    folder = write_obj_folder(tmp_path / "short", vertices, faces, {"jawOpen": shapes["JawOpen"]})
    write_obj(folder / "mouthPucker.obj", vertices[:-1], faces[:-40])
    with pytest.raises(RigError, match="mouthPucker.obj has"):
        load_blendshapes(folder)
    folder = write_obj_folder(tmp_path / "noneutral", vertices, faces, {"jawOpen": shapes["JawOpen"]},
                              neutral_name="head.obj")
    with pytest.raises(RigError, match="neutral mesh.*head.obj"):
        load_blendshapes(folder)


def test_gltf_errors(face, tmp_path):
    vertices, faces, shapes = face
    builder = GltfBuilder()
    prim = pygltflib.Primitive(attributes=pygltflib.Attributes(POSITION=builder.accessor(vertices, "VEC3")))
    builder.gltf.meshes.append(pygltflib.Mesh(primitives=[prim]))
    with pytest.raises(RigError, match="no mesh with morph targets"):
        load_blendshapes(builder.save_glb(tmp_path / "static.glb"))
    strip = GltfBuilder().mesh(vertices, faces, shapes, mode=pygltflib.TRIANGLE_STRIP)
    with pytest.raises(RigError, match="TRIANGLE_STRIP.*TRIANGLES"):
        load_blendshapes(strip.save_glb(tmp_path / "strip.glb"))
    (tmp_path / "broken.glb").write_bytes(b"glTF not really")
    with pytest.raises(RigError, match="cannot read"):
        load_blendshapes(tmp_path / "broken.glb")
    (tmp_path / "shapes.fbx").write_bytes(b"")
    with pytest.raises(RigError, match="unsupported"):
        load_blendshapes(tmp_path / "shapes.fbx")


def test_dequantize_normalized_integers():
    np.testing.assert_allclose(dequantize(np.array([[-128, 0, 127]], dtype=np.int8), True)[0], [-1, 0, 1])
    np.testing.assert_allclose(dequantize(np.array([[0, 65535]], dtype=np.uint16), True)[0], [0, 1])
    np.testing.assert_allclose(dequantize(np.array([[3, 4]], dtype=np.uint16), False)[0], [3, 4])
