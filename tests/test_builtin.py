"""The built-in procedural head: sizes, shapes, lip numbers, regions, symmetry, autograd."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from thunder3d.rigs import ARKIT_NAMES, REQUIRED_REGIONS, load_rig
from thunder3d.rigs._head import build_head
from thunder3d.rigs.builtin import builtin_arrays, load_builtin


@pytest.fixture(scope="module")
def rig():
    return load_builtin()


def posed(rig, **values) -> torch.Tensor:
    """Vertices ``[V, 3]`` for the named coefficient values."""
    return rig(rig.coeffs(values))[0]


def test_build_is_deterministic():
    a, b = build_head(), build_head()
    for key in ("neutral", "faces", "colors", "deltas"):
        assert getattr(a, key).tobytes() == getattr(b, key).tobytes(), key
    assert a.lip_landmarks == b.lip_landmarks
    assert all(np.array_equal(a.regions[k], b.regions[k]) for k in a.regions)


def test_each_call_is_a_fresh_module(rig):
    other = load_rig("builtin")
    assert other is not rig and other.name == "builtin" and other.spec == "builtin"
    other.neutral.add_(1.0)  # a private copy: the cached arrays stay untouched
    assert not torch.equal(other.neutral, load_builtin().neutral)


def test_sizes_and_proportions(rig):
    assert rig.units == "cm" and rig.coeff_names == ARKIT_NAMES and rig.num_coeffs == 52
    assert 5_000 <= rig.num_vertices <= 16_000
    assert rig.deltas.shape == (52, rig.num_vertices, 3)
    face = rig.neutral[rig.region("face")]
    skin = rig.neutral[rig.region("skin")]
    width = skin[:, 0].max() - skin[:, 0].min()
    assert 14.0 < width < 17.0  # ears included
    chin = face[:, 1].min()
    assert 21.0 < skin[:, 1].max() - chin < 25.0  # chin to crown
    head = skin[skin[:, 1] > chin + 6.0]  # above the jaw: back of head to nose tip
    assert 19.0 < head[:, 2].max() - head[:, 2].min() < 23.0
    assert skin.mean(0).abs().max() < 5.0  # origin near the head centre


def test_deltas_finite_and_nonzero(rig):
    assert torch.isfinite(rig.deltas).all()
    moved = rig.deltas.abs().amax(dim=(1, 2))
    assert (moved > 0.1).all(), [n for n, m in zip(ARKIT_NAMES, moved) if m <= 0.1]


def test_regions_and_landmarks(rig):
    for name in REQUIRED_REGIONS + ("jaw", "lower_face", "teeth", "tongue", "eyeballs", "skin"):
        assert rig.region(name).numel() > 0, name
    assert 200 <= rig.region("mouth").numel() <= 1_500
    lips, mouth = set(rig.region("lips").tolist()), set(rig.region("mouth").tolist())
    assert lips <= mouth
    face = set(rig.region("face").tolist())
    assert face.isdisjoint(rig.region("eyeballs").tolist()) and face.isdisjoint(rig.region("teeth").tolist())
    assert set(rig.region("upper_face").tolist()) <= face
    for key in ("upper_inner", "lower_inner", "left_corner", "right_corner"):
        assert rig.lip_landmarks[key] in lips
    assert rig.neutral[rig.lip_landmarks["left_corner"], 0] > 0  # subject's left is +x


def test_lip_numbers(rig):
    rest = posed(rig)
    assert rig.lip_aperture(rest) < 0.05
    width = rig.lip_width(rest)
    assert 4.5 <= width <= 5.5
    assert 1.8 <= rig.lip_aperture(posed(rig, jawOpen=1)) <= 4.0
    assert rig.lip_aperture(posed(rig, jawOpen=1, mouthClose=1)) < 0.15
    assert rig.lip_width(posed(rig, mouthSmileLeft=1, mouthSmileRight=1)) > width + 0.3
    assert rig.lip_width(posed(rig, mouthPucker=1)) < 0.85 * width
    assert 0.5 <= rig.lip_aperture(posed(rig, mouthFunnel=1)) <= 1.5
    assert rig.lip_aperture(posed(rig, mouthLowerDownLeft=1, mouthLowerDownRight=1)) > 0.5


def _corner_moves(rig, **values) -> torch.Tensor:
    """Displacement ``[3]`` of the left mouth corner in a pose."""
    i = rig.lip_landmarks["left_corner"]
    return posed(rig, **values)[i] - rig.neutral[i]


def test_mouth_shapes_move_the_corners(rig):
    width = rig.lip_width(posed(rig))
    smile = _corner_moves(rig, mouthSmileLeft=1, mouthSmileRight=1)
    assert smile[1] >= 0.5 and smile[0] > 0.2 and smile[2] < 0.0  # up, out and back along the cheek
    assert rig.lip_aperture(posed(rig, mouthSmileLeft=1, mouthSmileRight=1)) < 0.05
    assert _corner_moves(rig, mouthFrownLeft=1, mouthFrownRight=1)[1] <= -0.4
    stretch = _corner_moves(rig, mouthStretchLeft=1, mouthStretchRight=1)
    assert stretch[0] >= 0.4 and stretch[1] < -0.1
    assert _corner_moves(rig, mouthSmileRight=1).norm() < 1e-4  # one-sided
    pucker = posed(rig, mouthPucker=1)
    assert 0.6 * width <= rig.lip_width(pucker) <= 0.8 * width
    assert rig.lip_aperture(pucker) < 0.05  # lips stay together
    for key in ("upper_inner", "lower_inner"):
        i = rig.lip_landmarks[key]
        assert pucker[i, 2] - rig.neutral[i, 2] >= 0.6
        assert posed(rig, mouthFunnel=1)[i, 2] - rig.neutral[i, 2] >= 0.5


def _visible_red(rig, verts: torch.Tensor, upper: bool) -> float:
    """Height of the middle of one lip's red that still faces forwards (near the rest mouth line)."""
    rest = rig.neutral
    line = rest[rig.lip_landmarks["upper_inner"]]
    lips = rig.region("lips")
    r = rest[lips]
    side = r[:, 1] > line[1] + 0.05 if upper else r[:, 1] < line[1] - 0.05
    red = lips[side & (r[:, 0].abs() < 1.0) & (r[:, 2] > line[2] - 0.3)]
    front = verts[red][verts[red, 2] > line[2] - 0.3]
    return float(front[:, 1].max() - front[:, 1].min()) if len(front) else 0.0


