"""The shared rig interface, spec parsing, ARKit naming and atomic writes."""

import numpy as np
import pytest
import torch

from thunder3d.errors import RigError
from thunder3d.rigs import ARKIT_NAMES, LinearBlendshapeRig, arkit_name, load_rig
from thunder3d.utils.io import atomic_path, atomic_write_text


def toy_rig(**overrides) -> LinearBlendshapeRig:
    """Four vertices: two lip points, two corners; shapes open the mouth and widen it."""
    neutral = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    deltas = torch.zeros(2, 4, 3)
    deltas[0, 1, 1] = -1.5  # "open": lower lip point down
    deltas[1, 2, 0] = -0.5  # "wide": corners out
    deltas[1, 3, 0] = 0.5
    kwargs = dict(
        name="toy", spec="toy", coeff_names=["open", "wide"], neutral=neutral, deltas=deltas,
        faces=torch.tensor([[0, 2, 3], [1, 3, 2]]),
        regions={r: [0, 1, 2, 3] for r in ("lips", "mouth", "face", "upper_face", "eyes")},
        lip_landmarks={"upper_inner": 0, "lower_inner": 1, "left_corner": 3, "right_corner": 2},
        units="cm",
    )
    kwargs.update(overrides)
    return LinearBlendshapeRig(**kwargs)


def test_linear_rig_math_batched_and_differentiable():
    rig = toy_rig()
    coeffs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]] * 2, requires_grad=True)  # [B=2, T=3, C]
    verts = rig(coeffs)
    assert verts.shape == (2, 3, 4, 3)
    assert torch.allclose(rig.lip_aperture(verts)[0], torch.tensor([1.5, 0.0, 0.75]))
    assert torch.allclose(rig.lip_width(verts)[0], torch.tensor([4.0, 5.0, 4.5]))
    (verts * torch.randn(verts.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert coeffs.grad is not None and coeffs.grad.abs().min() > 0


def test_coeffs_by_name_and_errors():
    rig = toy_rig()
    c = rig.coeffs({"wide": 0.25}, frames=3)
    assert c.shape == (3, 2) and c[:, 1].eq(0.25).all()
    with pytest.raises(RigError, match="valid: \\['open', 'wide'\\]"):
        rig.coeffs({"nope": 1})
    with pytest.raises(RigError, match="takes 2 coefficients"):
        rig(torch.zeros(5, 3))
    with pytest.raises(RigError, match="no region 'tongue'"):
        rig.region("tongue")


def test_rig_validation():
    with pytest.raises(RigError, match="required regions"):
        toy_rig(regions={"lips": [0]})
    with pytest.raises(RigError, match="lip landmarks"):
        toy_rig(lip_landmarks={"upper_inner": 0})
    with pytest.raises(RigError, match="out of range"):
        toy_rig(faces=torch.tensor([[0, 1, 9]]))
    with pytest.raises(RigError, match="units"):
        toy_rig(units="inch")


def test_rig_moves_with_device_and_dtype():
    rig = toy_rig().to(torch.float64)
    assert rig.neutral.dtype == torch.float64 and rig.faces.dtype == torch.long
    assert rig(torch.zeros(1, 2, dtype=torch.float64)).dtype == torch.float64
    assert rig.describe()["vertices"] == 4 and rig.mm_per_unit == 10.0


@pytest.mark.parametrize("spec, match", [
    ("", "non-empty"), ("nerf:x", "unknown rig kind 'nerf'"), ("ict", "needs a path"),
    ("flame:", "needs a path"), ("builtin:foo", "takes no path"),
])
def test_load_rig_spec_errors(spec, match):
    with pytest.raises(RigError, match=match):
        load_rig(spec)


def test_load_rig_passes_rig_through():
    rig = toy_rig()
    assert load_rig(rig) is rig


def test_arkit_names():
    assert len(ARKIT_NAMES) == 52
    assert ARKIT_NAMES[0] == "eyeBlinkLeft" and ARKIT_NAMES[-1] == "tongueOut"
    assert arkit_name("JawOpen") == "jawOpen"
    assert arkit_name("mouthSmile_L") == "mouthSmileLeft"
    assert arkit_name("eyeBlink.R") == "eyeBlinkRight"
    assert arkit_name("browInnerUp_R") == "browInnerUp"
    assert arkit_name("cheekPuff_L") == "cheekPuff"
    assert arkit_name("MOUTHCLOSE") == "mouthClose"
    assert arkit_name("identity003") is None


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind
    with atomic_path(tmp_path / "sub" / "a.npy") as tmp:
        assert tmp.suffix == ".npy"
        np.save(tmp, np.arange(3))
    assert np.load(tmp_path / "sub" / "a.npy").tolist() == [0, 1, 2]


def test_rig_config_rebuilds_with_options():
    rig = load_rig("builtin")
    assert rig.config() == {"spec": "builtin", "options": {}}
    again = load_rig(rig.config())
    assert torch.equal(again.neutral, rig.neutral)
    with pytest.raises(RigError, match="'spec' key"):
        load_rig({"options": {}})


def test_atomic_files_get_normal_permissions(tmp_path):
    import os
    import stat

    atomic_write_text(tmp_path / "a.txt", "x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
