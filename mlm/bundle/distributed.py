"""Multi-process (DDP) wiring for bundles launched with ``torchrun``: NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_distributed", "distributed_device", "wrap_ddp", "is_rank_zero", "rank_zero_handlers"]


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


def is_rank_zero() -> bool:
    """True in a non-distributed run and on rank 0 of a distributed one."""
    return not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0


def rank_zero_handlers(handlers: Sequence, num_all_ranks: int = 0) -> list:
    """The handlers this process attaches: all of them on rank 0; only the first ``num_all_ranks`` elsewhere.

    Order ``train#handlers`` so that handlers every rank needs (resuming from a checkpoint, gradient
    synchronisation, the LR scheduler) come first and logging / validation / checkpoint saving after.
    """
    handlers = list(handlers)
    return handlers if is_rank_zero() else handlers[: int(num_all_ranks)]
