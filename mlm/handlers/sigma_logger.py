"""Report the learnable per-landmark sigmas of a heatmap loss during and after training."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from mlm.reports import atomic_write_text

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["SigmaLogger"]


class SigmaLogger:
    """Log the loss's sigmas every ``interval`` epochs and write them to ``output_dir/sigmas.json`` (atomically).

    The file is rewritten at every logged epoch and when training completes::

        {"iteration": 40000, "epoch": 16, "units": "voxels of the heatmap grid",
         "sigmas": {"C1": 3.1, ...}, "mean": ..., "min": ..., "max": ...}

    The sigmas themselves are saved and restored with the loss in the checkpoints (``state_dict``).

    Args:
        loss: a loss with ``sigmas`` (``(N,)`` tensor, e.g. :class:`mlm.losses.SCNHeatmapLoss`).
        output_dir: folder of ``sigmas.json`` (created).
        names: N landmark names (default ``"0"``, ``"1"``, ...).
        interval: log every ``interval`` epochs (0: only at the end).
        filename: file name inside ``output_dir``.
        name: logger name.
    """

    def __init__(
        self,
        loss: nn.Module,
        output_dir: str | os.PathLike,
        names: Sequence[str] | None = None,
        interval: int = 1,
        filename: str = "sigmas.json",
        name: str | None = None,
    ) -> None:
        if not hasattr(loss, "sigmas"):
            raise ValueError(f"SigmaLogger: {type(loss).__name__} has no `sigmas` to report.")
        self.loss = loss
        self.output_dir = Path(output_dir)
        self.names = None if names is None else [str(n) for n in names]
        self.interval = int(interval)
        self.filename = filename
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        if self.interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def sigmas(self) -> dict[str, float]:
        """Current sigma per landmark name."""
        values = [float(s) for s in self.loss.sigmas.detach().cpu().flatten()]
        names = self.names or [str(k) for k in range(len(values))]
        if len(names) != len(values):
            raise ValueError(f"SigmaLogger: {len(names)} names for {len(values)} sigmas.")
        return dict(zip(names, values))

    def __call__(self, engine: Engine) -> None:
        sig = self.sigmas()
        vals = list(sig.values())
        record = {
            "iteration": int(engine.state.iteration),
            "epoch": int(engine.state.epoch),
            "units": "voxels of the heatmap grid",
            "sigmas": sig,
            "mean": sum(vals) / len(vals),
            "min": min(vals),
            "max": max(vals),
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.output_dir / self.filename, json.dumps(record, indent=2) + "\n")
        self.logger.info(
            f"sigmas at iteration {record['iteration']}: mean {record['mean']:.3f}, min {record['min']:.3f}, "
            f"max {record['max']:.3f} (written to {self.output_dir / self.filename})"
        )
