"""Optimizer parameter groups for heatmap networks with a learnable-sigma loss."""

from __future__ import annotations

from torch import nn

__all__ = ["parameter_groups"]


def parameter_groups(network: nn.Module, loss: nn.Module | None = None, weight_decay: float = 0.0) -> list[dict]:
    """Parameter groups: conv/linear kernels with ``weight_decay``; biases and the loss's parameters without.

    Payer's SCN regularises only the conv kernels (``0.5 * wd * sum |W|^2``, i.e. SGD ``weight_decay=wd``); the
    learnable sigmas of :class:`mlm.losses.SCNHeatmapLoss` have their own regulariser inside the loss.

    Args:
        network: the model (a ``DistributedDataParallel`` wrapper works too).
        loss: a loss with parameters (learnable sigmas), or None.
        weight_decay: L2 weight decay of the kernels.

    Returns:
        a list of ``{"params": [...], "weight_decay": ...}`` dicts for a ``torch.optim`` optimizer
        (groups without parameters are dropped).
    """
    decay, no_decay = [], []
    for p in network.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim > 1 else no_decay).append(p)
    if loss is not None:
        no_decay.extend(p for p in loss.parameters() if p.requires_grad)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
