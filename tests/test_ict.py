"""ICT-FaceKit: conversion, ARKit mapping, exactness against the upstream OBJs, regions, CLI.

Runs on the real upstream data (``../shared/assets/ICT-FaceKit.tar.gz``, extracted and converted
once per session by the fixtures in conftest.py); skipped when the archive is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thunder3d.errors import RigError
from thunder3d.rigs import ARKIT_NAMES, LIP_LANDMARKS, REQUIRED_REGIONS, load_rig
from thunder3d.rigs.arkit import arkit_name
from thunder3d.rigs.base import LinearBlendshapeRig
from thunder3d.rigs.ict import (
    ICT_NAMES, ICT_PARTS, KEPT_PARTS, arkit_to_ict, convert_ict, ict_to_arkit, load_ict,
)
from thunder3d.rigs.meshio import read_obj

TOL_CM = 1e-4
SPLIT = {"browInnerUp": ("browInnerUp_L", "browInnerUp_R"), "cheekPuff": ("cheekPuff_L", "cheekPuff_R")}


def model_dir(ict_dir):
    return ict_dir / "FaceXModel"


@pytest.fixture(scope="module")
def upstream(ict_dir, ict_rig):
    """Upstream neutral and expression vertices, cut to the kept vertices: name -> [V, 3]."""
    num = ict_rig.num_vertices
    meshes = {"neutral": read_obj(model_dir(ict_dir) / "generic_neutral_mesh.obj", faces=False).vertices}
    for name in ICT_NAMES:
        meshes[name] = read_obj(model_dir(ict_dir) / f"{name}.obj", faces=False).vertices
    return {k: v[:num] for k, v in meshes.items()}


def test_rig_basics(ict_rig):
    assert isinstance(ict_rig, LinearBlendshapeRig)
    assert ict_rig.name == "ict" and ict_rig.units == "cm"
    assert ict_rig.coeff_names == ARKIT_NAMES
    assert ict_rig.num_shape == 10
    assert ict_rig.num_vertices == ICT_PARTS[KEPT_PARTS[-1]][1] == 24591
    assert ict_rig.spec.startswith("ict:")
    faces = ict_rig.faces
    assert faces.shape[1] == 3 and int(faces.max()) < ict_rig.num_vertices
    colors = ict_rig.vertex_colors
    assert colors.shape == (ict_rig.num_vertices, 3) and 0.0 <= colors.min() and colors.max() <= 1.0


def test_ict_names_match_upstream(ict_dir):
    meta = json.loads((model_dir(ict_dir) / "vertex_indices.json").read_text())
    assert tuple(meta["expressions"]) == ICT_NAMES


def test_every_arkit_shape_reproduces_its_obj(ict_rig, upstream):
    """Coefficient 1 on shape k gives that expression OBJ (sum of the halves for split shapes)."""
    with torch.no_grad():
        verts = ict_rig(torch.eye(len(ARKIT_NAMES))).double().numpy()  # [52, V, 3]
    neutral = upstream["neutral"]
    assert np.abs(ict_rig(ict_rig.coeffs())[0].detach().numpy() - neutral).max() < TOL_CM
    for k, name in enumerate(ARKIT_NAMES):
        if name == "tongueOut":  # ICT has no tongue shape: zero delta
            expected = neutral
        elif name in SPLIT:
            left, right = SPLIT[name]
            expected = upstream[left] + upstream[right] - neutral
        else:
            (ict,) = [n for n in ICT_NAMES if arkit_name(n) == name]
            expected = upstream[ict]
        err = np.abs(verts[k] - expected).max()
        assert err < TOL_CM, f"{name}: max error {err:.2e} cm"


def test_name_mappings_round_trip(ict_rig):
    assert len(ICT_NAMES) == 53
    w = torch.rand(4, 7, 52, generator=torch.Generator().manual_seed(0))
    w[..., ARKIT_NAMES.index("tongueOut")] = 0.0
    ict = arkit_to_ict(w)
    assert ict.shape == (4, 7, 53)
    assert torch.equal(ict_to_arkit(ict), w)  # exact
    # a split shape's weight goes to both halves; the ICT layout makes the same mesh
    b = ARKIT_NAMES.index("browInnerUp")
    assert torch.equal(ict[..., ICT_NAMES.index("browInnerUp_L")], w[..., b])
    assert torch.equal(ict[..., ICT_NAMES.index("browInnerUp_R")], w[..., b])
    # back-mapping of split ICT weights: mean of the halves
    v = np.zeros(53)
    v[ICT_NAMES.index("cheekPuff_L")], v[ICT_NAMES.index("cheekPuff_R")] = 1.0, 0.5
    v[ICT_NAMES.index("jawOpen")] = 0.3
    back = ict_to_arkit(v)
    assert isinstance(back, np.ndarray) and back.shape == (52,)
    assert back[ARKIT_NAMES.index("cheekPuff")] == pytest.approx(0.75)
    assert back[ARKIT_NAMES.index("jawOpen")] == pytest.approx(0.3)
    with pytest.raises(RigError, match="53"):
        ict_to_arkit(np.zeros(52))


def test_ict_layout_matches_arkit_layout(ict_file, ict_rig):
    """neutral + ICT weights · ICT deltas (the file's own layout) equals the ARKit rig's output."""
    with np.load(ict_file, allow_pickle=False) as data:
        ict_deltas = torch.from_numpy(data["deltas"]).double()  # [53, V, 3]
    w = torch.rand(3, 52, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w[:, ARKIT_NAMES.index("tongueOut")] = 0.0
    via_ict = ict_rig.neutral.double() + torch.einsum("ti,ivc->tvc", arkit_to_ict(w), ict_deltas)
    with torch.no_grad():
        direct = ict_rig(w.float()).double()
    assert (via_ict - direct).abs().max() < TOL_CM


@pytest.mark.parametrize("k", [0, 9])
def test_identity_shape_reproduces_identity_obj(ict_dir, ict_rig, k):
    expected = read_obj(model_dir(ict_dir) / f"identity{k:03d}.obj", faces=False).vertices
    shape = torch.zeros(10)
    shape[k] = 1.0
    with torch.no_grad():
        verts = ict_rig(ict_rig.coeffs(), shape=shape)[0].numpy()
    assert np.abs(verts - expected[: ict_rig.num_vertices]).max() < TOL_CM


def test_fast_forward_matches_general_path(ict_rig):
    gen = torch.Generator().manual_seed(2)
    coeffs = torch.rand(2, 5, 52, generator=gen)
    shape = torch.randn(10, generator=gen)
    with torch.no_grad():
        fast = ict_rig(coeffs, shape=shape)
        general = LinearBlendshapeRig.forward(ict_rig, coeffs, shape=shape)
        per_sequence = ict_rig(coeffs, shape=shape.expand(2, 10))  # [B, S] takes the general path
    assert fast.shape == (2, 5, ict_rig.num_vertices, 3)
    assert (fast - general).abs().max() < 1e-4
    assert (fast - per_sequence).abs().max() < 1e-4
    with pytest.raises(RigError, match="52"):
        ict_rig(torch.zeros(3, 53))
    with pytest.raises(RigError, match="at most 10"):
        ict_rig(torch.zeros(3, 52), shape=torch.zeros(11))


def test_gradients_flow_to_coefficients_and_shape(ict_rig):
    coeffs = torch.full((4, 52), 0.2, requires_grad=True)
    shape = torch.zeros(10, requires_grad=True)
    verts = ict_rig(coeffs, shape=shape)
    mouth = verts[:, ict_rig.region("mouth")]
    (mouth ** 2).sum().backward()
    assert coeffs.grad is not None and coeffs.grad[:, ARKIT_NAMES.index("jawOpen")].abs().min() > 0
    assert shape.grad is not None and shape.grad.abs().max() > 0


def test_regions_and_landmarks(ict_rig):
    names = set(ict_rig.region_names)
    assert set(REQUIRED_REGIONS) <= names
    assert {"teeth", "eyeballs", "skin", "lower_face"} <= names
    regions = {n: set(ict_rig.region(n).tolist()) for n in names}
    assert all(0 < len(v) < ict_rig.num_vertices and max(v) < ict_rig.num_vertices for v in regions.values())
    assert regions["lips"] < regions["mouth"] < regions["face"]
    assert regions["upper_face"] | regions["lower_face"] == regions["face"]
    assert not regions["upper_face"] & regions["lower_face"]
    # the eyes are the eyeballs plus the eyelids, which are face skin
    assert regions["eyes"] == regions["eyeballs"] | regions["eyelids"]
    assert not regions["eyeballs"] & regions["eyelids"] and regions["eyelids"] < regions["face"]
    # mouth shapes move the lips more than the forehead; blinks move the eyes' region
    neutral = ict_rig.neutral
    for shape, near, far in (("jawOpen", "lips", "upper_face"), ("eyeBlinkLeft", "eyes", "mouth")):
        moved = (ict_rig(ict_rig.coeffs({shape: 1.0}))[0] - neutral).norm(dim=-1)
        assert moved[ict_rig.region(near)].max() > 0.5
        assert moved[ict_rig.region(far)].max() < moved[ict_rig.region(near)].max() / 3
    assert set(ict_rig.lip_landmarks) == set(LIP_LANDMARKS)
    lm = {k: neutral[v] for k, v in ict_rig.lip_landmarks.items()}
    assert abs(float(lm["upper_inner"][0])) < 1e-3 and abs(float(lm["lower_inner"][0])) < 1e-3
    assert lm["left_corner"][0] > 1.0 > -1.0 > lm["right_corner"][0]  # +x is the subject's left


def test_lip_aperture_grows_with_jaw_open(ict_rig):
    weights = torch.linspace(0.0, 1.0, 6)
    coeffs = torch.zeros(6, 52)
    coeffs[:, ARKIT_NAMES.index("jawOpen")] = weights
    with torch.no_grad():
        aperture = ict_rig.lip_aperture(ict_rig(coeffs))
    assert aperture[0] < 0.15  # cm: lips meet at rest
    assert aperture[-1] > 2.0
    assert torch.all(aperture[1:] > aperture[:-1])
    with torch.no_grad():  # ARKit's mouthClose (<= jawOpen) shuts the lips against an open jaw
        pair = ict_rig(ict_rig.coeffs({"jawOpen": 0.3, "mouthClose": 0.3}))
        jaw_only = ict_rig(ict_rig.coeffs({"jawOpen": 0.3}))
    assert ict_rig.lip_aperture(pair) < 0.25 * ict_rig.lip_aperture(jaw_only)


def test_cli_import_and_load_rig(ict_dir, tmp_path, capsys):
    from thunder3d.cli import main

    out = tmp_path / "converted" / "ict.npz"
    assert main(["rig", "import-ict", str(ict_dir / "FaceXModel"), "-o", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left nothing behind
    rig = load_rig(f"ict:{out}")
    assert rig.name == "ict" and rig.num_coeffs == 52 and rig.spec == f"ict:{out}"
    with np.load(out, allow_pickle=False) as data:
        assert int(data["format_version"]) == 1
        assert data["deltas"].dtype == np.float32 and data["faces"].dtype == np.int32
    assert out.stat().st_size < 30e6


def test_load_from_folder_through_cache(ict_dir, ict_rig, tmp_path, monkeypatch):
    """The upstream folder converts once into $THUNDER3D_CACHE, then the cache is reused."""
    monkeypatch.setenv("THUNDER3D_CACHE", str(tmp_path / "cache"))
    rig = load_rig(f"ict:{ict_dir}")
    assert rig.spec == f"ict:{ict_dir}"
    (cached,) = (tmp_path / "cache").glob("ict-*.npz")
    stamp = cached.stat().st_mtime_ns
    again = load_ict(ict_dir / "FaceXModel")  # same files, same key
    assert cached.stat().st_mtime_ns == stamp and len(list(cached.parent.iterdir())) == 1
    # the rig from the folder equals the one converted from the tarball
    assert torch.equal(rig.neutral, ict_rig.neutral) and torch.equal(again.deltas, ict_rig.deltas)
    assert torch.equal(rig.identity, ict_rig.identity)


def test_bad_inputs_give_clear_errors(tmp_path):
    (tmp_path / "empty" / "FaceXModel").mkdir(parents=True)
    for bad in (tmp_path / "empty", tmp_path / "empty" / "FaceXModel"):
        with pytest.raises(RigError, match="vertex_indices.json"):
            convert_ict(bad, tmp_path / "x.npz")
        with pytest.raises(RigError, match="vertex_indices.json"):
            load_rig(f"ict:{bad}", cache_dir=tmp_path / "cache")
    with pytest.raises(RigError, match="not found"):
        load_ict(tmp_path / "missing")
    old = tmp_path / "old.npz"
    np.savez(old, format_version=np.asarray(99))
    with pytest.raises(RigError, match="import-ict"):
        load_ict(old)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(RigError, match="cannot read"):
        load_ict(junk)
    import tarfile

    (tmp_path / "other.txt").write_text("not a face")
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "other.txt", arcname="other/other.txt")
    with pytest.raises(RigError, match="not an ICT-FaceKit archive"):
        convert_ict(tmp_path / "other.tar.gz", tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
