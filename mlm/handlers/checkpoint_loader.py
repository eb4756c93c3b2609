"""Checkpoint loading that checks the checkpoint fits the bundle before loading it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monai.handlers import CheckpointLoader
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.bundle.checkpoints import check_checkpoint_compatible

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["LandmarkCheckpointLoader"]


class LandmarkCheckpointLoader(CheckpointLoader):
    """MONAI ``CheckpointLoader`` that first checks the checkpoint against the modules of ``load_dict``.

    A checkpoint from another bundle or configuration raises ``ValueError`` naming the checkpoint and, when the
    landmark count differs, both counts (see :func:`mlm.bundle.check_checkpoint_compatible`); a missing file raises
    ``FileNotFoundError`` naming it. Attaches at ``Events.STARTED`` like ``CheckpointLoader``.

    Args: as ``monai.handlers.CheckpointLoader`` (``load_path``, ``load_dict``, ``name``, ``map_location``, ``strict``).
    """

    def __call__(self, engine: Engine) -> None:
        check_checkpoint_compatible(self.load_path, self.load_dict)
        super().__call__(engine)
