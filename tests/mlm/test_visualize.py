"""Tests of the plots: files are written atomically, are valid PNGs of sensible size, and bad input is rejected."""

from __future__ import annotations

import numpy as np
import pytest

from mlm.visualize import cumulative_plot_limit, plot_cumulative_ipe, plot_overlay

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    return path.stat().st_size > 5000 and path.read_bytes()[:8] == PNG_MAGIC


def test_cumulative_ipe_plot_written(tmp_path):
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(2, 1, size=(20, 19)))
    a[0, 3] = np.nan
    a[1, 2] = np.inf
    out = plot_cumulative_ipe({"SCN": a, "U-Net": a * 1.5, "per-image": a.mean(axis=1)}, tmp_path / "cdf.png")
    assert out == tmp_path / "cdf.png" and _is_png(out)
    out2 = plot_cumulative_ipe({"SCN": a}, tmp_path / "cdf_points.png", per_image=False, unit="px")
    assert _is_png(out2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdf.png", "cdf_points.png"]
    with pytest.raises(ValueError, match="empty"):
        plot_cumulative_ipe({}, tmp_path / "x.png")


def test_cumulative_plot_limit_keeps_the_worst_of_few_errors():
    """Below 100 errors the worst one stays on the axis (the spine test split has 20 images per model); beyond, the
    nearest-rank 99th percentile lets at most 1% run off; inf/NaN are ignored and the largest radius stays visible."""
    few = np.array([1.0, 2.0, 3.0, 28.3, np.inf, np.nan])
    assert cumulative_plot_limit([few, np.array([5.0])], radii=(2.0, 20.0)) == pytest.approx(28.3 * 1.05, rel=1e-12)
    many = np.concatenate([np.linspace(0.0, 10.0, 990), np.full(10, 500.0)])  # 1% gross outliers
    assert cumulative_plot_limit([many]) == pytest.approx(10.0 * 1.05, rel=1e-12)
    more = np.concatenate([np.linspace(0.0, 10.0, 989), np.full(11, 500.0)])  # 1.1%: the outliers stay visible
    assert cumulative_plot_limit([more]) == pytest.approx(500.0 * 1.05, rel=1e-12)
    assert cumulative_plot_limit([np.arange(1.0, 100.0)]) == pytest.approx(99.0 * 1.05, rel=1e-12)  # 99: the largest
    assert cumulative_plot_limit([np.array([0.5])], radii=(2.0, 4.0)) == pytest.approx(4.0 * 1.05, rel=1e-12)
    assert cumulative_plot_limit([np.array([np.inf])]) == pytest.approx(1.05, rel=1e-12)


def test_overlay_2d_and_3d(tmp_path):
    img2 = np.random.default_rng(0).random((64, 48))
    true2 = np.array([[10.0, 10.0], [40.0, 30.0], [np.nan, np.nan]])
    pred2 = true2 + [[2.0, -1.0], [-3.0, 4.0], [0.0, 0.0]]
    assert _is_png(plot_overlay(img2, pred2, true2, tmp_path / "o2.png", names=["a", "b", "c"]))
    img3 = np.random.default_rng(1).random((1, 24, 20, 48))  # leading channel dropped
    true3 = np.array([[12.0, 10.0, 8.0], [12.0, 9.0, 30.0]])
    pred3 = true3 + [[1.0, 1.0, 2.0], [0.0, -1.0, -3.0]]
    for mode in ("mip", "slices"):
        assert _is_png(plot_overlay(img3, pred3, true3, tmp_path / f"o3_{mode}.png", mode=mode, title="spine"))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        plot_overlay(img3, pred2, true2, tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_overlay(img2, pred2, true2, tmp_path / "nope" / "o.png")


def test_2d_overlays_are_drawn_upright():
    """MONAI's (W, H) array: the picture's rows are image y, its columns image x (the face must not point down)."""
    from mlm.visualize import display_2d

    image = np.zeros((64, 48))  # W = 64, H = 48
    image[10, 40] = 1.0  # x = 10, y = 40: near the bottom-left of the picture
    view, points = display_2d(image, np.array([[10.0, 40.0]]))
    assert view.shape == (48, 64)
    row, col = np.argwhere(view == 1.0)[0]
    assert (row, col) == (40, 10)
    np.testing.assert_array_equal(points, [[40.0, 10.0]])  # (row, column) where the bright pixel is drawn
