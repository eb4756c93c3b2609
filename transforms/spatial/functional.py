"""Cubic B-spline displacement fields: dense evaluation, image warping and landmark inversion.

A field is given by control coefficients ``(D, G_1, ..., G_D)`` (displacements in voxels along each
array axis). As in ITK's ``BSplineTransform`` (and Payer's SCN code: ``grid_nodes`` = ``G``, mesh size
``G - 3``), the ``G`` coefficients of an axis span that axis' extent ``[0, S - 1]`` with ``G - 3`` uniform
cubic B-spline cells, so the field is C2-smooth and ``G >= 4``.

The image is warped by pulling, ``out(x) = img(x + u(x))``; a landmark at ``p`` in the input moves to
the ``x`` that solves ``x + u(x) = p`` (Newton iterations on the exact spline and its Jacobian).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "bspline_basis",
    "bspline_weights",
    "dense_displacement",
    "displacement_at",
    "warp_image",
    "invert_displacement_at",
]


def bspline_basis(t: torch.Tensor, derivative: bool = False) -> torch.Tensor:
    """The four uniform cubic B-spline weights (or their derivatives) at local offsets ``t`` in [0, 1].

    Args:
        t: any shape ``(...)``.
        derivative: return ``dB/dt`` instead.

    Returns:
        ``(..., 4)``.
    """
    if derivative:
        return torch.stack([-0.5 * (1 - t) ** 2, 1.5 * t**2 - 2 * t, -1.5 * t**2 + t + 0.5, 0.5 * t**2], dim=-1)
    return torch.stack(
        [(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6], dim=-1
    )


def _cells(x: torch.Tensor, size: int, num_coeffs: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Cell index ``(...)`` long, local offset ``(...)`` and ``du/dx`` for voxel positions ``x`` on an axis."""
    mesh = num_coeffs - 3
    scale = mesh / max(size - 1, 1)
    u = x * scale
    cell = torch.clamp(torch.floor(u), 0, mesh - 1)
    return cell.long(), u - cell, scale