def test_lip_rolls_and_press_hide_the_red(rig):
    rest = posed(rig)
    low, up = _visible_red(rig, rest, False), _visible_red(rig, rest, True)
    assert low > 0.5 and up > 0.4
    assert _visible_red(rig, posed(rig, mouthRollLower=1), False) < 0.35 * low
    assert _visible_red(rig, posed(rig, mouthRollUpper=1), True) < 0.35 * up
    assert _visible_red(rig, posed(rig, mouthRollLower=1), True) > 0.9 * up  # the other lip stays
    pressed = posed(rig, mouthPressLeft=1, mouthPressRight=1)
    assert _visible_red(rig, pressed, False) < 0.7 * low and _visible_red(rig, pressed, True) < 0.7 * up
    assert rig.lip_aperture(pressed) < 0.05
    assert rig.lip_aperture(posed(rig, mouthUpperUpLeft=1, mouthUpperUpRight=1)) > 0.5


def test_cheek_and_brow_shapes(rig):
    rest = rig.neutral
    x, y = rest[:, 0], rest[:, 1]
    cheek = rig.region("face")
    cheek = cheek[(x[cheek].abs() > 3.0) & (x[cheek].abs() < 5.5) & (y[cheek] > -7.5) & (y[cheek] < -5.0)]
    radial = torch.stack([x[cheek], torch.zeros_like(x[cheek]), rest[cheek, 2]], 1)
    radial = radial / radial.norm(dim=1, keepdim=True)
    out = (rig.deltas[rig.coeff_index("cheekPuff"), cheek] * radial).sum(1)
    assert out.max() >= 0.8 and out.min() > -0.05  # the cheeks inflate, nothing caves in
    face = rig.region("upper_face")
    brow = face[(y[face] > 1.2) & (y[face] < 2.6) & (x[face].abs() > 0.8) & (x[face].abs() < 1.8)]
    assert rig.deltas[rig.coeff_index("browInnerUp"), brow, 1].max() >= 0.6
    assert rig.deltas[rig.coeff_index("browDownLeft"), brow, 1].min() <= -0.4
    outer = face[(y[face] > 1.0) & (y[face] < 2.4) & (x[face] > 3.5) & (x[face] < 4.5)]
    assert rig.deltas[rig.coeff_index("browOuterUpLeft"), outer, 1].max() >= 0.5


