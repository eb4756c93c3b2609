"""Tests of sub-pixel heatmap decoding and the coordinate mappings of mlm.heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlm.heatmaps import decode_heatmaps, gaussian_heatmaps, rescale_coordinates, voxel_to_world, world_to_voxel

torch.set_num_threads(1)


def random_centres(shape, num, seed, margin=3.0):
    g = np.random.default_rng(seed)
    low, high = margin, np.array(shape) - 1 - margin
    return g.uniform(low, high, size=(1, num, len(shape)))


@pytest.mark.parametrize("shape", [(48, 40), (20, 22, 24)])
@pytest.mark.parametrize("gamma", [None, 1000.0])
def test_default_decoder_within_005_px_on_clean_gaussians(shape, gamma):
    """The project bar: sigma 1.5..4, random sub-pixel centres, float32 maps: error <= 0.05 px (2D and 3D)."""
    for seed, sigma in enumerate((1.5, 2.0, 2.5, 3.0, 4.0)):
        pts = random_centres(shape, 12, seed, margin=1.0)
        h = gaussian_heatmaps(torch.tensor(pts, dtype=torch.float32), shape, sigma, gamma)
        coords, values = decode_heatmaps(h)
        err = np.abs(coords.numpy() - pts).max()
        assert err < 0.05, (sigma, err)
        assert err < 1e-3  # in fact exact up to float32 rounding
        peak = 1.0 if gamma is None else gamma / ((2 * np.pi) ** (len(shape) / 2) * sigma ** len(shape))
        assert np.all(values.numpy() <= peak * (1 + 1e-6)) and np.all(values.numpy() > 0.5 * peak)


@settings(max_examples=30, deadline=None)
@given(
    x=st.floats(2.0, 13.0),
    y=st.floats(2.0, 13.0),
    z=st.floats(2.0, 13.0),
    sigma=st.floats(1.5, 4.0),
)
def test_dark_and_log_quadratic_exact_for_any_centre_3d(x, y, z, sigma):
    pts = torch.tensor([[[x, y, z]]], dtype=torch.float64)
    h = gaussian_heatmaps(pts, (16, 16, 16), sigma)
    for method in ("dark", "log_quadratic"):
        coords, _ = decode_heatmaps(h, method)
        assert torch.allclose(coords, pts, atol=1e-9)


def test_payer_quadratic_is_biased_but_log_fit_is_not():
    # a Gaussian at +0.25 px between voxels: the parabola through raw values is off by a measurable amount
    pts = torch.tensor([[[10.25, 10.0]]], dtype=torch.float64)
    h = gaussian_heatmaps(pts, (21, 21), 1.0)
    quad, _ = decode_heatmaps(h, "quadratic")
    dark, _ = decode_heatmaps(h, "dark")
    assert abs(quad[0, 0, 0].item() - 10.25) > 0.02
    assert abs(dark[0, 0, 0].item() - 10.25) < 1e-12
    arg, _ = decode_heatmaps(h, "argmax")
    assert arg[0, 0].tolist() == [10.0, 10.0]


def test_rotated_anisotropic_gaussian_decoded_by_dark_only():
    i, j = np.meshgrid(np.arange(30.0), np.arange(30.0), indexing="ij")
    c = np.array([14.3, 15.6])
    cov = np.array([[6.0, 3.5], [3.5, 4.0]])
    inv = np.linalg.inv(cov)
    d = np.stack([i - c[0], j - c[1]], -1)
    h = np.exp(-0.5 * np.einsum("...a,ab,...b->...", d, inv, d))[None, None]
    dark, _ = decode_heatmaps(torch.tensor(h), "dark")
    per_axis, _ = decode_heatmaps(torch.tensor(h), "log_quadratic")
    assert np.abs(dark[0, 0].numpy() - c).max() < 1e-9
    assert np.abs(per_axis[0, 0].numpy() - c).max() > 0.05


def test_flat_ties_nan_border_and_nonpositive_maps():
    h = torch.zeros(1, 6, 8, 8, dtype=torch.float64)
    h[0, 0] = 1.0  # flat: first voxel, no refinement
    h[0, 1, 3, 4] = h[0, 1, 3, 5] = 2.0  # tie of two neighbours: first index, refined to their midpoint
    h[0, 2] = torch.nan  # all NaN
    h[0, 3] = torch.nan
    h[0, 3, 5, 5], h[0, 3, 5, 6], h[0, 3, 5, 4] = 3.0, 2.0, 1.0  # NaN elsewhere ignored
    h[0, 4, 0, 7], h[0, 4, 1, 7], h[0, 4, 0, 6] = 5.0, 4.0, 4.0  # max in a corner
    h[0, 5] = -1.0
    h[0, 5, 4, 4], h[0, 5, 3, 4], h[0, 5, 5, 4] = 1.0, 0.5, -0.5  # a negative neighbour -> raw quadratic
    coords, values = decode_heatmaps(h)
    c, v = coords[0].numpy(), values[0].numpy()
    assert c[0].tolist() == [0.0, 0.0] and v[0] == 1.0
    assert c[1].tolist() == pytest.approx([3.0, 4.5]) and v[1] == 2.0
    assert np.isnan(c[2]).all() and np.isnan(v[2])
    assert c[3, 0] == 5.0 and 5.0 < c[3, 1] < 5.5 and v[3] == 3.0  # row axis has NaN neighbours: not refined
    assert c[4].tolist() == [0.0, 7.0]  # border: no refinement across it, no out-of-bounds
    q = 0.5 * (0.5 - (-0.5)) / (0.5 - 2 * 1.0 - 0.5)
    assert c[5, 0] == pytest.approx(4.0 + q) and c[5, 1] == pytest.approx(4.0)
    # deterministic
    again, _ = decode_heatmaps(h)
    assert torch.equal(torch.nan_to_num(again, -1), torch.nan_to_num(coords, -1))


def test_decode_accepts_numpy_and_rejects_bad_input():
    h = gaussian_heatmaps(torch.tensor([[[3.4, 2.2]]]), (8, 8), 1.5).numpy()
    coords, _ = decode_heatmaps(h)
    assert coords[0, 0].tolist() == pytest.approx([3.4, 2.2], abs=1e-4)
    with pytest.raises(ValueError, match="method"):
        decode_heatmaps(h, "centre")
    with pytest.raises(ValueError, match=r"\(B, N, \*S\)"):
        decode_heatmaps(np.zeros((3, 4)))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_rescale_has_no_bias_after_avg_pooling(factor):
    """Gaussians drawn at full resolution, average-pooled by f, decoded, rescaled: no systematic bias."""
    shape = (128, 128)
    pts = random_centres(shape, 24, seed=factor, margin=24.0)
    h = gaussian_heatmaps(torch.tensor(pts, dtype=torch.float64), shape, sigma=2.0 * factor)
    low = F.avg_pool2d(h, factor)
    coords, _ = decode_heatmaps(low)
    rescaled = rescale_coordinates(coords, factor).numpy()
    bias = (rescaled - pts).mean(axis=(0, 1))
    assert np.abs(bias).max() < 0.05
    assert np.abs(rescaled - pts).max() < 0.05 * factor
    naive_bias = (coords.numpy() * factor - pts).mean(axis=(0, 1))
    # the naive x * f is off by -(f - 1) / 2: -0.5, -1.5, -3.5 px at x2, x4, x8
    np.testing.assert_allclose(naive_bias, -(factor - 1) / 2, atol=0.05)


def test_rescale_per_axis_and_types():
    c = np.array([[0.0, 0.0], [1.0, 2.0]])
    out = rescale_coordinates(c, (2, 4))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [[0.5, 1.5], [2.5, 9.5]])
    with pytest.raises(ValueError, match="positive"):
        rescale_coordinates(c, 0)


def test_voxel_world_round_trip_single_and_batched_affines():
    a = torch.tensor(
        [[0.0, -0.8, 0.0, 10.0], [0.7, 0.0, 0.0, -5.0], [0.0, 0.0, 2.0, 3.0], [0, 0, 0, 1]], dtype=torch.float64
    )
    pts = torch.tensor([[[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]], [[0.0, 0.0, 0.0], [4.0, 5.0, 6.0]]])
    world = voxel_to_world(pts, a)
    assert world[0, 0].tolist() == pytest.approx([10 - 1.6, -5 + 0.7, 3 + 6.0])
    assert torch.isnan(world[0, 1]).all()
    back = world_to_voxel(world, a)
    torch.testing.assert_close(back, pts.double(), equal_nan=True)
    batched = torch.stack([a, torch.eye(4, dtype=torch.float64)])
    wb = voxel_to_world(pts, batched)
    torch.testing.assert_close(wb[0], world[0], equal_nan=True)
    torch.testing.assert_close(wb[1], pts[1].double())
    np_out = voxel_to_world(pts.numpy()[0], a.numpy())
    assert isinstance(np_out, np.ndarray)
    with pytest.raises(ValueError, match="affine"):
        voxel_to_world(pts, torch.eye(3))