def bspline_weights(size: int, num_coeffs: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Dense interpolation matrix ``(size, num_coeffs)`` mapping coefficients to voxel centres of one axis."""
    x = torch.arange(size, dtype=dtype, device=device)
    cell, t, _ = _cells(x, size, num_coeffs)
    w = torch.zeros(size, num_coeffs, dtype=dtype, device=device)
    w.scatter_(1, cell[:, None] + torch.arange(4, device=device), bspline_basis(t))
    return w


def dense_displacement(coeffs: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Evaluate the field at every voxel centre.

    Args:
        coeffs: ``(D, G_1, ..., G_D)`` control coefficients in voxels, ``D`` in {2, 3}.
        spatial_shape: ``(S_1, ..., S_D)``.

    Returns:
        ``(D, S_1, ..., S_D)`` displacement in voxels (same dtype as ``coeffs``).
    """
    d = coeffs.shape[0]
    ws = [bspline_weights(s, g, coeffs.dtype, coeffs.device) for s, g in zip(spatial_shape, coeffs.shape[1:])]
    if d not in (2, 3):
        raise ValueError(f"expected 2 or 3 spatial dims, got coefficients of shape {tuple(coeffs.shape)}.")
    out = coeffs
    for axis, w in enumerate(ws):  # separable: contract one axis at a time (cheap, small intermediates)
        out = torch.movedim(torch.tensordot(out, w, dims=([1 + axis], [1])), -1, 1 + axis)
    return out


def displacement_at(
    coeffs: torch.Tensor, spatial_shape: Sequence[int], points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The field and its Jacobian at continuous voxel positions.

    Args:
        coeffs: ``(D, G_1, ..., G_D)`` control coefficients in voxels.
        spatial_shape: ``(S_1, ..., S_D)``.
        points: ``(N, D)`` voxel positions (outside the image the outer cells are extrapolated).

    Returns:
        ``u`` ``(N, D)`` and ``J`` ``(N, D, D)`` with ``J[n, c, a] = du_c / dx_a``.
    """
    d = coeffs.shape[0]
    pts = points.to(coeffs.dtype)
    idx, val, der = [], [], []
    for a in range(d):
        cell, t, scale = _cells(pts[:, a], spatial_shape[a], coeffs.shape[1 + a])
        idx.append(cell[:, None] + torch.arange(4, device=pts.device))  # (N, 4)
        val.append(bspline_basis(t))  # (N, 4)
        der.append(bspline_basis(t, derivative=True) * scale)
    if d == 2:
        c = coeffs[:, idx[0][:, :, None], idx[1][:, None, :]]  # (D, N, 4, 4)
        u = torch.einsum("cnab,na,nb->nc", c, val[0], val[1])
        j = torch.stack(
            [torch.einsum("cnab,na,nb->nc", c, der[0], val[1]), torch.einsum("cnab,na,nb->nc", c, val[0], der[1])],
            dim=-1,
        )
        return u, j
    c = coeffs[:, idx[0][:, :, None, None], idx[1][:, None, :, None], idx[2][:, None, None, :]]  # (D, N, 4, 4, 4)
    eq = "cnabk,na,nb,nk->nc"
    u = torch.einsum(eq, c, val[0], val[1], val[2])
    j = torch.stack(
        [
            torch.einsum(eq, c, der[0], val[1], val[2]),
            torch.einsum(eq, c, val[0], der[1], val[2]),
            torch.einsum(eq, c, val[0], val[1], der[2]),
        ],
        dim=-1,
    )
    return u, j


def invert_displacement_at(
    coeffs: torch.Tensor, spatial_shape: Sequence[int], points: torch.Tensor, num_iterations: int = 20
) -> torch.Tensor:
    """Move landmarks with a pulled warp: solve ``x + u(x) = p`` for each point ``p``.

    Newton iterations on the exact spline (``x <- x - (I + J(x))^-1 (x + u(x) - p)``), starting from
    ``p - u(p)``; converges to ~1e-10 voxel for folding-free fields. NaN rows stay NaN.

    Args:
        coeffs: ``(D, G_1, ..., G_D)`` control coefficients in voxels.
        spatial_shape: ``(S_1, ..., S_D)``.
        points: ``(N, D)`` landmark positions in the input image (voxels).
        num_iterations: Newton steps.

    Returns:
        ``(N, D)`` positions in the warped image, dtype of ``points``.
    """
    p = points.to(coeffs.dtype)
    valid = ~torch.isnan(p).any(dim=-1)
    out = torch.full_like(p, float("nan"))
    if not bool(valid.any()):
        return out.to(points.dtype)
    q = p[valid]
    eye = torch.eye(q.shape[1], dtype=q.dtype, device=q.device)
    x = q - displacement_at(coeffs, spatial_shape, q)[0]
    for _ in range(num_iterations):
        u, j = displacement_at(coeffs, spatial_shape, x)
        residual = x + u - q
        step = torch.linalg.solve(eye + j, residual[..., None])[..., 0]
        x = x - step
        if float(residual.abs().max()) < 1e-9:
            break
    out[valid] = x
    return out.to(points.dtype)


def warp_image(
    img: torch.Tensor, displacement: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros"
) -> torch.Tensor:
    """Pull-warp a channel-first image: ``out(x) = img(x + u(x))``.

    Args:
        img: ``(C, S_1, ..., S_D)``.
        displacement: ``(D, S_1, ..., S_D)`` in voxels.
        mode: ``"bilinear"`` (trilinear in 3D), ``"nearest"`` or (2D only) ``"bicubic"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Returns:
        ``(C, S_1, ..., S_D)`` plain tensor, dtype of ``img`` (float computation).
    """
    d = displacement.shape[0]
    shape = img.shape[1:]
    axes = [torch.arange(s, dtype=displacement.dtype, device=displacement.device) for s in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0) + displacement  # (D, *S) voxel positions
    norm = torch.stack(
        [grid[a] * (2.0 / max(shape[a] - 1, 1)) - 1.0 for a in range(d)][::-1], dim=-1
    )  # (*S, D) with x = last axis, as grid_sample wants
    src = img.as_tensor() if hasattr(img, "as_tensor") else img
    work = src.float() if not src.is_floating_point() else src
    out = F.grid_sample(
        work[None],
        norm[None].to(work.dtype),
        mode=mode,
        padding_mode=padding_mode,
        align_corners=True,
    )[0]
    return out.to(src.dtype) if src.is_floating_point() else out
