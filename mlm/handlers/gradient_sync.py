"""Average the gradients of parameters that live outside ``DistributedDataParallel`` (e.g. learnable loss sigmas)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.distributed as dist
from monai.engines.utils import IterationEvents
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["AllReduceGradients"]


class AllReduceGradients:
    """After each backward pass, all-reduce (average) the gradients of ``module``'s parameters across processes.

    DDP only synchronises the wrapped network; the learnable sigmas of :class:`mlm.losses.SCNHeatmapLoss` would drift
    apart between ranks without this. Runs on ``IterationEvents.BACKWARD_COMPLETED`` (before the optimizer step);
    a no-op when ``torch.distributed`` is not initialised. Every rank must attach it.
    """

    #: every DDP process attaches it (:func:`mlm.bundle.runs_on_every_rank`)
    every_rank = True

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not dist.is_available() or not dist.is_initialized():
            return
        world = dist.get_world_size()
        for p in self.module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= world
