"""Test helpers: images with a small Gaussian blob under each landmark, and blob centroids."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

SIGMA = 1.6  # px: wide enough that linear resampling does not bias the centroid (bias << 0.01 px)
RADIUS = 6.0  # px: centroid window, ~4 sigma


def blob_image(shape, points, sigma: float = SIGMA, affine=None) -> MetaTensor:
    """A ``(1, *shape)`` float32 MetaTensor with a unit Gaussian at each ``(D,)`` point (voxel coords)."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    img = np.zeros(shape)
    for p in points:
        img += np.exp(-sum((g - c) ** 2 for g, c in zip(grids, p)) / (2 * sigma**2))
    aff = torch.eye(4, dtype=torch.float64) if affine is None else torch.as_tensor(affine, dtype=torch.float64)
    return MetaTensor(torch.as_tensor(img, dtype=torch.float32)[None], affine=aff)


def blob_centroid(img, point, radius: float = RADIUS) -> np.ndarray:
    """Intensity centroid ``(D,)`` of ``img`` ``(*S)`` within ``radius`` voxels of ``point``."""
    arr = np.asarray(img, dtype=np.float64)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in arr.shape], indexing="ij")
    mask = sum((g - c) ** 2 for g, c in zip(grids, point)) <= radius**2
    w = arr * mask
    return np.array([(w * g).sum() / w.sum() for g in grids])


def window_inside(shape, point, radius: float = RADIUS) -> bool:
    """Whether the centroid window around ``point`` lies inside the grid (so the blob is not cut)."""
    p = np.asarray(point)
    return bool(np.all(p - radius - 1 >= 0) and np.all(p + radius + 1 <= np.asarray(shape) - 1))


def blob_errors(img, landmarks) -> list[float]:
    """Distance (voxels) between each landmark ``(N, D)`` and the blob centroid around it, for the
    landmarks whose window lies fully inside ``img`` ``(1, *S)``."""
    arr = np.asarray(img[0].detach().cpu() if isinstance(img, torch.Tensor) else img[0])
    pts = np.asarray(landmarks.detach().cpu() if isinstance(landmarks, torch.Tensor) else landmarks)
    return [float(np.linalg.norm(blob_centroid(arr, p) - p)) for p in pts if window_inside(arr.shape, p)]
