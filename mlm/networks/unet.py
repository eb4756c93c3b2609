"""Localization U-Net: the heatmap-regression baseline of Payer et al. (MedIA 2019), one class for 2D and 3D."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from mlm.networks.blocks import (
    ContractingBlock,
    ConvAct,
    ExpandingBlock,
    LinearUpsample,
    TensorModule,
    check_input,
    heatmap_init_,
)

__all__ = ["LocalizationUNet"]


class LocalizationUNet(nn.Module):
    """Classic U-Net with average pooling, linear upsampling and concatenated skips (Payer's ``UnetClassicAvgLinear``).

    Per level a contracting block (conv3 -> dropout -> conv3, LeakyReLU); average pooling by 2 between levels;
    expanding path ``node = expanding(concat(skip[l], upsample_linear_x2(node)))`` with two conv3 per level;
    then a heatmap conv -> N (truncated-normal init with ``heatmap_init_std``, no activation).
    Payer's ``UnetClassic`` combines skip and upsampled paths by concatenation (unlike the SCN's local part,
    which adds them); this class follows it.

    Input ``(B, in_channels, *S)`` -> heatmaps ``(B, num_landmarks, *S)``. Every size in ``S`` must be a
    multiple of ``2 ** (num_levels - 1)`` (16 with the defaults); otherwise ``forward`` raises ``ValueError``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_landmarks: N, output heatmap channels.
        num_filters: filters at the first level (64 in the paper's 3D baseline).
        num_levels: resolution levels (5 in the paper).
        double_filters_per_level: use ``num_filters * 2 ** level`` filters at each level (Payer: False).
        dropout: dropout probability inside the contracting blocks (training only).
        negative_slope: LeakyReLU slope.
        padding_mode: conv padding mode (``"zeros"``, ``"reflect"``, ``"replicate"``).
        heatmap_kernel_size: kernel size of the output heatmap conv.
        heatmap_init_std: std of the heatmap conv's truncated-normal init.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_landmarks: int,
        num_filters: int = 64,
        num_levels: int = 5,
        double_filters_per_level: bool = False,
        dropout: float = 0.5,
        negative_slope: float = 0.1,
        padding_mode: str = "zeros",
        heatmap_kernel_size: int = 1,
        heatmap_init_std: float = 1e-4,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_landmarks < 1 or in_channels < 1 or num_filters < 1 or num_levels < 1:
            raise ValueError(
                "in_channels, num_landmarks, num_filters and num_levels must be positive, got "
                f"{in_channels}, {num_landmarks}, {num_filters}, {num_levels}."
            )
        self.spatial_dims = spatial_dims
        self.num_levels = num_levels
        self.size_multiple = 2 ** (num_levels - 1)
        filters = [num_filters * (2**level if double_filters_per_level else 1) for level in range(num_levels)]
        channels = [in_channels] + filters[:-1]
        self.contracting = nn.ModuleList(
            ContractingBlock(spatial_dims, c, f, dropout, padding_mode, negative_slope)
            for c, f in zip(channels, filters)
        )
        self.expanding = nn.ModuleList(
            ExpandingBlock(
                spatial_dims, filters[level] + filters[level + 1], filters[level], padding_mode, negative_slope
            )
            for level in range(num_levels - 1)
        )
        self.downsample = Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)
        self.upsample = LinearUpsample(spatial_dims, 2)
        self.heatmaps = ConvAct(spatial_dims, filters[0], num_landmarks, heatmap_kernel_size, padding_mode, None)
        heatmap_init_(self.heatmaps.conv, heatmap_init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.spatial_dims, self.size_multiple, 1, "LocalizationUNet")
        skips: list[torch.Tensor] = []
        node = x
        # iterate the ModuleLists (no indexing by a variable) so the module is scriptable
        for level, contracting in enumerate(self.contracting):
            if level > 0:
                node = self.downsample(node)
            node = contracting(node)
            skips.append(node)
        for level in range(self.num_levels - 2, -1, -1):
            # indexing a ModuleList by a loop variable is scriptable through a module interface annotation
            expanding: TensorModule = self.expanding[level]
            node = expanding.forward(torch.cat([skips[level], self.upsample(node)], dim=1))
        return self.heatmaps(node)
