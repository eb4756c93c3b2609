"""A MONAI ``CacheDataset`` whose random transforms are seeded per sample by a :class:`mlm.bundle.ResumableSampler`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.data import CacheDataset

from mlm.bundle.sampling import SampleKey

__all__ = ["ResumableCacheDataset"]


class ResumableCacheDataset(CacheDataset):
    """``CacheDataset`` (the deterministic transforms cached, the random ones applied per fetch) that, when indexed
    with a :class:`mlm.bundle.SampleKey`, seeds its random transforms with the key's seed first.

    A sample's augmentation is then a function of its position in the training stream only, not of the random
    state that earlier samples, other DataLoader workers or a restart left behind: the data of a resumed training
    are exactly those of an uninterrupted one. An integer index behaves as in ``CacheDataset`` (the transforms'
    own random states). Seeding changes the transforms' state, so one instance must not serve several threads at
    once (process workers each hold their own copy).

    Args: as ``monai.data.CacheDataset`` (``data``, ``transform`` (a ``Compose``), ``cache_rate``, ``num_workers``, ...).
    """

    def __getitem__(self, index: int | slice | Sequence[int] | SampleKey) -> Any:
        if isinstance(index, SampleKey):
            self.transform.set_random_state(seed=index.seed)
            return self._transform(index.index)
        return super().__getitem__(index)
