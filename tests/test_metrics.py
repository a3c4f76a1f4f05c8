"""Talking-head metrics against values computed by hand."""

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from thunder3d.audio.features import log_mel
from thunder3d.eval.metrics import (
    aperture_indices,
    aperture_of,
    concordance,
    dtw_distance,
    fdd,
    lip_ccc,
    lip_dtw,
    lip_pcc,
    lower_face_region,
    lve,
    m2s_consistency,
    pearson,
    rig_vertices,
    sample_diversity,
    sdiv_lower,
    sdiv_upper,
)
from thunder3d.models.m2s import M2S, M2SConfig, rig_features
from thunder3d.rigs import load_rig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rig():
    return load_rig("builtin")


def test_lve_is_the_mean_of_per_frame_maximal_lip_errors():
    gt = np.zeros((2, 4, 3))
    pred = gt.copy()
    # frame 0: lip errors 3-4-5 triangle (5) and 1 -> max 5; a non-lip vertex off by 100 is ignored
    pred[0, 0] = [3.0, 4.0, 0.0]
    pred[0, 1] = [0.0, 0.0, 1.0]
    pred[0, 3] = [100.0, 0.0, 0.0]
    # frame 1: lip errors 2 and 0 -> max 2
    pred[1, 2] = [0.0, 2.0, 0.0]
    lips = [0, 1, 2]
    assert lve(pred, gt, lips) == pytest.approx((5 + 2) / 2)
    assert lve(pred, gt, lips, mm_per_unit=10.0) == pytest.approx(35.0)  # cm -> mm
    assert lve(torch.tensor(pred), torch.tensor(gt), torch.tensor(lips)) == pytest.approx(3.5)
    assert lve(pred[:, lips], gt[:, lips]) == pytest.approx(3.5)  # already the lips only
    with pytest.raises(ValueError, match="differ"):
        lve(pred, gt[:1], lips)


def test_lip_pcc_is_pearson_of_the_apertures():
    gt = [1.0, 2.0, 3.0, 4.0]
    assert lip_pcc([2.0, 4.0, 6.0, 8.0], gt) == pytest.approx(1.0)  # scale and units cancel
    assert lip_pcc([4.0, 3.0, 2.0, 1.0], gt) == pytest.approx(-1.0)
    # x = (1, 3, 2, 4) vs (1, 2, 3, 4): deviations (-1.5, .5, -.5, 1.5) and (-1.5, -.5, .5, 1.5)
    # sum of products 2.25 - .25 - .25 + 2.25 = 4; both sums of squares 5 -> r = 0.8
    assert lip_pcc([1.0, 3.0, 2.0, 4.0], gt) == pytest.approx(0.8)
    assert math.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # a closed mouth has no correlation


def test_sdiv_is_the_rms_distance_to_the_sample_mean():
    samples = np.zeros((2, 2, 3, 3))  # N=2 samples, T=2 frames, V=3 vertices
    samples[1, 0, 0] = [2.0, 0.0, 0.0]  # frame 0, vertex 0: samples 2 apart -> std 1
    samples[1, 1, 1] = [0.0, 0.0, 4.0]  # frame 1, vertex 1: 4 apart -> std 2
    samples[1, :, 2] = [0.0, 50.0, 0.0]  # vertex 2 (not upper face): ignored
    upper = [0, 1]
    # four (frame, vertex) values: 1, 0, 0, 2 -> mean 0.75
    assert sdiv_upper(samples, upper) == pytest.approx(0.75)
    assert sdiv_upper(samples, upper, mm_per_unit=10.0) == pytest.approx(7.5)
    # three samples at 0, 0, 3 along x: mean 1, squared distances 1, 1, 4 -> sqrt(2)
    three = np.zeros((3, 1, 1, 3))
    three[2, 0, 0, 0] = 3.0
    assert sample_diversity(three) == pytest.approx(math.sqrt(2.0))
    assert sample_diversity(np.repeat(samples[:1], 4, axis=0)) == 0.0  # identical samples
    with pytest.raises(ValueError, match="at least 2"):
        sample_diversity(samples[:1])


def test_rig_vertices_select_without_building_the_head(rig):
    coeffs = torch.rand(2, 5, rig.num_coeffs) * 0.5
    lips = rig.region("lips")
    torch.testing.assert_close(rig_vertices(rig, coeffs, lips), rig(coeffs)[..., lips, :], atol=1e-5, rtol=1e-5)
    pair = rig_vertices(rig, coeffs, aperture_indices(rig))
    torch.testing.assert_close(aperture_of(pair), rig.lip_aperture(rig(coeffs)), atol=1e-5, rtol=1e-5)


def test_lip_ccc_is_lins_concordance():
    x = [1.0, 2.0, 3.0]
    # y = x + 1: means 2 and 3, both variances 2/3, covariance 2/3 -> (4/3) / (2/3 + 2/3 + 1) = 4/7
    assert lip_ccc([2.0, 3.0, 4.0], x) == pytest.approx(4 / 7)
    assert lip_pcc([2.0, 3.0, 4.0], x) == pytest.approx(1.0)  # Pearson does not see the offset
    # y = 2x: mean 4, variance 8/3, covariance 4/3 -> (8/3) / (2/3 + 8/3 + 4) = 4/11
    assert concordance([2.0, 4.0, 6.0], x) == pytest.approx(4 / 11)
    assert concordance(x, x) == pytest.approx(1.0)
    assert concordance([2.0, 2.0, 2.0], x) == 0.0  # a constant: no covariance
    assert math.isnan(concordance([2.0, 2.0], [2.0, 2.0]))  # 0 / 0


