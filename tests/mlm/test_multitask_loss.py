"""mlm.multitask_loss.MultiTaskLandmarkLoss: the values of its terms on crafted outputs, missing landmarks, Dice."""

from __future__ import annotations

import math

import pytest
import torch

from mlm.bundle import multitask_loss
from mlm.multitask_loss import MultiTaskLandmarkLoss
from transforms.heatmap.offset_maps import offset_map_targets

SHAPE = (40, 30)
RADIUS = 5.0
LANDMARKS = torch.tensor([[[10.3, 20.7], [25.0, 8.5]]], dtype=torch.float64)  # (B=1, N=2, D=2)


def _output(heat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``(B, N, *S)`` heat logits + ``(B, D, N, *S)`` offsets -> ``(B, N * (1 + D), *S)``."""
    b, d, n = offsets.shape[:3]
    return torch.cat([heat, offsets.reshape(b, d * n, *offsets.shape[3:])], dim=1)


def _targets(landmarks: torch.Tensor = LANDMARKS):
    gauss, disk, offsets = offset_map_targets(landmarks[0], SHAPE, RADIUS)
    return gauss[None], disk[None], offsets[None]


def test_zero_logits_and_exact_offsets_give_two_log_two():
    """sigmoid(0) = 0.5: the BCE is log 2 for every target value; exact offsets: zero L1."""
    _, _, offsets = _targets()
    loss = MultiTaskLandmarkLoss(2, 2, RADIUS)
    value = loss(_output(torch.zeros(1, 2, *SHAPE, dtype=torch.float64), offsets), LANDMARKS)
    assert value.item() == pytest.approx(2 * math.log(2), rel=1e-12)


def test_l1_is_the_mean_absolute_error_inside_the_disks_per_axis():
    """Offsets wrong by 0.1 (axis 0) and 0.3 (axis 1) inside the disks and by 7 outside: L1 terms 0.1 and 0.3."""
    _, disk, offsets = _targets()
    wrong = offsets + torch.tensor([0.1, 0.3], dtype=torch.float64).view(1, 2, 1, 1, 1) * disk[:, None]
    wrong = wrong + 7.0 * (1 - disk[:, None])
    loss = MultiTaskLandmarkLoss(2, 2, RADIUS)
    terms = loss.terms(_output(torch.zeros(1, 2, *SHAPE, dtype=torch.float64), wrong), LANDMARKS)
    assert terms["offset_0"].item() == pytest.approx(0.1, rel=1e-9)
    assert terms["offset_1"].item() == pytest.approx(0.3, rel=1e-9)
    value = loss(_output(torch.zeros(1, 2, *SHAPE, dtype=torch.float64), wrong), LANDMARKS)
    assert value.item() == pytest.approx(2 * math.log(2) + 0.4, rel=1e-9)


def test_bce_of_a_perfect_heatmap_is_the_targets_entropy():
    """Predicting the truncated Gaussian itself: the BCE is its mean binary entropy (the minimum over predictions)."""
    gauss, _, offsets = _targets()
    p = gauss.clamp(1e-12, 1 - 1e-12)
    logits = torch.log(p) - torch.log1p(-p)
    entropy = -(gauss * torch.log(p) + (1 - gauss) * torch.log1p(-p)).mean()
    terms = MultiTaskLandmarkLoss(2, 2, RADIUS).terms(_output(logits, offsets), LANDMARKS)
    assert terms["heatmap"].item() == pytest.approx(entropy.item(), rel=1e-6)
    worse = MultiTaskLandmarkLoss(2, 2, RADIUS).terms(_output(logits + 0.5, offsets), LANDMARKS)["heatmap"]
    assert worse > terms["heatmap"]


def test_missing_landmark_is_left_out_or_trained_to_an_empty_map():
    landmarks = LANDMARKS.clone()
    landmarks[0, 1] = float("nan")
    _, _, offsets = _targets(landmarks)
    heat = torch.zeros(1, 2, *SHAPE, dtype=torch.float64)
    heat[:, 1] = 20.0  # confident everywhere on the missing landmark's channel
    out = _output(heat, offsets + 3.0 * (offsets == 0))  # offsets outside landmark 0's disk do not count either
    masked = MultiTaskLandmarkLoss(2, 2, RADIUS)(out, landmarks)
    assert masked.item() == pytest.approx(2 * math.log(2), rel=1e-9)
    bce_20 = 20.0 + math.log1p(math.exp(-20.0))  # BCE(logit 20, target 0)
    unmasked = MultiTaskLandmarkLoss(2, 2, RADIUS, mask_missing=False)(out, landmarks)
    assert unmasked.item() == pytest.approx(2 * (math.log(2) + bce_20) / 2, rel=1e-9)


def test_dice_variant_values():
    _, disk, offsets = _targets()
    loss = MultiTaskLandmarkLoss(2, 2, RADIUS, heatmap_loss="dice")
    assert loss.heatmap_weight == 0.5
    perfect = _output(torch.where(disk > 0, 100.0, -100.0).double(), offsets)
    assert loss(perfect, LANDMARKS).item() == pytest.approx(0.0, abs=1e-12)
    half = _output(torch.zeros(1, 2, *SHAPE, dtype=torch.float64), offsets)
    voxels = SHAPE[0] * SHAPE[1]
    area = disk.flatten(2).sum(-1)[0]  # (2,)
    dice = (area + 1) / (0.5 * voxels + area + 1)
    assert loss(half, LANDMARKS).item() == pytest.approx(0.5 * (1 - dice).mean().item(), rel=1e-9)


def test_bad_shapes_and_options_raise():
    loss = MultiTaskLandmarkLoss(2, 2, RADIUS)
    with pytest.raises(ValueError, match="6"):
        loss(torch.zeros(1, 5, *SHAPE), LANDMARKS)
    with pytest.raises(ValueError, match="landmarks"):
        loss(torch.zeros(1, 6, *SHAPE), LANDMARKS[:, :1])
    with pytest.raises(ValueError, match="heatmap_loss"):
        MultiTaskLandmarkLoss(2, 2, RADIUS, heatmap_loss="mse")


def test_bundle_builder_takes_sigma_as_radius_and_refuses_scn_options():
    loss = multitask_loss(19, 2, sigma=10.0, gamma=None, sigma_weight=None, learn_sigma=True, mask_missing=True)
    assert loss.radius == 10.0 and torch.equal(loss.sigmas, torch.full((19,), 10.0))
    with pytest.raises(ValueError, match="gamma"):
        multitask_loss(19, 2, sigma=10.0, gamma=100.0)
    with pytest.raises(ValueError, match="sigma_weight"):
        multitask_loss(19, 2, sigma=10.0, sigma_weight=20.0)


def test_gradients_flow_to_heatmaps_and_offsets():
    out = torch.zeros(1, 6, *SHAPE, requires_grad=True)
    MultiTaskLandmarkLoss(2, 2, RADIUS)(out, LANDMARKS.float()).backward()
    assert out.grad[:, :2].abs().sum() > 0 and out.grad[:, 2:].abs().sum() > 0
