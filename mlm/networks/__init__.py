"""Landmark localization networks: SpatialConfiguration-Net, Localization U-Net, multi-task U-Net, FARNet and their
building blocks."""

from mlm.networks.blocks import (
    ContractingBlock,
    ConvAct,
    CubicUpsample,
    ExpandingBlock,
    LinearUpsample,
    TensorModule,
    check_divisible,
    check_input,
    keys_cubic_kernel,
)
from mlm.networks.farnet import FARNet, densenet121_key_map
from mlm.networks.mtunet import MultiTaskUNet, vgg19_features_key_map
from mlm.networks.scn import SCNLocalAppearance, SCNSpatialConfiguration, SpatialConfigurationNet
from mlm.networks.unet import LocalizationUNet

__all__ = [
    "ContractingBlock",
    "ConvAct",
    "CubicUpsample",
    "ExpandingBlock",
    "FARNet",
    "LinearUpsample",
    "LocalizationUNet",
    "MultiTaskUNet",
    "SCNLocalAppearance",
    "SCNSpatialConfiguration",
    "SpatialConfigurationNet",
    "TensorModule",
    "check_divisible",
    "check_input",
    "densenet121_key_map",
    "keys_cubic_kernel",
    "vgg19_features_key_map",
]
