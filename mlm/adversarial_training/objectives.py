"""The attack objective that matches a bundle's model: heatmap-only (SCN, Localization U-Net) or heatmap + offset
(multi-task U-Net), in 2D and 3D.

Adversarial training and the robustness evaluation attack the model through the same per-landmark losses as the
attacks of :mod:`mlm.attacks`; what changes between bundles is only which objective and its target's width:

- heatmap + offset networks (:class:`mlm.networks.MultiTaskUNet`, output ``(B, N * (1 + D), *S)``):
  :class:`mlm.attacks.HeatmapOffsetAttackObjective` with the loss's radius ``R`` (the bundle's ``sigma``);
- heatmap-only networks (output ``(B, N, *S)``): :class:`mlm.attacks.HeatmapAttackObjective` with the training
  target's sigma and scale ``gamma``. In training the SCN's sigmas are learned: :class:`LossFollowingHeatmapObjective`
  reads them from the loss every time the attack builds its targets.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlm.attacks import HeatmapAttackObjective, HeatmapOffsetAttackObjective, LandmarkAttackObjective

__all__ = [
    "OBJECTIVE_KINDS",
    "LossFollowingHeatmapObjective",
    "is_heatmap_offset_network",
    "landmark_objective",
    "training_objective",
    "unwrap_network",
]

#: the objective kinds: ``"auto"`` (from the network), ``"heatmap"``, ``"heatmap_offset"``
OBJECTIVE_KINDS = ("auto", "heatmap", "heatmap_offset")


def unwrap_network(network: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (``network`` itself otherwise)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return network.module if isinstance(network, wrappers) else network


def is_heatmap_offset_network(network: nn.Module) -> bool:
    """Whether ``network`` predicts heatmaps and offset maps (the multi-task U-Net) rather than heatmaps only."""
    from mlm.networks.mtunet import MultiTaskUNet

    return isinstance(unwrap_network(network), MultiTaskUNet)


def _kind(kind: str, network: nn.Module | None) -> str:
    if kind not in OBJECTIVE_KINDS:
        raise ValueError(f"attack objective kind must be one of {OBJECTIVE_KINDS}, got {kind!r}.")
    if kind != "auto":
        return kind
    if network is None:
        raise ValueError("attack objective kind 'auto' needs the network to choose from.")
    return "heatmap_offset" if is_heatmap_offset_network(network) else "heatmap"


class LossFollowingHeatmapObjective(HeatmapAttackObjective):
    """:class:`mlm.attacks.HeatmapAttackObjective` whose Gaussians follow a loss's (learnable) sigmas and gamma.

    At every :meth:`targets` call (once per attack) ``sigma`` is read from ``loss.sigmas`` (``(N,)`` voxels, e.g.
    :class:`mlm.losses.SCNHeatmapLoss`'s learned sigmas) and ``gamma`` from ``loss.gamma``, so the attack's goal
    heatmaps are the training targets of the current step.

    Args:
        loss: a module with ``sigmas`` (tensor or property, ``(N,)``) and ``gamma`` (float or None).
    """

    def __init__(self, loss: nn.Module) -> None:
        self.loss = loss
        super().__init__(sigma=self._sigmas(), gamma=getattr(loss, "gamma", None))

    def _sigmas(self) -> torch.Tensor:
        sigmas = getattr(self.loss, "sigmas", None)
        if sigmas is None:
            raise ValueError(f"LossFollowingHeatmapObjective: {type(self.loss).__name__} has no `sigmas`.")
        return torch.as_tensor(sigmas).detach().float().cpu().flatten()

    def targets(self, clean_output: torch.Tensor, goals: torch.Tensor) -> dict[str, torch.Tensor]:
        self.sigma = self._sigmas()
        gamma = getattr(self.loss, "gamma", None)
        self.gamma = None if gamma is None else float(gamma)
        return super().targets(clean_output, goals)


def landmark_objective(
    network: nn.Module | None,
    sigma: float,
    gamma: float | None = None,
    kind: str = "auto",
    bce_weight: float = 2.0,
) -> LandmarkAttackObjective:
    """The attack objective of a trained model (inference, the robustness evaluation).

    Args:
        network: the model (chooses the kind when ``kind="auto"``).
        sigma: heatmap-only: the Gaussian's sigma (voxels, the bundle's ``sigma``); heatmap + offset: the radius R.
        gamma: heatmap-only: the target scale (Payer: 100 in 2D, 1000 in 3D; None: peak-1).
        kind: ``"auto"``, ``"heatmap"`` or ``"heatmap_offset"``.
        bce_weight: heatmap + offset: the heatmap BCE's weight (the authors' 2).
    """
    if _kind(kind, network) == "heatmap_offset":
        return HeatmapOffsetAttackObjective(radius=float(sigma), bce_weight=bce_weight)
    return HeatmapAttackObjective(sigma=float(sigma), gamma=gamma)


def training_objective(network: nn.Module | None, loss: Any, kind: str = "auto") -> LandmarkAttackObjective:
    """The attack objective of a model in training, built from its training loss.

    Heatmap + offset: :class:`mlm.attacks.HeatmapOffsetAttackObjective` with ``loss.radius`` (and the BCE weight
    of Miss the Point). Heatmap-only: :class:`LossFollowingHeatmapObjective` (the loss's current sigmas and gamma).

    Args:
        network: the model (chooses the kind when ``kind="auto"``).
        loss: the training loss (:class:`mlm.losses.SCNHeatmapLoss` or :class:`mlm.multitask_loss.MultiTaskLandmarkLoss`).
        kind: ``"auto"``, ``"heatmap"`` or ``"heatmap_offset"``.
    """
    if _kind(kind, network) == "heatmap_offset":
        radius = getattr(loss, "radius", None)
        if radius is None:
            raise ValueError(f"training_objective: a heatmap + offset objective needs loss.radius ({type(loss)}).")
        return HeatmapOffsetAttackObjective(radius=float(radius))
    return LossFollowingHeatmapObjective(loss)
