"""Checkpoint loading that checks the checkpoint fits the bundle before loading it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monai.handlers import CheckpointLoader
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.bundle.checkpoints import check_checkpoint_compatible, load_checkpoint
from mlm.bundle.geometry import PreprocessingGeometry, checkpoint_geometry

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

    With ``geometry``, the checkpoint's recorded preprocessing geometry is checked against this run's first: a model
    trained on another pixel size, grid, resize mode or normalisation is refused with the overrides that match it
    (:class:`mlm.bundle.geometry.PreprocessingGeometry`).

    Args: as ``monai.handlers.CheckpointLoader`` (``load_path``, ``load_dict``, ``name``, ``map_location``, ``strict``),
        and ``geometry``: this run's preprocessing geometry (None: not checked).
    """

    def __init__(self, *args, geometry: PreprocessingGeometry | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.geometry = geometry

    def __call__(self, engine: Engine) -> None:
        checkpoint = load_checkpoint(self.load_path)
        recorded = checkpoint_geometry(checkpoint)
        # a universal (multi-domain) model read as a single-domain one, or the reverse, is named by the geometry
        # check; otherwise the network check comes first (it names a landmark count from another bundle)
        universal = recorded is not None and "domains" in recorded
        if universal or getattr(self.geometry, "domain", None) is not None:
            self._check_geometry(recorded)
            check_checkpoint_compatible(self.load_path, self.load_dict, checkpoint)
        else:
            check_checkpoint_compatible(self.load_path, self.load_dict, checkpoint)
            self._check_geometry(recorded)
        super().__call__(engine)

    def _check_geometry(self, recorded: dict | None) -> None:
        if self.geometry is None:
            return
        try:
            self.geometry.load_state_dict(recorded)
        except ValueError as e:
            raise ValueError(f"{self.load_path}: {e}") from None
