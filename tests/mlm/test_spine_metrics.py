"""Spine AP metrics (mlm.spine_metrics) against numbers computed by hand: the MSE in fractions of the image size,
Pearson's r, the AASCE Cobb angles on both branches of the challenge's S-shape rule, SMAPE, and the Ignite metrics of
a bundle's validation on MetaTensor outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from mlm.spine_metrics import (
    CobbAngleSMAPE,
    LandmarkPearsonR,
    MSEFraction,
    cobb_angles,
    is_s_shaped,
    mse_fraction,
    normalized_landmarks,
    original_pixels,
    pearson_correlation,
    smape,
    spine_metrics,
)


def spine(tilts_deg, centres_x, spacing: float = 20.0, height: float = 10.0, width: float = 30.0) -> np.ndarray:
    """``(4V, 2)`` corners (top-left, top-right, bottom-left, bottom-right) of V vertebrae whose endplates run along
    ``(cos t, sin t)`` (``t`` of ``tilts_deg``) through the midpoints ``(centres_x[k], spacing * k + 5)`` (top) and
    ``height`` px below (bottom): the centre line of the challenge's rules is exactly ``centres_x``."""
    corners = []
    for k, (t, cx) in enumerate(zip(np.deg2rad(tilts_deg), centres_x)):
        half = width / 2 * np.array([np.cos(t), np.sin(t)])
        top, bottom = np.array([cx, spacing * k + 5]), np.array([cx, spacing * k + 5 + height])
        corners += [top - half, top + half, bottom - half, bottom + half]
    return np.array(corners)


def test_mse_fraction_by_hand_two_image_sizes_and_a_missing_prediction():
    true = np.zeros((2, 2, 2)) + 10.0
    pred = true.copy()
    pred[0, 0] += [10.0, 20.0]  # image 1 (100 x 200 px): ratio errors (0.1, 0.1)
    pred[1, 0] += [5.0, 0.0]  # image 2 (50 x 100 px): (0.1, 0)
    pred[1, 1] = np.nan  # no prediction: left out
    sizes = np.array([[100.0, 200.0], [50.0, 100.0]])
    # squared ratio errors 0.01 + 0.01 + 0 + 0 (image 1) + 0.01 + 0 (image 2) over 6 coordinates
    assert mse_fraction(pred, true, sizes) == pytest.approx(0.03 / 6, abs=1e-15)
    np.testing.assert_allclose(normalized_landmarks(pred[0], (100.0, 200.0))[0, 0], [0.2, 0.15], atol=1e-15)
    with pytest.raises(ValueError, match="image_size"):
        mse_fraction(pred, true, [[100.0, 0.0], [50.0, 100.0]])


def test_pearson_r_by_hand():
    # dx = (-1.5, -0.5, 0.5, 1.5), dy = (-3, -1, 0, 4): r = 11 / sqrt(5 * 26)
    assert pearson_correlation([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130), abs=1e-12)
    assert math.isnan(pearson_correlation([1, 1, 1], [1, 2, 3]))  # a constant sample has no r


def test_cobb_angles_of_a_straight_column_are_the_tilt_differences_above_and_below_the_main_pair():
    tilts = [0, 2, 4, 6, 8, 10, 8, 6, 4, 2, 0, -2, -4, -6, -8, -6, -4]
    pts = spine(tilts, [100.0] * 17)
    assert not is_s_shaped((pts[0::2] + pts[1::2]) / 2)  # centres on one vertical line: not S
    # main: 10 - (-8) = 18 between vertebrae 5 and 14; upper: vertebra 0 vs 5 = 10; lower: vertebra 16 vs 14 = 4
    np.testing.assert_allclose(cobb_angles(pts, 1000.0), [18.0, 10.0, 4.0], atol=1e-9)


def test_cobb_angles_of_an_s_shaped_spine_take_the_half_of_the_main_curve():
    tilts = [0, 5, 10, 15, 10, 5, 0, -5, -10, -15, -20, -15, -10, -5, 0, 5, 0]
    pts = spine(tilts, [100.0 + 20.0 * np.sin(2 * np.pi * k / 16) for k in range(17)])
    assert is_s_shaped((pts[0::2] + pts[1::2]) / 2)
    # main: 15 - (-20) = 35 between vertebrae 3 and 10, whose top endplates lie at y 65 and 205 (sum 270)
    # upper half (270 < H): the largest angle of vertebra 3 with those above (15, to vertebra 0) and of vertebra 10
    # with those below (25, to vertebra 15)
    np.testing.assert_allclose(cobb_angles(pts, 1000.0), [35.0, 15.0, 25.0], atol=1e-9)
    # lower half (270 >= H): 15 to vertebra 0, then vertebra 0 with those above it (none: 0)
    np.testing.assert_allclose(cobb_angles(pts, 200.0), [35.0, 15.0, 0.0], atol=1e-9)


