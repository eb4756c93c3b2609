"""Per-landmark objectives of targeted landmark attacks (Yao et al., "Miss the Point", MICCAI 2020).

An attack gives each landmark ``j`` of each image a loss term ``L_j`` (a ``(B, N)`` tensor). A *moved* landmark (its
goal is a finite row of ``goals (B, N, D)``) gets the training target of the model centred on its goal position; a
*stationary* landmark (a NaN goal row) gets the model's own prediction on the clean image as its target, so that a
targeted attack moves the chosen landmarks and keeps the others where the model put them.

Two kinds of models:

- :class:`HeatmapAttackObjective`: heatmap-only models (:class:`mlm.networks.SpatialConfigurationNet`,
  :class:`mlm.networks.LocalizationUNet`), output ``(B, N, *S)``. Moved target: a Gaussian at the goal
  (:func:`transforms.heatmap.functional.gaussian_heatmaps`); stationary target: the clean output, detached.
  ``L_j`` = mean squared error over the voxels of channel ``j``.
- :class:`HeatmapOffsetAttackObjective`: heatmap + offset models (the multi-task U-Net), output
  ``(B, N * (1 + D), *S)`` (:func:`transforms.heatmap.offset_maps.split_offset_output`). Moved targets: the training
  templates of :func:`transforms.heatmap.offset_maps.offset_map_targets` at the goal; stationary targets: the clean
  heatmap ``sigmoid(logits)``, the clean offsets and, as the offsets' mask, the voxels that vote for the landmark
  (the decoder's top-k of the clean heatmap; the authors' ``clean heatmap > 0.5`` as an option).
  ``L_j = bce_weight * BCE(sigmoid(h_j), T_j) + sum_axes masked L1(o_j)`` (METHODS.md section 1).

Both work in 2D and 3D. The goals are voxel coordinates of the output grid, which must be the image grid (the
networks of this project predict at full resolution).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from transforms.heatmap.functional import gaussian_heatmaps
from transforms.heatmap.offset_maps import offset_map_targets, split_offset_output
from transforms.heatmap.voting import default_num_votes

__all__ = ["HeatmapAttackObjective", "HeatmapOffsetAttackObjective", "LandmarkAttackObjective", "moved_landmarks"]


def moved_landmarks(goals: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` bool: the landmarks with a goal (a finite row of ``goals (B, N, D)``); NaN rows stay still."""
    return torch.isfinite(goals).all(dim=-1)


class LandmarkAttackObjective(ABC):
    """Per-landmark attack loss ``L (B, N)`` of a landmark detector's output.

    Use: ``targets = objective.targets(clean_output, goals)`` once per attack (detached tensors), then
    ``objective.per_landmark_losses(output, targets)`` at every iteration.
    """

    @abstractmethod
    def num_landmarks(self, output: torch.Tensor) -> int:
        """``N`` of a network output ``(B, C, *S)``."""

    @abstractmethod
    def targets(self, clean_output: torch.Tensor, goals: torch.Tensor) -> dict[str, torch.Tensor]:
        """Targets of every landmark (detached).

        Args:
            clean_output: the model's output on the clean images ``(B, C, *S)``.
            goals: ``(B, N, D)`` goal positions in voxel coordinates of the output grid (array axis order);
                a NaN row = stationary landmark (target: the clean prediction).
        """

    @abstractmethod
    def per_landmark_losses(self, output: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """``L (B, N)``: one non-negative loss per image and landmark (differentiable in ``output``)."""

    def _check_goals(self, clean_output: torch.Tensor, goals: torch.Tensor) -> None:
        spatial_dims = clean_output.ndim - 2
        num = self.num_landmarks(clean_output)
        expected = (clean_output.shape[0], num, spatial_dims)
        if tuple(goals.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}: goals must be (B, N, D) = {expected} for an output of shape "
                f"{tuple(clean_output.shape)}, got {tuple(goals.shape)}."
            )


