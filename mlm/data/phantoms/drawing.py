"""Rasterising primitives for the phantoms: tubes (capsules), oriented local frames, in 2D and 3D voxel grids.

All positions and sizes are in voxel (array index) units of the array drawn into; index ``i`` is the centre of
voxel ``i``. Each primitive touches only its bounding box, so drawing cost scales with the object's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bounding_box", "local_coordinates", "capsule_mask", "paint_capsule", "paint_polyline"]


def bounding_box(shape: Sequence[int], center: np.ndarray, radius: float | np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the voxels within ``radius`` (per axis or scalar) of ``center``; ``None`` when outside the array."""
    c = np.asarray(center, dtype=np.float64)
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), c.shape)
    lo = np.maximum(np.floor(c - r).astype(int), 0)
    hi = np.minimum(np.ceil(c + r).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def local_coordinates(
    shape: Sequence[int], center: np.ndarray, axes: np.ndarray, radius: float
) -> tuple[tuple[slice, ...], list[np.ndarray]] | None:
    """Coordinates of the voxels near ``center`` along the rows of ``axes``.

    Args:
        shape: the array's spatial shape.
        center: ``(D,)`` origin of the local frame, voxels.
        axes: ``(A, D)`` unit vectors (voxel space) of the local frame.
        radius: half-size of the bounding box, voxels.

    Returns:
        ``(slices, [u_1, ..., u_A])`` with each ``u_a`` an array of the bounding box's shape holding
        ``(x - center) . axes[a]``, or ``None`` when the box misses the array.
    """
    sl = bounding_box(shape, center, radius)
    if sl is None:
        return None
    grids = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float64) for s in sl], indexing="ij", sparse=True)
    rel = [g - c for g, c in zip(grids, center)]
    return sl, [sum(r * a for r, a in zip(rel, ax)) for ax in np.asarray(axes, dtype=np.float64)]


def capsule_mask(
    shape: Sequence[int], p0: np.ndarray, p1: np.ndarray, radius: float
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Voxels within ``radius`` of the segment ``p0 -> p1`` (all in voxels): ``(slices, bool mask of the box)``."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    lo, hi = np.minimum(p0, p1) - radius, np.maximum(p0, p1) + radius
    sl = bounding_box(shape, (lo + hi) / 2, (hi - lo) / 2)
    if sl is None:
        return None
    grids = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float64) for s in sl], indexing="ij", sparse=True)
    d = p1 - p0
    dd = max(float(d @ d), 1e-12)
    rel = [g - a for g, a in zip(grids, p0)]
    t = np.clip(sum(r * di for r, di in zip(rel, d)) / dd, 0.0, 1.0)
    dist2 = sum((r - t * di) ** 2 for r, di in zip(rel, d))
    return sl, dist2 <= radius**2


def paint_capsule(array: np.ndarray, p0: np.ndarray, p1: np.ndarray, radius: float, value: float) -> None:
    """Set the voxels within ``radius`` of segment ``p0 -> p1`` to ``value``, in place."""
    res = capsule_mask(array.shape, p0, p1, radius)
    if res is not None:
        sl, m = res
        array[sl][m] = value


def paint_polyline(array: np.ndarray, points: np.ndarray, radius: float, value: float) -> None:
    """Paint a tube of ``radius`` along consecutive ``points (P, D)`` (voxels), in place."""
    for a, b in zip(points[:-1], points[1:]):
        paint_capsule(array, a, b, radius, value)
