"""Tests for mlm.networks: SCN and localization U-Net shapes, divisibility errors, local * spatial, cubic upsampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlm.networks import CubicUpsample, LocalizationUNet, SpatialConfigurationNet, keys_cubic_kernel

torch.set_num_threads(1)


def _scn_3d(num_landmarks: int = 3, **kwargs) -> SpatialConfigurationNet:
    args = dict(num_filters=4, spatial_downsample=8, spatial_kernel_size=3, heatmap_init_std=1e-3)
    args.update(kwargs)
    return SpatialConfigurationNet(3, 1, num_landmarks, **args)


@pytest.mark.parametrize("num_landmarks", [1, 5])
def test_scn_2d_output_shape_is_batch_landmarks_spatial(num_landmarks):
    net = SpatialConfigurationNet(2, 1, num_landmarks, num_filters=8).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 64, 48))
    assert out.shape == (2, num_landmarks, 64, 48)
    assert torch.isfinite(out).all()


def test_scn_3d_output_shape_and_reflect_padding():
    net = _scn_3d(num_landmarks=2, padding_mode="reflect").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 32, 32, 32))
    assert out.shape == (1, 2, 32, 32, 32)


def test_scn_accepts_single_image_batch_like_verify_net_in_out():
    net = SpatialConfigurationNet(2, 1, 4, num_filters=4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 16)).shape == (1, 4, 16, 16)


@pytest.mark.parametrize("shape,multiple", [((64, 40), 16), ((64, 72), 16)])
def test_scn_raises_value_error_naming_the_required_multiple(shape, multiple):
    net = SpatialConfigurationNet(2, 1, 2, num_filters=4)
    with pytest.raises(ValueError, match=f"multiple of {multiple}"):
        net(torch.randn(1, 1, *shape))


def test_scn_required_multiple_is_max_of_pooling_and_spatial_downsample():
    net = SpatialConfigurationNet(2, 1, 2, num_filters=4, num_levels=6, spatial_downsample=8)
    assert net.size_multiple == 32
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.randn(1, 1, 48, 64))


def test_scn_reflect_padding_too_small_input_raises_clear_error():
    net = _scn_3d(padding_mode="reflect", spatial_kernel_size=7)
    with pytest.raises(ValueError, match=">= 32"):
        net(torch.randn(1, 1, 32, 32, 16))


def test_scn_wrong_number_of_spatial_dims_raises():
    with pytest.raises(ValueError, match="spatial dims"):
        SpatialConfigurationNet(2, 1, 2, num_filters=4)(torch.randn(1, 1, 16, 16, 16))


def test_scn_output_is_local_times_spatial_heatmaps():
    torch.manual_seed(0)
    net = SpatialConfigurationNet(2, 1, 3, num_filters=8, heatmap_init_std=0.1).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        local, spatial = net.forward_components(x)
        out = net(x)
    assert local.shape == spatial.shape == out.shape == (2, 3, 32, 32)
    torch.testing.assert_close(out, local * spatial, rtol=0, atol=0)
    # spatial part goes through tanh, then an interpolating cubic: bounded by the Keys overshoot (<= 1.2)
    assert spatial.abs().max() <= 1.2
    assert local.abs().max() > 0


def test_scn_heatmap_convs_start_small_and_others_he_initialised():
    torch.manual_seed(0)
    net = SpatialConfigurationNet(2, 1, 3, num_filters=16, heatmap_init_std=1e-4)
    std_heat = net.local_heatmaps.conv.weight.std().item()
    assert std_heat < 2e-4
    w = net.local_appearance.contracting[0].conv1.conv.weight
    fan_in = w.shape[1] * w[0, 0].numel()
    expected = (2.0 / (1 + 0.1**2) / fan_in) ** 0.5
    assert abs(w.std().item() - expected) / expected < 0.15  # 2304 samples: 15% tolerance
    assert net.conv0.conv.bias.abs().max() == 0


def test_scn_all_parameters_receive_gradients():
    torch.manual_seed(0)
    net = _scn_3d(num_landmarks=2, heatmap_init_std=0.1, dropout=0.0)
    out = net(torch.randn(1, 1, 16, 16, 16))
    out.square().sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("spatial_dims,shape", [(2, (32, 48)), (3, (16, 16, 32))])
def test_unet_output_shape(spatial_dims, shape):
    net = LocalizationUNet(spatial_dims, 2, 3, num_filters=4, num_levels=4).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 2, *shape))
    assert out.shape == (1, 3, *shape)


def test_unet_double_filters_per_level_shape_and_divisibility_error():
    net = LocalizationUNet(2, 1, 2, num_filters=2, num_levels=5, double_filters_per_level=True).eval()
    assert net.contracting[4].conv2.conv.out_channels == 32
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 32)).shape == (1, 2, 16, 32)
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.randn(1, 1, 16, 24))


def test_cubic_upsample_matches_torch_bicubic_with_a_minus_0_75():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7)
    for s in (2, 3, 16):
        ours = CubicUpsample(2, s, a=-0.75)(x)
        ref = F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_cubic_upsample_3d_keys_reproduces_constants_and_linear_ramps():
    const = torch.full((1, 2, 3, 4, 5), 0.7)
    torch.testing.assert_close(CubicUpsample(3, 4)(const), torch.full((1, 2, 12, 16, 20), 0.7), rtol=0, atol=1e-6)
    # a linear ramp along the last axis is reproduced exactly away from the replicated border (2 input voxels)
    ramp = torch.arange(10.0).view(1, 1, 1, 1, 10).expand(1, 1, 2, 2, 10).contiguous()
    up = CubicUpsample(3, 4)(ramp)[0, 0, 0, 0]
    coords = (torch.arange(40.0) + 0.5) / 4 - 0.5  # input-voxel coordinate of each output voxel
    inner = (coords >= 2) & (coords <= 7)
    torch.testing.assert_close(up[inner], coords[inner], rtol=0, atol=1e-5)


def test_keys_kernel_sums_to_scale_factor_and_interpolates():
    for s in (2, 8, 16):
        k = keys_cubic_kernel(s)
        assert k.shape == (4 * s,)
        # partition of unity: each output phase's taps sum to 1
        for phase in range(s):
            assert abs(k[phase::s].sum().item() - 1.0) < 1e-6


_SCRIPTABLE = {
    "scn_2d_cubic": (lambda: SpatialConfigurationNet(2, 1, 5, num_filters=8), [(1, 1, 64, 64), (2, 1, 32, 48)]),
    "scn_2d_linear": (
        lambda: SpatialConfigurationNet(2, 1, 3, num_filters=4, spatial_upsample_mode="linear"),
        [(1, 1, 32, 32), (1, 1, 16, 64)],
    ),
    "scn_3d_reflect": (
        lambda: _scn_3d(num_landmarks=4, padding_mode="reflect"),
        [(1, 1, 32, 32, 64), (1, 1, 40, 32, 32)],
    ),
    "unet_2d": (lambda: LocalizationUNet(2, 1, 5, num_filters=8, num_levels=4), [(1, 1, 64, 64), (2, 1, 16, 32)]),
    "unet_3d_doubling": (
        lambda: LocalizationUNet(3, 1, 5, num_filters=4, num_levels=3, double_filters_per_level=True),
        [(1, 1, 16, 16, 24), (1, 1, 8, 12, 16)],
    ),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", sorted(_SCRIPTABLE))
def test_networks_are_scriptable_and_match_eager_on_several_sizes(name, tmp_path):
    """torch.jit.script (the model zoo's TorchScript export) gives exactly the eager output, also after save/load."""
    build, shapes = _SCRIPTABLE[name]
    net = build().eval()
    scripted = torch.jit.script(net)
    torch.jit.save(scripted, str(tmp_path / "net.ts"))
    loaded = torch.jit.load(str(tmp_path / "net.ts"))
    for shape in shapes:
        x = torch.randn(shape)
        with torch.no_grad():
            eager = net(x)
            assert torch.equal(scripted(x), eager), f"{name} {shape}: scripted output differs from eager"
            assert torch.equal(loaded(x), eager), f"{name} {shape}: saved and loaded TorchScript differs from eager"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_network_keeps_the_input_checks():
    scripted = torch.jit.script(SpatialConfigurationNet(2, 1, 2, num_filters=4).eval())
    with pytest.raises(torch.jit.Error, match="multiple of 16"):
        scripted(torch.randn(1, 1, 30, 32))
    with pytest.raises(torch.jit.Error, match="2 spatial dims"):
        scripted(torch.randn(1, 1, 32, 32, 32))
