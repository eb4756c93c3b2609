"""Tests of the sub-pixel Gaussian heatmap targets (functional, array and dictionary forms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor

from transforms.heatmap import LandmarksToHeatmap, LandmarksToHeatmapd, gaussian_heatmaps, heatmap_window_radius

torch.set_num_threads(1)


def closed_form(points: np.ndarray, shape, sigma: float, gamma: float | None, truncate: float = 4.0) -> np.ndarray:
    """Dense reference: the Gaussian over the whole grid, zero outside the box window around round(p)."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    r = math.ceil(truncate * sigma)
    out = np.zeros((len(points), *shape))
    for n, p in enumerate(points):
        if np.isnan(p).any():
            continue
        sq = sum((g - c) ** 2 for g, c in zip(grids, p))
        val = np.exp(-sq / (2 * sigma**2))
        if gamma is not None:
            val *= gamma / ((2 * np.pi) ** (len(shape) / 2) * sigma ** len(shape))
        inside = np.ones(shape, dtype=bool)
        for g, c in zip(grids, p):
            inside &= np.abs(g - np.round(c)) <= r
        out[n] = np.where(inside, val, 0.0)
    return out


@pytest.mark.parametrize("gamma", [None, 100.0, 1000.0])
@pytest.mark.parametrize(
    "shape,points",
    [
        ((21, 17), [[4.3, 7.71], [10.5, 10.49], [0.2, 16.9], [-3.4, 5.0], [np.nan, np.nan]]),
        ((13, 11, 15), [[4.3, 7.71, 2.25], [6.5, 5.49, 13.9], [-1.2, 20.0, 3.0], [np.nan, 1.0, 1.0]]),
    ],
)
def test_values_match_closed_form_at_subpixel_centres(shape, points, gamma):
    pts = np.array(points, dtype=np.float64)
    sigma = 1.7
    got = gaussian_heatmaps(torch.tensor(pts)[None], shape, sigma, gamma)[0].numpy()
    ref = closed_form(pts, shape, sigma, gamma)
    scale = 1.0 if gamma is None else gamma / ((2 * np.pi) ** (len(shape) / 2) * sigma ** len(shape))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * scale)
    assert np.all(got[np.isnan(pts).any(axis=1)] == 0.0)  # missing landmark -> zero channel


def test_peak_is_one_at_integer_centre_and_float32_default():
    h = gaussian_heatmaps(torch.tensor([[[5.0, 6.0]]]), (12, 12), 2.0)
    assert h.dtype == torch.float32
    assert h[0, 0, 5, 6].item() == pytest.approx(1.0, abs=1e-7)
    assert h.max().item() == pytest.approx(1.0, abs=1e-7)


def test_window_truncation_consistent_with_radius():
    sigma, truncate = 1.5, 2.0
    r = heatmap_window_radius(sigma, truncate)
    assert r == 3
    h = gaussian_heatmaps(torch.tensor([[[10.4, 10.0]]], dtype=torch.float64), (21, 21), sigma, truncate=truncate)[0, 0]
    nz = torch.nonzero(h)
    assert nz[:, 0].min() == 10 - r and nz[:, 0].max() == 10 + r  # round(10.4) = 10
    assert nz[:, 1].min() == 10 - r and nz[:, 1].max() == 10 + r
    # a wider window only adds values, inside the narrow window they agree
    wide = gaussian_heatmaps(torch.tensor([[[10.4, 10.0]]], dtype=torch.float64), (21, 21), sigma, truncate=6.0)[0, 0]
    inside = h > 0
    torch.testing.assert_close(wide[inside], h[inside], rtol=0, atol=1e-15)
    assert float(wide[~inside].max()) <= math.exp(-((r - 0.5) ** 2) / (2 * sigma**2)) + 1e-15


def test_small_grid_and_far_outside_landmarks():
    # window larger than the grid, and a landmark a million voxels away
    pts = torch.tensor([[[2.0, 1.0], [1e6, -1e6]]], dtype=torch.float64)
    h = gaussian_heatmaps(pts, (4, 3), 3.0)[0]
    ref = closed_form(pts[0].numpy(), (4, 3), 3.0, None)
    np.testing.assert_allclose(h.numpy(), ref, atol=1e-14)
    assert h[1].abs().sum() == 0


