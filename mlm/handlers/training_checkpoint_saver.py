"""Checkpoint saving for a trainer: besides the model, everything the next iteration depends on."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from monai.utils import IgniteInfo, min_version, optional_import

from mlm.bundle.random_states import GlobalRandomStates
from mlm.bundle.sampling import DataPosition
from mlm.handlers.checkpoint_saver import AtomicCheckpointSaver

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["TrainingCheckpointSaver"]


class TrainingCheckpointSaver(AtomicCheckpointSaver):
    """:class:`AtomicCheckpointSaver` for a trainer: its checkpoints also hold what the next iteration depends on.

    Added to ``save_dict`` when attached (a bundle config cannot reference the trainer from its own handlers):
    the trainer's state (iteration, epoch) under ``engine_key``, the global random generators
    (:class:`mlm.bundle.GlobalRandomStates`) under ``rng_key`` and the position in the
    :class:`mlm.bundle.ResumableSampler` stream (:class:`mlm.bundle.DataPosition`) under ``data_key``;
    :class:`mlm.handlers.ResumeFromCheckpoint` restores them. Attach it after the ``ValidationHandler``: the random
    states are then saved as the next iteration finds them.

    An exception saves the final checkpoint only between two iterations (e.g. raised by validation, or by data
    loading before an iteration starts); inside an iteration the optimizer step, the LR schedule and the random
    draws are half done, and the last periodic checkpoint is the one to resume from. Nor is anything saved when
    no iteration completed since the run started (e.g. a check refused the data): there is nothing new to keep, and
    an untrained ``model.pt`` must not appear.

    Args:
        save_dir: checkpoint folder.
        save_dict: objects to save (``{"model": network, "optimizer": ..., "loss": ..., "lr_scheduler": ...}``).
        engine_key, rng_key, data_key: checkpoint keys of the three entries above (None: leave that one out).
        kwargs: other :class:`AtomicCheckpointSaver` arguments (``file_prefix``, ``save_interval``, ``n_saved``,
            ``save_final``, ``final_filename``, ...).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: dict,
        engine_key: str | None = "trainer",
        rng_key: str | None = "rng",
        data_key: str | None = "data",
        **kwargs: Any,
    ) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        self.engine_key, self.rng_key, self.data_key = engine_key, rng_key, data_key
        self._in_iteration = False
        self._handled_exception: BaseException | None = None
        self._start_iteration: int | None = None

    def attach(self, engine: Engine) -> None:
        # ignite's Checkpoint objects hold a reference to self.save_dict: entries added here are saved
        extra = {self.engine_key: engine, self.rng_key: GlobalRandomStates(), self.data_key: DataPosition(engine)}
        self.save_dict.update({k: v for k, v in extra.items() if k is not None})
        super().attach(engine)
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def _started(self, engine: Engine) -> None:
        self._start_iteration = engine.state.iteration

    def _iteration_started(self, engine: Engine) -> None:
        self._in_iteration = True

    def _iteration_completed(self, engine: Engine) -> None:
        self._in_iteration = False

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        if e is self._handled_exception:  # ignite fires EXCEPTION_RAISED again as the exception leaves the run
            raise e
        self._handled_exception = e
        if self._in_iteration:
            self.logger.error(
                f"no checkpoint saved on {type(e).__name__}: it was raised inside iteration {engine.state.iteration}; "
                "a new run resumes from the last saved checkpoint."
            )
            raise e
        if self._start_iteration is not None and engine.state.iteration == self._start_iteration:
            self.logger.error(f"no checkpoint saved on {type(e).__name__}: no iteration completed in this run.")
            raise e
        try:
            super().exception_raised(engine, e)
        except Exception as save_error:
            if save_error is e:
                raise
            self.logger.error(f"saving a checkpoint after {type(e).__name__} failed too: {save_error}")
            raise e from save_error