def test_dtw_aligns_monotonically_and_divides_by_the_longer_length():
    # (0, 1, 2) against (0, 0, 1, 2): the repeated 0 is absorbed by a horizontal step -> 0
    assert dtw_distance([0.0, 1.0, 2.0], [0.0, 0.0, 1.0, 2.0]) == 0.0
    # (0, 3) against (1, 2, 3): costs |0-1| = 1, then |3-2| = 1, then |3-3| = 0 (holding 3):
    # D = 2 over max(2, 3) = 3 frames
    assert lip_dtw([0.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(2 / 3)
    # against a constant every path pays each row at least once: the diagonal 1 + 1 + 3 = 5, / 3
    assert dtw_distance([0.0, 2.0, 4.0], [1.0, 1.0, 1.0]) == pytest.approx(5 / 3)
    # a pulse one frame late costs nothing (a plain frame-by-frame error would be 2/5)
    assert dtw_distance([0, 0, 1, 0, 0], [0, 1, 0, 0, 0]) == 0.0


def _dtw_by_definition(a, b):
    D = np.full((len(a) + 1, len(b) + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            D[i, j] = abs(a[i - 1] - b[j - 1]) + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    return D[-1, -1] / max(len(a), len(b))


def test_dtw_matches_the_double_loop_and_is_fast():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=rng.integers(1, 10)), rng.normal(size=rng.integers(1, 10))
        assert dtw_distance(a, b) == pytest.approx(_dtw_by_definition(a, b), abs=1e-12)
        if len(a) == len(b):
            assert dtw_distance(a, b) <= np.abs(a - b).mean() + 1e-12  # the diagonal is one path
    a, b = rng.normal(size=2000) * 10, rng.normal(size=2000) * 10
    start = time.perf_counter()
    dtw_distance(a, b)
    assert time.perf_counter() - start < 1.0


def test_fdd_compares_the_temporal_spread_of_upper_face_displacements():
    template = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    gt = np.repeat(template[None], 3, axis=0)  # [T=3, V=3, 3]
    pred = gt.copy()
    # vertex 0: ground-truth displacement norms 0, 1, 2 -> std sqrt(2/3);
    # predicted 0, 0, 3 (a 3D offset of norm 3) -> mean 1, deviations -1, -1, 2 -> std sqrt(2)
    gt[1, 0] += [1.0, 0.0, 0.0]
    gt[2, 0] += [0.0, 2.0, 0.0]
    pred[2, 0] += [1.8, 2.4, 0.0]
    # vertex 1: a constant offset (norm 5 in truth, 1 predicted) has no spread: |0 - 0|
    gt[:, 1] += [5.0, 0.0, 0.0]
    pred[:, 1] += [0.0, 0.0, 1.0]
    # vertex 2 is not upper face
    pred[:, 2] += np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = (math.sqrt(2.0) - math.sqrt(2.0 / 3.0)) / 2  # 0.298858...
    assert fdd(pred, gt, template, [0, 1]) == pytest.approx(expected)
    assert fdd(gt, pred, template, [0, 1], mm_per_unit=10.0) == pytest.approx(10 * expected)
    assert fdd(torch.tensor(gt), torch.tensor(gt), torch.tensor(template)) == 0.0
    with pytest.raises(ValueError, match="vertex count"):
        fdd(pred, gt, template[:2])


def test_sdiv_lower_and_its_region(rig):
    samples = np.zeros((2, 1, 3, 3))
    samples[1, 0, 1] = [0.0, 6.0, 0.0]  # vertex 1: samples 6 apart -> 3
    assert sdiv_lower(samples, [0, 1]) == pytest.approx(1.5)
    assert lower_face_region(rig) == "lower_face"
    assert lower_face_region(SimpleNamespace(region_names=("lips", "mouth", "face"))) == "mouth"


def test_m2s_consistency_is_the_models_mel_loss_on_the_input_audio(rig):
    torch.manual_seed(0)
    model = M2S(M2SConfig.for_rig(rig, "mouth2s", dim=16, layers=1, heads=2, ff_mult=2, conv_kernel=3,
                                  dropout=0.0)).eval()
    coeffs = torch.rand(6, rig.num_coeffs, generator=torch.Generator().manual_seed(1)) * 0.5
    wav = torch.randn(6 * 640 - 100, generator=torch.Generator().manual_seed(2)) * 0.1  # 100 short
    with torch.no_grad():
        target = log_mel(torch.nn.functional.pad(wav, (0, 100)))[None]  # [1, 24, 80]
        expected = float(model.mel_loss(model(rig_features(rig, coeffs[None], "mouth2s")).mel, target))
    assert m2s_consistency(model, rig, coeffs, wav) == pytest.approx(expected, rel=1e-6)
    verts = rig(coeffs)  # [T, V, 3]: the same animation as vertices
    assert m2s_consistency(model, rig, verts, wav.numpy()) == pytest.approx(expected, rel=1e-4)
    exp2s = M2S(M2SConfig.for_rig(rig, "exp2s", dim=16, layers=1, heads=2, ff_mult=2, conv_kernel=3))
    with pytest.raises(ValueError, match="hears coefficients"):
        m2s_consistency(exp2s, rig, verts, wav)
