"""Checkpoint saving for resumable training: the trainer's own state included, files written atomically."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["TrainingCheckpointSaver"]


class TrainingCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` that also saves the engine it is attached to, and writes atomically.

    A bundle config cannot put ``@train#trainer`` into the ``save_dict`` of one of the trainer's own handlers
    (a circular reference); this saver adds the engine under ``engine_key`` when it is attached, so the
    checkpoint holds the trainer's iteration/epoch and :class:`mlm.handlers.ResumeFromCheckpoint` continues
    where the run stopped. MONAI's saver writes in place (``atomic=False``); here each file is written to a
    temporary file and moved into place, so an interrupted save never leaves a truncated checkpoint.

    Args:
        save_dir: checkpoint folder.
        save_dict: objects to save (``{"model": network, "optimizer": ..., "loss": ...}``).
        engine_key: key of the attached engine in the checkpoint (None: don't save it).
        kwargs: other ``monai.handlers.CheckpointSaver`` arguments (``save_final``, ``final_filename``,
            ``save_interval``, ``epoch_level``, ``n_saved``, ``file_prefix``, ``save_key_metric``, ...).
    """

    def __init__(
        self, save_dir: str | os.PathLike, save_dict: dict, engine_key: str | None = "trainer", **kwargs: Any
    ) -> None:
        super().__init__(save_dir=str(save_dir), save_dict=dict(save_dict), **kwargs)
        self.engine_key = engine_key
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None and hasattr(ckpt.save_handler, "_atomic"):
                ckpt.save_handler._atomic = True

    def attach(self, engine: Engine) -> None:
        # ignite's Checkpoint objects hold a reference to self.save_dict: adding the engine here saves its state
        if self.engine_key is not None:
            self.save_dict[self.engine_key] = engine
        super().attach(engine)
