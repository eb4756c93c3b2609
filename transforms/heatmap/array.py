"""Array transform turning landmarks ``(N, D)`` into sub-pixel Gaussian heatmap targets ``(N, *S)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import Transform
from monai.utils import TransformBackends

from transforms.heatmap.functional import gaussian_heatmaps

__all__ = ["LandmarksToHeatmap"]


class LandmarksToHeatmap(Transform):
    """Gaussian heatmaps, one channel per landmark, centred on the exact float voxel coordinates.

    Unlike ``monai.transforms.GenerateHeatmap`` the centre is not rounded to a voxel. A missing landmark
    (NaN row) gives an all-zero channel. See :func:`transforms.heatmap.functional.gaussian_heatmaps`.

    Args:
        spatial_shape: output grid ``(S_1, ..., S_D)``; may instead be given at call time.
        sigma: standard deviation in voxels: a float or N floats (one per landmark). Default 2.0.
        gamma: None for peak-1 maps, else the scale of the normalised Gaussian
            ``gamma / ((2 pi)^(D/2) sigma^D) exp(...)`` (Payer: 100 in 2D, 1000 in 3D).
        truncate: window half-width in sigmas; values beyond it are 0.
        dtype: output dtype.

    Shapes: ``landmarks (N, D)`` voxel coordinates -> ``(N, *spatial_shape)``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        spatial_shape: Sequence[int] | None = None,
        sigma: float | Sequence[float] = 2.0,
        gamma: float | None = None,
        truncate: float = 4.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.spatial_shape = None if spatial_shape is None else tuple(int(s) for s in spatial_shape)
        self.sigma = torch.as_tensor(sigma, dtype=torch.float64).flatten()
        if bool((self.sigma <= 0).any()):
            raise ValueError(f"LandmarksToHeatmap: sigma must be positive, got {self.sigma.tolist()}.")
        self.gamma = gamma
        self.truncate = truncate
        self.dtype = dtype

    def __call__(self, landmarks: torch.Tensor, spatial_shape: Sequence[int] | None = None) -> torch.Tensor:
        shape = self.spatial_shape if spatial_shape is None else tuple(int(s) for s in spatial_shape)
        if shape is None:
            raise ValueError("LandmarksToHeatmap: no spatial_shape given (neither at construction nor at call).")
        compute_dtype = self.dtype if self.dtype.is_floating_point else torch.float32
        points = torch.as_tensor(landmarks).as_subclass(torch.Tensor).detach().to(compute_dtype)
        if points.ndim != 2 or points.shape[1] != len(shape):
            raise ValueError(
                f"LandmarksToHeatmap: landmarks must be (N, D) with D = {len(shape)} for spatial_shape {shape}, "
                f"got shape {tuple(points.shape)}."
            )
        num = points.shape[0]
        sigma = self.sigma
        if sigma.numel() not in (1, num):
            raise ValueError(f"LandmarksToHeatmap: sigma has {sigma.numel()} values for {num} landmarks.")
        sigma = sigma.to(points.device) if sigma.numel() == num else float(sigma[0])
        maps = gaussian_heatmaps(points[None], shape, sigma, self.gamma, self.truncate)[0]
        return maps.to(self.dtype)
