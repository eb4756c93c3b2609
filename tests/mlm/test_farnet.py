"""mlm.networks.FARNet and mlm.farnet_loss.ExponentialWeightedCenterLoss: shapes, train/eval outputs, parameter counts
against the authors' layer list, DenseNet-121 weights, TorchScript, exact loss values, masking and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mlm.farnet_loss import ExponentialWeightedCenterLoss, dense_gaussian_heatmaps
from mlm.networks import FARNet, densenet121_key_map

#: parameters of torchvision's densenet121().features (3 input channels): 6.95M of its 7.98M
DENSENET121_FEATURES_PARAMETERS = 6_953_856


def _conv_bn_relu(cin: int, cout: int, k: int, d: int = 2) -> int:
    """Parameters of the authors' ``Conv(bias) -> BN -> ReLU`` block."""
    return k**d * cin * cout + cout + 2 * cout


def _conv(cin: int, cout: int, k: int, d: int = 2) -> int:
    return k**d * cin * cout + cout


def _authors_head_parameters(in_channels: int, n: int) -> int:
    """Everything but the backbone, from the layer list of shared/docs/METHODS.md section 3 (Farnet, model.py)."""
    cbr = _conv_bn_relu
    return (
        cbr(in_channels, 32, 1)  # w1_f0
        + cbr(1024, 512, 3) + cbr(512, 256, 1) + cbr(1280, 256, 1) + cbr(768, 256, 1) + cbr(512, 256, 1)  # top-down 1
        + cbr(256, 512, 3) + cbr(768, 512, 1) + cbr(512, 1024, 3) + cbr(1280, 1024, 1)  # bottom-up
        + cbr(1024, 2048, 3) + cbr(2304, 1024, 3)
        + cbr(1024, 256, 1) + cbr(1280, 256, 1) + cbr(768, 256, 1) + cbr(512, 128, 1) + cbr(192, 64, 1)  # top-down 2
        + _conv(64, 64, 3) + _conv(64, n, 1)  # refine_hp
        + _conv(96 + n, 96 + n, 3) + _conv(96 + n, n, 1)  # full-resolution refinement
    )  # fmt: skip


@pytest.fixture(scope="module")
def net() -> FARNet:
    torch.manual_seed(0)
    return FARNet(2, 1, 3)


def test_training_mode_returns_full_and_half_resolution_heatmaps_evaluation_mode_full_only(net):
    x = torch.randn(2, 1, 64, 96)
    net.train()
    full, half = net(x)
    assert full.shape == (2, 3, 64, 96) and half.shape == (2, 3, 32, 48)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 96)
    net.train()


def test_3d_network_has_the_same_outputs_from_the_3d_factories():
    full, half = FARNet(3, 1, 2)(torch.randn(1, 1, 32, 32, 64))
    assert full.shape == (1, 2, 32, 32, 64) and half.shape == (1, 2, 16, 16, 32)


def test_input_size_not_a_multiple_of_32_is_refused(net):
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.randn(1, 1, 64, 80 + 8))


def test_parameter_count_is_the_authors_densenet121_plus_their_layer_list():
    rgb = FARNet(2, 3, 19)  # the authors' model: 3-channel input, 19 landmarks
    assert sum(p.numel() for p in rgb.features.parameters()) == DENSENET121_FEATURES_PARAMETERS
    total = sum(p.numel() for p in rgb.parameters())
    assert total == DENSENET121_FEATURES_PARAMETERS + _authors_head_parameters(3, 19) == 61_218_963
    grey = FARNet(2, 1, 19)  # one grey channel: conv0 has 64 * 2 * 49 weights fewer, the input branch 32 * 2
    assert sum(p.numel() for p in grey.parameters()) == total - 64 * 2 * 49 - 32 * 2


def test_torchvision_densenet121_weights_load_into_the_backbone_and_grey_sums_the_colour_kernels(tmp_path):
    source = FARNet(2, 3, 2)
    # torchvision's key layout: dense layers without ``layers.``, the old checkpoints' "norm.1" spelling for some
    state = {}
    for key, value in source.features.state_dict().items():
        key = "features." + key.replace(".layers.", ".")
        if "denseblock1" in key:
            key = key.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")
        state[key] = torch.randn_like(value) if value.is_floating_point() else value
    state["classifier.weight"] = torch.zeros(1000, 1024)
    assert densenet121_key_map("features.denseblock1.denselayer1.norm.1.weight") == (
        "features.denseblock1.denselayer1.layers.norm1.weight"
    )
    path = tmp_path / "densenet121.pt"
    torch.save(state, path)
    rgb = FARNet(2, 3, 2, pretrained_weights=path)
    assert torch.equal(rgb.features.denseblock1.denselayer1.layers.norm1.weight, state[
        "features.denseblock1.denselayer1.norm.1.weight"])  # fmt: skip
    assert torch.equal(rgb.features.norm5.running_var, state["features.norm5.running_var"])
    grey = FARNet(2, 1, 2, pretrained_weights=path)
    assert torch.allclose(grey.features.conv0.weight, state["features.conv0.weight"].sum(dim=1, keepdim=True))
    del state["features.norm5.weight"]
    with pytest.raises(ValueError, match="norm5.weight"):
        grey.load_densenet121_features(state)