def test_blink_closes_the_lids(rig):
    lids = builtin_arrays().lid_landmarks
    for side in ("left", "right"):
        up, lo = lids[f"{side}_upper_lid"], lids[f"{side}_lower_lid"]
        assert (rig.neutral[up] - rig.neutral[lo]).norm() > 0.7  # open at rest
        verts = posed(rig, **{f"eyeBlink{side.title()}": 1})
        assert (verts[up] - verts[lo]).norm() < 0.05
        other = "right" if side == "left" else "left"
        assert (verts[lids[f"{other}_upper_lid"]] - verts[lids[f"{other}_lower_lid"]]).norm() > 0.7


def test_lower_teeth_and_tongue_follow_the_jaw(rig):
    d = rig.deltas[rig.coeff_index("jawOpen")]
    moving = d.norm(dim=-1)
    assert moving[rig.region("tongue")].min() > 0.5
    teeth = rig.region("teeth")
    assert (moving[teeth] > 0.5).any() and (moving[teeth] < 1e-6).any()  # lower row only
    out = rig.deltas[rig.coeff_index("tongueOut"), rig.region("tongue"), 2]
    assert out.max() > 1.5


def test_gradients_and_batches(rig):
    coeffs = torch.rand(2, 5, 52, requires_grad=True)
    verts = rig(coeffs)
    assert verts.shape == (2, 5, rig.num_vertices, 3)
    verts.sum().backward()
    assert (coeffs.grad.abs() > 0).all()
    moved = rig.to("cpu", torch.float64)
    assert moved.deltas.dtype == torch.float64
    assert moved(torch.zeros(1, 52, dtype=torch.float64)).dtype == torch.float64


def test_winding_outward_and_no_degenerate_triangles(rig):
    v, f = rig.neutral.double(), rig.faces
    skin = torch.zeros(rig.num_vertices, dtype=torch.bool)
    skin[rig.region("skin")] = True
    f_skin = f[skin[f].all(1)]
    a, b, c = v[f_skin[:, 0]], v[f_skin[:, 1]], v[f_skin[:, 2]]
    volume = (a * torch.cross(b, c, dim=1)).sum() / 6.0
    assert volume > 1_500.0  # cm^3, and positive: normals point out
    area = torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1).norm(dim=1)
    assert area.min() > 1e-6
    # every edge is shared by exactly two triangles, in opposite directions (closed and consistent)
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    keys = edges[:, 0] * rig.num_vertices + edges[:, 1]
    assert keys.unique().numel() == keys.numel()
    flipped = edges[:, 1] * rig.num_vertices + edges[:, 0]
    assert torch.isin(flipped, keys).all()


def _mirror_index(rig) -> np.ndarray:
    """Vertex ``i`` -> its mirror image across x = 0, matched on rest position and jaw motion.

    The jaw motion tells apart the coincident upper and lower lip vertices of the closed mouth.
    """
    jaw = rig.deltas[rig.coeff_index("jawOpen")].numpy()
    feat = np.concatenate([rig.neutral.numpy(), jaw], 1).astype(np.float64)
    mirrored = feat * np.array([-1, 1, 1, -1, 1, 1])
    dist, idx = cKDTree(feat).query(mirrored)
    assert dist.max() < 1e-3
    return idx


def test_left_right_symmetry(rig):
    idx = _mirror_index(rig)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    for left in [n for n in ARKIT_NAMES if n.endswith("Left")]:
        right = left[:-4] + "Right"
        dl = rig.deltas[rig.coeff_index(left)]
        dr = rig.deltas[rig.coeff_index(right)]
        assert torch.allclose(dl[idx] * flip, dr, atol=1e-3), left


def test_the_generated_head_is_cached_on_disk_exactly(tmp_path, monkeypatch):
    import thunder3d.rigs.builtin as builtin
    from thunder3d.rigs._head import build_head

    monkeypatch.setenv("THUNDER3D_CACHE", str(tmp_path))
    builtin.builtin_arrays.cache_clear()
    try:
        first = builtin.builtin_arrays()  # generated, then written
        (cached,) = tmp_path.glob("builtin-*.npz")
        builtin.builtin_arrays.cache_clear()
        again = builtin.builtin_arrays()  # read back
        fresh = build_head()
        for head in (first, again):
            for name in ("neutral", "faces", "colors", "deltas"):
                assert np.array_equal(getattr(head, name), getattr(fresh, name)), name
            assert head.lip_landmarks == fresh.lip_landmarks and head.lid_landmarks == fresh.lid_landmarks
            assert all(np.array_equal(head.regions[k], v) for k, v in fresh.regions.items())
        cached.write_bytes(b"not an npz")  # a damaged cache is generated again, not trusted
        builtin.builtin_arrays.cache_clear()
        assert np.array_equal(builtin.builtin_arrays().deltas, fresh.deltas)
    finally:
        builtin.builtin_arrays.cache_clear()
