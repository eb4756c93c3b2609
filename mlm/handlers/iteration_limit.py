"""End a training at an exact iteration count, also in the middle of an epoch."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["IterationLimit"]


class IterationLimit:
    """Stop the trainer after iteration ``num_iterations``, whatever its epochs.

    When ``num_iterations`` falls inside an epoch (not a multiple of ``val_interval``), that epoch ends there
    (``engine.terminate_epoch()``): its ``EPOCH_COMPLETED`` handlers (validation, checkpoint) still run, then the
    training completes. No epoch starts at or past ``num_iterations``, so a trainer that resumes there trains
    nothing and completes (writing its final checkpoint again). Give the trainer enough epochs
    (:func:`mlm.bundle.num_epochs`); fewer are warned about.

    Args:
        num_iterations: total training iterations (>= 1).
        name: logger name (None: the engine's logger).
    """

    #: every DDP process attaches it (:func:`mlm.bundle.runs_on_every_rank`)
    every_rank = True

    def __init__(self, num_iterations: int, name: str | None = None) -> None:
        if int(num_iterations) < 1:
            raise ValueError(f"IterationLimit: num_iterations must be >= 1, got {num_iterations}.")
        self.num_iterations = int(num_iterations)
        self._trained = 0
        self._checked = False
        self._name = name
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        self._trained = 0
        self._checked = False

    def epoch_started(self, engine: Engine) -> None:
        if engine.state.iteration >= self.num_iterations:
            engine.terminate()
            return
        if self._checked:
            return
        self._checked = True  # once per run, after ResumeFromCheckpoint has set the run's epochs at STARTED
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        if max_epochs is not None and epoch_length is not None and max_epochs * epoch_length < self.num_iterations:
            self.logger.warning(
                f"the trainer's {max_epochs} epochs of {epoch_length} iterations end before num_iterations "
                f"{self.num_iterations}."
            )

    def iteration_completed(self, engine: Engine) -> None:
        self._trained += 1
        # at the end of an epoch there is nothing to do: that epoch completes, and the next one does not start
        epoch_length = engine.state.epoch_length
        if engine.state.iteration == self.num_iterations and (
            epoch_length is None or self.num_iterations % epoch_length
        ):
            engine.terminate_epoch()

    def completed(self, engine: Engine) -> None:
        if not self._trained and engine.state.iteration >= self.num_iterations:
            self.logger.info(
                f"nothing to train: the run is at iteration {engine.state.iteration}, num_iterations is "
                f"{self.num_iterations}."
            )
