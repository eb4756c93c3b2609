"""Offset voting: landmarks from the heatmap + offset maps of the multi-task U-Net (Yao et al., MICCAI 2020).

Per landmark, the ``k`` voxels with the highest heatmap each cast one vote at ``voxel + offset * R`` (the offsets are
in units of the radius ``R``, :mod:`transforms.heatmap.offset_maps`); votes outside the grid are dropped; the
landmark is the voxel with the most votes (ties: the first in C order). ``k = int(pi R^2)`` in 2D, the number of
pixels of the disk the network was trained to mark (``int(4/3 pi R^3)`` in 3D), at most the number of voxels.

Differences from the authors' ``utils.voting`` (shared/docs/METHODS.md section 1):

- a vote lands on the NEAREST voxel (``round``), not ``int()`` of the offset (truncation toward zero pulls every
  vote up to one voxel towards its voter, and perfect offsets that are a hair below an integer miss their voxel);
- ``k`` uses ``pi``, not 3.14 (R = 40: 5026 instead of 5024 votes; R = 10: 314 in both);
- the top-k pixels are ranked by the heatmap logits (same order as the sigmoid, without its saturation ties);
- batched over images and landmarks, 2D and 3D;
- ``subpixel=True`` (not in the paper): the landmark is the mean of the continuous vote positions
  ``voxel + offset * R`` that lie within ``window`` voxels (max norm) of the winning voxel's centre. Perfect offset
  maps give the exact sub-pixel landmark (the winning vote cluster is where every vote lands), noisy ones a robust
  local mean: votes further than ``window`` from the mode (outliers) do not pull it.

A landmark none of whose votes lands inside the grid is NaN (missing), with 0 votes.
"""

from __future__ import annotations

import math

import torch

from transforms.heatmap.offset_maps import split_offset_output

__all__ = ["default_num_votes", "vote_landmarks"]


def default_num_votes(radius: float, spatial_dims: int) -> int:
    """``k``: voxels of a disk (ball) of ``radius`` voxels, ``int(pi R^2)`` (2D) or ``int(4/3 pi R^3)`` (3D)."""
    if spatial_dims == 2:
        return max(1, int(math.pi * radius**2))
    if spatial_dims == 3:
        return max(1, int(4.0 / 3.0 * math.pi * radius**3))
    raise ValueError(f"default_num_votes: spatial_dims must be 2 or 3, got {spatial_dims}.")


def _unravel(flat: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """Flat C-order indices ``(...)`` -> voxel indices ``(..., D)`` (long)."""
    coords = []
    for size in reversed(shape):
        coords.append(flat % size)
        flat = torch.div(flat, size, rounding_mode="floor")
    return torch.stack(coords[::-1], dim=-1)


def vote_landmarks(
    output: torch.Tensor,
    spatial_dims: int,
    radius: float,
    num_votes: int | None = None,
    subpixel: bool = False,
    window: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a heatmap + offset output by offset voting (see the module docstring).

    Args:
        output: ``(B, N * (1 + D), *S)``: N heatmap logits (or probabilities: only their order is used), then D
            blocks of N offset maps in units of ``radius``, array axis order
            (:func:`transforms.heatmap.offset_maps.split_offset_output`).
        spatial_dims: D, 2 or 3.
        radius: the offset radius ``R`` of the targets the network was trained with, voxels.
        num_votes: ``k`` voxels voting per landmark; None: :func:`default_num_votes`. At most the voxel count.
        subpixel: False: the winning voxel (the paper); True: the mean of the vote positions within ``window`` of it.
        window: half-width (voxels, max norm) of the sub-pixel window around the winning voxel's centre; 1.5 takes
            the votes that rounded to its ``3^D`` neighbourhood.

    Returns:
        ``coords (B, N, D)`` float64 voxel coordinates (array axis order; NaN for a landmark without a vote in the
        grid) and ``votes (B, N)`` float64: the fraction of the ``k`` votes on the winning voxel, in [0, 1].
    """
    if not radius > 0:
        raise ValueError(f"vote_landmarks: radius must be > 0 voxels, got {radius}.")
    if output.dim() != spatial_dims + 2:
        raise ValueError(
            f"vote_landmarks: output must be (B, N * (1 + {spatial_dims}), *S) with {spatial_dims} spatial axes, got "
            f"{tuple(output.shape)}."
        )
    heat, offsets = split_offset_output(output.detach(), spatial_dims)  # (B, N, *S), (B, D, N, *S)
    b, n = heat.shape[:2]
    shape = [int(s) for s in heat.shape[2:]]
    nvox = math.prod(shape)
    k = min(int(num_votes) if num_votes is not None else default_num_votes(radius, spatial_dims), nvox)
    if k < 1:
        raise ValueError(f"vote_landmarks: num_votes must be >= 1, got {num_votes}.")
    scores = heat.reshape(b, n, nvox).float()
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, -math.inf), scores)
    top = scores.topk(k, dim=-1).indices  # (B, N, k)
    voters = _unravel(top, shape).double()  # (B, N, k, D)
    flat_offsets = offsets.reshape(b, spatial_dims, n, nvox).double()
    shift = torch.stack([flat_offsets[:, a].gather(-1, top) for a in range(spatial_dims)], dim=-1)  # (B, N, k, D)
    positions = voters + shift * float(radius)
    cells = torch.round(positions)
    size = torch.tensor(shape, dtype=positions.dtype, device=positions.device)
    inside = (torch.isfinite(cells) & (cells >= 0) & (cells <= size - 1)).all(dim=-1)  # (B, N, k)
    cells = torch.where(inside[..., None], cells, torch.zeros_like(cells)).long()
    strides = [math.prod(shape[a + 1 :]) for a in range(spatial_dims)]
    flat_cells = sum(cells[..., a] * strides[a] for a in range(spatial_dims))
    counts = torch.zeros(b, n, nvox, dtype=torch.float64, device=output.device)
    counts.scatter_add_(-1, flat_cells, inside.double())
    best_count, best = counts.max(dim=-1)  # first maximum in C order
    coords = _unravel(best, shape).double()  # (B, N, D)
    if subpixel:
        near = inside & ((positions - coords[:, :, None]).abs() <= window).all(dim=-1)
        weight = near.double()
        total = weight.sum(dim=-1, keepdim=True)
        masked = torch.where(near[..., None], positions, torch.zeros_like(positions))
        mean = masked.sum(dim=2) / total.clamp_min(1.0)
        coords = torch.where(total > 0, mean, coords)
    missing = best_count == 0
    coords = torch.where(missing[..., None], torch.full_like(coords, math.nan), coords)
    return coords, best_count / k
