"""FLAME: skinning math against hand computations, pickle/npz loading, errors, regions.

The FLAME model itself needs a registration, so each test builds a small synthetic model with the
same keys: a curved face grid (1 cm spacing) with a mouth opening, jaw-skinned lower face, two
octahedron eyeballs skinned to the eye joints and a patch at the back of the head.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import scipy.sparse
import torch

from test_safe_pickle import chumpy_value, fake_chumpy_class, py2_pickle_bytes
from thunder3d.errors import RigError, UnsafePickleError
from thunder3d.rigs import load_rig
from thunder3d.rigs.flame import FlameRig, load_flame
from thunder3d.rigs.lbs import batch_rodrigues

NX, NY = 15, 17  # face grid columns (x from -7 cm) and rows (y from -9 cm), 1 cm apart
LOWER_LIP_ROW = 4  # the mouth opening lies between rows 4 and 5, columns 4..10 (x = -3..3 cm)
NUM_ID = 100  # identity components in the synthetic shapedirs (followed by 100 expression ones)
NECK, JAW, LEYE, REYE = 1, 2, 3, 4


def grid_index(row: int, col: int) -> int:
    return row * NX + col


def _grid_faces(rows: int, cols: int, offset: int, skip=lambda r, c: False) -> list[tuple[int, int, int]]:
    faces = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            if not skip(r, c):
                a, b, d = offset + r * cols + c, offset + r * cols + c + 1, offset + (r + 1) * cols + c
                faces += [(a, b, d + 1), (a, d + 1, d)]
    return faces


def _octahedron(centre, radius: float, offset: int):
    verts = np.asarray(centre) + radius * np.concatenate([np.eye(3), -np.eye(3)])
    faces = [(offset + a, offset + b, offset + c)
             for a in (0, 3) for b in (1, 4) for c in (2, 5)]  # one triangle per octant
    return verts, faces


def synthetic_flame(seed: int = 0, posedirs_scale: float = 1e-3) -> dict[str, np.ndarray]:
    """FLAME-format arrays of a ~280-vertex face (npz layout: dense J_regressor, posedirs [V*3, 36])."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.linspace(-0.07, 0.07, NX), np.linspace(-0.09, 0.07, NY))
    face = np.stack([gx, gy, -3.0 * gx**2], axis=-1).reshape(-1, 3)
    face[grid_index(5, 4), 0] += 0.004  # upper-lip ends pulled in: each corner is one vertex
    face[grid_index(5, 10), 0] -= 0.004
    faces = _grid_faces(NY, NX, 0, skip=lambda r, c: r == LOWER_LIP_ROW and 4 <= c < 10)
    leye, leye_faces = _octahedron((0.03, 0.03, -0.012), 0.008, len(face))
    reye, reye_faces = _octahedron((-0.03, 0.03, -0.012), 0.008, len(face) + 6)
    bx, by = np.meshgrid([-0.02, 0.0, 0.02], [0.0, 0.02, 0.04])
    back = np.stack([bx, by, np.full_like(bx, -0.12)], axis=-1).reshape(-1, 3)
    back_faces = _grid_faces(3, 3, len(face) + 12)
    v = np.concatenate([face, leye, reye, back])
    V = len(v)

    weights = np.zeros((V, 5))
    rows = np.arange(len(face)) // NX
    cheek = np.abs(face[:, 0]) > 0.05
    weights[: len(face), NECK] = 1.0
    weights[: len(face)][(rows <= LOWER_LIP_ROW) & ~cheek] = (0, 0, 1, 0, 0)
    weights[: len(face)][(rows <= LOWER_LIP_ROW) & cheek] = (0, 0.4, 0.6, 0, 0)  # partly on the jaw
    weights[: len(face)][(rows == LOWER_LIP_ROW + 1) & cheek] = (0, 0.7, 0.3, 0, 0)
    weights[len(face) : len(face) + 6, LEYE] = 1.0
    weights[len(face) + 6 : len(face) + 12, REYE] = 1.0
    weights[len(face) + 12 :, NECK] = 1.0

    J_regressor = np.zeros((5, V))
    J_regressor[0, [grid_index(0, c) for c in range(NX)]] = 1.0 / NX
    J_regressor[NECK, [grid_index(2, 0), grid_index(2, NX - 1)]] = 0.5
    J_regressor[JAW, [grid_index(5, 0), grid_index(5, NX - 1)]] = 0.5  # behind the mouth
    J_regressor[LEYE, len(face) : len(face) + 6] = 1.0 / 6
    J_regressor[REYE, len(face) + 6 : len(face) + 12] = 1.0 / 6
    return {
        "v_template": v,
        "f": np.asarray(faces + leye_faces + reye_faces + back_faces, dtype=np.uint32),
        "shapedirs": rng.normal(0.0, 1e-3, (V, 3, NUM_ID + 100)),
        "posedirs": rng.normal(0.0, posedirs_scale, (V * 3, 36)),
        "J_regressor": J_regressor,
        "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32),
        "weights": weights,
    }


