"""SpatialConfiguration-Net (Payer, Stern, Bischof, Urschler, MedIA 2019), one class for 2D and 3D."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from mlm.networks.blocks import (
    ContractingBlock,
    ConvAct,
    CubicUpsample,
    LinearUpsample,
    check_input,
    heatmap_init_,
)

__all__ = ["SpatialConfigurationNet", "SCNLocalAppearance", "SCNSpatialConfiguration"]


class SCNLocalAppearance(nn.Module):
    """Local appearance component of the SCN (Payer's ``SCNetLocal``): a U-Net-like net with additive skips.

    Per level a contracting block (conv3 -> dropout -> conv3) and a parallel conv3; average pooling by 2
    between levels; expanding path ``node = parallel[l] + upsample_linear_x2(node)``.
    ``(B, num_filters, *S) -> (B, num_filters, *S)``; ``S`` must be divisible by ``2 ** (num_levels - 1)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        num_filters: int,
        num_levels: int = 4,
        dropout: float = 0.5,
        padding_mode: str = "zeros",
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.contracting = nn.ModuleList(
            ContractingBlock(spatial_dims, num_filters, num_filters, dropout, padding_mode, negative_slope)
            for _ in range(num_levels)
        )
        self.parallel = nn.ModuleList(
            ConvAct(spatial_dims, num_filters, num_filters, 3, padding_mode, negative_slope) for _ in range(num_levels)
        )
        self.downsample = Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)
        self.upsample = LinearUpsample(spatial_dims, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parallel: list[torch.Tensor] = []
        node = x
        # zip over the ModuleLists (no indexing by a variable) keeps the module scriptable
        for level, (contracting, parallel_conv) in enumerate(zip(self.contracting, self.parallel)):
            if level > 0:
                node = self.downsample(node)
            node = contracting(node)
            parallel.append(parallel_conv(node))
        node = parallel[-1]
        for level in range(self.num_levels - 2, -1, -1):
            node = parallel[level] + self.upsample(node)
        return node


class SCNSpatialConfiguration(nn.Module):
    """Spatial configuration component: avgpool -> convs at low resolution -> tanh -> upsample back.

    ``(B, N, *S) -> (B, N, *S)``; ``S`` must be divisible by ``downsample``.

    Args:
        spatial_dims: 2 or 3.
        num_landmarks: N, input and output channels.
        num_filters: channels of the hidden convs.
        downsample: average-pooling factor (16 in the 2D paper, 8 for the spine).
        kernel_size: kernel of the low-resolution convs (11 in 2D, 7 in 3D).
        num_convs: hidden convs (with LeakyReLU) before the output conv.
        padding_mode: conv padding (``"zeros"``, ``"reflect"``, ``"replicate"``).
        negative_slope: LeakyReLU slope.
        init_std: std of the truncated-normal init of the output conv.
        upsample_mode: ``"cubic"`` (separable Keys cubic, a=-0.5, as Payer's code, 2D and 3D) or ``"linear"``.
    """

    def __init__(
        self,
        spatial_dims: int,
        num_landmarks: int,
        num_filters: int,
        downsample: int = 16,
        kernel_size: int = 11,
        num_convs: int = 3,
        padding_mode: str = "zeros",
        negative_slope: float = 0.1,
        init_std: float = 1e-4,
        upsample_mode: str = "cubic",
    ) -> None:
        super().__init__()
        self.downsample = Pool[Pool.AVG, spatial_dims](kernel_size=downsample, stride=downsample)
        layers: list[nn.Module] = []
        channels = num_landmarks
        for _ in range(num_convs):
            layers.append(ConvAct(spatial_dims, channels, num_filters, kernel_size, padding_mode, negative_slope))
            channels = num_filters
        self.convs = nn.Sequential(*layers)
        self.heatmaps = ConvAct(spatial_dims, channels, num_landmarks, kernel_size, padding_mode, negative_slope=None)
        heatmap_init_(self.heatmaps.conv, init_std)
        if upsample_mode == "cubic":
            self.upsample: nn.Module = CubicUpsample(spatial_dims, downsample)
        elif upsample_mode == "linear":
            self.upsample = LinearUpsample(spatial_dims, downsample)
        else:
            raise ValueError(f"upsample_mode must be 'cubic' or 'linear', got {upsample_mode!r}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(torch.tanh(self.heatmaps(self.convs(self.downsample(x)))))


class SpatialConfigurationNet(nn.Module):
    """SpatialConfiguration-Net: heatmaps = local appearance heatmaps * spatial configuration heatmaps.

    conv0 (3^D, LeakyReLU) -> :class:`SCNLocalAppearance` -> ``local_heatmaps`` conv3 -> N (no activation);
    then :class:`SCNSpatialConfiguration` on the local heatmaps; output = local * spatial (elementwise).
    Convs use "same" padding, bias, He init (fan_in, leaky); no normalisation.

    Input ``(B, in_channels, *S)`` -> output ``(B, num_landmarks, *S)`` (heatmaps, unbounded).
    Every size in ``S`` must be a multiple of ``max(2 ** (num_levels - 1), spatial_downsample)``
    (16 with the defaults); otherwise ``forward`` raises ``ValueError``.

    Paper settings: 2D (cephalograms, hand X-rays): the defaults. 3D spine CT: ``num_filters=64,
    spatial_downsample=8, spatial_kernel_size=7, padding_mode="reflect", heatmap_init_std=1e-3``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_landmarks: N, output heatmap channels (any positive number).
        num_filters: channels of every conv of the local and spatial parts.
        num_levels: levels of the local appearance net.
        spatial_downsample: average-pooling factor before the spatial configuration convs.
        spatial_kernel_size: kernel size of the spatial configuration convs.
        num_spatial_convs: hidden convs of the spatial configuration part.
        dropout: dropout probability inside the contracting blocks (training only).
        negative_slope: LeakyReLU slope.
        padding_mode: conv padding mode: ``"zeros"`` (2D paper) or ``"reflect"``/``"replicate"`` (3D spine).
            ``"reflect"`` needs every size ``S >= max(2 ** num_levels, spatial_downsample * (spatial_kernel_size // 2 + 1))``
            (32 for the spine setting), so that the padding is smaller than the feature map at every resolution.
        heatmap_init_std: std of the truncated-normal init of both heatmap output convs (1e-4 2D, 1e-3 3D).
        spatial_upsample_mode: ``"cubic"`` (separable Keys cubic a=-0.5 via fixed transposed convs, as Payer's
            code, in 2D and 3D) or ``"linear"`` (bi/trilinear, cheaper).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_landmarks: int,
        num_filters: int = 128,
        num_levels: int = 4,
        spatial_downsample: int = 16,
        spatial_kernel_size: int = 11,
        num_spatial_convs: int = 3,
        dropout: float = 0.5,
        negative_slope: float = 0.1,
        padding_mode: str = "zeros",
        heatmap_init_std: float = 1e-4,
        spatial_upsample_mode: str = "cubic",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_landmarks < 1 or in_channels < 1 or num_filters < 1 or num_levels < 1 or spatial_downsample < 1:
            raise ValueError(
                "in_channels, num_landmarks, num_filters, num_levels and spatial_downsample must be positive, got "
                f"{in_channels}, {num_landmarks}, {num_filters}, {num_levels}, {spatial_downsample}."
            )
        self.spatial_dims = spatial_dims
        self.num_landmarks = num_landmarks
        self.padding_mode = padding_mode
        self.size_multiple = max(2 ** (num_levels - 1), spatial_downsample)
        # reflect/circular padding needs pad < size at every resolution: lowest local level and spatial part
        self.min_size = self.size_multiple
        if padding_mode in ("reflect", "circular"):
            self.min_size = max(2**num_levels, spatial_downsample * (spatial_kernel_size // 2 + 1))
        self.conv0 = ConvAct(spatial_dims, in_channels, num_filters, 3, padding_mode, negative_slope)
        self.local_appearance = SCNLocalAppearance(
            spatial_dims, num_filters, num_levels, dropout, padding_mode, negative_slope
        )
        self.local_heatmaps = ConvAct(spatial_dims, num_filters, num_landmarks, 3, padding_mode, negative_slope=None)
        heatmap_init_(self.local_heatmaps.conv, heatmap_init_std)
        self.spatial_configuration = SCNSpatialConfiguration(
            spatial_dims,
            num_landmarks,
            num_filters,
            downsample=spatial_downsample,
            kernel_size=spatial_kernel_size,
            num_convs=num_spatial_convs,
            padding_mode=padding_mode,
            negative_slope=negative_slope,
            init_std=heatmap_init_std,
            upsample_mode=spatial_upsample_mode,
        )

    def forward_components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(local_heatmaps, spatial_heatmaps)``, both ``(B, N, *S)``; their product is ``forward(x)``."""
        check_input(
            x,
            self.spatial_dims,
            self.size_multiple,
            self.min_size,
            "SpatialConfigurationNet",
            f"with padding_mode='{self.padding_mode}' ",
        )
        local = self.local_heatmaps(self.local_appearance(self.conv0(x)))
        spatial = self.spatial_configuration(local)
        return local, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local, spatial = self.forward_components(x)
        return local * spatial
