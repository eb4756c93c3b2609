"""Landmark localization networks: SpatialConfiguration-Net, Localization U-Net, multi-task U-Net, FARNet, GU2Net and
their building blocks."""

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
from mlm.networks.gu2net import (
    DomainModuleList,
    GlobalNet,
    GU2Net,
    SeparableDoubleConv,
    SharedDoubleConv,
    U2Net,
    count_parameters,
    parameter_domains,
)
from mlm.networks.mtunet import MultiTaskUNet, vgg19_features_key_map
from mlm.networks.scn import SCNLocalAppearance, SCNSpatialConfiguration, SpatialConfigurationNet
from mlm.networks.unet import LocalizationUNet

__all__ = [
    "ContractingBlock",
    "ConvAct",
    "CubicUpsample",
    "DomainModuleList",
    "ExpandingBlock",
    "FARNet",
    "GU2Net",
    "GlobalNet",
    "LinearUpsample",
    "LocalizationUNet",
    "MultiTaskUNet",
    "SCNLocalAppearance",
    "SCNSpatialConfiguration",
    "SeparableDoubleConv",
    "SharedDoubleConv",
    "SpatialConfigurationNet",
    "TensorModule",
    "U2Net",
    "check_divisible",
    "check_input",
    "count_parameters",
    "densenet121_key_map",
    "keys_cubic_kernel",
    "parameter_domains",
    "vgg19_features_key_map",
]