class HeatmapAttackObjective(LandmarkAttackObjective):
    """Attack objective of heatmap-only models: per-landmark MSE to a Gaussian at the goal or to the clean heatmap.

    Args:
        sigma: standard deviation of the goal Gaussians, voxels: a float or ``(N,)`` values (e.g. the learned
            sigmas of :class:`mlm.losses.SCNHeatmapLoss`, ``loss.sigmas.detach()``). Default 2.0.
        gamma: scale of Payer's normalised Gaussian (100 in 2D, 1000 in 3D) when the model was trained on those
            targets; None (default) for peak-1 Gaussians. The goal heatmap should look like what the model
            predicts for a landmark, so use the training target's settings.

    ``L_j = mean_x (out_j(x) - T_j(x))^2``, shape ``(B, N)``.
    """

    def __init__(self, sigma: float | Sequence[float] | torch.Tensor = 2.0, gamma: float | None = None) -> None:
        sig = torch.as_tensor(sigma, dtype=torch.float32).detach().flatten()
        if sig.numel() == 0 or bool((sig <= 0).any()):
            raise ValueError(f"HeatmapAttackObjective: sigma must be positive, got {sig.tolist()}.")
        self.sigma = sig
        self.gamma = None if gamma is None else float(gamma)

    def num_landmarks(self, output: torch.Tensor) -> int:
        return int(output.shape[1])

    def targets(self, clean_output: torch.Tensor, goals: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_goals(clean_output, goals)
        clean = clean_output.detach()
        num = clean.shape[1]
        sigma = self.sigma if self.sigma.numel() > 1 else float(self.sigma[0])
        if isinstance(sigma, torch.Tensor) and sigma.numel() != num:
            raise ValueError(f"HeatmapAttackObjective: {sigma.numel()} sigmas for {num} landmarks.")
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.to(device=clean.device, dtype=clean.dtype)
        goal_maps = gaussian_heatmaps(goals.detach().to(clean.dtype), tuple(clean.shape[2:]), sigma, self.gamma)
        moved = moved_landmarks(goals).view(*goals.shape[:2], *([1] * (clean.ndim - 2)))
        return {"heatmaps": torch.where(moved, goal_maps, clean)}

    def per_landmark_losses(self, output: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return (output - targets["heatmaps"]).square().flatten(2).mean(dim=-1)


class HeatmapOffsetAttackObjective(LandmarkAttackObjective):
    """Attack objective of heatmap + offset models (the multi-task U-Net of Yao et al.).

    The output ``(B, N * (1 + D), *S)`` holds N heatmap logits, then D blocks of N offset maps (units of ``radius``,
    array axis order). Per landmark ``j``::

        L_j = bce_weight * mean_x BCE(sigmoid(h_j), T_j)  +  sum_axes  sum_x |o_aj - U_aj| M_j / sum_x M_j

    Moved landmarks: ``T, M, U`` = :func:`transforms.heatmap.offset_maps.offset_map_targets` at the goal
    (truncated Gaussian, disk of ``radius``, offsets / radius). Stationary landmarks: ``T`` = the clean
    ``sigmoid(h)``, ``U`` = the clean offsets, ``M`` = the voxels whose offsets decide the landmark:
    ``stationary_mask="voters"`` (default) the ``num_votes`` voxels of highest clean heatmap, the voters of
    :func:`transforms.heatmap.voting.vote_landmarks`; ``"threshold"`` (the authors') the voxels with clean
    heatmap > ``stationary_threshold``. A landmark whose mask is empty has no offset term.

    Why voters by default: the authors' mask assumes a confident model, whose heatmap exceeds 0.5 on a disk of about
    ``num_votes`` voxels, i.e. on its voters. A model trained less (the CPU recipe of ``mtunet_ceph``: 4000
    iterations from scratch, heatmap maxima of 0.1-0.2) has no voxel above 0.5: the threshold mask is empty, the
    stationary landmarks' offsets are not held, and their votes drift (on an ISBI Test1 image, eps 8, 100
    iterations: mean drift 1.0 px with the threshold mask, 0.1 px with the voters).

    Args:
        radius: ``R``, voxels, the radius the model was trained with (40 at 800x640, 10 at the AMAT 200x160).
        bce_weight: weight of the heatmap BCE (the authors' 2).
        stationary_mask: ``"voters"`` or ``"threshold"`` (see above).
        stationary_threshold: clean-heatmap threshold of the ``"threshold"`` masks (the authors' 0.5).
        num_votes: voters per landmark of the ``"voters"`` masks (None: the decoder's default, ``int(pi R^2)`` in
            2D, :func:`transforms.heatmap.voting.default_num_votes`).

    Differences from the authors' ``attack.py``: the BCE is computed from the logits
    (``binary_cross_entropy_with_logits``, the same value without ``sigmoid`` saturation); the goal templates are
    sub-pixel and aligned at the borders (their templates are pasted one pixel off and misaligned near the top and
    left borders); the offset axes follow the array axis order (their x/y labels were mis-scaled).
    """

    def __init__(
        self,
        radius: float,
        bce_weight: float = 2.0,
        stationary_mask: str = "voters",
        stationary_threshold: float = 0.5,
        num_votes: int | None = None,
    ) -> None:
        if not radius > 0:
            raise ValueError(f"HeatmapOffsetAttackObjective: radius must be > 0 voxels, got {radius}.")
        if stationary_mask not in ("voters", "threshold"):
            raise ValueError(
                f"HeatmapOffsetAttackObjective: stationary_mask must be 'voters' or 'threshold', got {stationary_mask!r}."
            )
        self.radius = float(radius)
        self.bce_weight = float(bce_weight)
        self.stationary_mask = stationary_mask
        self.stationary_threshold = float(stationary_threshold)
        self.num_votes = None if num_votes is None else int(num_votes)

    def num_landmarks(self, output: torch.Tensor) -> int:
        spatial_dims = output.ndim - 2
        if output.shape[1] % (1 + spatial_dims):
            raise ValueError(
                f"HeatmapOffsetAttackObjective: {output.shape[1]} channels is not N * (1 + {spatial_dims})."
            )
        return int(output.shape[1]) // (1 + spatial_dims)

    def targets(self, clean_output: torch.Tensor, goals: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_goals(clean_output, goals)
        spatial_dims = clean_output.ndim - 2
        spatial_size = tuple(clean_output.shape[2:])
        clean_logits, clean_offsets = split_offset_output(clean_output.detach(), spatial_dims)
        clean_heat = torch.sigmoid(clean_logits)
        goal_maps = [offset_map_targets(g.to(clean_heat.dtype), spatial_size, self.radius) for g in goals.detach()]
        goal_heat = torch.stack([m[0] for m in goal_maps])  # (B, N, *S)
        goal_mask = torch.stack([m[1] for m in goal_maps])  # (B, N, *S)
        goal_offsets = torch.stack([m[2] for m in goal_maps])  # (B, D, N, *S)
        moved = moved_landmarks(goals).view(*goals.shape[:2], *([1] * spatial_dims))
        if self.stationary_mask == "threshold":
            clean_mask = (clean_heat > self.stationary_threshold).to(clean_heat.dtype)
        else:
            num_voxels = clean_logits[0, 0].numel()
            k = self.num_votes if self.num_votes is not None else default_num_votes(self.radius, spatial_dims)
            flat = clean_logits.flatten(2)
            top = flat.topk(min(max(k, 1), num_voxels), dim=-1).indices
            clean_mask = torch.zeros_like(flat).scatter_(-1, top, 1.0).view_as(clean_logits).to(clean_heat.dtype)
        return {
            "heatmaps": torch.where(moved, goal_heat, clean_heat),
            "masks": torch.where(moved, goal_mask, clean_mask),
            "offsets": torch.where(moved[:, None], goal_offsets, clean_offsets),
        }

    def per_landmark_losses(self, output: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, offsets = split_offset_output(output, output.ndim - 2)
        bce = F.binary_cross_entropy_with_logits(logits, targets["heatmaps"], reduction="none").flatten(2).mean(-1)
        mask = targets["masks"]
        l1 = ((offsets - targets["offsets"]).abs() * mask[:, None]).flatten(3).sum(dim=-1)  # (B, D, N)
        l1 = l1 / mask.flatten(2).sum(dim=-1).clamp_min(1.0)[:, None]
        return self.bce_weight * bce + l1.sum(dim=1)
