"""Geometry of landmarks and images: LPS <-> RAS, the spatial part of an affine, voxel <-> world mapping.

The one place of the project where these conventions are written down (everything else calls it):

- **World coordinates** are mm. MONAI's ``MetaTensor`` affines map voxels to **RAS** (x to the right, y to the
  anterior, z to the superior); ITK, DICOM and the project's prediction files use **LPS** (x to the left, y to
  the posterior). ``ras = diag(-1, -1, 1) @ lps``: the first two coordinates are negated, in 2D as in 3D (a 2D
  image's plane is ITK's x-y plane, which MONAI's ``ITKReader`` flips the same way). The map is its own inverse.
- **Voxel coordinates** are array indices of the channel-first array's spatial axes (index ``i`` = centre of
  voxel ``i``): ``world = A @ [i, j(, k), 1]`` with a ``(D+1, D+1)`` affine ``A``.
- **Affines of 2D images**: MONAI keeps a 4x4 affine for 2D images; :func:`spatial_affine` takes its rows and
  columns ``[0, 1, 3]`` (like ``monai.data.utils.to_affine_nd``) to get the ``(3, 3)`` in-plane affine.

Functions take numpy arrays or torch tensors; :func:`voxel_to_world` / :func:`world_to_voxel` /
:func:`lps_to_ras` return the type they are given, in float64 for numpy input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = [
    "WORLD_COORDINATE_SYSTEMS",
    "lps_to_ras",
    "ras_to_lps",
    "to_ras",
    "from_ras",
    "lps_ras_flip",
    "flip_affine_lps_ras",
    "spatial_affine",
    "affine_with_spacing",
    "voxel_to_world",
    "world_to_voxel",
    "image_affine",
    "original_affine",
    "original_spatial_shape",
]

#: conventions of physical (mm) coordinates.
WORLD_COORDINATE_SYSTEMS = ("LPS", "RAS")


def lps_to_ras(points: Any) -> Any:
    """Negate the first two coordinates: LPS mm -> RAS mm (and back: the map is its own inverse).

    Args:
        points: ``(..., D)`` coordinates, ``D >= 1`` (a 1D point has only x negated); NaN stays NaN.

    Returns:
        the flipped coordinates, a new tensor of the same dtype for a tensor, else a float64 ndarray.
    """
    if isinstance(points, torch.Tensor):
        out = points.clone() if points.is_floating_point() else points.double()
    else:
        out = np.array(points, dtype=np.float64)
    out[..., :2] *= -1.0
    return out


def ras_to_lps(points: Any) -> Any:
    """RAS mm -> LPS mm (the same flip as :func:`lps_to_ras`)."""
    return lps_to_ras(points)


def _world_system(coordinate_system: str) -> str:
    if coordinate_system not in WORLD_COORDINATE_SYSTEMS:
        raise ValueError(f"expected LPS or RAS coordinates, got {coordinate_system!r}.")
    return coordinate_system


def to_ras(points: Any, coordinate_system: str) -> Any:
    """World points ``(..., D)`` stated in ``coordinate_system`` (``"LPS"`` or ``"RAS"``) as RAS mm (a copy).

    Raises:
        ValueError: any other coordinate system (voxel indices need an affine: :func:`voxel_to_world`).
    """
    if _world_system(coordinate_system) == "LPS":
        return lps_to_ras(points)
    return points.clone() if isinstance(points, torch.Tensor) else np.array(points, dtype=np.float64)


def from_ras(points: Any, coordinate_system: str) -> Any:
    """RAS mm points ``(..., D)`` expressed in ``coordinate_system`` (``"LPS"`` or ``"RAS"``; a copy)."""
    return to_ras(points, coordinate_system)  # the flip is its own inverse


def lps_ras_flip(spatial_dims: int) -> np.ndarray:
    """The homogeneous ``(D+1, D+1)`` matrix ``diag(-1, -1, 1, ..., 1)`` that maps LPS to RAS (and back)."""
    flip = np.eye(spatial_dims + 1)
    k = min(spatial_dims, 2)
    flip[:k, :k] *= -1.0
    return flip


def flip_affine_lps_ras(affine: Any) -> np.ndarray:
    """A voxel-to-LPS affine ``(D+1, D+1)`` as voxel-to-RAS (ITK's image geometry as MONAI loads it), or back.

    ``flip @ affine``: the world side is flipped, the voxel grid is unchanged.
    """
    a = np.asarray(affine, dtype=np.float64)
    return lps_ras_flip(a.shape[-1] - 1) @ a


def spatial_affine(affine: torch.Tensor | np.ndarray, spatial_dims: int) -> np.ndarray:
    """The ``(D+1, D+1)`` float64 voxel-to-world affine of the first ``D`` spatial axes.

    MONAI keeps a 4x4 affine for 2D images; this takes its rows/columns ``[0, 1, 3]``
    (the in-plane part and the translation), like ``monai.data.utils.to_affine_nd``.

    Args:
        affine: ``(..., R+1, R+1)`` affine(s), ``R >= spatial_dims`` (a leading batch axis is kept).
        spatial_dims: ``D``.

    Returns:
        ``(..., D+1, D+1)`` float64 ndarray.
    """
    a = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    a = a.astype(np.float64)
    r = a.shape[-1] - 1
    if r < spatial_dims:
        raise ValueError(f"affine of shape {a.shape} cannot describe {spatial_dims}D points.")
    idx = [*range(spatial_dims), r]
    return a[..., idx, :][..., :, idx]


def affine_with_spacing(affine: Any, spacing: Sequence[float]) -> np.ndarray:
    """``affine`` with the voxel size of its first ``len(spacing)`` axes set to ``spacing`` mm.

    The columns of the first ``D = len(spacing)`` axes are scaled to the given lengths (a degenerate zero column
    stays zero), keeping the axis directions and the origin: what ``transforms.SetSpacing`` does to pixel-only
    images (BMP, PNG), whose readers give the identity affine.

    Args:
        affine: ``(R+1, R+1)`` voxel-to-world affine, ``R >= D`` (MONAI's 4x4 for 2D images included).
        spacing: ``D`` positive voxel sizes, mm, in the array's axis order.

    Returns:
        ``(R+1, R+1)`` float64 ndarray (a new array).
    """
    if isinstance(affine, torch.Tensor):
        a = affine.detach().cpu().numpy().astype(np.float64)
    else:
        a = np.array(affine, dtype=np.float64)
    sp = np.asarray(spacing, dtype=np.float64).ravel()
    d = sp.size
    cols = a[:d, :d]
    norms = np.linalg.norm(cols, axis=0)
    norms[norms == 0] = 1.0
    a[:d, :d] = cols / norms * sp
    return a


def _as_tensor(x: Any) -> tuple[torch.Tensor, bool]:
    """``x`` as a plain tensor, and whether it came as a numpy array / list (to convert back)."""
    if isinstance(x, torch.Tensor):
        return x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def _affine_parts(affine: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = coords.shape[-1]
    if affine.shape[-2:] != (dims + 1, dims + 1):
        raise ValueError(
            f"affine must be ({dims + 1}, {dims + 1}) or (B, {dims + 1}, {dims + 1}) for {dims}D coordinates, "
            f"got {tuple(affine.shape)}."
        )
    lin, trans = affine[..., :dims, :dims], affine[..., :dims, dims]
    if affine.ndim == 3:
        if coords.ndim < 2 or coords.shape[0] != affine.shape[0]:
            raise ValueError(
                f"batched affine {tuple(affine.shape)} needs coordinates (B, ..., D) with B = {affine.shape[0]}, "
                f"got {tuple(coords.shape)}."
            )
        extra = coords.ndim - 2
        lin = lin.reshape(lin.shape[0], *([1] * extra), dims, dims)
        trans = trans.reshape(trans.shape[0], *([1] * extra), dims)
    elif affine.ndim != 2:
        raise ValueError(f"affine must be 2D or 3D (batched), got shape {tuple(affine.shape)}.")
    return lin, trans


def voxel_to_world(coords: Any, affine: Any) -> Any:
    """World coordinates (mm) ``affine @ [x, 1]`` of voxel coordinates.

    Args:
        coords: ``(..., D)`` voxel coordinates (NaN rows stay NaN); tensor or array.
        affine: ``(D+1, D+1)`` voxel-to-world affine (MONAI's MetaTensor affine is RAS), or ``(B, D+1, D+1)``
            with ``coords`` ``(B, ..., D)``. For 2D images with MONAI's 4x4 affine take :func:`spatial_affine`.

    Returns:
        ``(..., D)`` in mm, float64, same type (tensor/ndarray) as ``coords``.
    """
    c, was_np = _as_tensor(coords)
    a, _ = _as_tensor(affine)
    c, a = c.to(torch.float64), a.to(torch.float64).to(c.device)
    lin, trans = _affine_parts(a, c)
    out = (lin @ c[..., None])[..., 0] + trans
    return out.numpy() if was_np else out


def world_to_voxel(coords: Any, affine: Any) -> Any:
    """Voxel coordinates of world coordinates (mm): the inverse of :func:`voxel_to_world` (same shapes and types)."""
    a, _ = _as_tensor(affine)
    inv = torch.linalg.inv(a.to(torch.float64))
    return voxel_to_world(coords, inv if isinstance(affine, torch.Tensor) else inv.numpy())


def image_affine(image: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Voxel-to-world (RAS mm) affine ``(D+1, D+1)`` float64 of a channel-first ``MetaTensor`` image (identity
    for a plain tensor): the grid its array is in now, after every MONAI spatial transform."""
    if isinstance(image, MetaTensor):
        return torch.as_tensor(spatial_affine(image.affine, spatial_dims))
    return torch.eye(spatial_dims + 1, dtype=torch.float64)


def original_affine(image: torch.Tensor, spatial_dims: int, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Voxel-to-world (RAS mm) affine ``(D+1, D+1)`` float64 of the image as it was read from disk.

    ``meta["original_affine"]`` when the reader recorded it (NIfTI, ITK); otherwise (pixel-only images read by
    PIL, identity affine) the identity with the voxel size ``spacing`` (:func:`affine_with_spacing`, what
    ``transforms.SetSpacingd`` gave the loaded image), or the identity without ``spacing``.
    """
    if isinstance(image, MetaTensor) and image.meta.get("original_affine") is not None:
        return torch.as_tensor(spatial_affine(image.meta["original_affine"], spatial_dims))
    affine = np.eye(spatial_dims + 1)
    if spacing is not None:
        affine = affine_with_spacing(affine, [float(v) for v in spacing])
    return torch.as_tensor(affine)


def original_spatial_shape(image: torch.Tensor, spatial_dims: int) -> tuple[int, ...] | None:
    """Spatial shape of the image as it was read from disk (``meta["spatial_shape"]``), or None when unknown.

    It is in the axis order of the file's array, the order of :func:`original_affine`'s voxel axes.
    """
    if not isinstance(image, MetaTensor) or image.meta.get("spatial_shape") is None:
        return None
    shape = [int(v) for v in np.asarray(torch.as_tensor(image.meta["spatial_shape"]).cpu()).reshape(-1)]
    return tuple(shape) if len(shape) == spatial_dims else None
