"""Talking-head metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from thunder3d.eval.metrics import (
    aperture_indices,
    aperture_of,
    lip_pcc,
    lve,
    pearson,
    rig_vertices,
    sample_diversity,
    sdiv_upper,
)
from thunder3d.rigs import load_rig


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


def test_rig_vertices_select_without_building_the_head():
    rig = load_rig("builtin")
    coeffs = torch.rand(2, 5, rig.num_coeffs) * 0.5
    lips = rig.region("lips")
    torch.testing.assert_close(rig_vertices(rig, coeffs, lips), rig(coeffs)[..., lips, :], atol=1e-5, rtol=1e-5)
    pair = rig_vertices(rig, coeffs, aperture_indices(rig))
    torch.testing.assert_close(aperture_of(pair), rig.lip_aperture(rig(coeffs)), atol=1e-5, rtol=1e-5)
