"""Targets of heatmap + offset-map landmark networks (the multi-task U-Net of Yao et al., MICCAI 2020).

Around each landmark, inside a disk (ball in 3D) of radius ``R`` voxels: a truncated Gaussian heatmap
``exp(-0.5 d^2 / R^2)`` (so the region where the heatmap is at least 0.6 is exactly the disk), a binary mask, and per
spatial axis the offset from the voxel to the landmark divided by ``R`` (in ``(-1, 1]``). Everything is zero outside
the disk and for a missing landmark (a NaN row). Sub-pixel: the disk and the offsets are centred on the exact float
coordinate (the authors' template was pasted at an integer position, one voxel off, and misaligned near the top and
left borders: METHODS.md section 1).

The network output these targets match is one tensor ``(B, N * (1 + D), *S)``: N heatmap logits, then D blocks of N
offset maps, one block per array axis in order (:func:`split_offset_output`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["offset_map_targets", "split_offset_output"]


def offset_map_targets(
    landmarks: torch.Tensor, spatial_size: Sequence[int], radius: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heatmap, mask and offset targets of landmarks in one image.

    Args:
        landmarks: ``(N, D)`` voxel coordinates (array axis order; index ``i`` = centre of voxel ``i``), NaN rows
            missing.
        spatial_size: ``S``, the D spatial sizes of the maps.
        radius: ``R``, voxels (> 0).

    Returns:
        ``heatmap (N, *S)`` in [0, 1], ``mask (N, *S)`` in {0, 1}, ``offsets (D, N, *S)`` = (landmark - voxel) / R
        inside the disk; float32 (or the landmarks' floating dtype), on the landmarks' device.
    """
    if landmarks.ndim != 2 or landmarks.shape[1] != len(spatial_size):
        raise ValueError(
            f"offset_map_targets: landmarks must be (N, {len(spatial_size)}) for a {len(spatial_size)}D map, "
            f"got {tuple(landmarks.shape)}."
        )
    if not radius > 0:
        raise ValueError(f"offset_map_targets: radius must be > 0 voxels, got {radius}.")
    dtype = landmarks.dtype if landmarks.is_floating_point() else torch.float32
    device = landmarks.device
    n, d = landmarks.shape
    grids = torch.meshgrid(*[torch.arange(s, dtype=dtype, device=device) for s in spatial_size], indexing="ij")
    present = torch.isfinite(landmarks).all(dim=1)
    points = torch.where(present[:, None], landmarks.to(dtype), torch.zeros_like(landmarks, dtype=dtype))
    view = (n,) + (1,) * d
    deltas = torch.stack([points[:, a].view(view) - grids[a] for a in range(d)])  # (D, N, *S)
    dist2 = (deltas**2).sum(dim=0)
    mask = (dist2 < radius**2) & present.view(view)
    maskf = mask.to(dtype)
    heatmap = torch.exp(-0.5 * dist2 / radius**2) * maskf
    offsets = deltas / radius * maskf
    return heatmap, maskf, offsets


def split_offset_output(output: torch.Tensor, spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a heatmap + offset network output ``(B, N * (1 + D), *S)`` into heatmap logits ``(B, N, *S)`` and
    offsets ``(B, D, N, *S)`` (units of the radius, array axis order)."""
    channels = output.shape[1]
    if channels % (1 + spatial_dims):
        raise ValueError(
            f"split_offset_output: {channels} channels is not N * (1 + {spatial_dims}) (heatmaps + offsets)."
        )
    n = channels // (1 + spatial_dims)
    heat = output[:, :n]
    offsets = output[:, n:].reshape(output.shape[0], spatial_dims, n, *output.shape[2:])
    return heat, offsets
