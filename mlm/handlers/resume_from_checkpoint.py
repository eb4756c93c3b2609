"""Resume training from the newest checkpoint of a folder, when there is one."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from monai.utils import IgniteInfo, min_version, optional_import

from mlm.bundle.checkpoints import latest_checkpoint
from mlm.handlers.checkpoint_loader import LandmarkCheckpointLoader

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["ResumeFromCheckpoint"]


class ResumeFromCheckpoint(LandmarkCheckpointLoader):
    """Resume training from the newest checkpoint in ``ckpt_dir`` when there is one (else start from scratch).

    Loads every object of ``load_dict`` (network, optimizer, the loss with its learnable sigmas, the trainer's
    state), so the run continues at the saved iteration. Attach it first among the trainer's handlers.

    Args:
        ckpt_dir: folder the ``CheckpointSaver`` writes to.
        load_dict: ``{"model": network, "optimizer": ..., "loss": ..., "trainer": ...}``.
        patterns: glob patterns of checkpoint files in ``ckpt_dir``.
        map_location: ``torch.load`` map location (default: ``"cpu"``, then moved by ``load_state_dict``).
        enabled: False disables resuming (start from scratch even when checkpoints exist).
        engine_key: key under which the attached engine (the trainer) is restored (None: don't restore it).
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        load_dict: dict,
        patterns: Sequence[str] = ("checkpoint*.pt", "model.pt"),
        map_location: Any = "cpu",
        enabled: bool = True,
        engine_key: str | None = "trainer",
        name: str | None = None,
    ) -> None:
        super().__init__(load_path=str(ckpt_dir), load_dict=dict(load_dict), name=name, map_location=map_location)
        self.ckpt_dir = str(ckpt_dir)
        self.patterns = tuple(patterns)
        self.enabled = enabled
        self.engine_key = engine_key
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        # the trainer cannot be referenced from its own handler in a bundle config: add it here
        if self.engine_key is not None:
            self.load_dict[self.engine_key] = engine
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        path = latest_checkpoint(self.ckpt_dir, self.patterns) if self.enabled else None
        if path is None:
            self.logger.info(f"no checkpoint in {self.ckpt_dir}: training starts from scratch.")
            return
        self.load_path = path
        super().__call__(engine)
        self.logger.info(f"resumed from {path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}.")
