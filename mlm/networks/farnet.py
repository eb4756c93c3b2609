"""FARNet of Ao & Wu (J Digit Imaging 2022/23): DenseNet-121 features, multi-scale feature aggregation, full-resolution
refinement, heatmaps at 1/2 and full resolution; 2D and 3D.

The authors' ``Farnet`` (shared/docs/METHODS.md section 3), every "conv" a ``conv -> BN -> ReLU`` block
(:class:`ConvNormReLU`) unless said otherwise:

- backbone: DenseNet-121 ``features`` (here MONAI's :class:`monai.networks.nets.DenseNet121`, same layout as
  torchvision's), tapped at ``conv0`` (64 channels at 1/2, before its BN), ``denseblock1`` (256 at 1/4),
  ``denseblock2`` (512 at 1/8), ``denseblock3`` (1024 at 1/16) and ``norm5`` (1024 at 1/32); an input branch, a
  ``1^D`` conv to 32 channels at full resolution;
- multi-scale feature aggregation (MSFA), every step "upsample x2, concatenate the skip, conv": a first top-down
  path (``3^D`` 1024->512, ``1^D`` ->256, then three ``1^D`` ->256 fusions down to 1/4), a bottom-up path (``3^D``
  stride-2 convs 256->512->1024->2048, each concatenated with the first top-down map of its scale and fused by a
  ``1^D`` conv to 512 and 1024, the last by a ``3^D`` conv to 1024) and a second top-down path (``1^D`` 1024->256,
  fusions ->256, ->256, ->128 and, with the ``conv0`` features, ->64 at 1/2);
- feature refinement (FR): at 1/2 a linear ``3^D`` conv (64->64) and a ``1^D`` conv give the half-resolution
  heatmaps; at full resolution ``[up(x) (64), input branch (32), up(half heatmaps) (N)]`` goes through a linear
  ``3^D`` conv (64 + 32 + N channels) and a ``1^D`` conv to the full-resolution heatmaps.

Upsampling is (bi/tri)linear with ``align_corners=False`` (PyTorch's default, the authors'). The authors' two unused
convs (``conv_33_refine2``, ``conv_33_last2``) are not built, and the landmark count is an argument (19 was
hard-coded).

Input: the authors fed ImageNet-``Normalize``d intensities of 0..255 images without dividing by 255 (values up to
about +-1000; their ``predict()`` no normalisation at all). Here the network takes the preprocessed image as it
comes (the bundles scale intensities to about [-1, 1], ``intensity_normalization``) and documents the range it
expects instead of reproducing that bug: with ImageNet weights loaded (``pretrained_weights``), feed
``(I / 255 - mean) / std`` (or a grey image scaled alike), not ``(I - mean) / std``.

Output convention (coarse-to-fine supervision through MONAI's engines, whose trainer calls
``loss_function(network(image), label)``): in training mode ``forward`` returns the tuple ``(full, half)`` of heatmaps
``(B, N, *S)`` and ``(B, N, *S/2)``, which :class:`mlm.farnet_loss.ExponentialWeightedCenterLoss` takes; in
evaluation mode (``network.eval()``, as MONAI's evaluators and inferers run it) only ``full``, so decoding,
inferers and post-transforms see one heatmap tensor at the input's size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm
from monai.networks.nets import DenseNet121
from torch import nn

from mlm.networks.blocks import check_input

__all__ = ["ConvNormReLU", "FARNet", "densenet121_key_map"]

#: the input's spatial sizes must be multiples of this (five 2x downsamplings to the 1/32 DenseNet features)
FARNET_DIVISOR = 32

_DENSE_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)


def densenet121_key_map(key: str) -> str:
    """A torchvision DenseNet-121 state-dict key as MONAI's ``DenseNet121`` names it.

    torchvision's dense layers hold ``norm1``/``conv1``/... directly (old checkpoints: ``norm.1``); MONAI's hold them
    in ``layers`` (``features.denseblock1.denselayer1.norm1.weight`` -> ``features.denseblock1.denselayer1.layers
    .norm1.weight``). Every other key is unchanged.
    """
    match = _DENSE_LAYER_KEY.match(key)
    if match is None:
        return key
    return f"{match.group(1)}.layers.{match.group(2)}{match.group(3)}.{match.group(4)}"


class ConvNormReLU(nn.Sequential):
    """``conv -> BatchNorm -> ReLU`` ("same" padding, conv bias as in the authors' ``nn.Conv2d``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size (voxels).
        stride: conv stride; 2 halves each spatial size (rounding up).

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *ceil(S / stride))``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1):
        super().__init__()
        self.add_module(
            "conv",
            Conv[Conv.CONV, spatial_dims](
                in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2
            ),
        )
        self.add_module("norm", Norm[Norm.BATCH, spatial_dims](out_channels))
        self.add_module("relu", nn.ReLU(inplace=True))


