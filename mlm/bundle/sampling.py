"""A resumable training sample stream: the order of the samples and their augmentation are functions of the position.

Sample ``t`` of the stream (``t = 0, 1, 2, ...`` over all processes) is item ``order(t // n)[t % n]`` of an
``n``-item dataset, where ``order(p)`` is a permutation drawn from ``(seed, p)`` alone, and its random transforms
are seeded with :func:`sample_seed` ``(seed, t)``. Nothing depends on mutable random states, so a run that restarts
at sample ``t`` (after an interruption, with other ``num_workers``, after validations that drew random numbers)
sees exactly the samples and augmentations of an uninterrupted run. :class:`mlm.bundle.ResumableCacheDataset`
applies the per-sample seeds; :class:`mlm.handlers.ResumeFromCheckpoint` sets the start position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["DataPosition", "ResumableSampler", "SampleKey", "resumable_sampler", "sample_seed"]

logger = logging.getLogger(__name__)

_MAX_SEED = 2**32
# domain tags of the two uses of (seed, number): the order of a pass and the random transforms of a sample
_ORDER, _SAMPLE = 0, 1


@dataclass(frozen=True)
class SampleKey:
    """What a :class:`ResumableSampler` yields and a :class:`mlm.bundle.ResumableCacheDataset` is indexed with.

    Attributes:
        index: the dataset item.
        position: the sample's position in the stream of all processes (0-based).
        seed: the seed of the sample's random transforms, ``sample_seed(stream seed, position)``.
    """

    index: int
    position: int
    seed: int


def sample_seed(seed: int, position: int) -> int:
    """The seed in ``[0, 2**32)`` of the random transforms of sample ``position`` of a stream seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), _SAMPLE, int(position)]).generate_state(1, np.uint32)[0])


