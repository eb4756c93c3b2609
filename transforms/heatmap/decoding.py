"""Heatmap decoding: sub-pixel landmark coordinates from heatmaps, and the low-to-high resolution index mapping.

Decoding takes each channel's argmax and refines it from its ``3^D`` neighbourhood:

- ``"dark"`` (default): one Newton step on the log heatmap, ``x = x0 - H^-1 g`` with the gradient ``g`` and
  Hessian ``H`` (mixed terms included) from central differences of ``log h`` (Zhang et al., DARK, CVPR 2020).
  ``log`` of any Gaussian is a quadratic, for which central differences are exact, so clean Gaussians
  (isotropic, anisotropic or rotated) decode exactly up to float rounding.
- ``"log_quadratic"``: the per-axis 3-point parabola through ``log h`` (exact for axis-aligned Gaussians).
- ``"quadratic"``: Payer's per-axis parabola through ``h``: ``delta = 0.5 (p- - p+) / (p- - 2 p0 + p+)``.
  Biased for Gaussians (up to ~0.1 voxel, depending on sigma and the sub-pixel offset).
- ``"argmax"``: no refinement.

Fallbacks, per channel: NaN values are ignored (an all-NaN channel decodes to NaN coordinates and value);
no refinement along an axis whose neighbour is outside the grid (border maxima stay inside) or non-finite,
or whose parabola does not open downwards (flat maps and plateaus of 3 decode to the argmax; a tie of two
neighbours decodes to their midpoint); the log fits fall back to ``"quadratic"`` when a needed value is
not positive, and ``"dark"`` falls back to ``"log_quadratic"`` when its Hessian is not negative definite
or a corner neighbour is missing. Ties of the maximum resolve to the first voxel in C order.
Offsets are clamped to ``[-1, 1]`` voxel.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["DECODING_METHODS", "decode_heatmaps", "rescale_coordinates"]

DECODING_METHODS = ("dark", "log_quadratic", "quadratic", "argmax")


def _stencil(dims: int) -> torch.Tensor:
    """All ``3^D`` offsets in ``{-1, 0, 1}^D``, ``(3^D, D)`` long, in C order (index of offset o = sum (o_d+1) 3^(D-1-d))."""
    return torch.tensor(list(itertools.product((-1, 0, 1), repeat=dims)), dtype=torch.long)


def _stencil_index(offset: Sequence[int]) -> int:
    idx = 0
    for o in offset:
        idx = idx * 3 + (o + 1)
    return idx


def _axis_parabola(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex offset of the parabola through (-1, minus), (0, centre), (1, plus), and where it is a valid maximum."""
    denom = minus - 2.0 * centre + plus
    ok = torch.isfinite(minus) & torch.isfinite(plus) & torch.isfinite(centre) & (denom < 0)
    safe = torch.where(ok, denom, torch.full_like(denom, -1.0))
    delta = torch.where(ok, 0.5 * (minus - plus) / safe, torch.zeros_like(denom))
    return delta, ok


