"""Multi-task U-Net of Yao et al. (Miss the Point, MICCAI 2020): heatmap + offset maps per landmark, 2D and 3D.

The authors' ``UNet_Pretrained`` (shared/docs/METHODS.md section 1): a VGG19 encoder without batch norm whose five
max-pool outputs are the skips ``f0..f4`` (64/128/256/512/512 channels at 1/2 .. 1/32), a decoder of bilinear x2
upsampling, concatenation ``[skip, up]`` and double ``3x3 conv -> BN -> ReLU`` blocks (``up1..up4``; ``up5``
upsamples to full resolution without a skip), and a ``1x1`` head. The encoder is defined here (torchvision does not
load beside this project's torch); a local torchvision VGG19 state dict can be loaded into it
(:meth:`MultiTaskUNet.load_vgg19_features`, ``pretrained_weights``).

Output: one tensor ``(B, N * (1 + D), *S)``: N heatmap logits, then D blocks of N offset maps in array axis order
(:func:`transforms.heatmap.offset_maps.split_offset_output`), at the input's spatial size. The authors' forward
returned ``(sigmoid(heatmap), reg_y, reg_x)``; here the heatmaps are logits (the loss applies the sigmoid, so the
BCE is computed stably) and the offset blocks follow the array axes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

__all__ = ["VGG19_STAGES", "MultiTaskUNet", "vgg19_features_key_map"]

#: VGG19 (configuration "E", no batch norm) as conv channel multiples of ``num_filters`` per max-pool stage
VGG19_STAGES: tuple[tuple[int, ...], ...] = ((1, 1), (2, 2), (4, 4, 4, 4), (8, 8, 8, 8), (8, 8, 8, 8))


def vgg19_features_key_map() -> dict[str, str]:
    """``{torchvision key: MultiTaskUNet key}`` of the VGG19 encoder's parameters.

    torchvision's ``vgg19().features`` is one ``nn.Sequential`` of ``conv, ReLU`` pairs and max-pools
    (``features.0.weight`` .. ``features.34.bias``); here each max-pool stage is one ``nn.Sequential`` of
    ``encoder.<stage>``, in the same order, so flat index ``k`` is index ``k - first index of its stage``.
    """
    mapping: dict[str, str] = {}
    flat = 0
    for stage, convs in enumerate(VGG19_STAGES):
        for i in range(len(convs)):
            for param in ("weight", "bias"):
                mapping[f"features.{flat + 2 * i}.{param}"] = f"encoder.{stage}.{2 * i}.{param}"
        flat += 2 * len(convs) + 1  # conv + ReLU per conv, then the max-pool
    return mapping


class _UpBlock(nn.Module):
    """Bilinear (trilinear) x2 upsampling (``align_corners=True``), zero padding to the skip's size, concatenation
    ``[skip, up]`` and a double ``3^D conv -> BN -> ReLU`` (the authors' ``Up``); without a skip (``up5``) the
    upsampled map is padded to ``size`` and convolved."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.convs = nn.Sequential(
            conv(in_channels, out_channels, kernel_size=3, padding=1, padding_mode=padding_mode),
            norm(out_channels),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, kernel_size=3, padding=1, padding_mode=padding_mode),
            norm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, size: list[int], skip: torch.Tensor | None = None) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=True)
        pad: list[int] = []
        for axis in range(len(size) - 1, -1, -1):  # F.pad lists the last axis first
            diff = size[axis] - up.shape[2 + axis]
            pad += [diff // 2, diff - diff // 2]
        up = F.pad(up, pad)
        if skip is not None:
            up = torch.cat([skip, up], dim=1)
        return self.convs(up)


class MultiTaskUNet(nn.Module):
    """The multi-task U-Net of Yao et al. (MICCAI 2020): per landmark a heatmap and D offset maps.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (1 for grey images; the authors fed the grey X-ray as 3 identical channels).
        num_landmarks: N.
        num_filters: channels of the first encoder stage, ``f0``; the stages have ``f0 * (1, 2, 4, 8, 8)`` and the
            decoder ``f0 * (4, 2, 1, 2, 1)``. 64 is the paper's VGG19; smaller values give a CPU-sized variant.
        num_levels: max-pool stages of the encoder; VGG19 has 5 (the only value the decoder is built for).
        heatmap_init_std: std of a truncated-normal initialisation of the ``1x1`` head (zero bias), or None for
            PyTorch's default initialisation (the authors').
        padding_mode: padding of the decoder's ``3^D`` convs (``"zeros"``, the authors'; the encoder keeps VGG's
            zero padding).
        pretrained_weights: path of a local torchvision VGG19 state dict (``torch.save(vgg19(weights=...)
            .state_dict())``, or of its ``features``), loaded into the encoder (2D, ``num_filters=64`` only); None:
            trained from scratch.

    Input ``(B, in_channels, *S)``, any spatial size (the upsampled maps are padded to the skips' sizes, as the
    authors' code does); output ``(B, N * (1 + D), *S)``: heatmap logits, then D blocks of N offset maps (units of
    the offset radius R, array axis order).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_landmarks: int,
        num_filters: int = 64,
        num_levels: int = 5,
        heatmap_init_std: float | None = None,
        padding_mode: str = "zeros",
        pretrained_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"MultiTaskUNet: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_levels != len(VGG19_STAGES):
            raise ValueError(
                f"MultiTaskUNet: num_levels must be {len(VGG19_STAGES)} (VGG19's stages), got {num_levels}."
            )
        if num_filters < 1 or num_landmarks < 1 or in_channels < 1:
            raise ValueError(
                f"MultiTaskUNet: num_filters, num_landmarks and in_channels must be >= 1, got {num_filters}, "
                f"{num_landmarks}, {in_channels}."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_landmarks = num_landmarks
        self.num_filters = num_filters
        conv, pool = Conv[Conv.CONV, spatial_dims], Pool[Pool.MAX, spatial_dims]
        stages = []
        channels = in_channels
        for multiples in VGG19_STAGES:
            layers: list[nn.Module] = []
            for m in multiples:
                layers += [conv(channels, m * num_filters, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = m * num_filters
            layers.append(pool(kernel_size=2, stride=2))
            stages.append(nn.Sequential(*layers))
        self.encoder = nn.ModuleList(stages)
        f = num_filters
        self.up1 = _UpBlock(spatial_dims, 16 * f, 4 * f, padding_mode)  # up(f4) + f3
        self.up2 = _UpBlock(spatial_dims, 8 * f, 2 * f, padding_mode)  # + f2
        self.up3 = _UpBlock(spatial_dims, 4 * f, f, padding_mode)  # + f1
        self.up4 = _UpBlock(spatial_dims, 2 * f, 2 * f, padding_mode)  # + f0
        self.up5 = _UpBlock(spatial_dims, 2 * f, f, padding_mode)  # to full resolution, no skip
        self.head = conv(f, num_landmarks * (1 + spatial_dims), kernel_size=1)
        if heatmap_init_std is not None:
            nn.init.trunc_normal_(
                self.head.weight, std=heatmap_init_std, a=-2 * heatmap_init_std, b=2 * heatmap_init_std
            )
            nn.init.zeros_(self.head.bias)
        if pretrained_weights is not None:
            self.load_vgg19_features(torch.load(pretrained_weights, map_location="cpu", weights_only=True))

    def load_vgg19_features(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copy a torchvision VGG19 state dict's ``features`` into the encoder (:func:`vgg19_features_key_map`).

        Accepts the whole model's state dict (``classifier.*`` is ignored) or that of ``vgg19().features``
        (keys ``"0.weight"``, ...). With ``in_channels=1`` the first conv's RGB kernels are summed over the colour
        channels (the response to a grey image fed as three equal channels, as the authors did); other channel counts
        than 1 and 3 are refused.

        Raises:
            ValueError: 3D network, ``num_filters != 64``, a missing key or a shape that does not fit.
        """
        if self.spatial_dims != 2:
            raise ValueError("MultiTaskUNet.load_vgg19_features: VGG19 weights are 2D; this network is 3D.")
        features = {
            (k if k.startswith("features.") else f"features.{k}"): v
            for k, v in state_dict.items()
            if k.startswith("features.") or re.fullmatch(r"\d+\.(weight|bias)", k)
        }
        own = self.state_dict()
        new = {}
        for src, dst in vgg19_features_key_map().items():
            if src not in features:
                raise ValueError(f"MultiTaskUNet.load_vgg19_features: the state dict has no {src!r} (VGG19 features).")
            value = features[src]
            if src == "features.0.weight" and value.shape[1] == 3 and self.in_channels == 1:
                value = value.sum(dim=1, keepdim=True)
            if tuple(value.shape) != tuple(own[dst].shape):
                raise ValueError(
                    f"MultiTaskUNet.load_vgg19_features: {src} has shape {tuple(value.shape)}, the encoder's {dst} "
                    f"{tuple(own[dst].shape)} (VGG19 needs num_filters=64 and in_channels 1 or 3)."
                )
            new[dst] = value
        self.load_state_dict(new, strict=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"MultiTaskUNet({self.spatial_dims}D) expects input (B, C, *S), got shape {list(x.shape)}."
            )
        for size in x.shape[2:]:
            if size < 32:
                raise ValueError(
                    f"MultiTaskUNet: every input spatial size must be >= 32 (five 2x max-pools), got {list(x.shape)}."
                )
        sizes: list[list[int]] = [list(x.shape[2:])]
        skips: list[torch.Tensor] = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            sizes.append(list(x.shape[2:]))
        f0, f1, f2, f3, f4 = skips[0], skips[1], skips[2], skips[3], skips[4]
        x = self.up1(f4, sizes[4], f3)
        x = self.up2(x, sizes[3], f2)
        x = self.up3(x, sizes[2], f1)
        x = self.up4(x, sizes[1], f0)
        x = self.up5(x, sizes[0], None)
        return self.head(x)
