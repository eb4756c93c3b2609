"""Clip the global gradient norm before the optimizer step (Payer's SCN training clips it at 1e4)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from monai.engines.utils import IterationEvents
from monai.utils import IgniteInfo, min_version, optional_import

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["GradientNormClipping"]


class GradientNormClipping:
    """Rescale all gradients of the trainer's optimizer so that their global L2 norm is at most ``max_norm``.

    Runs on ``IterationEvents.BACKWARD_COMPLETED``, i.e. after ``loss.backward()`` and before ``optimizer.step()``
    in MONAI's ``SupervisedTrainer``; attach it after :class:`mlm.handlers.AllReduceGradients` so that every process
    clips the same, synchronised gradients. The norm before clipping is stored in ``engine.state.grad_norm``.
    A non-finite norm (NaN/inf gradients) raises ``FloatingPointError`` instead of corrupting the weights.

    Args:
        max_norm: largest global gradient norm; ``None`` or ``<= 0`` disables clipping (the norm is still recorded).
    """

    #: every DDP process attaches it (:func:`mlm.bundle.runs_on_every_rank`)
    every_rank = True

    def __init__(self, max_norm: float | None = 1e4) -> None:
        self.max_norm = None if max_norm is None or max_norm <= 0 else float(max_norm)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        params = [p for group in engine.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        max_norm = math.inf if self.max_norm is None else self.max_norm
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        engine.state.grad_norm = norm
        if not math.isfinite(norm):
            raise FloatingPointError(
                f"GradientNormClipping: the gradient norm is {norm} at iteration {engine.state.iteration}; "
                "lower the learning rate or resume from the last checkpoint."
            )