@pytest.mark.parametrize("dims", [2, 3])
def test_gradient_wrt_sigma_and_landmarks_matches_finite_differences(dims):
    shape = (9, 10) if dims == 2 else (7, 8, 9)
    pts = torch.tensor([[[3.3, 4.6, 4.1][:dims], [5.2, 2.7, 3.9][:dims]]], dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([1.3, 2.1], dtype=torch.float64, requires_grad=True)
    weights = torch.rand(1, 2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss(s, p):
        return (gaussian_heatmaps(p, shape, s, gamma=100.0, truncate=6.0) * weights).sum()

    loss(sigma, pts).backward()
    eps = 1e-6
    for i in range(2):
        d = torch.zeros(2, dtype=torch.float64)
        d[i] = eps
        fd = (loss(sigma.detach() + d, pts.detach()) - loss(sigma.detach() - d, pts.detach())) / (2 * eps)
        assert sigma.grad[i].item() == pytest.approx(fd.item(), rel=1e-6)
    d = torch.zeros_like(pts)
    d[0, 1, 0] = eps
    fd = (loss(sigma.detach(), pts.detach() + d) - loss(sigma.detach(), pts.detach() - d)) / (2 * eps)
    assert pts.grad[0, 1, 0].item() == pytest.approx(fd.item(), rel=1e-6)
    assert torch.autograd.gradcheck(lambda s: gaussian_heatmaps(pts.detach(), shape, s, 1000.0), (sigma,))


def test_sigma_shapes_per_landmark_and_per_sample():
    pts = torch.tensor([[[4.0, 4.0], [4.0, 4.0]], [[4.0, 4.0], [4.0, 4.0]]])
    per_n = gaussian_heatmaps(pts, (9, 9), torch.tensor([1.0, 2.0]), gamma=1.0)
    per_bn = gaussian_heatmaps(pts, (9, 9), torch.tensor([[1.0, 2.0], [1.0, 2.0]]), gamma=1.0)
    torch.testing.assert_close(per_n, per_bn)
    assert per_n[0, 0, 4, 4].item() == pytest.approx(1 / (2 * math.pi), rel=1e-6)
    assert per_n[0, 1, 4, 4].item() == pytest.approx(1 / (2 * math.pi * 4), rel=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_heatmaps(pts, (9, 9), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="sigma must be positive"):
        gaussian_heatmaps(pts, (9, 9), 0.0)
    with pytest.raises(ValueError, match="spatial_shape"):
        gaussian_heatmaps(pts, (9, 9, 9), 1.0)


@settings(max_examples=25, deadline=None)
@given(
    x=st.floats(-5, 20),
    y=st.floats(-5, 20),
    sigma=st.floats(0.8, 3.0),
)
def test_hypothesis_matches_dense_reference_anywhere(x, y, sigma):
    pts = np.array([[x, y]])
    got = gaussian_heatmaps(torch.tensor(pts)[None], (16, 15), sigma)[0].numpy()
    np.testing.assert_allclose(got, closed_form(pts, (16, 15), sigma, None), atol=1e-13)


def test_array_transform_shapes_and_errors():
    t = LandmarksToHeatmap(spatial_shape=(10, 12), sigma=[1.0, 2.0], gamma=None)
    out = t(torch.tensor([[2.5, 3.0], [np.nan, np.nan]]))
    assert out.shape == (2, 10, 12) and out.dtype == torch.float32
    assert out[1].abs().sum() == 0
    assert out[0, 2:4, 3].tolist() == pytest.approx([math.exp(-0.25 / 2)] * 2, abs=1e-6)
    with pytest.raises(ValueError, match="no spatial_shape"):
        LandmarksToHeatmap()(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        t(torch.zeros(2, 3))


def test_dictionary_transform_carries_image_meta():
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.zeros(1, 8, 9, 10), affine=affine, meta={"filename_or_obj": "img.nii.gz"})
    landmarks = MetaTensor(torch.tensor([[3.2, 4.0, 5.5]]), affine=affine)
    d = LandmarksToHeatmapd(sigma=1.5, gamma=1000.0)({"image": image, "landmarks": landmarks})
    h = d["heatmap"]
    assert isinstance(h, MetaTensor) and h.shape == (1, 8, 9, 10)
    torch.testing.assert_close(h.affine, affine)
    assert h.meta["filename_or_obj"] == "img.nii.gz"
    ref = closed_form(np.array([[3.2, 4.0, 5.5]]), (8, 9, 10), 1.5, 1000.0)
    np.testing.assert_allclose(h.numpy(), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="reference image key"):
        LandmarksToHeatmapd(ref_key="img")({"landmarks": torch.zeros(1, 3)})