def decode_heatmaps(heatmaps: torch.Tensor, method: str = "dark") -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel landmark coordinates from heatmaps: argmax + local refinement (see the module docstring).

    Args:
        heatmaps: ``(B, N, *S)`` with ``D = len(S)`` spatial dims (any D >= 1), torch tensor or numpy array.
        method: ``"dark"`` (default, Newton step on log values), ``"log_quadratic"``, ``"quadratic"``
            (Payer's) or ``"argmax"``.

    Returns:
        ``coords`` ``(B, N, D)`` float64 voxel coordinates of the heatmap grid (index ``i`` = centre of voxel
        ``i``; NaN for an all-NaN channel) and ``values`` ``(B, N)`` float64, the heatmap value at the argmax.
    """
    if method not in DECODING_METHODS:
        raise ValueError(f"decode_heatmaps: method must be one of {DECODING_METHODS}, got {method!r}.")
    h = torch.as_tensor(heatmaps)
    if isinstance(h, torch.Tensor) and type(h) is not torch.Tensor:
        h = h.as_subclass(torch.Tensor)
    if h.ndim < 3:
        raise ValueError(
            f"decode_heatmaps: heatmaps must be (B, N, *S) with at least one spatial dim, got {tuple(h.shape)}."
        )
    h = h.detach()
    if not h.is_floating_point():
        h = h.to(torch.float64)
    batch, num, *shape = h.shape
    dims = len(shape)
    flat = h.reshape(batch * num, -1)  # full maps stay in their dtype; only the neighbourhoods go to float64
    nan = torch.isnan(flat)
    if bool(nan.any()):
        all_nan = nan.all(dim=1)
        idx = torch.where(nan, torch.full_like(flat, -torch.inf), flat).argmax(dim=1)  # first max in C order
    else:
        all_nan = torch.zeros(flat.shape[0], dtype=torch.bool, device=flat.device)
        idx = flat.argmax(dim=1)  # first max in C order
    value = flat.gather(1, idx[:, None])[:, 0].to(torch.float64)
    # unravel the flat index
    sizes = torch.tensor(shape, dtype=torch.long, device=flat.device)
    strides = torch.tensor([int(np.prod(shape[d + 1 :])) for d in range(dims)], dtype=torch.long, device=flat.device)
    peak = (idx[:, None] // strides) % sizes  # (M, D)

    offsets = torch.zeros(batch * num, dims, dtype=torch.float64, device=flat.device)
    if method != "argmax":
        stencil = _stencil(dims).to(flat.device)  # (K, D)
        pos = peak[:, None, :] + stencil[None]  # (M, K, D)
        inside = ((pos >= 0) & (pos < sizes)).all(dim=-1)
        nb_flat = (pos.clamp(min=torch.zeros_like(sizes), max=sizes - 1) * strides).sum(-1)
        nb = flat.gather(1, nb_flat).to(torch.float64)
        nb = torch.where(inside, nb, torch.full_like(nb, torch.nan))  # (M, K), NaN = unavailable
        c = _stencil_index([0] * dims)
        axis_idx = []
        for d in range(dims):
            e = [0] * dims
            e[d] = -1
            m = _stencil_index(e)
            e[d] = 1
            axis_idx.append((m, _stencil_index(e)))

        quad = torch.stack([_axis_parabola(nb[:, m], nb[:, c], nb[:, p])[0] for m, p in axis_idx], dim=1)
        offsets = quad
        if method in ("log_quadratic", "dark"):
            # log values of the points the per-axis fit needs; non-positive -> fall back to the quadratic fit
            axis_pts = nb[:, [c] + [i for pair in axis_idx for i in pair]]
            positive = ((axis_pts > 0) | torch.isnan(axis_pts)).all(dim=1) & (nb[:, c] > 0)
            logs = torch.log(torch.where(nb > 0, nb, torch.full_like(nb, torch.nan)))
            logq = torch.stack([_axis_parabola(logs[:, m], logs[:, c], logs[:, p])[0] for m, p in axis_idx], dim=1)
            offsets = torch.where(positive[:, None], logq, quad)
            if method == "dark" and dims >= 1:
                grad = torch.stack([0.5 * (logs[:, p] - logs[:, m]) for m, p in axis_idx], dim=1)  # (M, D)
                hess = torch.zeros(batch * num, dims, dims, dtype=torch.float64, device=flat.device)
                for d, (m, p) in enumerate(axis_idx):
                    hess[:, d, d] = logs[:, p] - 2.0 * logs[:, c] + logs[:, m]
                for d, e in itertools.combinations(range(dims), 2):
                    corner = []
                    for sd, se in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                        o = [0] * dims
                        o[d], o[e] = sd, se
                        corner.append(logs[:, _stencil_index(o)])
                    mixed = 0.25 * (corner[0] - corner[1] - corner[2] + corner[3])
                    hess[:, d, e] = mixed
                    hess[:, e, d] = mixed
                finite = torch.isfinite(hess).all(dim=(1, 2)) & torch.isfinite(grad).all(dim=1)
                safe_h = torch.where(
                    finite[:, None, None],
                    hess,
                    -torch.eye(dims, dtype=torch.float64, device=flat.device).expand_as(hess),
                )
                safe_g = torch.where(finite[:, None], grad, torch.zeros_like(grad))
                # negative definite <=> all eigenvalues < 0
                neg_def = torch.linalg.eigvalsh(safe_h).max(dim=1).values < 0
                ok = finite & neg_def
                solve_h = torch.where(
                    ok[:, None, None], safe_h, -torch.eye(dims, dtype=torch.float64, device=flat.device).expand_as(hess)
                )
                newton = -torch.linalg.solve(solve_h, safe_g[..., None])[..., 0]
                offsets = torch.where(ok[:, None], newton, offsets)
        offsets = offsets.clamp(-1.0, 1.0)
        offsets = torch.where(torch.isfinite(offsets), offsets, torch.zeros_like(offsets))

    coords = peak.to(torch.float64) + offsets
    coords[all_nan] = torch.nan
    value = torch.where(all_nan, torch.full_like(value, torch.nan), value)
    return coords.reshape(batch, num, dims), value.reshape(batch, num)


def rescale_coordinates(coords: Any, scale_factor: float | Sequence[float]) -> Any:
    """Map voxel coordinates decoded on a grid downsampled by ``scale_factor`` back to the full-resolution grid.

    With voxel centres aligned as average pooling / MONAI resampling with aligned corners off do it (low-res
    voxel ``i`` covers high-res voxels ``i f .. i f + f - 1``), ``x_high = (x_low + 0.5) f - 0.5``. The naive
    ``x_low * f`` is biased by ``-(f - 1) / 2`` voxels (-1.5 at f = 4).

    Args:
        coords: ``(..., D)`` low-resolution voxel coordinates (tensor or array; NaN stays NaN).
        scale_factor: ``f`` (> 0), a float or one per axis (D values); f > 1 means the low-res grid is coarser.

    Returns:
        ``(..., D)`` full-resolution voxel coordinates, same type as ``coords``.
    """
    was_np = not isinstance(coords, torch.Tensor)
    c = torch.as_tensor(np.asarray(coords, dtype=np.float64)) if was_np else coords.as_subclass(torch.Tensor)
    f = torch.as_tensor(scale_factor, dtype=torch.float64, device=c.device).flatten()
    if bool((f <= 0).any()):
        raise ValueError(f"rescale_coordinates: scale_factor must be positive, got {f.tolist()}.")
    if f.numel() not in (1, c.shape[-1]):
        raise ValueError(f"rescale_coordinates: scale_factor has {f.numel()} values for {c.shape[-1]}D coordinates.")
    out = (c.to(torch.float64) + 0.5) * f - 0.5
    return out.numpy() if was_np else out
