"""Several datasets ("domains") trained by one universal model, as GU2Net does (Zhu et al., MICCAI 2021).

A domain is a dataset with its own landmarks (head 19, hand 37, chest 6) and its own preprocessing geometry; one
network with per-domain parts learns them all. The pieces here keep MONAI's engines unchanged:

- every datalist item carries its domain's index under ``"domain"`` (:func:`domain_datasets` adds it), so the
  domain travels with the batch like the image and landmarks do;
- :class:`DomainConcatDataset` joins the per-domain (cached) datasets into one;
- :class:`DomainBlockSampler` draws batches of ONE domain each, the domains interleaved in random order (the authors'
  ``MixIter``), as a :class:`mlm.bundle.ResumableSampler` whose position a resumed training continues exactly;
- :class:`mlm.engines.PrepareDomainBatch` hands the batch's domain to the network as a keyword argument
  (``network(image, domain=k)``), which MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator`` and inferers pass on;
- :class:`UniversalGeometry` records every domain's preprocessing geometry in the checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import CacheDataset
from monai.transforms import Compose
from torch.utils.data import Dataset

from mlm.bundle.datasets import load_split
from mlm.bundle.geometry import PreprocessingGeometry
from mlm.bundle.landmarks import datalist_num_landmarks
from mlm.bundle.pipelines import landmark_preprocessing
from mlm.bundle.resumable_dataset import ResumableCacheDataset
from mlm.bundle.sampling import ResumableSampler, SampleKey, sample_seed

__all__ = [
    "DOMAIN_KEY",
    "DomainBlockSampler",
    "DomainConcatDataset",
    "UniversalGeometry",
    "domain_datasets",
    "domain_num_landmarks",
    "domain_settings",
    "merge_settings",
]

logger = logging.getLogger(__name__)

#: the datalist / batch key holding an item's domain index
DOMAIN_KEY = "domain"
# tags of the random draws of a pass: the item order inside a domain, the order of the blocks
_ITEMS, _BLOCKS = 2, 3
#: the settings every domain must give (a bundle's configs/domains.yaml entry after CPU selection)
DOMAIN_FIELDS = (
    "dataset_name",
    "dataset_dir",
    "landmark_names",
    "pixdim",
    "patch_size",
    "resize_mode",
    "intensity_normalization",
)


def domain_settings(
    domains: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
    cpu: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict]:
    """The settings of the domains ``names`` (in that order: domain ``k`` is ``names[k]``) from a bundle's
    ``domains.yaml`` mapping, with the CPU recipe's geometry (each entry's ``cpu`` mapping) when ``cpu``.

    Args:
        domains: ``{name: {dataset_name, dataset_dir, landmark_names, pixdim, patch_size, resize_mode,
            intensity_normalization, [landmarks_outside], [train_split, val_split], [cpu: {pixdim, patch_size,
            sigma}], ...}}``.
        names: the domains of the model, in order.
        cpu: use each entry's ``cpu`` values for the keys it gives.
        overrides: ``{name: {key: value}}`` merged into the entries first (nested mappings such as ``cpu`` key by
            key): the command line's way to change a domain, e.g. ``--domain_overrides "{'hand': {'dataset_dir':
            '/data/hand'}}"``.

    Returns:
        one dict per domain with ``name`` added.

    Raises:
        ValueError: an unknown or repeated name, an override of an unknown domain, or an entry without one of
            :data:`DOMAIN_FIELDS`.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(domains))
    if unknown:
        raise ValueError(
            f"domain_settings: overrides of unknown domains {unknown}; the bundle's are {sorted(domains)}."
        )
    if not names:
        raise ValueError("domain_settings: no domains named.")
    if len(set(names)) != len(names):
        raise ValueError(f"domain_settings: a domain is named twice in {list(names)}.")
    out = []
    for name in names:
        if name not in domains:
            raise ValueError(f"domain_settings: unknown domain {name!r}; the bundle's domains are {sorted(domains)}.")
        entry = merge_settings(domains[name], overrides.get(name, {}))
        missing = [k for k in DOMAIN_FIELDS if k not in entry]
        if missing:
            raise ValueError(f"domain_settings: domain {name!r} gives no {', '.join(missing)}.")
        cpu_values = entry.pop("cpu", None) or {}
        if cpu:
            entry.update(cpu_values)
        out.append({**entry, "name": str(name)})
    return out


