"""Optimizer parameter groups for heatmap networks with a learnable-sigma loss, and the iteration LR schedules."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from mlm.bundle.distributed import unwrap_ddp

__all__ = ["LR_SCHEDULES", "iteration_lr_scheduler", "parameter_groups"]

#: the schedules :func:`iteration_lr_scheduler` knows
LR_SCHEDULES = ("constant", "cosine", "cyclic")


def parameter_groups(
    network: nn.Module,
    loss: nn.Module | None = None,
    weight_decay: float = 0.0,
    lr: float | None = None,
    module_lr_factors: Mapping[str, float] | None = None,
) -> list[dict]:
    """Parameter groups: conv/linear kernels with ``weight_decay``; biases and the loss's parameters without.

    Payer's SCN regularises only the conv kernels (``0.5 * wd * sum |W|^2``, i.e. SGD ``weight_decay=wd``); the
    learnable sigmas of :class:`mlm.losses.SCNHeatmapLoss` have their own regulariser inside the loss.

    Args:
        network: the model (a ``DistributedDataParallel`` wrapper works too).
        loss: a loss with parameters (learnable sigmas), or None.
        weight_decay: L2 weight decay of the kernels.
        lr: the optimizer's learning rate; required with ``module_lr_factors``.
        module_lr_factors: ``{submodule name: factor}``: the parameters of ``network.<name>`` (e.g.
            ``"spatial_configuration"`` of :class:`mlm.networks.SpatialConfigurationNet`) get their own groups with
            learning rate ``factor * lr``. LR schedulers scale every group alike, so the ratio is kept.

    Returns:
        a list of ``{"params": [...], "weight_decay": ...[, "lr": ...]}`` dicts for a ``torch.optim`` optimizer
        (groups without parameters are dropped).

    Raises:
        ValueError: ``module_lr_factors`` without ``lr``, a name that is not a submodule, or a negative factor.
    """
    module = unwrap_ddp(network)
    factors = dict(module_lr_factors or {})
    if factors and lr is None:
        raise ValueError("parameter_groups: module_lr_factors needs the optimizer's lr.")
    submodules = dict(module.named_modules())
    for name, factor in factors.items():
        if name not in submodules or name == "":
            raise ValueError(
                f"parameter_groups: {type(module).__name__} has no submodule {name!r} (module_lr_factors)."
            )
        if float(factor) < 0:
            raise ValueError(f"parameter_groups: the lr factor of {name!r} must be >= 0, got {factor}.")
    groups: dict[tuple[float, bool], list] = {}
    for pname, p in module.named_parameters():
        if not p.requires_grad:
            continue
        factor = next((float(f) for n, f in factors.items() if pname.startswith(n + ".")), 1.0)
        groups.setdefault((factor, p.ndim > 1), []).append(p)
    if loss is not None:
        groups.setdefault((1.0, False), []).extend(p for p in loss.parameters() if p.requires_grad)
    out = []
    for (factor, decay), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1])):
        group = {"params": params, "weight_decay": float(weight_decay) if decay else 0.0}
        if factors:
            group["lr"] = float(lr) * factor
        out.append(group)
    return [g for g in out if g["params"]]


def iteration_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "constant",
    num_iterations: int = 1,
    min_factor: float = 0.01,
    max_factor: float = 100.0,
    step_iterations: int = 2000,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning-rate scheduler stepped once per training iteration (``LrScheduleHandler(epoch_level=False)``).

    Args:
        optimizer: the optimizer whose rates it scales (every group by the same factor).
        schedule: ``"constant"`` (the papers: the rate never changes), ``"cosine"`` (half a cosine from the
            initial rate down to ``min_factor`` times it at ``num_iterations``, then held there) or ``"cyclic"``
            (GU2Net's ``CyclicLR(mode="triangular2")``: from the initial rate linearly up to ``max_factor`` times it
            in ``step_iterations``, back down in as many, each later cycle's amplitude halved).
        num_iterations: length of the schedule in iterations (the bundle's ``num_iterations``).
        min_factor: final rate as a fraction of the initial one (cosine only).
        max_factor: the first cycle's peak rate as a multiple of the initial one (cyclic only; GU2Net: 1e-2 / 1e-4).
        step_iterations: iterations of each half cycle (cyclic only; GU2Net: 2000).

    Returns:
        a ``LambdaLR``; its ``state_dict`` (the iteration count) is saved with the checkpoints, so a resumed run
        continues the schedule where it stopped.

    Raises:
        ValueError: an unknown schedule, ``num_iterations < 1`` or ``min_factor`` outside ``[0, 1]``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if int(num_iterations) < 1:
        raise ValueError(f"num_iterations must be >= 1 for an LR schedule, got {num_iterations}")
    if not 0.0 <= float(min_factor) <= 1.0:
        raise ValueError(f"min_factor must be in [0, 1], got {min_factor}")
    if schedule == "cyclic" and (float(max_factor) < 1.0 or int(step_iterations) < 1):
        raise ValueError(
            f"cyclic lr_schedule: max_factor must be >= 1 and step_iterations >= 1, got {max_factor}, {step_iterations}"
        )
    factor = _schedule_factor(schedule, int(num_iterations), min_factor, float(max_factor), int(step_iterations))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _schedule_factor(
    schedule: str, num_iterations: int, min_factor: float, max_factor: float = 100.0, step_iterations: int = 2000
):
    """The LR factor as a function of the iteration. A plain function, not a callable object, on purpose:
    ``LambdaLR`` then saves only its iteration count, so a resumed run follows the schedule of its own config
    (e.g. a longer ``num_iterations``) from the saved iteration on."""

    def factor(iteration: int) -> float:
        if schedule == "constant":
            return 1.0
        if schedule == "cyclic":  # torch's CyclicLR triangular2, as a factor of the base rate
            cycle = math.floor(1 + iteration / (2 * step_iterations))
            x = abs(iteration / step_iterations - 2 * cycle + 1)
            return 1.0 + (max_factor - 1.0) * max(0.0, 1.0 - x) / 2 ** (cycle - 1)
        t = min(iteration, num_iterations) / num_iterations
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor
