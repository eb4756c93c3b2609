"""Resume training from the newest readable checkpoint of a folder, exactly where the saved run was."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from mlm.bundle.checkpoints import check_checkpoint_compatible, checkpoint_candidates, load_checkpoint
from mlm.bundle.geometry import checkpoint_geometry
from mlm.bundle.random_states import GlobalRandomStates
from mlm.bundle.sampling import DataPosition, resumable_sampler

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["ResumeFromCheckpoint"]


class ResumeFromCheckpoint:
    """Resume training from the newest readable checkpoint in ``ckpt_dir`` (else start from scratch).

    At ``Events.STARTED``: the candidates (``patterns``, newest first, :func:`mlm.bundle.checkpoint_candidates`) are
    read in turn; unreadable ones (truncated, not a training checkpoint) are skipped and logged, and the first
    readable one is checked against ``load_dict`` (:func:`mlm.bundle.check_checkpoint_compatible`: a checkpoint of
    another network raises) and loaded: every object of ``load_dict``, the trainer's state, the position in the
    :class:`mlm.bundle.ResumableSampler` stream and, at the first iteration that follows, the global random
    generators (restored there so that what runs between (data loader start-up) does not shift them), all as
    written by :class:`mlm.handlers.TrainingCheckpointSaver`.

    The trainer keeps its own ``max_epochs`` and ``epoch_length`` (``val_interval``): a resumed run trains what its
    configuration asks, from the saved iteration on (the epoch is recomputed from the iteration), and a change is
    logged. Attach it first among the trainer's handlers.

    Args:
        ckpt_dir: folder the saver writes to.
        load_dict: ``{"model": network, "optimizer": ..., "loss": ..., "lr_scheduler": ...}``.
        patterns: glob patterns of checkpoint files in ``ckpt_dir``.
        map_location: ``torch.load`` map location (default ``"cpu"``; ``load_state_dict`` moves the tensors).
        enabled: False starts from scratch even when there are checkpoints.
        engine_key, rng_key, data_key: checkpoint keys of the trainer state, the random states and the data position
            (None: don't restore that one).
        name: logger name (None: the engine's logger).
        geometry: this run's :class:`mlm.bundle.geometry.PreprocessingGeometry`: a checkpoint recording another
            geometry is refused (``ValueError``); None: not checked.
        init_path: weights a NEW run starts from (fine-tuning, e.g. adversarial training of a trained model): when
            ``ckpt_dir`` holds no checkpoint to resume, the ``init_keys`` entries of this file (a training
            checkpoint, or a plain network state dict for ``"model"``) are loaded, after the same network and
            geometry checks; the optimizer, counters and sample stream start afresh. A run that finds its own
            checkpoint resumes it and ignores ``init_path``. None: start from the network's initialisation.
        init_keys: the ``load_dict`` entries taken from ``init_path``; None: ``"model"`` and ``"loss"`` where
            ``load_dict`` has them (a loss with learned parameters, e.g. the SCN's sigmas, keeps them). An entry
            the file lacks is skipped, except the network.
    """

    #: every DDP process attaches it (:func:`mlm.bundle.runs_on_every_rank`)
    every_rank = True

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        load_dict: dict,
        patterns: Sequence[str] = ("checkpoint*.pt", "model.pt"),
        map_location: Any = "cpu",
        enabled: bool = True,
        engine_key: str | None = "trainer",
        rng_key: str | None = "rng",
        data_key: str | None = "data",
        name: str | None = None,
        geometry: Any = None,
        init_path: str | os.PathLike | None = None,
        init_keys: Sequence[str] | None = None,
    ) -> None:
        if not load_dict:
            raise ValueError("ResumeFromCheckpoint: load_dict names no object to restore.")
        self.ckpt_dir = str(ckpt_dir)
        self.load_dict = dict(load_dict)
        self.patterns = tuple(patterns)
        self.map_location = map_location
        self.enabled = enabled
        self.engine_key, self.rng_key, self.data_key = engine_key, rng_key, data_key
        self._name = name
        self.logger = logging.getLogger(name)
        self.loaded_path: str | None = None
        self._pending_random_states: dict | None = None
        self.geometry = geometry
        self.init_path = None if init_path in (None, "") else str(init_path)
        if init_keys is None:
            init_keys = [k for k in ("model", "loss") if k in self.load_dict]
        unknown = [k for k in init_keys if k not in self.load_dict]
        if unknown:
            raise ValueError(
                f"ResumeFromCheckpoint: init_keys {unknown} are not in load_dict ({sorted(self.load_dict)})."
            )
        self.init_keys = tuple(init_keys)

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self)
        # registered now, so that it runs before the ITERATION_STARTED handlers attached after it
        engine.add_event_handler(Events.ITERATION_STARTED, self._restore_random_states)

    def required_keys(self) -> list[str]:
        """Checkpoint entries that must be present: ``load_dict``'s and the trainer state."""
        return list(self.load_dict) + ([self.engine_key] if self.engine_key is not None else [])

    def read_newest(self) -> tuple[str, dict] | None:
        """The newest readable checkpoint of ``ckpt_dir`` with every required entry, as ``(path, checkpoint)``.

        Unreadable candidates are logged as skipped."""
        for path in checkpoint_candidates(self.ckpt_dir, self.patterns):
            try:
                ckpt = load_checkpoint(path, map_location=self.map_location)
            except (OSError, ValueError) as e:
                self.logger.warning(f"skipped checkpoint {path}: {e}")
                continue
            missing = [k for k in self.required_keys() if k not in ckpt]
            if missing:
                self.logger.warning(f"skipped checkpoint {path}: it has no {missing} entries (holds {sorted(ckpt)}).")
                continue
            return path, ckpt
        return None

    def __call__(self, engine: Engine) -> None:
        self.loaded_path, self._pending_random_states = None, None
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        found = self.read_newest() if self.enabled else None
        if found is None:
            reason = "resuming is disabled" if not self.enabled else f"no readable checkpoint in {self.ckpt_dir}"
            if self.init_path is not None:
                self.initialise()
                self.logger.info(f"{reason}: training starts from the weights of {self.init_path}.")
            else:
                self.logger.info(f"{reason}: training starts from scratch.")
            DataPosition(engine).restart()
            return
        path, ckpt = found
        self._load(path, ckpt, self.load_dict, f"{path}: ", " To train on the new geometry, use another ckpt_dir.")
        if self.engine_key is not None:
            self._restore_engine(engine, ckpt[self.engine_key], max_epochs, epoch_length)
        if self.data_key is not None and ckpt.get(self.data_key):
            DataPosition(engine).load_state_dict(ckpt[self.data_key])
        else:
            if resumable_sampler(engine) is not None:
                self.logger.warning(f"{path} holds no sample stream position: it restarts at iteration x batch size.")
            DataPosition(engine).restart()
        if self.rng_key is not None:
            self._pending_random_states = ckpt.get(self.rng_key)
            if self._pending_random_states is None:
                self.logger.warning(f"{path} holds no random states: random draws differ from an uninterrupted run.")
        self.loaded_path = path
        self.logger.info(f"resumed from {path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}.")

    def initialise(self) -> list[str]:
        """Load the ``init_keys`` entries of ``init_path`` (network and geometry checked); returns the keys loaded."""
        path = self.init_path
        ckpt = load_checkpoint(path, map_location=self.map_location)
        if "model" in self.init_keys and "model" not in ckpt:  # a plain network state dict
            ckpt = {"model": ckpt}
        wanted = {k: self.load_dict[k] for k in self.init_keys if k in ckpt}
        if "model" in self.init_keys and "model" not in wanted:
            raise ValueError(f"init checkpoint {path} holds no network weights (it holds {sorted(ckpt)}).")
        self._load(path, ckpt, wanted, f"init checkpoint {path}: ")
        return list(wanted)

    def _load(self, path: str, ckpt: dict, objects: dict, prefix: str, advice: str = "") -> None:
        """Check that ``objects`` fit ``ckpt`` (network) and that its recorded geometry is this run's (a geometry
        error reads ``prefix + reason + advice``), then load each object's entry (a DDP module's inner module)."""
        check_checkpoint_compatible(path, objects, ckpt)
        if self.geometry is not None:
            try:
                self.geometry.load_state_dict(checkpoint_geometry(ckpt))
            except ValueError as e:
                raise ValueError(f"{prefix}{e}{advice}") from None
        for key, obj in objects.items():
            (obj.module if isinstance(obj, nn.parallel.DistributedDataParallel) else obj).load_state_dict(ckpt[key])

    def _restore_engine(self, engine: Engine, state: dict, max_epochs: int | None, epoch_length: int | None) -> None:
        """Load the trainer's counters, then keep this run's ``max_epochs``/``epoch_length`` (logged if they changed)."""
        saved_max, saved_length = state.get("max_epochs"), state.get("epoch_length")
        # the saved limits are replaced below; loading them could fail (a run saved past its own end)
        engine.load_state_dict({**state, "max_epochs": None} if "max_epochs" in state else state)
        engine.state.max_iters = None
        engine.state.max_epochs = max_epochs
        if epoch_length is not None:
            engine.state.epoch_length = epoch_length
            engine.state.epoch = engine.state.iteration // epoch_length
        if (saved_max, saved_length) != (max_epochs, epoch_length):
            self.logger.info(
                f"the checkpoint's run had {saved_max} epochs of {saved_length} iterations; this run has {max_epochs} "
                f"epochs of {epoch_length} (val_interval): it continues at iteration {engine.state.iteration} "
                f"(epoch {engine.state.epoch}) with this run's settings."
            )

    def _restore_random_states(self, engine: Engine) -> None:
        if self._pending_random_states is not None:
            GlobalRandomStates().load_state_dict(self._pending_random_states)
            self._pending_random_states = None
