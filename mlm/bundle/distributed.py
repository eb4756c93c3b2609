"""Multi-process (DDP) wiring for bundles launched with ``torchrun``: NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "init_distributed",
    "finish_distributed",
    "distributed_device",
    "wrap_ddp",
    "unwrap_ddp",
    "is_rank_zero",
    "runs_on_every_rank",
    "rank_zero_handlers",
]


def init_distributed(backend: str | None = None) -> str:
    """Initialise the default process group from ``torchrun``'s environment (no-op when already initialised).

    Args:
        backend: ``"nccl"``, ``"gloo"``, or None: NCCL when CUDA is available, else gloo.

    Returns:
        the backend in use.
    """
    if dist.is_initialized():
        return str(dist.get_backend())
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "multi_gpu_train.yaml must be launched with torchrun, e.g. `torchrun --nproc_per_node=2 -m monai.bundle run "
            "--config_file \"['configs/train.yaml','configs/multi_gpu_train.yaml']\"`."
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend)
    return backend


def finish_distributed() -> None:
    """End the process group (no-op when none): wait for every process, then destroy it.

    Without the barrier a process that finished first tears down its gloo threads while rank 0 still saves and
    reports; under load this ended a successful run with ``terminate called without an active exception``.
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def distributed_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` (and make it current) when CUDA is available, else ``cpu``."""
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def wrap_ddp(network: nn.Module, device: torch.device | str) -> nn.Module:
    """``DistributedDataParallel`` around ``network`` moved to ``device`` (``device_ids`` only on CUDA)."""
    device = torch.device(device)
    network = network.to(device)
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(network, device_ids=[device])
    return nn.parallel.DistributedDataParallel(network)


def unwrap_ddp(network: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (``network`` itself when it is not wrapped)."""
    return network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network


def is_rank_zero() -> bool:
    """True in a non-distributed run and on rank 0 of a distributed one."""
    return not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0


def runs_on_every_rank(handler: object) -> bool:
    """Whether every DDP process must attach ``handler``: it changes the training itself, not what is reported.

    A handler declares it with a class attribute ``every_rank = True`` (resuming, gradient synchronisation and
    clipping, the iteration limit, stopping on a signal, ...; a new handler that changes the training must declare
    it, or it silently runs on rank 0 only). MONAI's own handlers cannot declare it: checkpoint loading (every
    rank holds the model), the LR scheduler and validation (each rank evaluates its share; the metrics are
    all-reduced) are recognised by type.
    """
    declared = getattr(handler, "every_rank", None)
    if declared is not None:
        return bool(declared)
    from monai.handlers import CheckpointLoader, LrScheduleHandler, ValidationHandler

    return isinstance(handler, CheckpointLoader | LrScheduleHandler | ValidationHandler)


def rank_zero_handlers(handlers: Sequence, every_rank: Sequence[type] | None = None) -> list:
    """The handlers this process attaches: all of them on rank 0; elsewhere only those every rank needs.

    Args:
        handlers: the bundle's handlers, in their order.
        every_rank: handler types kept on every rank (default: those for which :func:`runs_on_every_rank` holds);
            the others (logging, TensorBoard, progress bars, checkpoint saving, sigma reports) run on rank 0 only.
    """
    handlers = list(handlers)
    if is_rank_zero():
        return handlers
    if every_rank is not None:
        return [h for h in handlers if isinstance(h, tuple(every_rank))]
    return [h for h in handlers if runs_on_every_rank(h)]
