"""Sub-pixel Gaussian heatmap targets for landmarks, computed on local windows (the maths shared by the transforms).

Each landmark gets one channel holding a Gaussian centred on its exact float voxel coordinate. The
Gaussian is separable, so it is the outer product of one 1D profile per axis; each profile is evaluated
only on a window of ``2 r + 1`` voxels around the landmark's nearest voxel, ``r = ceil(truncate * max
sigma)``, and the window block is scattered into a zero output. The cost is therefore proportional to
``landmarks x window`` (plus writing the zero output), not ``landmarks x grid``; values outside the
window are exactly 0. The result is differentiable with respect to ``sigma`` (the SCN loss learns it)
and to the landmark coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["gaussian_heatmaps", "heatmap_window_radius"]


def heatmap_window_radius(sigma: float | torch.Tensor, truncate: float = 4.0) -> int:
    """Half-width ``r = ceil(truncate * max(sigma))`` (voxels) of the window a Gaussian is evaluated on."""
    s = float(torch.as_tensor(sigma).detach().max()) if isinstance(sigma, torch.Tensor) else float(sigma)
    return max(int(math.ceil(truncate * s)), 1)


def _sigma_per_landmark(sigma: float | torch.Tensor, batch: int, num: int, dtype, device) -> torch.Tensor:
    """``sigma`` (float, ``(N,)`` or ``(B, N)``) broadcast to ``(B, N)`` (keeps the autograd graph)."""
    s = torch.as_tensor(sigma, dtype=dtype, device=device)
    if s.ndim == 0:
        return s.expand(batch, num)
    if s.ndim == 1 and s.shape[0] in (num, 1):
        return s[None].expand(batch, num)
    if s.ndim == 2 and s.shape[0] in (batch, 1) and s.shape[1] in (num, 1):
        return s.expand(batch, num)
    raise ValueError(
        f"sigma must be a float, an (N,) = ({num},) or a (B, N) = ({batch}, {num}) tensor, got shape {tuple(s.shape)}."
    )


def gaussian_heatmaps(
    landmarks: torch.Tensor,
    spatial_shape: Sequence[int],
    sigma: float | torch.Tensor,
    gamma: float | None = None,
    truncate: float = 4.0,
) -> torch.Tensor:
    """Gaussian heatmaps centred on sub-pixel landmark positions, one channel per landmark.

    ``h[b, n](x) = exp(-|x - p_bn|^2 / (2 sigma_bn^2))`` (peak 1) when ``gamma`` is None, otherwise
    ``gamma / ((2 pi)^(D/2) sigma_bn^D) * exp(-|x - p_bn|^2 / (2 sigma_bn^2))`` (Payer's normalised target,
    gamma 100 in 2D and 1000 in 3D), for voxel indices ``x`` inside the box window ``|x_d - round(p_d)| <= r``,
    ``r = ceil(truncate * max sigma)``; 0 elsewhere. Missing landmarks (a NaN in their row) give an all-zero
    channel. Landmarks partly or wholly outside the grid are fine (the part inside the grid is drawn).

    Args:
        landmarks: ``(B, N, D)`` float voxel coordinates (index ``i`` = centre of voxel ``i``), ``D`` in {2, 3}
            (1 also works); NaN rows = missing.
        spatial_shape: ``(S_1, ..., S_D)``, the output grid.
        sigma: standard deviation in voxels: a float, an ``(N,)`` tensor (per landmark) or a ``(B, N)`` tensor.
            Gradients flow to it when it requires grad.
        gamma: scale of the normalised Gaussian; None for peak-1 maps.
        truncate: window half-width in units of the largest sigma.

    Returns:
        ``(B, N, *spatial_shape)`` tensor, dtype of ``landmarks`` (float32 if they are not floating point).
    """
    landmarks = torch.as_tensor(landmarks)
    if landmarks.ndim != 3:
        raise ValueError(f"landmarks must be (B, N, D), got shape {tuple(landmarks.shape)}.")
    batch, num, dims = landmarks.shape
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) != dims:
        raise ValueError(f"spatial_shape {shape} has {len(shape)} dims but landmarks have D={dims} coordinates.")
    if any(s < 1 for s in shape):
        raise ValueError(f"spatial_shape must be positive, got {shape}.")
    dtype = landmarks.dtype if landmarks.is_floating_point() else torch.float32
    device = landmarks.device
    landmarks = landmarks.to(dtype)
    sig = _sigma_per_landmark(sigma, batch, num, dtype, device)  # (B, N)
    if bool((sig.detach() <= 0).any()):
        raise ValueError(f"sigma must be positive, got min {float(sig.detach().min())}.")
    out_numel = batch * num * math.prod(shape)
    if batch * num == 0:
        return torch.zeros((batch, num, *shape), dtype=dtype, device=device)

    radius = heatmap_window_radius(sig, truncate)
    valid = ~torch.isnan(landmarks).any(dim=-1)  # (B, N)
    points = torch.where(valid[..., None], landmarks, torch.zeros((), dtype=dtype, device=device))
    # clamp far-away landmarks so the integer window arithmetic stays finite; their window lies outside anyway
    big = float(max(shape) + 2 * radius + 2)
    centre = torch.round(points.detach()).clamp(-big, big).long()  # (B, N, D)
    two_sig2 = 2.0 * sig * sig  # (B, N)

    strides = [math.prod(shape[d + 1 :]) for d in range(dims)]
    profiles = []
    base = torch.arange(batch * num, device=device).reshape(batch, num) * math.prod(shape)  # channel offsets
    widths = []
    for d, size in enumerate(shape):
        width = min(2 * radius + 1, size)
        # window start: as close to centre - r as possible while staying inside the grid (unique indices)
        start = (centre[..., d] - radius).clamp(0, size - width)  # (B, N)
        pos = start[..., None] + torch.arange(width, device=device)  # (B, N, W_d) long
        inside = (pos - centre[..., d : d + 1]).abs() <= radius
        diff = pos.to(dtype) - points[..., d : d + 1]
        profiles.append(torch.exp(-(diff * diff) / two_sig2[..., None]) * inside.to(dtype))
        base = base + start * strides[d]
        widths.append(width)

    # outer product of the per-axis profiles: (B, N, W_1, ..., W_D)
    values = profiles[0]
    for d in range(1, dims):
        values = values[..., None] * profiles[d].reshape(batch, num, *([1] * d), -1)
    if gamma is not None:
        norm = float(gamma) / ((2.0 * math.pi) ** (dims / 2.0) * sig**dims)  # (B, N)
        values = values * norm.reshape(batch, num, *([1] * dims))
    values = values * valid.to(dtype).reshape(batch, num, *([1] * dims))
    # flat output index = channel offset + window start offset + offset inside the window (same for all windows)
    rel = torch.zeros((), dtype=torch.long, device=device)
    for d in range(dims):
        rel = rel[..., None] + torch.arange(widths[d], device=device) * strides[d]
    flat = (base.reshape(batch, num, *([1] * dims)) + rel).reshape(-1)
    out = torch.zeros(out_numel, dtype=dtype, device=device)
    out.scatter_(0, flat, values.reshape(-1))
    return out.reshape(batch, num, *shape)