def merge_settings(entry: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with ``changes`` applied, nested mappings (such as ``cpu``) merged key by key: how
    ``domain_overrides`` change a domains.yaml entry."""
    out = dict(entry)
    for key, value in changes.items():
        out[key] = (
            merge_settings(out[key], value)
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
            else value
        )
    return out


def domain_num_landmarks(domains: Sequence[Mapping[str, Any]]) -> list[int]:
    """Landmarks per image of each domain: its datalist's count, else its ``landmark_names``' length."""
    return [datalist_num_landmarks(d["dataset_dir"], d["landmark_names"]) for d in domains]


class DomainConcatDataset(Dataset):
    """The datasets of several domains as one: item ``i`` of domain ``k`` is item ``offset(k) + i``.

    Indexing with an ``int`` or a :class:`mlm.bundle.SampleKey` (whose ``index`` is the joint index) forwards to the
    domain's dataset with the domain's own index. ``data`` and ``_cache`` are the domains' datalists and caches in
    joint order, so the handlers that inspect a ``CacheDataset`` (:class:`mlm.handlers.OutsideLandmarksSummary`)
    see every domain.

    Args:
        datasets: one dataset per domain, in domain order.
        names: the domains' names (for messages), as many as ``datasets``.
    """

    def __init__(self, datasets: Sequence[Dataset], names: Sequence[str]) -> None:
        if not datasets or len(datasets) != len(names):
            raise ValueError(f"DomainConcatDataset: {len(datasets)} datasets for {len(names)} domain names.")
        self.datasets = list(datasets)
        self.names = [str(n) for n in names]
        self.sizes = [len(d) for d in self.datasets]
        for name, size in zip(self.names, self.sizes):
            if size < 1:
                raise ValueError(f"DomainConcatDataset: domain {name!r} has no items.")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """``(domain, index inside the domain)`` of joint item ``index``."""
        if not 0 <= int(index) < len(self):
            raise IndexError(f"DomainConcatDataset: index {index} is not in [0, {len(self)}).")
        k = int(np.searchsorted(self.offsets, int(index), side="right")) - 1
        return k, int(index) - self.offsets[k]

    def __getitem__(self, index: int | SampleKey) -> Any:
        if isinstance(index, SampleKey):
            k, local = self.locate(index.index)
            return self.datasets[k][SampleKey(local, index.position, index.seed)]
        k, local = self.locate(index)
        return self.datasets[k][local]

    @property
    def data(self) -> list:
        """The domains' datalist items, in joint order."""
        return [item for d in self.datasets for item in getattr(d, "data", [None] * len(d))]

    @property
    def _cache(self) -> list | None:
        """The domains' cached (deterministically preprocessed) items, in joint order; None if one is not cached.

        A partial cache (``cache_rate < 1``: a domain's first items only) is padded with None to its domain's size, so
        that position ``i`` stays joint item ``i`` (as in :attr:`data`)."""
        caches = [getattr(d, "_cache", None) for d in self.datasets]
        if any(c is None for c in caches):
            return None
        if not any(caches):
            return []
        return [item for c, size in zip(caches, self.sizes) for item in [*c, *[None] * (size - len(c))]]


class DomainBlockSampler(ResumableSampler):
    """A resumable stream of samples in blocks of ``batch_size`` from one domain each, the blocks in random order.

    Pass ``p`` of the stream: each domain's items in a random order drawn from ``(seed, p, domain)``, cut into
    ``floor(n_k / batch_size)`` blocks (the remainder is left out of that pass, as the authors' ``drop_last``), and
    the blocks of all domains in a random order drawn from ``(seed, p)``. A ``DataLoader`` with this sampler and the
    same ``batch_size`` therefore yields one-domain batches, the domains interleaved, every block once per pass.
    The random transforms of stream sample ``t`` are seeded with ``sample_seed(seed, t)``, as in the parent.

    With several processes (DDP) the blocks are dealt out: process ``rank`` takes blocks ``rank, rank + R, ...``,
    so every process's batches are one-domain too (the processes may train different domains in one step).

    Args:
        data_source: the :class:`DomainConcatDataset` (or its per-domain sizes).
        batch_size: samples per block: the ``DataLoader``'s batch size.
        seed, shuffle, num_replicas, rank: as :class:`mlm.bundle.ResumableSampler`.

    Raises:
        ValueError: ``batch_size < 1`` or a domain with fewer items than ``batch_size``.
    """

    def __init__(
        self,
        data_source: DomainConcatDataset | Sequence[int],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        sizes = (
            list(data_source.sizes) if isinstance(data_source, DomainConcatDataset) else [int(s) for s in data_source]
        )
        names = (
            data_source.names if isinstance(data_source, DomainConcatDataset) else [str(k) for k in range(len(sizes))]
        )
        super().__init__(sum(sizes), seed=seed, shuffle=shuffle, num_replicas=num_replicas, rank=rank)
        if int(batch_size) < 1:
            raise ValueError(f"DomainBlockSampler: batch_size must be >= 1, got {batch_size}.")
        small = [f"{n} ({s})" for n, s in zip(names, sizes) if s < int(batch_size)]
        if small:
            raise ValueError(
                f"DomainBlockSampler: the domains {', '.join(small)} have fewer items than batch_size {batch_size}."
            )
        self.batch_size = int(batch_size)
        self.sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.blocks_per_pass = sum(s // self.batch_size for s in sizes)

    def blocks(self, pass_index: int) -> list[np.ndarray]:
        """The blocks of pass ``pass_index`` in stream order, each ``batch_size`` joint item indices of one domain."""
        out = []
        for k, size in enumerate(self.sizes):
            order = (
                np.random.default_rng([self.seed, _ITEMS, int(pass_index), k]).permutation(size)
                if self.shuffle
                else np.arange(size)
            )
            n = size // self.batch_size
            out += list(self.offsets[k] + order[: n * self.batch_size].reshape(n, self.batch_size))
        if self.shuffle:
            out = [out[i] for i in np.random.default_rng([self.seed, _BLOCKS, int(pass_index)]).permutation(len(out))]
        return out

    def order(self, pass_index: int) -> np.ndarray:
        """The joint items of pass ``pass_index`` in stream order (the blocks one after the other)."""
        return np.concatenate(self.blocks(pass_index))

    def key(self, position: int) -> SampleKey:
        """The sample at ``position`` of the stream of all processes."""
        pass_len = self.blocks_per_pass * self.batch_size
        pass_index, offset = divmod(int(position), pass_len)
        return SampleKey(int(self.order(pass_index)[offset]), int(position), sample_seed(self.seed, position))

    def __iter__(self) -> Iterator[SampleKey]:
        replicas, rank, b = self.num_replicas, self.rank, self.batch_size
        local = self.position
        pass_index, order = -1, None
        while True:
            block, within = divmod(local, b)
            t = (block * replicas + rank) * b + within  # this process takes every R-th block
            p, offset = divmod(t, self.blocks_per_pass * b)
            if p != pass_index:
                pass_index, order = p, self.order(p)
            yield SampleKey(int(order[offset]), t, sample_seed(self.seed, t))
            local += 1

    def state_dict(self) -> dict:
        """The parent's stream definition plus ``batch_size`` and the domains' ``sizes``."""
        return {**super().state_dict(), "batch_size": self.batch_size, "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if list(state.get("sizes", self.sizes)) != self.sizes or int(state.get("batch_size", self.batch_size)) != (
            self.batch_size
        ):
            logger.warning(
                f"the checkpoint's domain stream had sizes {state.get('sizes')} and batch size {state.get('batch_size')}, "
                f"this run has {self.sizes} and {self.batch_size}: the sample order differs from an uninterrupted run."
            )


def domain_datasets(
    domains: Sequence[Mapping[str, Any]],
    split_key: str,
    spatial_dims: int,
    cache_rate: float = 1.0,
    resumable: bool = True,
    augmentation: Sequence[Any] = (),
    max_items: int | None = None,
) -> DomainConcatDataset:
    """One cached dataset per domain (its own landmark count and preprocessing geometry), joined.

    Each domain's items come from its datalist's split ``domain[split_key]`` (:func:`mlm.bundle.load_split`: the
    count, names and files are checked there, naming the file at fault), get ``"domain": k``, and go through
    :func:`mlm.bundle.landmark_preprocessing` with the domain's ``pixdim``, ``patch_size``, ``resize_mode``,
    ``intensity_normalization`` (and ``landmarks_outside``, default ``"error"``), then ``augmentation``.

    Args:
        domains: :func:`domain_settings` entries, in domain order.
        split_key: the entry key naming the split, e.g. ``"train_split"`` or ``"val_split"`` (an entry without it
            uses ``"training"`` / ``"validation"``).
        spatial_dims: 2 or 3.
        cache_rate: as ``CacheDataset``.
        resumable: :class:`mlm.bundle.ResumableCacheDataset` (training) or a plain ``CacheDataset`` (validation).
        augmentation: random transforms after the cached ones (the same for every domain).
        max_items: the first ``max_items`` items of each domain (None: all).
    """
    default_split = {"train_split": "training", "val_split": "validation"}.get(split_key, split_key)
    datasets = []
    for k, domain in enumerate(domains):
        num = datalist_num_landmarks(domain["dataset_dir"], domain["landmark_names"])
        items = load_split(
            domain["dataset_dir"],
            split=domain.get(split_key, default_split),
            num_landmarks=num,
            spatial_dims=spatial_dims,
            dataset=domain["dataset_name"],
            max_items=max_items,
        )
        items = [{**item, DOMAIN_KEY: k} for item in items]
        transform = Compose(
            [
                *landmark_preprocessing(
                    spatial_dims,
                    spacing=domain["pixdim"],
                    spatial_size=domain["patch_size"],
                    num_landmarks=num,
                    outside=domain.get("landmarks_outside", "error"),
                    normalization=domain["intensity_normalization"],
                    resize=domain["resize_mode"],
                ),
                *augmentation,
            ]
        )
        cls = ResumableCacheDataset if resumable else CacheDataset
        datasets.append(cls(data=items, transform=transform, cache_rate=cache_rate, num_workers=0))
    return DomainConcatDataset(datasets, [d["name"] for d in domains])


class UniversalGeometry:
    """Every domain's preprocessing geometry, saved in the checkpoints of a universal model and checked on resume.

    ``state_dict()`` is ``{"domains": {name: geometry}}``; :class:`mlm.bundle.PreprocessingGeometry` with a
    ``domain`` checks one domain of such a checkpoint (inference on that domain).

    Args:
        domains: :func:`domain_settings` entries.
        spatial_dims: 2 or 3.
    """

    def __init__(self, domains: Sequence[Mapping[str, Any]], spatial_dims: int) -> None:
        self.geometries = {
            d["name"]: PreprocessingGeometry(
                spatial_dims, d["pixdim"], d["patch_size"], d["resize_mode"], d["intensity_normalization"]
            )
            for d in domains
        }

    def state_dict(self) -> dict[str, Any]:
        return {"domains": {name: g.state_dict() for name, g in self.geometries.items()}}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Check a checkpoint's per-domain geometries against this run's (a domain it lacks is an error).

        Raises:
            ValueError: the checkpoint holds another set of domains or a domain's geometry differs.
        """
        if not state:
            logger.info("the checkpoint records no preprocessing geometry: the geometry was not checked.")
            return
        saved = state.get("domains")
        if not isinstance(saved, Mapping) or sorted(saved) != sorted(self.geometries):
            have = sorted(saved) if isinstance(saved, Mapping) else "one (a single-domain model)"
            raise ValueError(
                f"the checkpoint's model was trained on the domains {have}, this run has {sorted(self.geometries)}."
            )
        for name, geometry in self.geometries.items():
            try:
                geometry.load_state_dict(saved[name])
            except ValueError as e:
                raise ValueError(f"domain {name!r}: {e}") from None
