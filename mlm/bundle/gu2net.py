"""GU2Net and its BCE heatmap loss built from the shared bundle configs' keys (``bundles/base/configs``).

As :mod:`mlm.bundle.farnet`: the shared ``train.yaml`` / ``inference.yaml`` give ``network_def`` and ``loss`` the
SpatialConfiguration-Net's keys with the method's ``_target_`` (``configs/recipe.yaml``: ``network``, ``loss``, here
``base/configs/gu2net_2d.yaml``). These functions take those keys for :class:`mlm.networks.gu2net.GU2Net` and
:class:`mlm.gu2net_loss.HeatmapBCELoss`; the keys that do not apply must hold ``null``, and a value that would change
the method raises instead of being dropped. ``gu2net_universal``'s ``configs/universal.yaml`` adds
``domain_landmarks`` (the landmark count of every domain) and ``domain`` (the one this run's landmarks belong to).
"""

from __future__ import annotations

from collections.abc import Sequence

from mlm.bundle.adapters import refuse_fixed_sigma_keys, refuse_unused_keys
from mlm.gu2net_loss import HeatmapBCELoss
from mlm.networks.gu2net import GU2Net

__all__ = ["GU2NET_VARIANTS", "gu2net", "gu2net_loss"]

#: the paper's Table 2 rows as GU2Net options: the full model and its ablations
GU2NET_VARIANTS = {
    "gu2net": {},
    "local_only": {"global_network": False},
    "global_only": {"local_network": False},
    "shared_unet": {"separable": False, "global_network": False},
}


def gu2net(
    spatial_dims: int,
    in_channels: int,
    num_landmarks: int,
    num_filters: int = 64,
    num_levels: int | None = None,
    spatial_downsample: int | None = 4,
    spatial_kernel_size: int | None = None,
    padding_mode: str = "zeros",
    heatmap_init_std: float | None = None,
    domain_landmarks: Sequence[int] | None = None,
    domain: int = 0,
    variant: str = "gu2net",
    global_interpolation: str = "linear",
) -> GU2Net:
    """:class:`mlm.networks.gu2net.GU2Net` from the shared configs' ``network_def`` keys.

    Args:
        spatial_dims, in_channels, num_filters: as GU2Net.
        num_landmarks: this run's landmarks per image (its datalist's), which must be ``domain_landmarks[domain]``.
        num_levels, spatial_kernel_size, heatmap_init_std: must be None (the depth, kernels and initialisation are
            the method's); ``spatial_downsample`` None or 4 (the global network works at 1/4); ``padding_mode``
            ``"zeros"``.
        domain_landmarks: landmarks of every domain of a universal model (None: one domain, ``num_landmarks``).
        domain: the domain of this run's data (a universal model's inference on one domain).
        variant: ``"gu2net"`` or one of the paper's Table 2 ablations: ``"local_only"``, ``"global_only"``,
            ``"shared_unet"`` (:data:`GU2NET_VARIANTS`).
        global_interpolation: ``"linear"`` (default) or ``"nearest"`` (the authors' code).

    Raises:
        ValueError: a key that does not apply is set, an unknown variant, or ``num_landmarks`` is not the domain's.
    """
    refuse_unused_keys(
        "gu2net",
        "GU2Net",
        "the method's; null",
        num_levels=num_levels,
        spatial_kernel_size=spatial_kernel_size,
        heatmap_init_std=heatmap_init_std,
    )
    if spatial_downsample not in (None, 4):
        raise ValueError(
            f"gu2net: the global network works at 1/4 of the input (spatial_downsample 4), got {spatial_downsample}."
        )
    if padding_mode != "zeros":
        raise ValueError(f"gu2net: GU2Net pads with zeros, got padding_mode={padding_mode!r}.")
    if variant not in GU2NET_VARIANTS:
        raise ValueError(f"gu2net: unknown variant {variant!r}; choose one of {', '.join(GU2NET_VARIANTS)}.")
    counts = [int(num_landmarks)] if domain_landmarks is None else [int(n) for n in domain_landmarks]
    if not 0 <= int(domain) < len(counts):
        raise ValueError(f"gu2net: domain {domain} is not one of the model's {len(counts)} domains.")
    if counts[int(domain)] != int(num_landmarks):
        raise ValueError(
            f"gu2net: the data has {num_landmarks} landmarks per image but domain {domain} of the model predicts "
            f"{counts[int(domain)]} (domain_landmarks {counts})."
        )
    return GU2Net(
        spatial_dims,
        in_channels,
        counts,
        num_filters=num_filters,
        global_interpolation=global_interpolation,
        **GU2NET_VARIANTS[variant],
    )


def gu2net_loss(
    num_landmarks: int,
    spatial_dims: int,
    sigma: float,
    gamma: float | None = None,
    sigma_weight: float | None = None,
    learn_sigma: bool = False,
    mask_missing: bool = True,
    truncate: float = 3.0,
    reduction: str = "mean",
) -> HeatmapBCELoss:
    """:class:`mlm.gu2net_loss.HeatmapBCELoss` from the shared configs' ``loss`` keys.

    ``sigma``: the targets' sigma in voxels of the network's grid (fixed; ``learn_sigma``, set by the shared config
    for the SCN, is not used). ``num_landmarks`` is not needed: the loss takes the count of each batch's prediction
    (every domain of a universal model). ``gamma`` (peak-1 targets) and ``sigma_weight`` must be None or 0.
    """
    del learn_sigma
    refuse_fixed_sigma_keys("gu2net_loss", "peak-1 Gaussians", gamma, sigma_weight)
    return HeatmapBCELoss(
        spatial_dims,
        sigma=sigma,
        truncate=truncate,
        reduction=reduction,
        mask_missing=mask_missing,
        num_landmarks=num_landmarks,
    )