def write_npz(path, arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def write_pickle(path, arrays) -> str:
    """``generic_model.pkl`` as FLAME ships it: chumpy values, csc J_regressor, posedirs [V, 3, 36]."""
    V = len(arrays["v_template"])
    derived = fake_chumpy_class("chumpy.ch_ops", "dot")()  # FLAME's 'J' is an unevaluated expression
    derived.a = chumpy_value(arrays["J_regressor"])
    model = {
        "v_template": chumpy_value(arrays["v_template"]),
        "f": arrays["f"],
        "shapedirs": chumpy_value(arrays["shapedirs"]),
        "posedirs": chumpy_value(arrays["posedirs"].reshape(V, 3, 36)),
        "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
        "kintree_table": arrays["kintree_table"],
        "weights": chumpy_value(arrays["weights"]),
        "J": derived,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    with open(path, "wb") as fh:
        fh.write(py2_pickle_bytes(model))
    return str(path)


@pytest.fixture
def arrays():
    return synthetic_flame()


@pytest.fixture
def npz_path(tmp_path, arrays):
    return write_npz(tmp_path / "flame.npz", arrays)


def rot_x(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rodrigues(rot_vec) -> np.ndarray:
    """Rotation matrix of an axis-angle vector: I + sin(t) K + (1 - cos t) K², K for the unit axis."""
    theta = np.linalg.norm(rot_vec)
    x, y, z = np.asarray(rot_vec) / theta
    K = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(theta) * K + (1.0 - np.cos(theta)) * K @ K


def skin_about(v, weight, R, centre):
    """Vertices ``v`` with a fraction ``weight`` rotated by ``R`` about ``centre`` (linear blend)."""
    rotated = (v - centre) @ R.T + centre
    return weight[:, None] * rotated + (1.0 - weight[:, None]) * v


def run(rig: FlameRig, values: dict, **kwargs) -> np.ndarray:
    return rig(rig.coeffs(values), **kwargs)[0].double().numpy()


# --------------------------------------------------------------------------- rotations
def test_batch_rodrigues_matches_the_formula_and_is_smooth_at_zero():
    vecs = np.random.default_rng(1).normal(size=(5, 3))
    got = batch_rodrigues(torch.tensor(vecs))
    np.testing.assert_allclose(got.numpy(), np.stack([rodrigues(r) for r in vecs]), atol=1e-12)
    np.testing.assert_allclose(batch_rodrigues(torch.tensor([[1e-5, 0.0, 0.0]], dtype=torch.float64))[0],
                               rot_x(1e-5), atol=1e-15)
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda r: batch_rodrigues(r)[0], zero)  # [3, 3, 1, 3]
    assert torch.isfinite(jac).all()
    # dR/dx at zero is the cross-product matrix of the x axis
    np.testing.assert_allclose(jac[..., 0, 0].numpy(), [[0, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)


# --------------------------------------------------------------------------- blendshapes
def test_zero_coefficients_give_the_template(npz_path, arrays):
    rig = load_flame(npz_path)
    out = rig(torch.zeros(4, rig.num_coeffs))
    assert out.shape == (4, rig.num_vertices, 3)
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(arrays["v_template"], out.shape), atol=1e-7)


def test_expression_and_identity_add_their_shapedirs_columns(npz_path, arrays):
    rig = load_flame(npz_path, num_expression=100)
    dirs, v0 = arrays["shapedirs"], arrays["v_template"]
    got = run(rig, {"exp007": 0.7, "exp099": -1.5})
    expected = 0.7 * dirs[:, :, NUM_ID + 7] - 1.5 * dirs[:, :, NUM_ID + 99]
    np.testing.assert_allclose(got - v0, expected, atol=1e-6)
    shape = torch.zeros(4)
    shape[3] = 2.0
    frames = rig(rig.coeffs(frames=3), shape=shape)  # one identity for all 3 frames
    expected = np.broadcast_to(2.0 * dirs[:, :, 3], frames.shape)
    np.testing.assert_allclose(frames.numpy() - v0, expected, atol=1e-6)


# --------------------------------------------------------------------------- skinning
def test_jaw_rotation_matches_hand_computation(tmp_path):
    arrays = synthetic_flame(posedirs_scale=0.0)
    rig = load_flame(write_npz(tmp_path / "f.npz", arrays))
    v, w = arrays["v_template"], arrays["weights"][:, JAW]
    jaw = arrays["J_regressor"][JAW] @ v
    theta = 0.3
    np.testing.assert_allclose(run(rig, {"jaw_rx": theta}), skin_about(v, w, rot_x(theta), jaw), atol=1e-5)
    partial = np.flatnonzero((w > 0) & (w < 1))
    assert partial.size > 0  # the cheek vertices blend linearly, tested above
    axis_angle = np.array([0.2, -0.1, 0.05])
    got = run(rig, dict(zip(("jaw_rx", "jaw_ry", "jaw_rz"), axis_angle)))
    np.testing.assert_allclose(got, skin_about(v, w, rodrigues(axis_angle), jaw), atol=1e-5)


def test_neck_rotation_carries_the_jaw_along(tmp_path):
    arrays = synthetic_flame(posedirs_scale=0.0)
    rig = load_flame(write_npz(tmp_path / "f.npz", arrays), pose=("jaw", "neck"))
    v, weights = arrays["v_template"], arrays["weights"]
    joints = arrays["J_regressor"] @ v
    Rn, Rj = rot_x(-0.2), rot_x(0.3)
    on_jaw = (v - joints[JAW]) @ Rj.T + joints[JAW]  # jaw first, then the neck moves everything
    moved = weights[:, JAW, None] * on_jaw + (1 - weights[:, JAW, None]) * v
    head = weights[:, [NECK, JAW, LEYE, REYE]].sum(1) > 0
    expected = np.where(head[:, None], (moved - joints[NECK]) @ Rn.T + joints[NECK], v)
    np.testing.assert_allclose(run(rig, {"jaw_rx": 0.3, "neck_rx": -0.2}), expected, atol=1e-5)


def test_pose_correctives_use_rotation_minus_identity(tmp_path, arrays):
    rig = load_flame(write_npz(tmp_path / "f.npz", arrays))
    v, w = arrays["v_template"], arrays["weights"][:, JAW]
    jaw = arrays["J_regressor"][JAW] @ v
    R = rot_x(0.4)
    feature = np.zeros(36)
    feature[9:18] = (R - np.eye(3)).ravel()  # joints 1..4 in order; the jaw is the second
    offsets = (arrays["posedirs"] @ feature).reshape(-1, 3)
    assert np.abs(offsets).max() > 1e-4
    np.testing.assert_allclose(run(rig, {"jaw_rx": 0.4}), skin_about(v + offsets, w, R, jaw), atol=1e-5)


def test_gradients_reach_every_coefficient_batched(npz_path):
    rig = load_flame(npz_path, pose=("jaw", "global", "neck", "eyes"))
    assert rig.coeff_names[50:] == (
        "jaw_rx", "jaw_ry", "jaw_rz", "global_rx", "global_ry", "global_rz", "neck_rx", "neck_ry",
        "neck_rz", "leye_rx", "leye_ry", "leye_rz", "reye_rx", "reye_ry", "reye_rz")
    gen = torch.Generator().manual_seed(0)
    coeffs = (0.1 * torch.randn(2, 3, rig.num_coeffs, generator=gen)).requires_grad_()
    shape = torch.randn(2, 10, generator=gen).requires_grad_()
    out = rig(coeffs, shape=shape)
    assert out.shape == (2, 3, rig.num_vertices, 3)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    assert (coeffs.grad != 0).all() and torch.isfinite(coeffs.grad).all() and (shape.grad != 0).all()
    torch.testing.assert_close(out[1], rig(coeffs[1], shape=shape[1]))  # batching changes nothing
    zero = torch.zeros(1, rig.num_coeffs, requires_grad=True)
    rig(zero).pow(2).sum().backward()  # Rodrigues at zero angle
    assert torch.isfinite(zero.grad).all()


# --------------------------------------------------------------------------- files
def test_pickle_and_npz_give_identical_vertices(tmp_path, arrays, npz_path):
    pkl = write_pickle(tmp_path / "generic_model.pkl", arrays)
    coeffs = 0.3 * torch.randn(5, 53, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(load_rig(f"flame:{pkl}")(coeffs), load_flame(npz_path)(coeffs), rtol=0, atol=0)


def test_load_rig_spec_and_options(tmp_path, arrays):
    pkl = write_pickle(tmp_path / "generic_model.pkl", arrays)
    rig = load_rig(f"flame:{pkl}", num_expression=100, pose="jaw,eyes")
    summary = (rig.name, rig.spec, rig.units, rig.num_coeffs, rig.num_shape)
    assert summary == ("flame", f"flame:{pkl}", "m", 109, 100)
    assert rig.coeff_names[:2] == ("exp000", "exp001") and rig.coeff_names[100] == "jaw_rx"
    assert rig.describe()["coefficients"] == 109


def test_malicious_model_pickle_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_rig(f"flame:{path}")
    assert not marker.exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"num_expression": 64}, r"one of \(50, 100\).*provides 100 expression"),
    ({"num_shape": 101}, r"num_shape must be in 0\.\.100"),
    ({"pose": ("jaw", "tongue")}, r"unknown FLAME pose group.*valid: \['global', 'neck', 'jaw', 'eyes'\]"),
])
def test_bad_options_are_explained(npz_path, kwargs, message):
    with pytest.raises(RigError, match=message):
        load_flame(npz_path, **kwargs)


