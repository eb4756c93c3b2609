"""Exponential Weighted Center loss of FARNet (Ao & Wu, J Digit Imaging 2022/23), coarse-to-fine at 1/2 and full size.

The targets are built inside the loss from the batch's landmarks ``(B, N, D)`` (voxel coordinates of the network's
input grid, NaN rows missing): per landmark the peak-1 Gaussian ``y = exp(-|x - p|^2 / (2 sigma^2))``, untruncated,
on the full-resolution grid and, with the landmark mapped to the half-resolution grid, on that one. With ``y_hat``
the network's (linear) heatmaps and ``alpha`` the base (40)::

    EWC(y_hat, y) = mean over pixels and present landmarks of (y_hat - y)^2 * alpha^y
    loss = full_weight * EWC(full, y_full) + half_weight * EWC(half, y_half)          (train.py: 1 and 1)

``alpha^y`` weights the squared error by up to ``alpha`` at the landmark and 1 far from it.

Differences from the authors' code (shared/docs/METHODS.md section 3), each deliberate:

- the Gaussian is centred on the exact sub-pixel landmark (index ``i`` = centre of pixel ``i``); the authors'
  ``CenterLabelHeatMap`` used a 1-based grid (``linspace(1, W, W)``) against 0-based decoding, one pixel off;
- the half-resolution target sits where the network's half-resolution grid has the landmark: half-resolution pixel
  ``j`` is upsampled (``align_corners=False``) to full-resolution coordinate ``2 j + 0.5``, so ``p`` maps to
  ``(p - 0.5) / 2``; the authors used ``p / 2`` on their 1-based grid. Its sigma is ``half_sigma`` half-resolution
  pixels, by default ``sigma`` (the authors' 10, i.e. 20 full-resolution pixels);
- a missing landmark (NaN row) is left out: its channels do not enter either mean (``mask_missing=False``: trained
  towards an empty map). With every landmark present the loss is the authors' mean over all pixels and channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["ExponentialWeightedCenterLoss", "dense_gaussian_heatmaps", "exponential_weighted_center_error"]


def dense_gaussian_heatmaps(landmarks: torch.Tensor, spatial_shape: Sequence[int], sigma: float) -> torch.Tensor:
    """Untruncated peak-1 Gaussians ``exp(-|x - p|^2 / (2 sigma^2))`` on the whole grid, one channel per landmark.

    Args:
        landmarks: ``(B, N, D)`` voxel coordinates (index ``i`` = centre of voxel ``i``); NaN rows give zero channels.
        spatial_shape: ``(S_1, ..., S_D)``.
        sigma: standard deviation, voxels of this grid.

    Returns:
        ``(B, N, *spatial_shape)``, dtype of ``landmarks`` (float32 if not floating point).
    """
    landmarks = torch.as_tensor(landmarks)
    dtype = landmarks.dtype if landmarks.is_floating_point() else torch.float32
    landmarks = landmarks.to(dtype)
    if landmarks.ndim != 3 or landmarks.shape[-1] != len(spatial_shape):
        raise ValueError(
            f"dense_gaussian_heatmaps: landmarks must be (B, N, D) with D = {len(spatial_shape)}, got "
            f"{tuple(landmarks.shape)}."
        )
    present = ~torch.isnan(landmarks).any(dim=-1)  # (B, N)
    points = torch.nan_to_num(landmarks, nan=0.0)
    heat = torch.ones((*landmarks.shape[:2], *[1] * len(spatial_shape)), dtype=dtype, device=landmarks.device)
    dims = len(spatial_shape)
    for axis, size in enumerate(spatial_shape):
        grid = torch.arange(int(size), dtype=dtype, device=landmarks.device)
        profile = torch.exp(-((grid - points[..., axis : axis + 1]) ** 2) / (2.0 * sigma * sigma))  # (B, N, S_a)
        shape = [*landmarks.shape[:2]] + [1] * dims
        shape[2 + axis] = int(size)
        heat = heat * profile.reshape(shape)
    return heat * present.to(dtype).reshape(*present.shape, *[1] * dims)


def exponential_weighted_center_error(
    pred: torch.Tensor, target: torch.Tensor, alpha: float, channel_weight: torch.Tensor
) -> torch.Tensor:
    """``sum_{b,n} w_bn mean_x (pred - target)^2 alpha^target / sum w_bn`` (scalar) of ``(B, N, *S)`` maps and the
    per-channel weights ``w (B, N)`` (1 present, 0 left out)."""
    error = ((pred - target) ** 2 * torch.pow(alpha, target)).flatten(2).mean(dim=-1)  # (B, N)
    return (error * channel_weight).sum() / channel_weight.sum().clamp_min(1.0)


class ExponentialWeightedCenterLoss(_Loss):
    """FARNet's Exponential Weighted Center loss at full and half resolution, targets built from the landmarks.

    Args:
        num_landmarks: N.
        spatial_dims: D (2 or 3).
        sigma: the full-resolution Gaussian's sigma, voxels of the network's input grid (the authors': 10 at 800x640).
        alpha: the base of the weight ``alpha^y`` (the authors' ``base_number``: 40).
        half_sigma: the half-resolution Gaussian's sigma, half-resolution voxels; None: ``sigma`` (the authors').
        full_weight: factor of the full-resolution term (1).
        half_weight: factor of the half-resolution term (1).
        mask_missing: True: missing landmarks' channels are left out; False: trained towards empty maps.

    Call with ``pred``: the tuple ``(full (B, N, *S), half (B, N, *S/2))`` of :class:`mlm.networks.FARNet` in
    training mode, or one tensor ``full`` (evaluation mode: the full-resolution term only), and ``landmarks
    (B, N, D)`` (voxels of ``full``'s grid, NaN rows missing). Returns a scalar.
    """

    def __init__(
        self,
        num_landmarks: int,
        spatial_dims: int,
        sigma: float = 10.0,
        alpha: float = 40.0,
        half_sigma: float | None = None,
        full_weight: float = 1.0,
        half_weight: float = 1.0,
        mask_missing: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"ExponentialWeightedCenterLoss: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_landmarks < 1:
            raise ValueError(f"ExponentialWeightedCenterLoss: num_landmarks must be >= 1, got {num_landmarks}.")
        if not sigma > 0 or (half_sigma is not None and not half_sigma > 0):
            raise ValueError(f"ExponentialWeightedCenterLoss: sigmas must be > 0, got {sigma}, {half_sigma}.")
        if not alpha > 0:
            raise ValueError(f"ExponentialWeightedCenterLoss: alpha must be > 0, got {alpha}.")
        self.num_landmarks = int(num_landmarks)
        self.spatial_dims = int(spatial_dims)
        self.sigma = float(sigma)
        self.alpha = float(alpha)
        self.half_sigma = self.sigma if half_sigma is None else float(half_sigma)
        self.full_weight = float(full_weight)
        self.half_weight = float(half_weight)
        self.mask_missing = bool(mask_missing)

    @property
    def sigmas(self) -> torch.Tensor:
        """``(N,)``: the full-resolution sigma per landmark (fixed), for :class:`mlm.handlers.SigmaLogger`."""
        return torch.full((self.num_landmarks,), self.sigma)

    def _check(self, heat: torch.Tensor, landmarks: torch.Tensor, name: str) -> None:
        d, n = self.spatial_dims, self.num_landmarks
        if heat.ndim != d + 2 or heat.shape[1] != n:
            raise ValueError(
                f"ExponentialWeightedCenterLoss: the {name} heatmaps must be (B, {n}, *S) with {d} spatial dims, got "
                f"{tuple(heat.shape)}."
            )
        if tuple(landmarks.shape) != (heat.shape[0], n, d):
            raise ValueError(
                f"ExponentialWeightedCenterLoss: landmarks must be (B, N, D) = {(heat.shape[0], n, d)}, got "
                f"{tuple(landmarks.shape)}."
            )

    def terms(self, pred: torch.Tensor | Sequence[torch.Tensor], landmarks: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms (scalars): ``"full"`` and, for a ``(full, half)`` prediction, ``"half"``."""
        if isinstance(pred, torch.Tensor):
            full, half = pred, None
        elif len(pred) == 2:
            full, half = pred[0], pred[1]
        else:
            raise ValueError(
                f"ExponentialWeightedCenterLoss: pred must be a tensor or the pair (full, half), got {len(pred)} items."
            )
        landmarks = torch.as_tensor(landmarks, device=full.device).to(full.dtype)
        self._check(full, landmarks, "full-resolution")
        present = ~torch.isnan(landmarks).any(dim=-1)  # (B, N)
        channel = (present if self.mask_missing else torch.ones_like(present)).to(full.dtype)
        target = dense_gaussian_heatmaps(landmarks, list(full.shape[2:]), self.sigma)
        terms = {"full": exponential_weighted_center_error(full, target, self.alpha, channel)}
        if half is not None:
            self._check(half, landmarks, "half-resolution")
            half_target = dense_gaussian_heatmaps((landmarks - 0.5) / 2.0, list(half.shape[2:]), self.half_sigma)
            terms["half"] = exponential_weighted_center_error(half, half_target, self.alpha, channel)
        return terms

    def forward(self, pred: torch.Tensor | Sequence[torch.Tensor], landmarks: torch.Tensor) -> torch.Tensor:
        """Loss of ``pred`` (``(full, half)`` or ``full``) against ``landmarks (B, N, D)`` (voxels, NaN missing)."""
        terms = self.terms(pred, landmarks)
        loss = self.full_weight * terms["full"]
        if "half" in terms:
            loss = loss + self.half_weight * terms["half"]
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_landmarks={self.num_landmarks}, spatial_dims={self.spatial_dims}, sigma={self.sigma}, "
            f"alpha={self.alpha}, half_sigma={self.half_sigma}, mask_missing={self.mask_missing}"
        )