def test_scripted_network_matches_eager_in_both_modes(net):
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, 64, 64)
    net.eval()
    scripted.eval()
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)
    scripted.train()
    assert isinstance(scripted(x), tuple)
    net.train()


def test_gaussian_targets_are_exact_untruncated_and_zero_for_missing_landmarks():
    heat = dense_gaussian_heatmaps(torch.tensor([[[1.0, 2.5], [float("nan"), 0.0]]]), [3, 40], sigma=2.0)
    assert heat.shape == (1, 2, 3, 40)
    assert heat[0, 0, 1, 2] == pytest.approx(math.exp(-0.25 / 8))
    assert heat[0, 0, 0, 22] == pytest.approx(math.exp(-(1 + 19.5**2) / 8), rel=1e-4)  # 9.75 sigma: not truncated
    assert heat[0, 0, 0, 22] > 0 and torch.count_nonzero(heat[0, 1]) == 0


def test_loss_is_the_mean_of_alpha_power_weighted_squared_errors_at_both_resolutions():
    loss = ExponentialWeightedCenterLoss(1, 2, sigma=1.0, alpha=40.0)
    # full 3x1 grid, landmark on the middle pixel: y = (e^-1/2, 1, e^-1/2); half 1x1 grid at (1 - 0.5) / 2 = 0.25
    landmarks = torch.tensor([[[1.0, 0.0]]])
    full, half = torch.zeros(1, 1, 3, 1), torch.zeros(1, 1, 1, 1)
    e = math.exp(-0.5)
    expected_full = (40.0 + 2 * e * e * 40.0**e) / 3
    y_half = math.exp(-(0.25**2 + 0.25**2) / 2)
    expected_half = y_half**2 * 40.0**y_half
    terms = loss.terms((full, half), landmarks)
    assert terms["full"].item() == pytest.approx(expected_full, rel=1e-6)
    assert terms["half"].item() == pytest.approx(expected_half, rel=1e-6)
    assert loss((full, half), landmarks).item() == pytest.approx(expected_full + expected_half, rel=1e-6)
    # evaluation-mode output (one tensor): the full-resolution term only
    assert loss(full, landmarks).item() == pytest.approx(expected_full, rel=1e-6)


def test_loss_far_from_every_landmark_is_the_plain_mean_squared_error_and_zero_at_the_targets():
    loss = ExponentialWeightedCenterLoss(2, 2)  # sigma 10, alpha 40
    landmarks = torch.tensor([[[-1e4, -1e4], [-1e4, 5e4]]])  # targets underflow to 0: weight 40^0 = 1
    assert loss((torch.full((1, 2, 8, 6), 2.0), torch.full((1, 2, 4, 3), 2.0)), landmarks).item() == 8.0
    landmarks = torch.tensor([[[3.0, 2.0], [5.5, 0.25]]])
    full = dense_gaussian_heatmaps(landmarks, [8, 6], 10.0)
    half = dense_gaussian_heatmaps((landmarks - 0.5) / 2, [4, 3], 10.0)
    assert loss((full, half), landmarks).item() == 0.0


def test_missing_landmarks_are_left_out_or_trained_towards_empty_maps():
    landmarks = torch.tensor([[[2.0, 3.0], [float("nan"), float("nan")]]])
    full, half = torch.rand(1, 2, 8, 8), torch.rand(1, 2, 4, 4)
    garbage_full, garbage_half = full.clone(), half.clone()
    garbage_full[:, 1] = 100.0
    garbage_half[:, 1] = -100.0
    masked = ExponentialWeightedCenterLoss(2, 2, sigma=2.0)
    one = ExponentialWeightedCenterLoss(1, 2, sigma=2.0)
    reference = one((full[:, :1], half[:, :1]), landmarks[:, :1])
    assert masked((garbage_full, garbage_half), landmarks).item() == pytest.approx(reference.item(), rel=1e-6)
    unmasked = ExponentialWeightedCenterLoss(2, 2, sigma=2.0, mask_missing=False)
    expected = (reference + (full[:, 1] ** 2).mean() + (half[:, 1] ** 2).mean()) / 2  # mean over both channels
    assert unmasked((full, half), landmarks).item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_refuses_mismatched_shapes():
    loss = ExponentialWeightedCenterLoss(2, 2)
    with pytest.raises(ValueError, match="full-resolution"):
        loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        loss(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 3))


def test_gradients_reach_the_backbone_both_heads_and_the_input_branch(net):
    net.train()
    net.zero_grad()
    landmarks = torch.tensor([[[10.0, 20.0], [40.0, 50.0], [float("nan"), float("nan")]]])
    loss = ExponentialWeightedCenterLoss(3, 2)(net(torch.randn(1, 1, 64, 64)), landmarks)
    loss.backward()
    assert torch.isfinite(loss)
    for module in (net.features.conv0, net.input_branch.conv, net.bottom_up_5.conv, net.half_head[1], net.full_head[1]):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
