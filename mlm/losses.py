"""Heatmap regression loss of the SpatialConfiguration-Net with learnable per-landmark sigmas (Payer et al. 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.loss import _Loss

from transforms.heatmap.functional import gaussian_heatmaps

__all__ = ["SCNHeatmapLoss"]


class SCNHeatmapLoss(_Loss):
    """L2 heatmap loss whose Gaussian targets are built inside the loss, so each landmark's sigma can be learned.

    With ``valid[b, i]`` = landmark ``i`` of sample ``b`` is present (no NaN in its row) and targets
    ``g_i(x) = gamma / ((2 pi)^(D/2) sigma_i^D) exp(-|x - p_i|^2 / (2 sigma_i^2))`` (``gamma=None``: peak-1
    ``exp(...)``), the loss is (Payer's ``reduction="mean"`` divides by the batch size B, not the voxel count)::

        heatmap_scale * 0.5 * sum_{b,i,x} m_bi (pred - g_i)^2 / B  +  sigma_weight * 0.5 * sum_{b,i} (sigma_i valid_bi)^2 / B

    Missing landmarks: Payer trains them towards a zero map (``mask_missing=False``, ``m_bi = 1``); by default
    (``mask_missing=True``, ``m_bi = valid_bi``) their channel is not penalised at all, because an absent
    annotation does not mean the structure is absent from the image. Either way they do not regularise sigma.
    The weight decay of Payer's loss (0.001 * 0.5 * sum |W|^2 over conv kernels) belongs to the optimizer.

    Args:
        num_landmarks: N.
        spatial_dims: D (2 or 3).
        sigma: initial sigma per landmark (voxels of the heatmap grid): a float or N floats. Payer: 2.5 (2D), 4 (3D).
        gamma: target scale (Payer: 100 in 2D, 1000 in 3D); ``None`` for peak-1 Gaussians.
        sigma_weight: weight of the sigma regulariser (Payer: 20 in 2D, 100 in 3D).
        learn_sigma: sigmas are an ``nn.Parameter`` (True; add the loss's parameters to the optimizer) or a buffer.
            Both are saved in ``state_dict``.
        reduction: ``"mean"`` (sum divided by the batch size, Payer) or ``"sum"``.
        heatmap_scale: factor on the heatmap term (e.g. 100 with peak-1 targets, the CPU recipe's scaled MSE).
        mask_missing: exclude the channels of missing landmarks from the heatmap term (see above).

    Shapes: ``forward(pred (B, N, *S), landmarks (B, N, D))`` -> scalar; landmarks in voxel coordinates of ``pred``.
    """

    def __init__(
        self,
        num_landmarks: int,
        spatial_dims: int,
        sigma: float | Sequence[float] = 2.5,
        gamma: float | None = 100.0,
        sigma_weight: float = 20.0,
        learn_sigma: bool = True,
        reduction: str = "mean",
        heatmap_scale: float = 1.0,
        mask_missing: bool = True,
    ) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' (divide by batch size) or 'sum', got {reduction!r}.")
        super().__init__(reduction=reduction)
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be positive, got {num_landmarks}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        sigmas = torch.as_tensor(sigma, dtype=torch.float32).flatten()
        if sigmas.numel() == 1:
            sigmas = sigmas.repeat(num_landmarks)
        if sigmas.numel() != num_landmarks:
            raise ValueError(f"sigma must be a float or {num_landmarks} floats, got {sigmas.numel()} values.")
        if bool((sigmas <= 0).any()):
            raise ValueError(f"sigma must be positive, got {sigmas.tolist()}.")
        self.num_landmarks = num_landmarks
        self.spatial_dims = spatial_dims
        self.gamma = None if gamma is None else float(gamma)
        self.sigma_weight = float(sigma_weight)
        self.learn_sigma = learn_sigma
        self.heatmap_scale = float(heatmap_scale)
        self.mask_missing = mask_missing
        if learn_sigma:
            self.sigmas = nn.Parameter(sigmas)
        else:
            self.register_buffer("sigmas", sigmas)

    def sigma_summary(self) -> list[float]:
        """The current sigma of every landmark (voxels), as a list of N floats for logging."""
        return [float(s) for s in self.sigmas.detach().cpu()]

    def targets(self, landmarks: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
        """Gaussian targets ``(B, N, *S)`` for ``landmarks`` ``(B, N, D)`` (zero maps for missing landmarks)."""
        return gaussian_heatmaps(landmarks, tuple(int(s) for s in spatial_shape), self.sigmas, self.gamma)

    def forward(self, pred: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Loss of heatmaps ``pred`` ``(B, N, *S)`` against ``landmarks`` ``(B, N, D)`` (voxels, NaN rows missing)."""
        if pred.ndim != self.spatial_dims + 2 or pred.shape[1] != self.num_landmarks:
            raise ValueError(
                f"SCNHeatmapLoss: pred must be (B, {self.num_landmarks}, *S) with {self.spatial_dims} spatial dims, "
                f"got {tuple(pred.shape)}."
            )
        if tuple(landmarks.shape) != (pred.shape[0], self.num_landmarks, self.spatial_dims):
            raise ValueError(
                f"SCNHeatmapLoss: landmarks must be (B, N, D) = {(pred.shape[0], self.num_landmarks, self.spatial_dims)}, "
                f"got {tuple(landmarks.shape)}."
            )
        landmarks = torch.as_tensor(landmarks, device=pred.device).float()
        present = ~torch.isnan(landmarks).any(dim=-1)  # (B, N) bool
        valid = present.to(pred.dtype)
        target = self.targets(landmarks, pred.shape[2:]).to(pred.dtype)
        if self.mask_missing and not bool(present.all()):
            # a missing channel's target is the prediction itself (detached): zero loss and zero gradient there,
            # in one fused pass (cheaper than indexing the present channels out)
            mask = present.reshape(present.shape + (1,) * self.spatial_dims)
            target = torch.where(mask, target, pred.detach())
        heatmap_term = self.heatmap_scale * 0.5 * F.mse_loss(pred, target, reduction="sum")
        sigma_term = self.sigma_weight * 0.5 * ((self.sigmas.to(pred.dtype)[None] * valid) ** 2).sum()
        loss = heatmap_term + sigma_term
        if self.reduction == "mean":
            loss = loss / pred.shape[0]
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_landmarks={self.num_landmarks}, spatial_dims={self.spatial_dims}, gamma={self.gamma}, "
            f"sigma_weight={self.sigma_weight}, learn_sigma={self.learn_sigma}, heatmap_scale={self.heatmap_scale}, "
            f"mask_missing={self.mask_missing}, reduction={self.reduction!r}"
        )
