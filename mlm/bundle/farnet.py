"""FARNet and its Exponential Weighted Center loss built from the shared bundle configs' keys (``bundles/base/configs``).

As :mod:`mlm.bundle.multitask`: the shared ``train.yaml`` / ``inference.yaml`` give ``network_def`` and ``loss`` the
SpatialConfiguration-Net's keys with the method's ``_target_`` (``configs/recipe.yaml``: ``network``, ``loss``, here
``base/configs/farnet_2d.yaml``). These functions take those keys for :class:`mlm.networks.FARNet` and
:class:`mlm.farnet_loss.ExponentialWeightedCenterLoss`: the keys that do not apply must hold ``null`` (DenseNet-121 has
no filter count or level count to choose), and a value that would change the method raises instead of being dropped.
"""

from __future__ import annotations

import os

from mlm.bundle.adapters import refuse_fixed_sigma_keys, refuse_unused_keys
from mlm.farnet_loss import ExponentialWeightedCenterLoss
from mlm.networks.farnet import FARNet

__all__ = ["farnet", "farnet_loss"]


def farnet(
    spatial_dims: int,
    in_channels: int,
    num_landmarks: int,
    num_filters: int | None = None,
    num_levels: int | None = None,
    spatial_downsample: int | None = None,
    spatial_kernel_size: int | None = None,
    padding_mode: str = "zeros",
    heatmap_init_std: float | None = None,
    pretrained_weights: str | os.PathLike | None = None,
) -> FARNet:
    """:class:`mlm.networks.FARNet` from the shared configs' ``network_def`` keys.

    ``num_filters``, ``num_levels``, ``spatial_downsample``, ``spatial_kernel_size`` and ``heatmap_init_std`` must be
    None (DenseNet-121's widths and depth are fixed; the heads keep PyTorch's default initialisation, the authors'),
    ``padding_mode`` ``"zeros"``. ``--network_def#pretrained_weights F`` loads a local DenseNet-121 state dict.
    """
    refuse_unused_keys(
        "farnet",
        "FARNet",
        "DenseNet-121 backbone; null",
        num_filters=num_filters,
        num_levels=num_levels,
        spatial_downsample=spatial_downsample,
        spatial_kernel_size=spatial_kernel_size,
        heatmap_init_std=heatmap_init_std,
    )
    if padding_mode != "zeros":
        raise ValueError(f"farnet: FARNet pads with zeros (DenseNet-121's), got padding_mode={padding_mode!r}.")
    return FARNet(spatial_dims, in_channels, num_landmarks, pretrained_weights=pretrained_weights)


def farnet_loss(
    num_landmarks: int,
    spatial_dims: int,
    sigma: float,
    gamma: float | None = None,
    sigma_weight: float | None = None,
    learn_sigma: bool = False,
    mask_missing: bool = True,
    alpha: float = 40.0,
    half_sigma: float | None = None,
) -> ExponentialWeightedCenterLoss:
    """:class:`mlm.farnet_loss.ExponentialWeightedCenterLoss` from the shared configs' ``loss`` keys.

    ``sigma``: the full-resolution Gaussian's sigma (voxels; the bundle's ``sigma`` fact, 10 at 800x640), fixed
    (``learn_sigma``, set by the shared config for the SCN, is not used); the half-resolution one is ``half_sigma``
    (None: ``sigma`` half-resolution voxels, the authors'). ``gamma`` (peak-1 targets) and ``sigma_weight`` (no sigma
    regulariser) must be None or 0. ``alpha``: the weight's base (40; ``--loss#alpha 20``).
    """
    del learn_sigma  # sigma is fixed in this method; the shared config's True is meant for the SCN's learnable sigmas
    refuse_fixed_sigma_keys("farnet_loss", "peak-1 Gaussians", gamma, sigma_weight)
    return ExponentialWeightedCenterLoss(
        num_landmarks, spatial_dims, sigma=sigma, alpha=alpha, half_sigma=half_sigma, mask_missing=mask_missing
    )
