"""mlm.networks.MultiTaskUNet: output shapes in 2D/3D, the VGG19 encoder's size, loading VGG19 weights, TorchScript."""

from __future__ import annotations

import pytest
import torch

from mlm.bundle import multitask_unet
from mlm.networks import MultiTaskUNet, vgg19_features_key_map

#: parameters of torchvision's vgg19().features (configuration E, no BN): 20.02M, the paper's encoder
VGG19_FEATURES_PARAMETERS = 20_024_384


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 1, 64, 48)), (2, (1, 1, 50, 37)), (3, (1, 1, 32, 40, 33))])
def test_output_has_n_times_one_plus_d_channels_at_the_input_size(spatial_dims, shape):
    net = MultiTaskUNet(spatial_dims, 1, 3, num_filters=4)
    out = net(torch.randn(shape))
    assert out.shape == (shape[0], 3 * (1 + spatial_dims), *shape[2:])


def test_full_width_encoder_has_the_vgg19_feature_parameter_count():
    net = MultiTaskUNet(2, 3, 19)
    assert sum(p.numel() for p in net.encoder.parameters()) == VGG19_FEATURES_PARAMETERS
    # one grey channel: the first conv has 64 * 2 * 9 weights fewer
    grey = MultiTaskUNet(2, 1, 19)
    assert sum(p.numel() for p in grey.encoder.parameters()) == VGG19_FEATURES_PARAMETERS - 64 * 2 * 9
    assert net.head.out_channels == 57 and net.up5.convs[0].out_channels == 64
    assert [stage[-3].out_channels for stage in net.encoder] == [64, 128, 256, 512, 512]


def _synthetic_vgg19_state_dict(prefix: str = "features.") -> dict[str, torch.Tensor]:
    """A state dict with torchvision's VGG19 key layout and shapes, every tensor filled with a distinct value."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
    state, idx, cin = {}, 0, 3
    for v in cfg:
        if v == "M":
            idx += 1
            continue
        state[f"{prefix}{idx}.weight"] = torch.full((v, cin, 3, 3), float(idx))
        state[f"{prefix}{idx}.bias"] = torch.full((v,), float(idx) + 0.5)
        idx, cin = idx + 2, v
    state["classifier.0.weight"] = torch.zeros(4, 4)  # ignored
    return state


@pytest.mark.parametrize("prefix", ["features.", ""])
def test_vgg19_weights_map_to_the_encoder_by_torchvision_index(prefix, tmp_path):
    state = _synthetic_vgg19_state_dict(prefix)
    assert len(vgg19_features_key_map()) == 32  # 16 convs
    path = tmp_path / "vgg19.pt"
    torch.save(state, path)
    net = MultiTaskUNet(2, 3, 2, pretrained_weights=path)
    own = net.state_dict()
    for src, dst in vgg19_features_key_map().items():
        assert torch.equal(own[dst], state[src.replace("features.", prefix, 1)]), (src, dst)
    assert torch.equal(own["encoder.4.6.weight"], torch.full((512, 512, 3, 3), 34.0))  # features.34 = last conv


def test_vgg19_weights_for_a_grey_input_sum_the_colour_kernels():
    state = _synthetic_vgg19_state_dict()
    state["features.0.weight"] = torch.randn(64, 3, 3, 3)
    net = MultiTaskUNet(2, 1, 2)
    net.load_vgg19_features(state)
    assert torch.allclose(net.encoder[0][0].weight, state["features.0.weight"].sum(1, keepdim=True))


def test_vgg19_weights_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="num_filters=64"):
        MultiTaskUNet(2, 3, 2, num_filters=8).load_vgg19_features(_synthetic_vgg19_state_dict())
    with pytest.raises(ValueError, match="3D"):
        MultiTaskUNet(3, 3, 2, num_filters=4).load_vgg19_features(_synthetic_vgg19_state_dict())
    state = _synthetic_vgg19_state_dict()
    del state["features.34.bias"]
    with pytest.raises(ValueError, match="features.34.bias"):
        MultiTaskUNet(2, 3, 2).load_vgg19_features(state)


def test_too_small_input_and_wrong_dimensionality_raise():
    net = MultiTaskUNet(2, 1, 2, num_filters=4)
    with pytest.raises(ValueError, match=">= 32"):
        net(torch.randn(1, 1, 31, 64))
    with pytest.raises(ValueError, match="expects input"):
        net(torch.randn(1, 1, 32, 32, 32))


def test_bundle_builder_refuses_scn_arguments_that_would_change_the_method():
    assert isinstance(multitask_unet(2, 1, 2, num_filters=4, spatial_downsample=None), MultiTaskUNet)
    with pytest.raises(ValueError, match="spatial_downsample"):
        multitask_unet(2, 1, 2, num_filters=4, spatial_downsample=16)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("spatial_dims,shapes", [(2, [(1, 1, 64, 64), (2, 1, 50, 37)]), (3, [(1, 1, 32, 40, 33)])])
def test_scripted_network_matches_eager(spatial_dims, shapes, tmp_path):
    net = MultiTaskUNet(spatial_dims, 1, 2, num_filters=4).eval()
    scripted = torch.jit.script(net)
    torch.jit.save(scripted, str(tmp_path / "net.ts"))
    loaded = torch.jit.load(str(tmp_path / "net.ts"))
    for shape in shapes:
        x = torch.randn(shape)
        with torch.no_grad():
            eager = net(x)
            assert torch.equal(scripted(x), eager) and torch.equal(loaded(x), eager)
