"""Binary cross-entropy heatmap loss of GU2Net (Zhu et al., "You Only Learn Once", MICCAI 2021).

GU2Net's network ends in a sigmoid (the product of the local and the global network's sigmoid maps): its output is a
per-voxel probability that the voxel is the landmark. The target of landmark ``n`` is a peak-1 Gaussian of ``sigma``
voxels, cut to 0 beyond ``truncate * sigma`` (the authors: sigma 3, a ``2 * round(3 sigma)`` template), and the loss
is the binary cross-entropy summed over voxels and channels (the authors' ``BCELoss(reduction="sum")``).

Differences from the authors' code (shared/docs/METHODS.md section 2), each deliberate:

- the Gaussian is centred on the exact sub-pixel landmark in the network's input grid, not pasted at the rounded
  point (the authors' template is also one voxel off centre: peak at index 9 of an 18-voxel window);
- the channel count comes from the prediction, so one loss serves every domain of the universal model (19 head,
  37 hand, 6 chest landmarks); a batch is always one domain;
- a missing landmark (NaN row) is left out of the sum (``mask_missing``); the authors' data had none;
- ``reduction="mean"`` divides the sum by the batch size (the authors' sum: ``reduction="sum"``; with Adam the two
  train alike, the mean keeps the loss comparable across batch sizes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from transforms.heatmap.functional import gaussian_heatmaps

__all__ = ["HeatmapBCELoss"]


class HeatmapBCELoss(_Loss):
    """BCE between predicted heatmap probabilities and peak-1 Gaussian targets built from the landmarks.

    Args:
        spatial_dims: D (2 or 3).
        sigma: the targets' sigma, voxels of the prediction's grid (GU2Net: 3).
        truncate: targets are 0 beyond ``truncate * sigma`` voxels from the landmark (per axis; GU2Net: 3).
        reduction: ``"sum"`` (the authors') or ``"mean"`` (the sum divided by the batch size).
        mask_missing: leave the channels of missing landmarks out (True) or train them towards an empty map.
        eps: predictions are clamped to ``[eps, 1 - eps]`` before the logarithm (a product of sigmoids reaches 0).
        num_landmarks: the length of :attr:`sigmas` (what :class:`mlm.handlers.SigmaLogger` reports: the fixed sigma
            per landmark of the bundle's default data); the loss itself takes any count.

    Shapes: ``forward(pred (B, N, *S) in [0, 1], landmarks (B, N, D))`` -> scalar; landmarks in voxel coordinates of
    ``pred`` (NaN rows missing). ``N`` is free (one loss for several domains).
    """

    def __init__(
        self,
        spatial_dims: int,
        sigma: float = 3.0,
        truncate: float = 3.0,
        reduction: str = "mean",
        mask_missing: bool = True,
        eps: float = 1e-7,
        num_landmarks: int = 1,
    ) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"HeatmapBCELoss: reduction must be 'mean' or 'sum', got {reduction!r}.")
        super().__init__(reduction=reduction)
        if spatial_dims not in (2, 3):
            raise ValueError(f"HeatmapBCELoss: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if not float(sigma) > 0 or not float(truncate) > 0:
            raise ValueError(f"HeatmapBCELoss: sigma and truncate must be positive, got {sigma} and {truncate}.")
        self.spatial_dims = int(spatial_dims)
        self.sigma = float(sigma)
        self.truncate = float(truncate)
        self.mask_missing = bool(mask_missing)
        self.eps = float(eps)
        self.num_landmarks = int(num_landmarks)

    @property
    def sigmas(self) -> torch.Tensor:
        """The targets' sigma, ``(num_landmarks,)`` (fixed: the same for every landmark and domain)."""
        return torch.full((self.num_landmarks,), self.sigma)

    def targets(self, landmarks: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
        """Peak-1 Gaussian targets ``(B, N, *S)``; zero maps for missing landmarks."""
        return gaussian_heatmaps(landmarks, spatial_shape, self.sigma, truncate=self.truncate)

    def forward(self, pred: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Loss of probabilities ``pred`` ``(B, N, *S)`` against ``landmarks`` ``(B, N, D)``."""
        if pred.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"HeatmapBCELoss: pred must be (B, N, *S) with {self.spatial_dims} spatial dims, got {tuple(pred.shape)}."
            )
        if tuple(landmarks.shape) != (*pred.shape[:2], self.spatial_dims):
            raise ValueError(
                f"HeatmapBCELoss: landmarks must be (B, N, D) = {(*pred.shape[:2], self.spatial_dims)} for predictions "
                f"{tuple(pred.shape)}, got {tuple(landmarks.shape)}."
            )
        landmarks = torch.as_tensor(landmarks, device=pred.device).float()
        target = self.targets(landmarks, tuple(pred.shape[2:])).to(pred.dtype)
        prob = pred.clamp(self.eps, 1.0 - self.eps)
        loss = F.binary_cross_entropy(prob, target, reduction="none")
        if self.mask_missing:
            present = ~torch.isnan(landmarks).any(dim=-1)  # (B, N)
            loss = loss * present.to(loss.dtype).reshape(present.shape + (1,) * self.spatial_dims)
        loss = loss.sum()
        return loss / pred.shape[0] if self.reduction == "mean" else loss

    def extra_repr(self) -> str:
        return (
            f"spatial_dims={self.spatial_dims}, sigma={self.sigma}, truncate={self.truncate}, "
            f"mask_missing={self.mask_missing}, reduction={self.reduction!r}"
        )
