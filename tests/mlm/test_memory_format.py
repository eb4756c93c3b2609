"""Channels-last training on the CPU: the layout names, the network and batch conversion, the bundles' choice."""

from __future__ import annotations

import pytest
import torch

from mlm.bundle import bundle_config_parser
from mlm.bundle.launch import BUNDLES_DIR
from mlm.engines import PrepareLandmarkBatch
from mlm.memory_format import memory_format_of, with_memory_format
from mlm.networks import SpatialConfigurationNet


def test_memory_format_names():
    assert memory_format_of("channels_last", 4) == torch.channels_last
    assert memory_format_of("channels_last", 5) == torch.channels_last_3d
    assert memory_format_of(None, 4) == memory_format_of("contiguous", 5) == torch.contiguous_format
    with pytest.raises(ValueError, match="memory_format must be one of"):
        memory_format_of("nhwc", 4)
    with pytest.raises(ValueError, match="memory_format must be one of"):
        PrepareLandmarkBatch(memory_format="nhwc")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_channels_last_network_and_batch_give_the_same_output(spatial_dims):
    torch.manual_seed(0)
    size = (16,) * spatial_dims
    net = SpatialConfigurationNet(spatial_dims, 1, 3, num_filters=4, spatial_downsample=4, spatial_kernel_size=3)
    net.eval()
    batch = {"image": torch.rand(2, 1, *size), "landmarks": torch.rand(2, 3, spatial_dims) * 15}
    plain_image, landmarks = PrepareLandmarkBatch(num_landmarks=3)(batch)
    expected = net(plain_image)
    image, same_landmarks = PrepareLandmarkBatch(num_landmarks=3, memory_format="channels_last")(batch)
    layout = memory_format_of("channels_last", spatial_dims + 2)
    assert image.is_contiguous(memory_format=layout)  # (one channel: both layouts are the same strides)
    three = PrepareLandmarkBatch(memory_format="channels_last")({"image": torch.rand(2, 3, *size)})[0]
    assert three.is_contiguous(memory_format=layout) and not three.is_contiguous()
    assert torch.equal(same_landmarks, landmarks)
    converted = with_memory_format(net, "channels_last", spatial_dims)
    assert converted is net
    kernels = [p for p in net.parameters() if p.ndim == spatial_dims + 2]
    assert kernels and all(p.is_contiguous(memory_format=layout) for p in kernels)
    # the same function, another summation order: float rounding only
    torch.testing.assert_close(net(image), expected, rtol=1e-4, atol=1e-5)


def test_cpu_yaml_trains_2d_bundles_channels_last_and_3d_ones_contiguous():
    ceph = bundle_config_parser(BUNDLES_DIR / "scn_ceph", ["train.yaml", "cpu.yaml"])
    assert ceph.get_parsed_content("memory_format") == "channels_last"
    assert ceph.get_parsed_content("prepare_batch").memory_format == "channels_last"
    spine = bundle_config_parser(BUNDLES_DIR / "scn_spine_ct", ["train.yaml", "cpu.yaml"])
    assert spine.get_parsed_content("memory_format") == "contiguous"
    assert bundle_config_parser(BUNDLES_DIR / "scn_ceph", ["train.yaml"]).get_parsed_content("memory_format") == (
        "contiguous"
    )
