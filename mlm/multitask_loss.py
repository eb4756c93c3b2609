"""Loss of heatmap + offset landmark networks: the multi-task U-Net of Yao et al. (MICCAI 2020) and its AMAT variant.

The targets are built inside the loss from the batch's landmarks ``(B, N, D)`` (voxel coordinates, NaN rows
missing) with :func:`transforms.heatmap.offset_maps.offset_map_targets`: per landmark a truncated Gaussian
``exp(-0.5 d^2 / R^2)`` inside the disk (ball) ``d < R``, the disk mask, and per array axis the offset
``(landmark - voxel) / R`` inside it. With ``h = sigmoid(heatmap logits)``, ``o_a`` the predicted offsets of axis ``a``::

    heatmap_loss="bce":   2 * BCE(h, gaussian)          + sum_a L1_a     (Miss the Point, train.py)
    heatmap_loss="dice":  0.5 * (1 - softDice(h, disk)) + sum_a L1_a     (AMAT, train_with_dice_loss.py)
    L1_a = sum |o_a - offset_a| * disk / sum disk       (over the whole batch and all landmarks)

Differences from the authors' code (shared/docs/METHODS.md sections 1 and 5), each deliberate:

- the targets are centred on the exact sub-pixel landmark in the network's input grid, which the preprocessing moved
  with the image: the authors' label scaling bug (x scaled by 800/2400, y by 640/1935) cannot happen, and their
  integer-position template (one pixel off, misaligned near the top/left borders) is replaced by the exact disk;
- the BCE is computed from logits (``binary_cross_entropy_with_logits``: the same value, without the saturation of
  ``sigmoid`` followed by ``log``);
- offsets are one block per array axis in array order, not ``(reg_x, reg_y)``;
- a missing landmark (NaN row) is left out: its heatmap channel does not enter the BCE/Dice mean (with
  ``mask_missing=False`` it is trained towards an empty map), and its disk is empty, so it adds nothing to the L1
  terms. The authors' data had no missing landmarks;
- the soft Dice is per image and landmark, ``(2 sum h g + 1) / (sum h + sum g + 1)``, averaged over the present
  landmarks (the AMAT code's exact smoothing is not recorded in METHODS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from transforms.heatmap.offset_maps import offset_map_targets, split_offset_output

__all__ = ["HEATMAP_LOSSES", "MultiTaskLandmarkLoss"]

#: heatmap terms and their default weights (the authors'): 2 x BCE (Miss the Point), 0.5 x (1 - soft Dice) (AMAT)
HEATMAP_LOSSES = {"bce": 2.0, "dice": 0.5}


class MultiTaskLandmarkLoss(_Loss):
    """Heatmap (BCE or Dice) + masked L1 offset loss with targets built from the landmarks inside the loss.

    Args:
        num_landmarks: N.
        spatial_dims: D (2 or 3).
        radius: R, voxels of the network's output grid: the disk of the heatmap/mask targets, the sigma of the
            truncated Gaussian and the unit of the offsets (the paper: 40 px at 800x640; AMAT: 10 px at 200x160).
        heatmap_loss: ``"bce"`` (Miss the Point) or ``"dice"`` (AMAT).
        heatmap_weight: factor of the heatmap term; None: the authors' (2 for BCE, 0.5 for Dice).
        mask_missing: True: missing landmarks' heatmap channels are not penalised; False: trained towards zero.
        dice_smooth: the soft Dice's smoothing constant.

    Call with ``pred (B, N * (1 + D), *S)`` (heatmap logits, then D blocks of N offset maps, the output of
    :class:`mlm.networks.MultiTaskUNet`) and ``landmarks (B, N, D)`` (voxels, NaN rows missing). Returns a scalar.
    """

    def __init__(
        self,
        num_landmarks: int,
        spatial_dims: int,
        radius: float,
        heatmap_loss: str = "bce",
        heatmap_weight: float | None = None,
        mask_missing: bool = True,
        dice_smooth: float = 1.0,
    ) -> None:
        super().__init__()
        if heatmap_loss not in HEATMAP_LOSSES:
            raise ValueError(
                f"MultiTaskLandmarkLoss: heatmap_loss must be one of {sorted(HEATMAP_LOSSES)}, got {heatmap_loss!r}."
            )
        if spatial_dims not in (2, 3):
            raise ValueError(f"MultiTaskLandmarkLoss: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if not radius > 0:
            raise ValueError(f"MultiTaskLandmarkLoss: radius must be > 0 voxels, got {radius}.")
        self.num_landmarks = int(num_landmarks)
        self.spatial_dims = int(spatial_dims)
        self.radius = float(radius)
        self.heatmap_loss = heatmap_loss
        self.heatmap_weight = HEATMAP_LOSSES[heatmap_loss] if heatmap_weight is None else float(heatmap_weight)
        self.mask_missing = bool(mask_missing)
        self.dice_smooth = float(dice_smooth)

    @property
    def sigmas(self) -> torch.Tensor:
        """``(N,)``: the truncated Gaussian's sigma per landmark (= R, fixed), for :class:`mlm.handlers.SigmaLogger`."""
        return torch.full((self.num_landmarks,), self.radius)

    def targets(
        self, landmarks: torch.Tensor, spatial_size: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched targets of ``landmarks (B, N, D)``: ``gaussian (B, N, *S)``, ``disk (B, N, *S)``, ``offsets
        (B, D, N, *S)`` (:func:`transforms.heatmap.offset_maps.offset_map_targets` per image)."""
        per_image = [offset_map_targets(lm, spatial_size, self.radius) for lm in landmarks]
        return tuple(torch.stack(t) for t in zip(*per_image))  # type: ignore[return-value]

    def terms(self, pred: torch.Tensor, landmarks: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss's terms (scalars): ``"heatmap"`` (unweighted BCE or ``1 - Dice``) and ``"offset_<a>"`` (the masked
        L1 of array axis ``a``)."""
        d, n = self.spatial_dims, self.num_landmarks
        if pred.ndim != d + 2 or pred.shape[1] != n * (1 + d):
            raise ValueError(
                f"MultiTaskLandmarkLoss: pred must be (B, {n * (1 + d)}, *S) (N * (1 + D) channels, {d} spatial dims), "
                f"got {tuple(pred.shape)}."
            )
        if tuple(landmarks.shape) != (pred.shape[0], n, d):
            raise ValueError(
                f"MultiTaskLandmarkLoss: landmarks must be (B, N, D) = {(pred.shape[0], n, d)}, got {tuple(landmarks.shape)}."
            )
        heat, offsets = split_offset_output(pred, d)  # (B, N, *S), (B, D, N, *S)
        landmarks = torch.as_tensor(landmarks, device=pred.device).to(pred.dtype)
        gaussian, disk, target_offsets = self.targets(landmarks, list(pred.shape[2:]))
        present = ~torch.isnan(landmarks).any(dim=-1)  # (B, N)
        channel = (present if self.mask_missing else torch.ones_like(present)).to(pred.dtype)  # (B, N)
        if self.heatmap_loss == "bce":
            bce = F.binary_cross_entropy_with_logits(heat, gaussian, reduction="none")
            per_channel = bce.flatten(2).mean(dim=-1)  # (B, N)
            heatmap = (per_channel * channel).sum() / channel.sum().clamp_min(1.0)
        else:
            prob = torch.sigmoid(heat).flatten(2)
            disk_flat = disk.flatten(2)
            inter = (prob * disk_flat).sum(dim=-1)
            dice = (2.0 * inter + self.dice_smooth) / (prob.sum(dim=-1) + disk_flat.sum(dim=-1) + self.dice_smooth)
            heatmap = ((1.0 - dice) * channel).sum() / channel.sum().clamp_min(1.0)
        terms = {"heatmap": heatmap}
        denominator = disk.sum().clamp_min(1.0)
        for a in range(d):
            terms[f"offset_{a}"] = ((offsets[:, a] - target_offsets[:, a]).abs() * disk).sum() / denominator
        return terms

    def forward(self, pred: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Loss of ``pred (B, N * (1 + D), *S)`` against ``landmarks (B, N, D)`` (voxels, NaN rows missing)."""
        terms = self.terms(pred, landmarks)
        return self.heatmap_weight * terms["heatmap"] + sum(terms[f"offset_{a}"] for a in range(self.spatial_dims))

    def extra_repr(self) -> str:
        return (
            f"num_landmarks={self.num_landmarks}, spatial_dims={self.spatial_dims}, radius={self.radius}, "
            f"heatmap_loss={self.heatmap_loss!r}, heatmap_weight={self.heatmap_weight}, mask_missing={self.mask_missing}"
        )
