"""The multi-task U-Net and its loss built from the shared bundle configs' keys (``bundles/base/configs``).

The shared ``train.yaml`` / ``inference.yaml`` keep ``network_def`` and ``loss`` as real dicts (so that
``--network_def#num_filters 16`` and overlays such as ``refine.yaml``'s ``loss#learn_sigma`` reach them) whose
``_target_`` is the method's (``configs/recipe.yaml``: ``network``, ``loss``) and whose keys are the
SpatialConfiguration-Net's. These two functions take those keys for :class:`mlm.networks.MultiTaskUNet` and
:class:`mlm.multitask_loss.MultiTaskLandmarkLoss`: the SCN-only ones must hold "does not apply" (``null`` in the
recipe ``base/configs/mtunet_2d.yaml``), and a value that would change the method raises instead of being dropped.
"""

from __future__ import annotations

import os

from mlm.bundle.adapters import refuse_fixed_sigma_keys, refuse_unused_keys
from mlm.multitask_loss import MultiTaskLandmarkLoss
from mlm.networks.mtunet import MultiTaskUNet

__all__ = ["multitask_loss", "multitask_unet"]


def multitask_unet(
    spatial_dims: int,
    in_channels: int,
    num_landmarks: int,
    num_filters: int = 64,
    num_levels: int = 5,
    spatial_downsample: int | None = None,
    spatial_kernel_size: int | None = None,
    padding_mode: str = "zeros",
    heatmap_init_std: float | None = None,
    pretrained_weights: str | os.PathLike | None = None,
) -> MultiTaskUNet:
    """:class:`mlm.networks.MultiTaskUNet` from the shared configs' ``network_def`` keys.

    ``spatial_downsample`` and ``spatial_kernel_size`` (the SCN's spatial-configuration component) must be None;
    the other arguments are :class:`~mlm.networks.MultiTaskUNet`'s (``--network_def#pretrained_weights F`` loads a
    local VGG19 state dict).
    """
    refuse_unused_keys(
        "multitask_unet",
        "the multi-task U-Net",
        "SCN only",
        spatial_downsample=spatial_downsample,
        spatial_kernel_size=spatial_kernel_size,
    )
    return MultiTaskUNet(
        spatial_dims,
        in_channels,
        num_landmarks,
        num_filters=num_filters,
        num_levels=num_levels,
        heatmap_init_std=heatmap_init_std,
        padding_mode=padding_mode,
        pretrained_weights=pretrained_weights,
    )


def multitask_loss(
    num_landmarks: int,
    spatial_dims: int,
    sigma: float,
    gamma: float | None = None,
    sigma_weight: float | None = None,
    learn_sigma: bool = False,
    mask_missing: bool = True,
    heatmap_loss: str = "bce",
    heatmap_weight: float | None = None,
) -> MultiTaskLandmarkLoss:
    """:class:`mlm.multitask_loss.MultiTaskLandmarkLoss` from the shared configs' ``loss`` keys.

    ``sigma`` is the offset radius R (voxels): the truncated Gaussian target's sigma is R (the bundle's ``sigma``
    fact, so ``cpu.yaml``'s smaller grid brings its own R). R is fixed: ``learn_sigma`` (the shared config sets it
    for the SCN) is not used. ``gamma`` (peak-1 targets) and ``sigma_weight`` (no sigma regulariser) must be None
    or 0. ``heatmap_loss`` / ``heatmap_weight``: ``"bce"`` (Miss the Point) or ``"dice"`` (AMAT),
    ``--loss#heatmap_loss dice``.
    """
    del learn_sigma  # R is fixed in this method; the shared config's True is meant for the SCN's learnable sigmas
    refuse_fixed_sigma_keys("multitask_loss", "peak-1 truncated Gaussians", gamma, sigma_weight)
    return MultiTaskLandmarkLoss(
        num_landmarks,
        spatial_dims,
        radius=sigma,
        heatmap_loss=heatmap_loss,
        heatmap_weight=heatmap_weight,
        mask_missing=mask_missing,
    )
