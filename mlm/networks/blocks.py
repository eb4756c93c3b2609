"""Small building blocks shared by the landmark localization networks (SCN, U-Net), 2D and 3D.

Every block is built from MONAI's layer factories (``Conv[Conv.CONV, spatial_dims]``,
``Pool[Pool.AVG, spatial_dims]``) so one class serves 2D and 3D, like ``monai.networks.nets.BasicUNet``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Dropout
from torch import nn

__all__ = [
    "he_init_",
    "heatmap_init_",
    "ConvAct",
    "ContractingBlock",
    "ExpandingBlock",
    "LinearUpsample",
    "CubicUpsample",
    "keys_cubic_kernel",
    "check_divisible",
    "check_input",
    "TensorModule",
]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@torch.jit.interface
class TensorModule(nn.Module):
    """TorchScript interface of a module mapping one tensor to one tensor.

    Annotating ``block: TensorModule = self.blocks[i]`` lets scripted code index an ``nn.ModuleList`` with a
    loop variable (plain TorchScript only allows literal indices or iteration).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # the argument name of nn.Sequential.forward
        pass


def he_init_(conv: nn.Module, negative_slope: float = 0.1) -> None:
    """He (Kaiming) normal initialisation, fan_in, for a conv followed by LeakyReLU(``negative_slope``); zero bias."""
    nn.init.kaiming_normal_(conv.weight, a=negative_slope, mode="fan_in", nonlinearity="leaky_relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def heatmap_init_(conv: nn.Module, std: float) -> None:
    """Truncated normal (+-2 std) initialisation with a small ``std`` for heatmap output convs; zero bias."""
    nn.init.trunc_normal_(conv.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def check_divisible(spatial_shape: list[int], multiple: int, name: str) -> None:
    """Raise ``ValueError`` when a spatial size is not a multiple of ``multiple`` (network ``name``).

    TorchScript-compatible, so a scripted network keeps the check.
    """
    for size in spatial_shape:
        if size % multiple != 0:
            raise ValueError(
                f"{name}: every input spatial size must be a multiple of {multiple}, got spatial shape "
                f"{spatial_shape} (pad or crop the input, e.g. with monai.transforms.DivisiblePad(k={multiple}))."
            )


def check_input(x: torch.Tensor, spatial_dims: int, multiple: int, min_size: int, name: str, hint: str = "") -> None:
    """Check a network input ``(B, C, *S)``: ``spatial_dims`` spatial axes, each a multiple of ``multiple`` and at
    least ``min_size`` (``hint`` says why, e.g. the padding mode). Raises ``ValueError``; TorchScript-compatible."""
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"{name}({spatial_dims}D) expects input (B, C, *S) with {spatial_dims} spatial dims, got shape "
            f"{list(x.shape)}."
        )
    spatial_shape = list(x.shape[2:])
    check_divisible(spatial_shape, multiple, name)
    for size in spatial_shape:
        if size < min_size:
            raise ValueError(
                f"{name}: {hint}every input spatial size must be >= {min_size} (and a multiple of {multiple}), got "
                f"spatial shape {spatial_shape}."
            )


class ConvAct(nn.Sequential):
    """Conv ("same" padding, bias) optionally followed by LeakyReLU; He-initialised.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size (voxels).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (``torch.nn.Conv`` modes).
        negative_slope: LeakyReLU slope; ``None`` for no activation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding_mode: str = "zeros",
        negative_slope: float | None = 0.1,
    ) -> None:
        super().__init__()
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}.")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}.")
        conv = Conv[Conv.CONV, spatial_dims](
            in_channels, out_channels, kernel_size=kernel_size, padding=kernel_size // 2, padding_mode=padding_mode
        )
        he_init_(conv, 0.0 if negative_slope is None else negative_slope)
        self.add_module("conv", conv)
        if negative_slope is not None:
            self.add_module("act", nn.LeakyReLU(negative_slope))


class ContractingBlock(nn.Sequential):
    """Payer's SCN/U-Net contracting block: conv3 -> dropout -> conv3 (LeakyReLU after each conv).

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dropout: float = 0.5,
        padding_mode: str = "zeros",
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        self.add_module("conv1", ConvAct(spatial_dims, in_channels, out_channels, 3, padding_mode, negative_slope))
        if dropout > 0:
            self.add_module("dropout", Dropout[Dropout.DROPOUT, spatial_dims](dropout))
        self.add_module("conv2", ConvAct(spatial_dims, out_channels, out_channels, 3, padding_mode, negative_slope))


class ExpandingBlock(nn.Sequential):
    """Classic U-Net expanding block: two conv3 with LeakyReLU. ``(B, in, *S) -> (B, out, *S)``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        padding_mode: str = "zeros",
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        self.add_module("conv1", ConvAct(spatial_dims, in_channels, out_channels, 3, padding_mode, negative_slope))
        self.add_module("conv2", ConvAct(spatial_dims, out_channels, out_channels, 3, padding_mode, negative_slope))


class LinearUpsample(nn.Module):
    """(Bi/tri)linear upsampling by an integer factor, ``align_corners=False`` (pixel centres), border clamped.

    Payer's TF code uses a fixed transposed conv with the linear kernel; the two agree everywhere but
    on the outermost half-voxel border, where this module replicates instead of fading to zero.
    ``(B, C, *S) -> (B, C, *(S * scale_factor))``.
    """

    def __init__(self, spatial_dims: int, scale_factor: int = 2) -> None:
        super().__init__()
        self.mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]
        self.scale_factor = int(scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=float(self.scale_factor), mode=self.mode, align_corners=False)


def keys_cubic_kernel(scale_factor: int, a: float = -0.5) -> torch.Tensor:
    """Keys cubic convolution kernel sampled for upsampling by ``scale_factor`` (pixel-centre aligned).

    Returns a 1D float tensor of length ``4 * scale_factor``; with ``p = floor(1.5 * s)``, tap ``k`` weights
    the input sample at distance ``(k - p + 0.5) / s - 0.5`` (input voxels) from the output position.
    """
    s = int(scale_factor)
    t = (torch.arange(4 * s, dtype=torch.float64) - (s + s // 2) + 0.5) / s - 0.5
    x = t.abs()
    w = torch.where(
        x <= 1,
        (a + 2) * x**3 - (a + 3) * x**2 + 1,
        torch.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, torch.zeros_like(x)),
    )
    return w.float()


class CubicUpsample(nn.Module):
    """Separable Keys cubic upsampling by an integer factor, for 2D and 3D (torch has no tricubic).

    Implemented as one fixed depthwise transposed conv per axis (like Payer's TF code), pixel-centre aligned
    (``align_corners=False``) with the border replicated, so with ``a=-0.75`` it equals
    ``F.interpolate(mode="bicubic", align_corners=False)`` in 2D. Payer uses Keys' ``a=-0.5``.
    ``(B, C, *S) -> (B, C, *(S * scale_factor))``.

    Args:
        spatial_dims: 2 or 3.
        scale_factor: integer upsampling factor.
        a: Keys kernel parameter (-0.5 is the interpolating cubic of Keys 1981).
    """

    def __init__(self, spatial_dims: int, scale_factor: int, a: float = -0.5) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.scale_factor = int(scale_factor)
        self.register_buffer("kernel", keys_cubic_kernel(self.scale_factor, a), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_factor
        if s == 1:
            return x
        channels = x.shape[1]
        kernel = self.kernel.to(dtype=x.dtype, device=x.device)
        for axis in range(self.spatial_dims):
            shape = [1] * self.spatial_dims
            shape[axis] = kernel.numel()
            weight = kernel.view([1, 1] + shape).expand([channels, 1] + shape)
            stride = [1] * self.spatial_dims
            stride[axis] = s
            pad = [0] * (2 * self.spatial_dims)  # F.pad order: last axis first
            pad[2 * (self.spatial_dims - 1 - axis)] = 2
            pad[2 * (self.spatial_dims - 1 - axis) + 1] = 2
            x = F.pad(x, pad, mode="replicate")
            padding = [0] * self.spatial_dims
            padding[axis] = 3 * s + s // 2  # floor(1.5 s) (kernel centre) + 2 s (replicated border)
            if self.spatial_dims == 2:
                x = F.conv_transpose2d(x, weight, stride=stride, padding=padding, groups=channels)
            elif self.spatial_dims == 3:
                x = F.conv_transpose3d(x, weight, stride=stride, padding=padding, groups=channels)
            else:
                x = F.conv_transpose1d(x, weight, stride=stride, padding=padding, groups=channels)
            if s % 2:  # odd factors: 2 * floor(1.5 s) = 3 s - 1, so the transposed conv gives one sample too many
                x = x.narrow(axis + 2, 0, x.shape[axis + 2] - 1)
        return x