class ResumableSampler(Sampler[SampleKey]):
    """An endless, reproducible stream of :class:`SampleKey` that can start at any position.

    The stream visits the dataset in passes (a new permutation each pass with ``shuffle``, drawn from
    ``(seed, pass)``); with several processes (DDP), process ``rank`` takes the stream positions
    ``rank, rank + num_replicas, rank + 2 * num_replicas, ...``, so the processes share one stream, each sample
    once, without padding. :meth:`set_position` chooses where the next ``iter()`` starts (the trainer's iteration
    times the batch size when a training resumes). There is no ``len()``: give the trainer its ``epoch_length``.

    Args:
        data_source: the dataset (or its number of items).
        seed: seed of the order and of the per-sample seeds (an integer >= 0).
        shuffle: a new random order every pass; False: ``0, 1, ..., n - 1`` every pass.
        num_replicas: processes sharing the stream (None: the ``torch.distributed`` world size, 1 without it).
        rank: this process (None: the ``torch.distributed`` rank, 0 without it).

    Raises:
        ValueError: an empty dataset, a negative seed, or a rank outside ``[0, num_replicas)``.
    """

    def __init__(
        self,
        data_source: Sized | int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.num_items = int(data_source) if isinstance(data_source, int) else len(data_source)
        if self.num_items < 1:
            raise ValueError("ResumableSampler: the dataset is empty.")
        if int(seed) < 0:
            raise ValueError(f"ResumableSampler: seed must be >= 0, got {seed}.")
        if num_replicas is not None and int(num_replicas) < 1:
            raise ValueError(f"ResumableSampler: num_replicas must be >= 1, got {num_replicas}.")
        if rank is not None and (int(rank) < 0 or (num_replicas is not None and int(rank) >= int(num_replicas))):
            raise ValueError(f"ResumableSampler: rank {rank} is not in [0, num_replicas={num_replicas}).")
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self._num_replicas = num_replicas
        self._rank = rank
        self.position = 0
        self.start_iteration = 0

    @property
    def num_replicas(self) -> int:
        """Processes sharing the stream (resolved when used: ``torch.distributed`` may start after construction)."""
        if self._num_replicas is not None:
            return int(self._num_replicas)
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:
        """This process's place among them."""
        if self._rank is not None:
            return int(self._rank)
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def set_position(self, position: int, iteration: int = 0) -> None:
        """Start the next ``iter()`` at this process's ``position``-th sample (0-based), reached at ``iteration``.

        ``iteration`` (the trainer's iteration count at that point) lets :meth:`samples_consumed` count the samples
        of later iterations.
        """
        if int(position) < 0:
            raise ValueError(f"ResumableSampler: position must be >= 0, got {position}.")
        self.position, self.start_iteration = int(position), int(iteration)

    def samples_consumed(self, iteration: int, batch_size: int) -> int:
        """Samples of the whole stream (all processes) used up to the end of ``iteration``, ``batch_size`` per process
        and iteration since :meth:`set_position`."""
        return (self.position + (int(iteration) - self.start_iteration) * int(batch_size)) * self.num_replicas

    def order(self, pass_index: int) -> np.ndarray:
        """The dataset items of pass ``pass_index`` in stream order."""
        if not self.shuffle:
            return np.arange(self.num_items)
        return np.random.default_rng([self.seed, _ORDER, int(pass_index)]).permutation(self.num_items)

    def key(self, position: int) -> SampleKey:
        """The sample at ``position`` of the stream of all processes."""
        pass_index, offset = divmod(int(position), self.num_items)
        return SampleKey(int(self.order(pass_index)[offset]), int(position), sample_seed(self.seed, position))

    def __iter__(self) -> Iterator[SampleKey]:
        replicas, rank, n = self.num_replicas, self.rank, self.num_items
        local = self.position
        pass_index, order = -1, None
        while True:
            t = local * replicas + rank
            p, offset = divmod(t, n)
            if p != pass_index:
                pass_index, order = p, self.order(p)
            yield SampleKey(int(order[offset]), t, sample_seed(self.seed, t))
            local += 1

    def state_dict(self) -> dict:
        """What defines the stream: ``seed``, ``shuffle``, ``num_items``, ``num_replicas``."""
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "num_items": self.num_items,
            "num_replicas": self.num_replicas,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue the stream of ``state``: its seed and shuffling; a different dataset size is logged (the order
        then differs from an uninterrupted run)."""
        seed, shuffle = int(state.get("seed", self.seed)), bool(state.get("shuffle", self.shuffle))
        if seed != self.seed or shuffle != self.shuffle:
            logger.warning(
                f"the checkpoint's sample stream has seed {seed} (shuffle {shuffle}): it continues with these, not "
                f"with this run's seed {self.seed} (shuffle {self.shuffle})."
            )
        self.seed, self.shuffle = seed, shuffle
        if int(state.get("num_items", self.num_items)) != self.num_items:
            logger.warning(
                f"the training set had {state['num_items']} items when the checkpoint was saved and has "
                f"{self.num_items} now: the sample order differs from an uninterrupted run."
            )


def resumable_sampler(engine: Engine) -> tuple[ResumableSampler, int] | None:
    """The :class:`ResumableSampler` of ``engine``'s data loader and the loader's batch size (None if it has none)."""
    loader = getattr(engine.state, "dataloader", None)
    if loader is None:
        loader = getattr(engine, "data_loader", None)
    sampler = getattr(loader, "sampler", None)
    batch_size = getattr(loader, "batch_size", None)
    if not isinstance(sampler, ResumableSampler) or batch_size is None:
        return None
    return sampler, int(batch_size)


class DataPosition:
    """Where an engine is in its :class:`ResumableSampler`'s stream, as a checkpoint entry.

    ``state_dict()`` holds the sampler's :meth:`~ResumableSampler.state_dict` and ``samples``, the samples of the
    whole stream used so far; ``load_state_dict`` continues the stream after them: call it once the engine's own
    state (its iteration) is restored. An engine without a resumable sampler saves ``{}`` and ignores the entry.

    Args:
        engine: the trainer.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state_dict(self) -> dict:
        found = resumable_sampler(self.engine)
        if found is None:
            return {}
        sampler, batch_size = found
        return {**sampler.state_dict(), "samples": sampler.samples_consumed(self.engine.state.iteration, batch_size)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        found = resumable_sampler(self.engine)
        if found is None:
            return
        sampler, batch_size = found
        iteration = int(self.engine.state.iteration)
        if "samples" not in state:
            logger.warning(
                "the checkpoint does not say where the sample stream was: it restarts at iteration x batch size."
            )
            sampler.set_position(iteration * batch_size, iteration)
            return
        sampler.load_state_dict(state)
        samples, replicas = int(state["samples"]), sampler.num_replicas
        if samples % replicas:
            logger.warning(f"{samples} samples used do not split evenly over {replicas} processes: a few repeat.")
        sampler.set_position(samples // replicas, iteration)

    def restart(self) -> None:
        """Without a checkpoint: start the stream at the engine's iteration x batch size (0 for a new run)."""
        found = resumable_sampler(self.engine)
        if found is not None:
            sampler, batch_size = found
            iteration = int(self.engine.state.iteration)
            sampler.set_position(iteration * batch_size, iteration)
