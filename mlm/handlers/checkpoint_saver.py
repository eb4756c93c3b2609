"""Checkpoint saving that never loses the last good checkpoint: atomic files, removals after the new file is written."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.bundle.checkpoints import atomic_torch_save, temporary_file_target

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
DiskSaver, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "DiskSaver")
Checkpoint, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Checkpoint")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["AtomicCheckpointSaver", "AtomicDiskSaver"]

#: file names of the periodic checkpoints: ``<prefix>_iteration=<N>.pt`` (``checkpoint_iteration=<N>.pt`` without one)
_PATTERN = "{filename_prefix}_{score_name}={score}.{ext}"
_PATTERN_NO_PREFIX = "{name}_{score_name}={score}.{ext}"


class AtomicDiskSaver(DiskSaver):
    """Ignite ``DiskSaver`` whose files are written atomically and whose removals wait for the next file.

    Ignite's ``Checkpoint`` removes the file that drops out of its ``n_saved`` list *before* it writes the new one;
    here :meth:`remove` only records the name and :meth:`__call__` deletes it after the new file is complete on disk
    (:func:`mlm.bundle.atomic_torch_save`), so an interruption at any moment leaves at least one whole checkpoint.
    A failed write keeps the older files.

    Args:
        dirname: checkpoint folder (created if missing).
        filename: a fixed file name for every save (e.g. ``model.pt``), or None: the name ignite gives.
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        super().__init__(dirname=str(dirname), atomic=True, create_dir=True, require_empty=False)
        self.filename = filename
        self.pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        name = self.filename or filename
        atomic_torch_save(checkpoint, self.dirname / name)
        pending, self.pending_removals = self.pending_removals, []
        for old in pending:
            if old != name:
                (self.dirname / old).unlink(missing_ok=True)

    def remove(self, filename: str) -> None:
        self.pending_removals.append(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` with :class:`AtomicDiskSaver` files, named by iteration, rotated across runs.

    - Every file (periodic, final, best key metric) is written atomically, and a file leaves the ``n_saved`` list
      only after its successor is on disk.
    - Periodic checkpoints are named ``<file_prefix>_iteration=<N>.pt`` (``epoch_level`` only sets how often they
      are written): iteration numbers order the checkpoints of runs with different ``val_interval`` and name a save
      in the middle of an epoch.
    - When attached, the saver adopts the periodic checkpoints already in ``save_dir`` (this name pattern, and the
      earlier ``<prefix>_checkpoint_epoch=<N>.pt``) as older than any it writes, so ``n_saved`` holds across resumed
      runs; temporary files of interrupted saves of its own file names are deleted.

    Args: as ``monai.handlers.CheckpointSaver`` (``save_dir``, ``save_dict``, ``file_prefix``, ``save_final``,
        ``final_filename``, ``save_key_metric``, ``key_metric_filename``, ``epoch_level``, ``save_interval``,
        ``n_saved``, ...).
    """

    def __init__(self, save_dir: str | os.PathLike, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=str(save_dir), save_dict=dict(save_dict), **kwargs)
        self.file_prefix = str(kwargs.get("file_prefix", ""))
        for ckpt in self._checkpoints():
            fixed = getattr(ckpt.save_handler, "filename", None)
            ckpt.save_handler = AtomicDiskSaver(self.save_dir, filename=fixed)
            ckpt.filename_pattern = _PATTERN if ckpt.filename_prefix else _PATTERN_NO_PREFIX
        if self._interval_checkpoint is not None:
            self._interval_checkpoint.score_function = _iteration
            self._interval_checkpoint.score_name = "iteration"

    def _checkpoints(self) -> list:
        return [c for c in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint) if c]

    def periodic_checkpoint_regex(self) -> re.Pattern:
        """File names of this saver's periodic checkpoints, current (``..._iteration=N.pt``) and earlier
        (``<prefix>_checkpoint_epoch=N.pt``)."""
        prefix = re.escape(self.file_prefix + "_") if self.file_prefix else ""
        return re.compile(rf"{prefix}(?:checkpoint_)?(?:iteration|epoch)=\d+\.pt")

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        self._remove_stale_temporary_files()
        self._adopt_existing_checkpoints()

    def _own_name(self, name: str) -> bool:
        fixed = {getattr(c.save_handler, "filename", None) for c in self._checkpoints()} - {None}
        return name in fixed or self.periodic_checkpoint_regex().fullmatch(name) is not None

    def _remove_stale_temporary_files(self) -> None:
        folder = Path(self.save_dir)
        for f in folder.iterdir() if folder.is_dir() else ():
            target = temporary_file_target(f.name)
            if target is not None and self._own_name(target):
                f.unlink(missing_ok=True)
                self.logger.info(f"removed {f}, the temporary file of an interrupted save.")

    def interval_completed(self, engine: Engine) -> None:
        super().interval_completed(engine)
        ckpt = self._interval_checkpoint
        # ignite drops one file per save: with more adopted files than n_saved, drop the rest now that the new
        # checkpoint is on disk
        while ckpt is not None and ckpt.n_saved is not None and len(ckpt._saved) > ckpt.n_saved:
            item = ckpt._saved.pop(0)
            (Path(self.save_dir) / item.filename).unlink(missing_ok=True)

    def _adopt_existing_checkpoints(self) -> None:
        ckpt = self._interval_checkpoint
        folder = Path(self.save_dir)
        if ckpt is None or not folder.is_dir():
            return
        pattern = self.periodic_checkpoint_regex()
        known = {item.filename for item in ckpt._saved}
        found = sorted(
            (f.stat().st_mtime_ns, f.name)
            for f in folder.iterdir()
            if f.is_file() and pattern.fullmatch(f.name) and f.name not in known
        )
        if not found:
            return
        # older than anything this run writes (priorities < 1), the oldest first out
        adopted = [Checkpoint.Item(-(len(found) - i), name) for i, (_, name) in enumerate(found)]
        ckpt._saved = sorted(adopted + list(ckpt._saved), key=lambda it: it.priority)
        self.logger.info(
            f"{len(found)} checkpoint(s) of earlier runs in {folder} ({', '.join(n for _, n in found)}) are rotated "
            f"with this run's (n_saved={ckpt.n_saved})."
        )


def _iteration(engine: Engine) -> int:
    return int(engine.state.iteration)