class FARNet(nn.Module):
    """FARNet (Ao & Wu): DenseNet-121 + multi-scale feature aggregation + full-resolution refinement.

    Args:
        spatial_dims: 2 (the paper) or 3 (the same layers from MONAI's 3D factories; 3D DenseNet weights only).
        in_channels: input channels (1 for grey images; the authors fed the X-ray as 3 BGR channels).
        num_landmarks: N, the heatmap channels at both resolutions (19 in the authors' code).
        pretrained_weights: path of a local DenseNet-121 state dict (torchvision's ``densenet121().state_dict()`` or
            that of its ``features``, or a MONAI ``DenseNet121``'s), loaded into ``features``; None: trained from
            scratch (nothing is downloaded). See :meth:`load_densenet121_features`.

    Input ``(B, in_channels, *S)``, each spatial size a multiple of 32 (e.g. the authors' 800 x 640). Output: in
    training mode the tuple ``(full (B, N, *S), half (B, N, *S/2))`` of heatmaps (linear, regressed against peak-1
    Gaussians), in evaluation mode ``full`` only (module docstring).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_landmarks: int = 19,
        pretrained_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"FARNet: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or num_landmarks < 1:
            raise ValueError(f"FARNet: in_channels and num_landmarks must be >= 1, got {in_channels}, {num_landmarks}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_landmarks = num_landmarks
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        d, n = spatial_dims, num_landmarks
        conv = Conv[Conv.CONV, spatial_dims]

        # backbone: DenseNet-121 features (conv0 .. norm5) and the 32-channel full-resolution input branch
        self.features = DenseNet121(spatial_dims=d, in_channels=in_channels, out_channels=1).features
        self.input_branch = ConvNormReLU(d, in_channels, 32, 1)
        # MSFA, first top-down path (the authors' w2_f5 .. w3_f2)
        self.top_down1_5 = nn.Sequential(ConvNormReLU(d, 1024, 512, 3), ConvNormReLU(d, 512, 256, 1))
        self.top_down1_4 = ConvNormReLU(d, 256 + 1024, 256, 1)
        self.top_down1_3 = ConvNormReLU(d, 256 + 512, 256, 1)
        self.top_down1_2 = ConvNormReLU(d, 256 + 256, 256, 1)
        # bottom-up path: stride-2 convs, each concatenated with the first top-down map of its scale (wblock1..3)
        self.down_3 = ConvNormReLU(d, 256, 512, 3, stride=2)
        self.bottom_up_3 = ConvNormReLU(d, 512 + 256, 512, 1)
        self.down_4 = ConvNormReLU(d, 512, 1024, 3, stride=2)
        self.bottom_up_4 = ConvNormReLU(d, 1024 + 256, 1024, 1)
        self.down_5 = ConvNormReLU(d, 1024, 2048, 3, stride=2)
        self.bottom_up_5 = ConvNormReLU(d, 2048 + 256, 1024, 3)
        # second top-down path, down to 1/2 with the conv0 features
        self.top_down2_5 = ConvNormReLU(d, 1024, 256, 1)
        self.top_down2_4 = ConvNormReLU(d, 256 + 1024, 256, 1)
        self.top_down2_3 = ConvNormReLU(d, 256 + 512, 256, 1)
        self.top_down2_2 = ConvNormReLU(d, 256 + 256, 128, 1)
        self.top_down2_1 = ConvNormReLU(d, 128 + 64, 64, 1)
        # feature refinement: linear convs, heatmaps at 1/2 (refine_hp) and at full resolution
        self.half_head = nn.Sequential(conv(64, 64, kernel_size=3, padding=1), conv(64, n, kernel_size=1))
        full = 64 + 32 + n
        self.full_head = nn.Sequential(conv(full, full, kernel_size=3, padding=1), conv(full, n, kernel_size=1))
        if pretrained_weights is not None:
            self.load_densenet121_features(torch.load(pretrained_weights, map_location="cpu", weights_only=True))

    def load_densenet121_features(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copy a DenseNet-121 state dict's ``features`` into the backbone (keys: :func:`densenet121_key_map`).

        Accepts torchvision's whole-model state dict (``classifier.*`` ignored), that of its ``features`` (keys
        ``"conv0.weight"``, ...) or a MONAI ``DenseNet121``'s. With ``in_channels=1`` and 3-channel weights, the
        first conv's colour kernels are summed (the response to a grey image fed as three equal channels).

        Raises:
            ValueError: a backbone key missing from the state dict, or a shape that does not fit.
        """
        own = self.features.state_dict()
        given = {}
        for key, value in state_dict.items():
            key = densenet121_key_map(key)
            key = key[len("features.") :] if key.startswith("features.") else key
            given[key] = value
        new = {}
        for key, target in own.items():
            if key not in given:
                if key.endswith("num_batches_tracked"):
                    continue
                raise ValueError(f"FARNet.load_densenet121_features: the state dict has no {key!r} (DenseNet-121).")
            value = given[key]
            if key == "conv0.weight" and value.shape[1] == 3 and self.in_channels == 1:
                value = value.sum(dim=1, keepdim=True)
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"FARNet.load_densenet121_features: {key} has shape {tuple(value.shape)}, the backbone's "
                    f"{tuple(target.shape)} (DenseNet-121 of {self.spatial_dims}D, in_channels {self.in_channels})."
                )
            new[key] = value
        self.features.load_state_dict(new, strict=False)

    def _up_cat(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``[up(x), skip]``: ``x`` linearly upsampled (x2) to the skip's spatial size, then concatenated."""
        up = F.interpolate(x, size=list(skip.shape[2:]), mode=self.mode, align_corners=False)
        return torch.cat([up, skip], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps of ``x (B, C, *S)``: ``(full (B, N, *S), half (B, N, *S/2))`` in training mode, ``full`` in
        evaluation mode."""
        check_input(x, self.spatial_dims, 32, 32, "FARNet")  # FARNET_DIVISOR (TorchScript reads no globals)
        f0 = self.input_branch(x)  # 32 @ 1
        # DenseNet-121 features, tapped as the authors' loop over densenet121().features does
        f1 = self.features.conv0(x)  # 64 @ 1/2 (before norm0)
        y = self.features.pool0(self.features.relu0(self.features.norm0(f1)))
        f2 = self.features.denseblock1(y)  # 256 @ 1/4
        f3 = self.features.denseblock2(self.features.transition1(f2))  # 512 @ 1/8
        f4 = self.features.denseblock3(self.features.transition2(f3))  # 1024 @ 1/16
        f5 = self.features.norm5(self.features.denseblock4(self.features.transition3(f4)))  # 1024 @ 1/32
        # MSFA: first top-down path
        a5 = self.top_down1_5(f5)
        a4 = self.top_down1_4(self._up_cat(a5, f4))
        a3 = self.top_down1_3(self._up_cat(a4, f3))
        b2 = self.top_down1_2(self._up_cat(a3, f2))  # 256 @ 1/4
        # bottom-up path
        b3 = self.bottom_up_3(torch.cat([self.down_3(b2), a3], dim=1))  # 512 @ 1/8
        b4 = self.bottom_up_4(torch.cat([self.down_4(b3), a4], dim=1))  # 1024 @ 1/16
        b5 = self.bottom_up_5(torch.cat([self.down_5(b4), a5], dim=1))  # 1024 @ 1/32
        # second top-down path
        c = self.top_down2_5(b5)
        c = self.top_down2_4(self._up_cat(c, b4))
        c = self.top_down2_3(self._up_cat(c, b3))
        c = self.top_down2_2(self._up_cat(c, b2))
        c = self.top_down2_1(self._up_cat(c, f1))  # 64 @ 1/2
        # feature refinement: half-resolution heatmaps, then full resolution with the input branch
        half = self.half_head(c)
        size = list(x.shape[2:])
        up_c = F.interpolate(c, size=size, mode=self.mode, align_corners=False)
        up_half = F.interpolate(half, size=size, mode=self.mode, align_corners=False)
        full = self.full_head(torch.cat([up_c, f0, up_half], dim=1))
        if self.training:
            return full, half
        return full

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}, in_channels={self.in_channels}, num_landmarks={self.num_landmarks}"
