"""The memory layout of the network's weights and inputs (``memory_format`` of the bundles' configs).

On a CPU, 2D convolutions in the channels-last layout (NHWC) ran 17% faster than in the default NCHW one for an SCN
training step (``scripts/benchmark_training.py``); ``cpu.yaml`` trains 2D bundles that way. The network is converted
once (:func:`with_memory_format`, also ``mlm.bundle.with_memory_format`` for the configs) and every batch as it is prepared (:class:`mlm.engines.PrepareLandmarkBatch`), so
the convolutions see matching layouts and no conversion happens inside the model. Results are the same up to float
rounding (the convolution's summation order differs).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MEMORY_FORMATS", "memory_format_of", "with_memory_format"]

#: the accepted names; "channels_last" means channels_last_3d for 5D (3D image) tensors
MEMORY_FORMATS = ("contiguous", "channels_last")


def memory_format_of(name: str | None, ndim: int) -> torch.memory_format:
    """The torch memory format for ``name`` and a tensor of ``ndim`` dimensions (4: 2D images, 5: 3D).

    Raises:
        ValueError: an unknown name.
    """
    if name in (None, "contiguous", "contiguous_format"):
        return torch.contiguous_format
    if name == "channels_last":
        return torch.channels_last_3d if ndim == 5 else torch.channels_last
    raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got {name!r}.")


def with_memory_format(module: nn.Module, name: str | None, spatial_dims: int = 2) -> nn.Module:
    """``module`` with its parameters converted to the memory format ``name`` (in place; returned for configs).

    Args:
        module: the network.
        name: ``"contiguous"`` (default layout, nothing done) or ``"channels_last"``.
        spatial_dims: 2 or 3 (channels_last_3d for 3D networks).
    """
    memory_format = memory_format_of(name, spatial_dims + 2)
    if memory_format == torch.contiguous_format:
        return module
    return module.to(memory_format=memory_format)
