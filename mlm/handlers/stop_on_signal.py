"""Stop a training cleanly on Ctrl-C or SIGTERM: finish the iteration, save a checkpoint, exit non-zero."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["StopOnSignal", "TrainingStopped"]


class TrainingStopped(KeyboardInterrupt):
    """Raised when :class:`StopOnSignal` has stopped a training after saving its checkpoint (exit status 130)."""


class StopOnSignal:
    """On the first Ctrl-C (SIGINT) or SIGTERM, finish the current iteration, save, stop; on the second, abort.

    A signal arriving inside an iteration would otherwise interrupt it half done (optimizer step, LR schedule and
    random draws partly applied), so no checkpoint could be taken and the run would resume from the last periodic
    one, losing up to ``val_interval`` iterations. With this handler the signal only sets a flag; after the
    iteration completes the trainer terminates (``engine.terminate()``: no validation), its ``COMPLETED`` handlers
    save the final checkpoint (``TrainingCheckpointSaver(save_final=True)``, between two iterations, so a resumed
    run is identical to an uninterrupted one), and then :class:`TrainingStopped` (a ``KeyboardInterrupt``) is
    raised so that the run exits non-zero and scripts do not go on as if training had finished. A second signal
    restores Python's handlers and interrupts at once.

    Under DDP the flag is all-reduced after every iteration (one scalar), so all ranks stop after the same
    iteration; the handler runs on every rank. Attach it after the checkpoint saver (its ``COMPLETED`` handler
    must run after the final save). Signal handlers can only be installed from the main thread: elsewhere the
    handler does nothing.

    Args:
        signals: signal names to catch (default ``("SIGINT", "SIGTERM")``).
        name: logger name.
    """

    #: every DDP process attaches it (:func:`mlm.bundle.runs_on_every_rank`)
    every_rank = True

    def __init__(self, signals: Sequence[str] = ("SIGINT", "SIGTERM"), name: str | None = None) -> None:
        self.signals = [getattr(signal, s) if isinstance(s, str) else signal.Signals(s) for s in signals]
        self.logger = logging.getLogger(name)
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._install)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._exception_raised)

    def _install(self, engine: Engine) -> None:
        self.requested = None
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:  # second signal: stop waiting for the iteration
            self._restore()
            raise KeyboardInterrupt(f"{name} received twice: training aborted inside an iteration")
        self.requested = name
        self.logger.warning(
            f"{name} received: the training stops after the current iteration and saves a checkpoint "
            "(send it again to abort at once)."
        )

    def _check(self, engine: Engine) -> None:
        stop = self.requested is not None
        if dist.is_available() and dist.is_initialized():
            flag = torch.tensor([1.0 if stop else 0.0])
            if dist.get_backend() == "nccl":
                flag = flag.cuda()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item() > 0)
            if stop and self.requested is None:
                self.requested = "a signal on another rank"
        if stop:
            engine.terminate()

    def _completed(self, engine: Engine) -> None:
        self._restore()
        if self.requested is not None:
            self.logger.warning(
                f"training stopped by {self.requested} after iteration {engine.state.iteration}; the checkpoint is "
                "saved: run the same command again to resume."
            )
            raise TrainingStopped(f"training stopped by {self.requested} after iteration {engine.state.iteration}")

    def _exception_raised(self, engine: Engine, e: BaseException) -> None:
        self._restore()
        raise e