def test_s_shape_rule_on_c_and_s_curves_with_slanted_chords():
    y = np.linspace(0.0, 300.0, 34)
    c_curve = np.stack([50 + 0.1 * y + 20 * np.sin(np.pi * y / 300), y], 1)
    s_curve = np.stack([50 + 0.1 * y + 20 * np.sin(2 * np.pi * y / 300), y], 1)
    assert not is_s_shaped(c_curve) and is_s_shaped(s_curve)


def test_cobb_angles_missing_corner_is_nan_and_bad_shape_raises():
    pts = spine([0.0] * 17, [100.0] * 17)
    pts[5] = np.nan
    assert np.isnan(cobb_angles(pts, 400.0)).all()
    with pytest.raises(ValueError, match=r"\(4V, 2\)"):
        cobb_angles(np.zeros((10, 2)), 400.0)


def test_smape_by_hand():
    pred = [[10.0, 5.0, 5.0], [0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]]
    true = [[12.0, 5.0, 3.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    # image 1: (2 + 0 + 2) / (22 + 10 + 8) = 10%; image 2: all zero, 0%; image 3 has a NaN angle: left out
    assert smape(pred, true) == pytest.approx(5.0, abs=1e-12)


def test_spine_metrics_combines_them():
    true = np.stack([spine([0, 2, 4, 6, 8, 10, 8, 6, 4, 2, 0, -2, -4, -6, -8, -6, -4], [100.0] * 17)] * 2)
    pred = true + np.array([2.0, -4.0])
    sizes = np.array([[200.0, 400.0], [100.0, 400.0]])
    out = spine_metrics(pred, true, sizes)
    # errors (0.01, 0.01) in image 1 and (0.02, 0.01) in image 2: mean of squares (1e-4 + 1e-4 + 4e-4 + 1e-4) / 4
    assert out["mse_fraction"] == pytest.approx(1.75e-4, abs=1e-15)
    assert out["smape"] == pytest.approx(0.0, abs=1e-9)  # a shift keeps every angle
    np.testing.assert_allclose(out["cobb_angles_true"][0], [18.0, 10.0, 4.0], atol=1e-9)
    assert out["num_landmarks"] == 136 and out["num_images_smape"] == 2 and out["num_missing_predictions"] == 0
    assert out["pearson_r"] == pytest.approx(
        pearson_correlation(*(normalized_landmarks(x, sizes) for x in (pred, true)))
    )


def _image(shape_xy, original_spacing: float | None) -> MetaTensor:
    """A preprocessed 2D image (half the original size) whose meta holds the original size (and affine)."""
    meta = {"spatial_shape": np.array(shape_xy)}
    if original_spacing is not None:
        meta["original_affine"] = np.diag([original_spacing, original_spacing, 1.0, 1.0])
    return MetaTensor(
        torch.zeros(1, shape_xy[0] // 2, shape_xy[1] // 2), affine=torch.diag(torch.tensor([2.0, 2, 1, 1])), meta=meta
    )


def test_original_pixels_inverts_the_original_grid():
    world = np.array([[1.0, 3.0], [5.0, 7.0]])
    px, size = original_pixels(torch.as_tensor(world), _image((40, 80), 0.5))
    np.testing.assert_allclose(px, world / 0.5, atol=1e-12)
    np.testing.assert_array_equal(size, [40.0, 80.0])
    px, _ = original_pixels(world, _image((40, 80), None))  # a JPEG: identity grid, world = px
    np.testing.assert_allclose(px, world, atol=1e-12)


def test_ignite_metrics_on_decollated_outputs_match_the_functions():
    rng = np.random.default_rng(0)
    true_px = [spine(rng.uniform(-10, 10, 17), 50 + rng.uniform(-5, 5, 17)) for _ in range(3)]
    pred_px = [t + rng.normal(0, 2.0, t.shape) for t in true_px]
    sizes = [(100, 400), (120, 420), (90, 380)]
    spacings = [None, 0.5, None]  # one image whose header gives 0.5 mm pixels: world = 0.5 * px
    batches = []
    for p, t, s, sp in zip(pred_px, true_px, sizes, spacings):
        f = 1.0 if sp is None else sp
        batches.append({"pred": torch.as_tensor(p * f), "label": torch.as_tensor(t * f), "image": _image(s, sp)})
    engine = Engine(lambda e, b: [b])  # one decollated item per iteration, as MONAI's evaluators give
    names = {"mse": MSEFraction, "r": LandmarkPearsonR, "smape": CobbAngleSMAPE}
    for name, cls in names.items():
        cls(output_transform=lambda out: tuple([o[k] for o in out] for k in ("pred", "label", "image"))).attach(
            engine, name
        )
    metrics = engine.run(batches, max_epochs=1).metrics
    expected = spine_metrics(np.stack(pred_px), np.stack(true_px), np.array(sizes, dtype=float))
    assert metrics["mse"] == pytest.approx(expected["mse_fraction"], rel=1e-12)
    assert metrics["r"] == pytest.approx(expected["pearson_r"], rel=1e-9)
    assert metrics["smape"] == pytest.approx(expected["smape"], rel=1e-12)
    assert 0 < metrics["smape"] < 100 and metrics["r"] > 0.99
