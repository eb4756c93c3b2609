"""The attack objective of a bundle's model, chosen by the bundle's decoder (``configs/recipe.yaml``'s ``decoding``).

- heatmap + offset models (the multi-task U-Net of ``mtunet_ceph``: a voting decoder) get
  :class:`mlm.attacks.HeatmapOffsetAttackObjective` with the model's radius R (the bundle's ``sigma``);
- heatmap-only models (the SCN and Localization U-Net bundles) get :class:`mlm.attacks.HeatmapAttackObjective`
  with the training loss's Gaussians: the per-landmark sigmas the loss learned (the ``loss`` entry
  ``sigmas`` of a training checkpoint such as ``models/model.pt``) and its ``gamma``; a checkpoint without them
  (``model_best.pt`` holds only the network) falls back to the bundle's ``sigma``.

``configs/attack.yaml`` (``bundles/base/configs``) builds it with ``attack_objective: heatmap | heatmap_offset |
auto`` (auto: by the decoder).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch

from mlm.attacks.objectives import HeatmapAttackObjective, HeatmapOffsetAttackObjective, LandmarkAttackObjective
from mlm.bundle.checkpoints import load_checkpoint
from transforms.post.array import VOTING_METHODS

__all__ = ["ATTACK_OBJECTIVES", "bundle_attack_objective", "checkpoint_sigmas"]

logger = logging.getLogger(__name__)

#: names of ``attack_objective`` in ``configs/attack.yaml``
ATTACK_OBJECTIVES = ("auto", "heatmap", "heatmap_offset")


def checkpoint_sigmas(ckpt_path: str | os.PathLike | None, num_landmarks: int) -> torch.Tensor | None:
    """The learned per-landmark sigmas ``(N,)`` (voxels of the heatmap grid) of a training checkpoint's loss, or
    None when the file has none (a network-only state dict, another count, or no file given)."""
    if ckpt_path is None:
        return None
    ckpt = load_checkpoint(ckpt_path)
    loss = ckpt.get("loss")
    sigmas = loss.get("sigmas") if isinstance(loss, dict) else None
    if sigmas is None:
        return None
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).detach().flatten()
    if sigmas.numel() != int(num_landmarks) or bool((sigmas <= 0).any()):
        return None
    return sigmas


def bundle_attack_objective(
    kind: str,
    decoding: str,
    sigma: float | Sequence[float],
    num_landmarks: int,
    gamma: float | None = None,
    ckpt_path: str | os.PathLike | None = None,
    bce_weight: float = 2.0,
    stationary_mask: str = "voters",
) -> LandmarkAttackObjective:
    """The attack objective of a bundle's model.

    Args:
        kind: ``"auto"`` (heatmap + offset for the voting decoders, heatmap-only otherwise), ``"heatmap"`` or
            ``"heatmap_offset"``.
        decoding: the bundle's decoder (``configs/recipe.yaml``'s ``decoding``).
        sigma: the bundle's ``sigma``: the radius R (voxels) of a heatmap + offset model, or the Gaussians' sigma
            (voxels) of a heatmap-only model when the checkpoint holds no learned sigmas.
        num_landmarks: ``N``.
        gamma: the heatmap loss's target scale (``configs/recipe.yaml``'s ``gamma``: 100 in 2D, 1000 in 3D; None:
            peak-1 Gaussians), heatmap-only models.
        ckpt_path: the training checkpoint whose loss holds the learned sigmas (heatmap-only models).
        bce_weight: weight of the heatmap BCE of heatmap + offset models (the authors' 2).
        stationary_mask: the stationary landmarks' offset mask of heatmap + offset models, ``"voters"`` or the
            authors' ``"threshold"`` (:class:`mlm.attacks.HeatmapOffsetAttackObjective`).
    """
    if kind not in ATTACK_OBJECTIVES:
        raise ValueError(f"attack_objective must be one of {ATTACK_OBJECTIVES}, got {kind!r}.")
    if kind == "auto":
        kind = "heatmap_offset" if decoding in VOTING_METHODS else "heatmap"
    if kind == "heatmap_offset":
        return HeatmapOffsetAttackObjective(radius=float(sigma), bce_weight=bce_weight, stationary_mask=stationary_mask)
    learned = checkpoint_sigmas(ckpt_path, num_landmarks)
    if learned is None:
        logger.info(f"attack objective: no learned sigmas in {ckpt_path}, using sigma {sigma} voxels")
        return HeatmapAttackObjective(sigma=sigma, gamma=gamma)
    return HeatmapAttackObjective(sigma=learned, gamma=gamma)