def test_broken_files_are_rig_errors(tmp_path, arrays):
    blob = open(write_pickle(tmp_path / "full.pkl", arrays), "rb").read()
    (tmp_path / "cut.pkl").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(RigError, match="corrupt or truncated"):
        load_flame(tmp_path / "cut.pkl")
    with pytest.raises(RigError, match=r"missing keys \['weights'\]"):
        load_flame(write_npz(tmp_path / "m.npz", {k: a for k, a in arrays.items() if k != "weights"}))
    with pytest.raises(RigError, match="'shapedirs' must be"):
        load_flame(write_npz(tmp_path / "s.npz", {**arrays, "shapedirs": arrays["shapedirs"][:10]}))
    with pytest.raises(RigError, match="cannot read FLAME npz"):
        load_flame(write_npz(tmp_path / "o.npz", {**arrays, "f": np.array([None, 1], dtype=object)}))
    with pytest.raises(RigError, match="not found"):
        load_flame(tmp_path / "absent.pkl")
    rig = load_flame(write_npz(tmp_path / "ok.npz", arrays))
    with pytest.raises(RigError, match="takes 53 coefficients"):
        rig(torch.zeros(2, 52))


# --------------------------------------------------------------------------- regions
def test_regions_and_lip_landmarks_are_derived(npz_path, arrays):
    rig = load_flame(npz_path)
    assert rig.lip_landmarks == {"upper_inner": grid_index(5, 7), "lower_inner": grid_index(4, 7),
                                 "left_corner": grid_index(4, 10), "right_corner": grid_index(4, 4)}
    region = {name: set(rig.region(name).tolist()) for name in rig.region_names}
    num_face = NX * NY
    assert region["eyes"] == set(range(num_face, num_face + 12))
    assert region["lips"] < region["mouth"] < region["face"]
    assert region["face"] == set(range(num_face))  # not the eyeballs, not the back of the head
    y = arrays["v_template"][:, 1]
    assert region["upper_face"] and all(y[i] >= -0.0075 for i in region["upper_face"])
    assert all(abs(y[i] + 0.045) < 0.02 for i in region["lips"])
    opened = rig(rig.coeffs({"jaw_rx": 0.2}))
    assert rig.lip_aperture(opened) > rig.lip_aperture(rig.neutral) + 0.002
    torch.testing.assert_close(rig.lip_width(rig.neutral), torch.tensor(0.06))


def test_flame_masks_file_replaces_derived_regions(tmp_path, npz_path):
    masks = {"lips": np.array([grid_index(4, 7), grid_index(5, 7)]), "face": np.arange(NX * NY),
             "forehead": np.array([grid_index(16, 7)]), "eye_region": np.array([grid_index(12, 4)]),
             "left_eyeball": np.arange(NX * NY, NX * NY + 6),
             "right_eyeball": np.arange(NX * NY + 6, NX * NY + 12),
             "nose": np.array([grid_index(8, 7)])}
    path = tmp_path / "FLAME_masks.pkl"
    path.write_bytes(py2_pickle_bytes(masks))
    rig = load_flame(npz_path, masks=path)
    assert rig.region("lips").tolist() == sorted(masks["lips"].tolist())
    assert rig.region("upper_face").tolist() == sorted([grid_index(12, 4), grid_index(16, 7)])
    assert rig.region("eyes").tolist() == list(range(NX * NY, NX * NY + 12))
    assert rig.region("nose").tolist() == [grid_index(8, 7)]
    assert set(rig.region("lips").tolist()) <= set(rig.region("mouth").tolist())
