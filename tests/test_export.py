"""Exports: every format written from real rigs and read back by an independent reader.

npz with ``np.load``; OBJ with ``rigs.meshio``; binary PLY parsed here from its header; Live Link
CSV with ``read_livelink_csv``; GLB with pygltflib (structure, accessors, animation) and with our
own blendshape-rig reader (``load_rig("blendshapes:...glb")``, vertices compared with the rig);
MP4 with ``probe_media``. Sequences are a few frames long, videos 64 px.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
import pygltflib
import pytest
import soundfile as sf
import torch

from helpers import needs_gl
from test_blendshapes import GltfBuilder, face_mesh, face_shapes
from test_flame import synthetic_flame, write_npz as save_flame_npz
from thunder3d.constants import FPS, SAMPLE_RATE
from thunder3d.data.import_livelink import LIVELINK_NAMES, read_livelink_csv
from thunder3d.errors import ThunderError
from thunder3d.export import (FORMATS, ExportError, check_export_options, export_animation, parse_formats, retarget,
                              retarget_matrix, write_arkit_csv, write_glb, write_mesh_sequence, write_mp4, write_npz)
from thunder3d.rigs import ARKIT_NAMES, load_rig
from thunder3d.rigs.blendshapes import load_blendshapes
from thunder3d.rigs.flame import load_flame
from thunder3d.rigs.meshio import read_obj

T = 5  # frames per test animation


@pytest.fixture(scope="module")
def rig():
    return load_rig("builtin")


@pytest.fixture(scope="module")
def coeffs() -> np.ndarray:
    """``[2, T, 52]`` in [0, 1], with the jaw opening over time in sample 0."""
    out = np.random.default_rng(7).uniform(0.0, 0.6, (2, T, 52)).astype(np.float32)
    out[0, :, ARKIT_NAMES.index("jawOpen")] = np.linspace(0.0, 1.0, T)
    return out


@pytest.fixture(scope="module")
def flame_rig(tmp_path_factory):
    """A small synthetic FLAME (tests/test_flame.py) with jaw, neck and eye pose coefficients."""
    path = save_flame_npz(tmp_path_factory.mktemp("flame") / "flame.npz", synthetic_flame())
    return load_flame(path, pose=("neck", "eyes"))


@pytest.fixture(scope="module")
def avatar_glb(tmp_path_factory):
    """A user's GLB avatar whose shapes use assorted spellings (``JawOpen``, ``mouthSmile_L``,
    split ``browInnerUp_L``/``_R``, non-ARKit ``viseme_aa``; tests/test_blendshapes.py)."""
    vertices, faces = face_mesh()
    return GltfBuilder().mesh(vertices, faces, face_shapes(vertices)).save_glb(
        tmp_path_factory.mktemp("avatar") / "avatar.glb")


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with the expected warnings (absent/extra shapes) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def tone(frames: int, fps: float = FPS) -> np.ndarray:
    t = np.arange(round(frames * SAMPLE_RATE / fps)) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def read_ply(path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vertices ``[V, 3]`` float32, triangles ``[F, 3]`` and the header lines of a binary PLY."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    vertices = np.frombuffer(data, "<f4", counts["vertex"] * 3, end).reshape(-1, 3)
    records = np.frombuffer(data, [("n", "u1"), ("i", "<i4", (3,))], counts["face"], end + vertices.nbytes)
    assert (records["n"] == 3).all() and end + vertices.nbytes + records.nbytes == len(data)
    return vertices, records["i"], header


def glb_json(path) -> dict:
    """The JSON chunk of a GLB as written (pygltflib fills in defaults when loading)."""
    data = path.read_bytes()
    magic, version, total = np.frombuffer(data, "<u4", 3)
    length, kind = np.frombuffer(data, "<u4", 2, 12)
    assert (magic, version, total, kind) == (0x46546C67, 2, len(data), 0x4E4F534A) and length % 4 == 0
    return json.loads(data[20 : 20 + length])


def accessor_values(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    """A dense float32 accessor of a loaded GLB, decoded from its binary chunk."""
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    width = {"SCALAR": 1, "VEC3": 3}[acc.type]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    return np.frombuffer(gltf.binary_blob(), "<f4", acc.count * width, start).reshape(acc.count, width)


# --------------------------------------------------------------------------- formats and names
def test_parse_formats():
    assert parse_formats("npz, OBJ,mp4,npz") == ("npz", "obj", "mp4")
    assert parse_formats(",".join(FORMATS)) == FORMATS
    with pytest.raises(ExportError, match="fbx.*valid: npz, obj, ply, csv, glb, mp4"):
        parse_formats("npz,fbx")
    with pytest.raises(ThunderError, match="no export format"):
        parse_formats(" , ")


def test_retarget_arkit_layouts_onto_the_ict_rig(ict_rig, coeffs):
    # a model trained on Live Link captures: capitalised names, reversed order
    order = np.arange(52)[::-1]
    src_names = [LIVELINK_NAMES[i] for i in order]
    mapped = retarget(coeffs[:, :, order], src_names, ict_rig)
    assert mapped.shape == (2, T, ict_rig.num_coeffs) and mapped.dtype == np.float32
    np.testing.assert_array_equal(mapped, coeffs)  # builtin order is ICT's: a pure permutation
    # torch in, torch out, gradients flow back to the source coefficients
    source = torch.tensor(coeffs[0][:, order], requires_grad=True)
    verts = ict_rig(retarget(source, src_names, ict_rig))
    verts.sum().backward()
    assert source.grad is not None and source.grad.abs().sum() > 0
    lips = ict_rig.lip_aperture(verts.detach())  # the jaw opens over the clip
    assert lips[-1] > lips[0] + 0.3  # cm


def test_retarget_onto_a_glb_avatar_with_its_own_names(avatar_glb, coeffs, tmp_path):
    native = quiet(load_blendshapes, avatar_glb, names="native")
    arkit = quiet(load_blendshapes, avatar_glb, names="arkit")
    mapped = retarget(coeffs, ARKIT_NAMES, native)
    assert mapped.shape == (2, T, native.num_coeffs)
    column = {name: mapped[..., i] for i, name in enumerate(native.coeff_names)}
    np.testing.assert_array_equal(column["JawOpen"], coeffs[..., ARKIT_NAMES.index("jawOpen")])
    np.testing.assert_array_equal(column["mouthSmile_L"], coeffs[..., ARKIT_NAMES.index("mouthSmileLeft")])
    np.testing.assert_array_equal(column["eyeBlink.R"], coeffs[..., ARKIT_NAMES.index("eyeBlinkRight")])
    for half in ("browInnerUp_L", "browInnerUp_R"):  # each half of a split shape gets the whole value
        np.testing.assert_array_equal(column[half], coeffs[..., ARKIT_NAMES.index("browInnerUp")])
    assert not column["viseme_aa"].any()  # no ARKit source: zero
    # the avatar driven through its own names moves exactly like its ARKit-layout rig
    got = native(torch.from_numpy(mapped))
    want = arkit(torch.from_numpy(coeffs))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # and back: split halves average into the whole shape
    back = retarget_matrix(native.coeff_names, ARKIT_NAMES)
    inner = ARKIT_NAMES.index("browInnerUp")
    assert back[[native.coeff_names.index("browInnerUp_L"), native.coeff_names.index("browInnerUp_R")],
                inner].tolist() == [0.5, 0.5]


def test_retarget_errors(rig, flame_rig, coeffs):
    with pytest.raises(ExportError, match="no coefficient name matches"):
        retarget(coeffs, ARKIT_NAMES, flame_rig)
    with pytest.raises(ExportError, match="52 values per frame but 3 source names"):
        retarget(coeffs, ["a", "b", "c"], rig)


# --------------------------------------------------------------------------- npz
def test_npz_keys_audio_and_rig(rig, coeffs, tmp_path):
    path = write_npz(tmp_path / "take.npz", torch.from_numpy(coeffs), fps=FPS, names=rig.coeff_names, rig=rig,
                     audio=tone(T + 3))
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"coeffs", "fps", "names", "audio", "sample_rate", "rig", "units"}
        np.testing.assert_array_equal(npz["coeffs"], coeffs)
        assert float(npz["fps"]) == FPS and npz["names"].tolist() == list(ARKIT_NAMES)
        assert npz["audio"].dtype == np.float32 and npz["audio"].shape == (T * SAMPLE_RATE // FPS,)  # trimmed
        np.testing.assert_array_equal(npz["audio"], tone(T))
        assert int(npz["sample_rate"]) == SAMPLE_RATE and str(npz["units"]) == "cm"
        assert load_rig(json.loads(str(npz["rig"]))).spec == "builtin"
    assert listing(tmp_path) == ["take.npz"]


def test_npz_has_flame_style_keys_for_flame_layouts(flame_rig, tmp_path):
    values = np.random.default_rng(3).normal(0, 0.1, (3, T, flame_rig.num_coeffs)).astype(np.float32)
    names = flame_rig.coeff_names  # exp000..exp049, jaw_r*, neck_r*, leye_r*, reye_r*
    path = write_npz(tmp_path / "flame.npz", values, fps=30, names=names, rig=flame_rig)
    with np.load(path) as npz:
        assert npz["expression"].shape == (3, T, 50)
        np.testing.assert_array_equal(npz["expression"], values[..., :50])
        for key, prefix in (("jaw_pose", "jaw"), ("neck_pose", "neck"), ("leye_pose", "leye"), ("reye_pose", "reye")):
            start = names.index(f"{prefix}_rx")
            np.testing.assert_array_equal(npz[key], values[..., start : start + 3])
        assert "global_orient" not in npz.files and str(npz["units"]) == "m"


# --------------------------------------------------------------------------- mesh sequences
@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_mesh_sequence_reads_back(rig, coeffs, tmp_path, fmt):
    paths = write_mesh_sequence(tmp_path / "seq", rig, coeffs[0, :3], fmt=fmt)
    assert [p.name for p in paths] == [f"frame_0000{t}.{fmt}" for t in range(3)]
    want = rig(torch.from_numpy(coeffs[0, :3])).numpy()
    faces = rig.faces.numpy()
    for t, path in enumerate(paths):
        if fmt == "obj":
            mesh = read_obj(path)
            np.testing.assert_allclose(mesh.vertices, want[t], atol=5.1e-7)  # 6 decimals (cm)
            np.testing.assert_array_equal(mesh.triangles(), faces)
        else:
            vertices, triangles, header = read_ply(path)
            assert header[1] == "format binary_little_endian 1.0" and "comment thunder3d builtin units cm" in header
            np.testing.assert_array_equal(vertices, want[t])
            np.testing.assert_array_equal(triangles, faces)
    assert not np.allclose(want[0], want[2])  # the jaw moved between the files


def test_mesh_sequence_failing_midway_leaves_no_files(rig, coeffs, tmp_path, monkeypatch):
    from thunder3d.export import mesh

    def frames_then_failure(rig_, values):
        yield rig_(torch.from_numpy(values[:1]))[0].numpy()
        raise RuntimeError("rig failed on frame 1")

    monkeypatch.setattr(mesh, "rig_frames", frames_then_failure)
    with pytest.raises(RuntimeError, match="frame 1"):
        write_mesh_sequence(tmp_path, rig, coeffs[0], fmt="ply")
    assert listing(tmp_path) == []


# --------------------------------------------------------------------------- Live Link CSV
def test_csv_round_trips_through_read_livelink_csv(rig, tmp_path):
    # longer than a second: the reader infers the rate from the timecodes' rollover (a shorter
    # CSV carries no rate, read_livelink_csv then needs fps=)
    values = np.random.default_rng(11).uniform(0.0, 1.0, (FPS + 5, 52)).astype(np.float32)
    path = write_arkit_csv(tmp_path / "take.csv", values, names=rig.coeff_names, fps=FPS)
    take = read_livelink_csv(path)
    assert take.fps == FPS and take.head_rotation is None
    np.testing.assert_array_equal(take.coeffs, values)  # 9 significant digits: float32-exact
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[2:] == list(LIVELINK_NAMES)
    assert lines[1].startswith("00:00:00:00.000,52,") and lines[-1].startswith("00:00:01:04.000,52,")


def test_csv_clamps_to_the_livelink_range_and_npz_keeps_raw_values(rig, tmp_path):
    values = np.random.default_rng(3).uniform(0.0, 1.0, (T, 52)).astype(np.float32)
    values[0, 0], values[1, 5], values[4, 51] = 1.25, -0.5, -1e-4  # overshoot of a model sample
    with pytest.warns(UserWarning, match=r"take\.csv: clamped 3 of 260 values to the Live Link range \[0, 1\]"):
        path = write_arkit_csv(tmp_path / "take.csv", values, names=rig.coeff_names, fps=FPS)
    take = read_livelink_csv(path, fps=FPS)
    np.testing.assert_array_equal(take.coeffs, np.clip(values, 0.0, 1.0))
    assert take.coeffs[0, 0] == 1.0 and take.coeffs[1, 5] == 0.0
    with np.load(write_npz(tmp_path / "take.npz", values, fps=FPS, names=rig.coeff_names)) as npz:
        np.testing.assert_array_equal(npz["coeffs"], values)  # raw, outside [0, 1] included
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # values in range: no warning, written exactly
        inside = write_arkit_csv(tmp_path / "in.csv", np.clip(values, 0, 1), names=rig.coeff_names, fps=FPS)
        near = np.clip(values, -0.03, 1.04)  # a model's small excursions: clamped quietly
        near[2, 2], near[3, 3] = -0.03, 1.04
        quiet_csv = write_arkit_csv(tmp_path / "near.csv", near, names=rig.coeff_names, fps=FPS)
    np.testing.assert_array_equal(read_livelink_csv(inside, fps=FPS).coeffs, np.clip(values, 0, 1))
    np.testing.assert_array_equal(read_livelink_csv(quiet_csv, fps=FPS).coeffs, np.clip(near, 0, 1))


def test_csv_from_an_avatar_layout_and_refusals(avatar_glb, flame_rig, coeffs, tmp_path):
    native = quiet(load_blendshapes, avatar_glb, names="native")
    values = retarget(coeffs[0], ARKIT_NAMES, native)
    with pytest.warns(UserWarning, match="lacks 39 ARKit shapes, written as zeros"):
        take = read_livelink_csv(write_arkit_csv(tmp_path / "a.csv", values, names=native.coeff_names, fps=30), fps=30)
    jaw = ARKIT_NAMES.index("jawOpen")
    np.testing.assert_array_equal(take.coeffs[:, jaw], coeffs[0, :, jaw])
    assert not take.coeffs[:, ARKIT_NAMES.index("tongueOut")].any()
    with pytest.raises(ExportError, match="needs ARKit blendshape coefficients"):
        write_arkit_csv(tmp_path / "f.csv", np.zeros((T, flame_rig.num_coeffs)), names=flame_rig.coeff_names, fps=25)
    with pytest.raises(ExportError, match="whole-number fps"):
        write_arkit_csv(tmp_path / "b.csv", coeffs[0], names=ARKIT_NAMES, fps=29.97)
    assert listing(tmp_path) == ["a.csv"]


# --------------------------------------------------------------------------- GLB
def test_glb_structure_and_round_trip_through_the_blendshape_reader(rig, coeffs, tmp_path):
    path = write_glb(tmp_path / "anim.glb", rig, coeffs[0], names=rig.coeff_names, fps=FPS, audio=tone(T - 1))
    assert listing(tmp_path) == ["anim.glb", "anim.regions.json", "anim.wav"]
    gltf = pygltflib.GLTF2().load(str(path))
    mesh = gltf.meshes[0]
    prim = mesh.primitives[0]
    assert len(prim.targets) == 52 and mesh.extras["targetNames"] == list(ARKIT_NAMES)
    assert mesh.weights == [0.0] * 52 and prim.mode == pygltflib.TRIANGLES
    # POSITION (base and every target) carries min/max, as the spec requires; base in metres
    position = gltf.accessors[prim.attributes.POSITION]
    neutral_m = rig.neutral.numpy() * 0.01
    np.testing.assert_allclose(position.min, neutral_m.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(position.max, neutral_m.max(axis=0), atol=1e-6)
    deltas_m = rig.deltas.numpy() * 0.01
    for k, target in enumerate(prim.targets):  # each target's bounds are those of its shape's deltas
        acc = gltf.accessors[target["POSITION"]]
        np.testing.assert_allclose(acc.min, deltas_m[k].min(axis=0), atol=1e-6, err_msg=ARKIT_NAMES[k])
        np.testing.assert_allclose(acc.max, deltas_m[k].max(axis=0), atol=1e-6, err_msg=ARKIT_NAMES[k])
    assert gltf.accessors[prim.indices].count == rig.faces.numel()
    for acc in glb_json(path)["accessors"]:  # data-less (all-zero) and sparse targets: no byteOffset
        assert "bufferView" in acc or "byteOffset" not in acc
        assert "sparse" not in acc or acc["sparse"]["count"] > 0
    normals = accessor_values(gltf, prim.attributes.NORMAL)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    # the animation: T + 1 keys (the last frame held until T / fps, the audio's end), LINEAR weights
    (animation,) = gltf.animations
    (sampler,) = animation.samplers
    (channel,) = animation.channels
    assert channel.target.node == 0 and channel.target.path == "weights" and sampler.interpolation == "LINEAR"
    times = gltf.accessors[sampler.input]
    assert times.count == T + 1 and times.min == [0.0] and times.max[0] == pytest.approx(T / FPS)
    np.testing.assert_allclose(accessor_values(gltf, sampler.input)[:, 0], np.arange(T + 1) / FPS, atol=1e-7)
    weights = accessor_values(gltf, sampler.output)
    assert weights.shape == ((T + 1) * 52, 1)
    np.testing.assert_array_equal(weights.reshape(T + 1, 52), np.concatenate([coeffs[0], coeffs[0, -1:]]))
    # the audio beside, as long as the animation
    extras = gltf.asset.extras
    assert extras["audio"] == "anim.wav" and extras["frames"] == T and extras["targets"] == "coefficients"
    assert extras["duration"] == pytest.approx(T / FPS) and extras["rig"]["spec"] == "builtin"
    info = sf.info(str(tmp_path / extras["audio"]))
    assert info.samplerate == SAMPLE_RATE and info.frames == T * SAMPLE_RATE // FPS  # padded to T / fps
    # read back as a rig: neutral + weights · targets reproduce the rig's vertices
    back = load_rig(f"blendshapes:{path}")
    assert back.units == "m" and back.coeff_names == rig.coeff_names
    frame = torch.from_numpy(coeffs[0, 3:4])
    torch.testing.assert_close(back(frame) * 1000.0, rig(frame) * 10.0, atol=1e-3, rtol=0)  # mm
    for region in ("lips", "mouth", "eyes"):  # the sidecar carried the regions over
        assert torch.equal(back.region(region), rig.region(region))


def test_glb_bakes_frames_for_flame(flame_rig, tmp_path):
    values = np.zeros((3, flame_rig.num_coeffs), dtype=np.float32)
    values[:, flame_rig.coeff_index("jaw_rx")] = [0.0, 0.15, 0.3]  # skinned: not a blendshape
    values[:, :50] = np.random.default_rng(5).normal(0, 1.0, (3, 50))
    with pytest.raises(ExportError, match="not a linear blendshape rig.*targets='frames'"):
        write_glb(tmp_path / "x.glb", flame_rig, values, names=flame_rig.coeff_names, fps=FPS, targets="coefficients")
    path = write_glb(tmp_path / "flame.glb", flame_rig, values, names=flame_rig.coeff_names, fps=FPS)
    gltf = pygltflib.GLTF2().load(str(path))
    assert gltf.meshes[0].extras["targetNames"] == ["frame_00000", "frame_00001", "frame_00002"]
    assert gltf.asset.extras["targets"] == "frames" and "audio" not in gltf.asset.extras
    weights = accessor_values(gltf, gltf.animations[0].samplers[0].output).reshape(4, 3)
    np.testing.assert_array_equal(weights, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    back = load_blendshapes(path, names="native")  # regions from the sidecar
    want = flame_rig(torch.from_numpy(values))
    torch.testing.assert_close(back(torch.eye(3)), want, atol=1e-6, rtol=0)  # metres


# --------------------------------------------------------------------------- export_animation
def test_export_animation_writes_every_format_per_sample(rig, coeffs, tmp_path):
    out = export_animation(tmp_path / "out", rig, coeffs[:, :2], names=rig.coeff_names, fps=FPS,
                           audio=tone(2), formats=("npz", "obj", "ply", "csv", "glb"), stem="talk")
    folder = tmp_path / "out"
    assert list(out) == ["wav", "npz", "obj", "ply", "csv", "glb"]
    assert listing(folder) == sorted([
        "talk.wav", "talk.npz", "talk_s0.csv", "talk_s1.csv", "talk_s0.glb", "talk_s1.glb",
        "talk_s0.regions.json", "talk_s1.regions.json",
        *[f"talk_s{n}_{fmt}{sub}" for n in (0, 1) for fmt in ("obj", "ply")
          for sub in ("", f"/frame_00000.{fmt}", f"/frame_00001.{fmt}")]])
    assert [p.name for p in out["obj"]] == ["frame_00000.obj", "frame_00001.obj"] * 2
    assert all(p.is_file() for paths in out.values() for p in paths)
    gltf = pygltflib.GLTF2().load(str(folder / "talk_s1.glb"))
    assert gltf.asset.extras["audio"] == "talk.wav"  # one wav shared by the samples
    np.testing.assert_array_equal(read_livelink_csv(folder / "talk_s1.csv", fps=FPS).coeffs, coeffs[1, :2])
    single = export_animation(tmp_path / "one", rig, coeffs[:1, :2], names=rig.coeff_names, fps=FPS,
                              formats="csv,glb")
    assert [p.name for p in single["csv"] + single["glb"]] == ["animation.csv", "animation.glb"]


def test_export_animation_retargets_to_the_rig(avatar_glb, coeffs, tmp_path):
    native = quiet(load_blendshapes, avatar_glb, names="native")
    with pytest.warns(UserWarning, match="viseme_aa"):
        out = export_animation(tmp_path, native, coeffs, names=ARKIT_NAMES, fps=FPS, formats="npz")
    with np.load(out["npz"][0]) as npz:
        assert npz["names"].tolist() == list(native.coeff_names)
        np.testing.assert_array_equal(npz["coeffs"], retarget(coeffs, ARKIT_NAMES, native))


def test_bad_input_is_refused_before_anything_is_written(rig, flame_rig, coeffs, tmp_path):
    bad = coeffs.copy()
    bad[1, 2, 7] = np.nan
    folder = tmp_path / "out"
    with pytest.raises(ExportError, match=r"NaN or infinity \(1 values; first at sample 1, frame 2\)"):
        export_animation(folder, rig, bad, names=rig.coeff_names, fps=FPS, formats="npz,obj,glb")
    for write in (lambda: write_npz(folder / "a.npz", bad, fps=FPS, names=rig.coeff_names),
                  lambda: write_glb(folder / "a.glb", rig, bad[1], names=rig.coeff_names, fps=FPS),
                  lambda: write_arkit_csv(folder / "a.csv", bad[1], names=rig.coeff_names, fps=FPS),
                  lambda: write_mesh_sequence(folder / "seq", rig, bad[1])):
        with pytest.raises(ExportError, match="NaN"):
            write()
    with pytest.raises(ExportError, match="needs ARKit blendshape coefficients"):  # csv on FLAME, checked first
        export_animation(folder, flame_rig, np.zeros((1, 2, flame_rig.num_coeffs)), names=flame_rig.coeff_names,
                         fps=FPS, formats="npz,csv")
    with pytest.raises(ExportError, match="the rig takes 52"):
        write_glb(folder / "a.glb", rig, coeffs[0, :, :50], names=rig.coeff_names[:50], fps=FPS)
    assert not folder.exists()


def test_export_options_and_video_size_are_checked_before_any_work(rig, coeffs, tmp_path):
    assert check_export_options("npz, MP4", 256) == ("npz", "mp4")
    assert check_export_options(("npz", "csv"), 0) == ("npz", "csv")  # no video: the size is unused
    for bad in (0, -64, 8, 5000, 12.5, True, "512", None):
        with pytest.raises(ExportError, match=f"video size must be a whole number of pixels from 16 to 4096, "
                                              f"got {re.escape(repr(bad))}"):
            check_export_options("npz,mp4", bad)
    with pytest.raises(ExportError, match="unknown export format"):
        check_export_options(["npz", "fbx"], 512)
    folder = tmp_path / "out"
    with pytest.raises(ExportError, match="got 0"):  # refused before the wav or the npz is written
        export_animation(folder, rig, coeffs, names=rig.coeff_names, fps=FPS, audio=tone(T), formats="npz,mp4",
                         size=0)
    with pytest.raises(ExportError, match="got 0"):
        write_mp4(folder / "a.mp4", rig, coeffs[0], size=0)
    assert not folder.exists()


def test_glb_failing_midway_leaves_nothing(rig, coeffs, tmp_path, monkeypatch):
    from thunder3d.export import glb

    def broken(*args, **kwargs):
        raise MemoryError("out of memory while packing the buffer")

    monkeypatch.setattr(glb, "encode_glb", broken)
    with pytest.raises(MemoryError):
        write_glb(tmp_path / "a.glb", rig, coeffs[0], names=rig.coeff_names, fps=FPS, audio=tone(T))
    assert listing(tmp_path) == []


def test_unusable_folders_are_clear_errors(rig, coeffs, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="file.txt: it is a file, not a folder"):
        export_animation(blocker, rig, coeffs, names=rig.coeff_names, fps=FPS)
    with pytest.raises(ExportError, match="cannot write into .*file.txt/out"):
        export_animation(blocker / "out", rig, coeffs, names=rig.coeff_names, fps=FPS)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_a_clear_error(rig, coeffs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(ExportError, match="cannot write into .*locked"):
            export_animation(locked, rig, coeffs, names=rig.coeff_names, fps=FPS, formats="npz")
    finally:
        locked.chmod(0o700)
    assert listing(locked) == []


# --------------------------------------------------------------------------- MP4
@pytest.mark.slow
@needs_gl
def test_mp4_single_and_grid_with_audio(rig, tmp_path):
    from thunder3d.render import probe_media

    frames = 10
    values = np.zeros((2, frames, 52), dtype=np.float32)
    values[:, :, ARKIT_NAMES.index("jawOpen")] = np.linspace(0.0, 1.0, frames)
    values[1, :, ARKIT_NAMES.index("mouthSmileLeft")] = 0.8
    one = probe_media(write_mp4(tmp_path / "one.mp4", rig, values[0], audio=tone(frames), size=64))
    grid = probe_media(write_mp4(tmp_path / "grid.mp4", rig, torch.from_numpy(values), audio=tone(frames + 4),
                                 size=64))
    for info in (one, grid):
        streams = {s["type"]: s for s in info["streams"]}
        assert streams["video"]["codec"] == "h264" and streams["audio"]["codec"] == "aac"
        assert streams["video"]["frames"] == frames
        assert abs(streams["video"]["duration"] - frames / FPS) < 0.1
        assert abs(streams["audio"]["duration"] - streams["video"]["duration"]) < 0.1
    width = {name: next(s for s in info["streams"] if s["type"] == "video")["width"]
             for name, info in (("one", one), ("grid", grid))}
    assert width["grid"] == 2 * width["one"] == 128
    assert listing(tmp_path) == ["grid.mp4", "one.mp4"]
