"""The universal model's domain plumbing: mlm.bundle.domains (settings, the joined dataset, the one-domain block
sampler, the per-domain datasets on tiny phantoms, the per-domain geometry), PreprocessingGeometry(domain=...) and
mlm.engines.PrepareDomainBatch, including MONAI's SupervisedTrainer handing the domain to the network."""

from __future__ import annotations

import copy
import logging
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import CacheDataset
from torch import nn
from torch.utils.data import DataLoader

from mlm.bundle.domains import (
    DOMAIN_FIELDS,
    DomainBlockSampler,
    DomainConcatDataset,
    UniversalGeometry,
    domain_datasets,
    domain_settings,
)
from mlm.bundle.geometry import PreprocessingGeometry
from mlm.bundle.sampling import ResumableSampler, SampleKey, sample_seed
from mlm.engines import PrepareDomainBatch


def _entry(name: str, **extra) -> dict:
    """A domains.yaml-like entry with every required field."""
    return {
        "dataset_name": name,
        "dataset_dir": f"/data/{name}",
        "landmark_names": [f"{name}_{i}" for i in range(3)],
        "pixdim": -1.0,
        "patch_size": [64, 80],
        "resize_mode": "fit",
        "intensity_normalization": "xray",
        **extra,
    }


DOMAINS = {
    "head": _entry("head", cpu={"patch_size": [32, 40]}),
    "hand": _entry("hand", cpu={"patch_size": [24, 32], "sigma": 2.0}, landmarks_outside="drop"),
    "chest": _entry("chest"),
}


# ------------------------------------------------------------------------------------------------- domain_settings
def test_domain_settings_in_the_order_named_with_names_and_without_cpu():
    out = domain_settings(DOMAINS, ["hand", "head"])
    assert [d["name"] for d in out] == ["hand", "head"]
    assert [d["dataset_name"] for d in out] == ["hand", "head"]
    assert out[0]["patch_size"] == [64, 80] and out[1]["patch_size"] == [64, 80]
    assert out[0]["landmarks_outside"] == "drop"
    assert all("cpu" not in d for d in out)
    assert "sigma" not in out[0]


def test_domain_settings_cpu_takes_each_entrys_cpu_values():
    head, hand, chest = domain_settings(DOMAINS, ["head", "hand", "chest"], cpu=True)
    assert head["patch_size"] == [32, 40] and "sigma" not in head
    assert hand["patch_size"] == [24, 32] and hand["sigma"] == 2.0
    assert chest["patch_size"] == [64, 80]  # no cpu entry: unchanged
    assert all("cpu" not in d for d in (head, hand, chest))


def test_domain_settings_does_not_change_its_input():
    before = copy.deepcopy(DOMAINS)
    domain_settings(DOMAINS, ["head", "hand"], cpu=True, overrides={"hand": {"cpu": {"sigma": 5.0}, "pixdim": 1.0}})
    assert DOMAINS == before


def test_domain_settings_overrides_merge_nested_cpu_key_by_key():
    overrides = {"hand": {"dataset_dir": "/elsewhere/hand", "cpu": {"sigma": 1.5}}, "chest": {"pixdim": 0.5}}
    hand, chest = domain_settings(DOMAINS, ["hand", "chest"], cpu=True, overrides=overrides)
    assert hand["dataset_dir"] == "/elsewhere/hand"
    assert hand["sigma"] == 1.5 and hand["patch_size"] == [24, 32]  # cpu's patch_size kept, its sigma replaced
    assert chest["pixdim"] == 0.5
    # the same overrides without cpu: the cpu values are not applied, the plain ones are
    (hand,) = domain_settings(DOMAINS, ["hand"], overrides=overrides)
    assert hand["dataset_dir"] == "/elsewhere/hand" and hand["patch_size"] == [64, 80] and "sigma" not in hand


def test_domain_settings_override_of_a_domain_not_used_is_allowed():
    (head,) = domain_settings(DOMAINS, ["head"], overrides={"hand": {"pixdim": 2.0}})
    assert head["name"] == "head" and head["pixdim"] == -1.0


def test_domain_settings_override_replaces_a_non_mapping_value():
    (head,) = domain_settings(DOMAINS, ["head"], overrides={"head": {"patch_size": [16, 16]}})
    assert head["patch_size"] == [16, 16]


@pytest.mark.parametrize(
    "names, overrides, match",
    [
        (["head", "foot"], None, "unknown domain 'foot'"),
        (["head", "hand", "head"], None, "named twice"),
        ([], None, "no domains"),
        (["head"], {"foot": {"pixdim": 1.0}}, r"overrides of unknown domains \['foot'\]"),
    ],
)
def test_domain_settings_errors(names, overrides, match):
    with pytest.raises(ValueError, match=match):
        domain_settings(DOMAINS, names, overrides=overrides)


@pytest.mark.parametrize("field", DOMAIN_FIELDS)
def test_domain_settings_missing_field_names_the_domain_and_field(field):
    domains = {**DOMAINS, "hand": {k: v for k, v in DOMAINS["hand"].items() if k != field}}
    with pytest.raises(ValueError, match=rf"domain 'hand' gives no {field}"):
        domain_settings(domains, ["head", "hand"])
    # an override can supply it
    (hand,) = domain_settings(domains, ["hand"], overrides={"hand": {field: DOMAINS["hand"][field]}})
    assert hand[field] == DOMAINS["hand"][field]


# --------------------------------------------------------------------------------------------- DomainConcatDataset
class _Recorder:
    """A dataset returning what it was indexed with, tagged with its name."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.data = [{"id": f"{name}{i}"} for i in range(size)]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        if isinstance(index, SampleKey):
            if not 0 <= index.index < self.size:
                raise IndexError(index)
        elif not 0 <= index < self.size:
            raise IndexError(index)
        return (self.name, index)


def test_concat_dataset_locate_and_int_indexing():
    ds = DomainConcatDataset([_Recorder("a", 3), _Recorder("b", 1), _Recorder("c", 4)], ["a", "b", "c"])
    assert len(ds) == 8 and ds.offsets == [0, 3, 4, 8] and ds.sizes == [3, 1, 4]
    expected = [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3)]
    assert [ds.locate(i) for i in range(8)] == expected
    assert [ds[i] for i in range(8)] == [("abc"[k], local) for k, local in expected]
    for bad in (-1, 8):
        with pytest.raises(IndexError):
            ds.locate(bad)
        with pytest.raises(IndexError):
            ds[bad]


def test_concat_dataset_sample_key_forwards_the_local_index_with_the_same_position_and_seed():
    ds = DomainConcatDataset([_Recorder("a", 3), _Recorder("b", 4)], ["a", "b"])
    assert ds[SampleKey(5, 17, 12345)] == ("b", SampleKey(2, 17, 12345))
    assert ds[SampleKey(2, 0, 7)] == ("a", SampleKey(2, 0, 7))
    with pytest.raises(IndexError):
        ds[SampleKey(7, 0, 0)]


def test_concat_dataset_data_and_cache_in_joint_order():
    def cached(name, n):
        return CacheDataset([{"id": f"{name}{i}", "v": i} for i in range(n)], transform=None, progress=False)

    ds = DomainConcatDataset([cached("a", 2), cached("b", 3)], ["a", "b"])
    assert [d["id"] for d in ds.data] == ["a0", "a1", "b0", "b1", "b2"]
    assert [c["id"] for c in ds._cache] == ["a0", "a1", "b0", "b1", "b2"]
    # a dataset without data gives None placeholders; one without a cache makes the joint cache None
    mixed = DomainConcatDataset([cached("a", 2), [10, 20, 30]], ["a", "plain"])
    assert [None if d is None else d["id"] for d in mixed.data] == ["a0", "a1", None, None, None]
    assert mixed._cache is None


def test_concat_dataset_partial_caches_stay_aligned_with_data():
    """cache_rate < 1 caches each domain's first items only; the joint cache's position i must still be joint item
    i (mlm.handlers.OutsideLandmarksSummary zips it with ``data`` to name the items)."""

    def cached(name, n):
        items = [{"id": f"{name}{i}"} for i in range(n)]
        return CacheDataset(items, transform=None, cache_rate=0.5, num_workers=0, progress=False)

    ds = DomainConcatDataset([cached("a", 4), cached("b", 4)], ["a", "b"])
    cache, data = ds._cache, ds.data
    assert len(cache) == len(data) == 8
    cached_ids = [(c["id"], d["id"]) for c, d in zip(cache, data) if c is not None]
    assert cached_ids == [("a0", "a0"), ("a1", "a1"), ("b0", "b0"), ("b1", "b1")]
    # the handler's check then names the right item: b0's landmark 1 lies outside its 4 x 4 grid
    from mlm.handlers.outside_summary import landmarks_outside_grid

    def with_image(name, n):
        items = [
            {"id": f"{name}{i}", "image": torch.zeros(1, 4, 4), "landmarks": torch.tensor([[1.0, 1.0], [1.0, 1.0]])}
            for i in range(n)
        ]
        if name == "b":
            items[0]["landmarks"] = torch.tensor([[1.0, 1.0], [9.0, 1.0]])
        return CacheDataset(items, transform=None, cache_rate=0.5, num_workers=0, progress=False)

    joint = DomainConcatDataset([with_image("a", 4), with_image("b", 4)], ["a", "b"])
    assert landmarks_outside_grid(joint) == {"b0": [1]}
    uncached = DomainConcatDataset([cached("a", 1), cached("b", 1)], ["a", "b"])  # cache_rate 0.5 of 1 item: none
    assert uncached._cache == []


def test_concat_dataset_errors():
    with pytest.raises(ValueError, match="domain 'b' has no items"):
        DomainConcatDataset([_Recorder("a", 2), _Recorder("b", 0)], ["a", "b"])
    with pytest.raises(ValueError, match="2 datasets for 1 domain names"):
        DomainConcatDataset([_Recorder("a", 2), _Recorder("b", 2)], ["a"])
    with pytest.raises(ValueError, match="0 datasets"):
        DomainConcatDataset([], [])


# ---------------------------------------------------------------------------------------------- DomainBlockSampler
def _take(sampler, count: int) -> list[SampleKey]:
    it = iter(sampler)
    return [next(it) for _ in range(count)]


def _domain_of(sizes) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def _check_pass(sampler: DomainBlockSampler, pass_index: int) -> None:
    """One pass: one-domain blocks, each domain's floor(n_k / B) blocks, no item twice."""
    sizes, b = sampler.sizes, sampler.batch_size
    domain = _domain_of(sizes)
    blocks = sampler.blocks(pass_index)
    assert len(blocks) == sampler.blocks_per_pass == sum(s // b for s in sizes)
    for block in blocks:
        assert len(block) == b and len(set(domain[block].tolist())) == 1
    counts = Counter(int(domain[block[0]]) for block in blocks)
    assert counts == Counter({k: s // b for k, s in enumerate(sizes) if s // b})
    items = np.concatenate(blocks)
    assert len(set(items.tolist())) == len(items)
    np.testing.assert_array_equal(sampler.order(pass_index), items)


def test_block_sampler_is_a_resumable_sampler_and_yields_one_domain_batches():
    sizes, b = [7, 4, 9], 2
    sampler = DomainBlockSampler(sizes, batch_size=b, seed=3)
    assert isinstance(sampler, ResumableSampler)
    assert sampler.num_items == 20 and sampler.blocks_per_pass == 3 + 2 + 4
    domain = _domain_of(sizes)
    keys = _take(sampler, 3 * sampler.blocks_per_pass * b)  # three passes
    assert [k.position for k in keys] == list(range(len(keys)))
    assert all(k.seed == sample_seed(3, k.position) for k in keys)
    for start in range(0, len(keys), b):
        assert len({int(domain[k.index]) for k in keys[start : start + b]}) == 1
    for p in range(3):
        _check_pass(sampler, p)
        pass_len = sampler.blocks_per_pass * b
        assert [k.index for k in keys[p * pass_len : (p + 1) * pass_len]] == sampler.order(p).tolist()


def test_block_sampler_interleaves_domains_and_passes_differ_with_shuffle():
    sampler = DomainBlockSampler([8, 8], batch_size=2, seed=0)
    orders = [sampler.order(p).tolist() for p in range(4)]
    assert len({tuple(o) for o in orders}) == 4
    block_domains = [int(b[0] >= 8) for b in sampler.blocks(0)]
    assert block_domains != sorted(block_domains)  # not all of domain 0 first (seed 0 interleaves them)
    # another seed, another stream
    assert DomainBlockSampler([8, 8], batch_size=2, seed=1).order(0).tolist() != orders[0]


def test_block_sampler_without_shuffle_is_the_same_every_pass():
    sampler = DomainBlockSampler([5, 4], batch_size=2, shuffle=False)
    assert sampler.order(0).tolist() == [0, 1, 2, 3, 5, 6, 7, 8]  # item 4 of domain 0 left out
    assert sampler.order(3).tolist() == sampler.order(0).tolist()


def test_block_sampler_key_equals_the_yielded_key():
    sampler = DomainBlockSampler([5, 6, 3], batch_size=3, seed=11)
    keys = _take(sampler, 40)
    assert [sampler.key(t) for t in range(40)] == keys


@pytest.mark.parametrize("start", [0, 1, 5, 8, 9, 23])
def test_block_sampler_resume_is_exact(start):
    sizes, b = [5, 6, 3], 3
    full = _take(DomainBlockSampler(sizes, batch_size=b, seed=4), 40)
    resumed = DomainBlockSampler(sizes, batch_size=b, seed=4)
    resumed.set_position(start)
    assert _take(resumed, 40 - start) == full[start:]


def test_block_sampler_two_processes_share_the_single_process_stream():
    sizes, b, local = [6, 5, 8], 2, 14  # 14 local samples: 7 blocks per rank, more than one pass (8 blocks)
    single = _take(DomainBlockSampler(sizes, batch_size=b, seed=2), 2 * local)
    domain = _domain_of(sizes)
    streams = [_take(DomainBlockSampler(sizes, batch_size=b, seed=2, num_replicas=2, rank=r), local) for r in (0, 1)]
    union = Counter((k.index, k.position) for s in streams for k in s)
    assert union == Counter((k.index, k.position) for k in single)
    assert not {k.position for k in streams[0]} & {k.position for k in streams[1]}
    for rank, stream in enumerate(streams):
        for start in range(0, local, b):
            batch = stream[start : start + b]
            assert len({int(domain[k.index]) for k in batch}) == 1
            assert {k.position // b for k in batch} == {(start // b) * 2 + rank}  # rank takes blocks rank, rank + 2
        assert all(k.seed == sample_seed(2, k.position) for k in stream)
    # a rank resumes exactly too
    resumed = DomainBlockSampler(sizes, batch_size=b, seed=2, num_replicas=2, rank=1)
    resumed.set_position(5)
    assert _take(resumed, local - 5) == streams[1][5:]


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    batch_size=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    start=st.integers(0, 30),
    replicas=st.integers(1, 3),
)
def test_block_sampler_invariants(sizes, batch_size, seed, start, replicas):
    sizes = [max(s, batch_size) for s in sizes]
    sampler = DomainBlockSampler(sizes, batch_size=batch_size, seed=seed)
    for p in range(2):
        _check_pass(sampler, p)
    single = _take(sampler, start + 12)
    assert [sampler.key(t) for t in range(len(single))] == single
    resumed = DomainBlockSampler(sizes, batch_size=batch_size, seed=seed)
    resumed.set_position(start)
    assert _take(resumed, 12) == single[start:]
    # every process's blocks are one-domain and their keys are the stream's at their positions
    domain = _domain_of(sizes)
    for rank in range(replicas):
        s = DomainBlockSampler(sizes, batch_size=batch_size, seed=seed, num_replicas=replicas, rank=rank)
        keys = _take(s, 3 * batch_size)
        assert all(sampler.key(k.position) == k for k in keys)
        for i in range(0, len(keys), batch_size):
            assert len({int(domain[k.index]) for k in keys[i : i + batch_size]}) == 1


def test_block_sampler_takes_a_concat_dataset():
    ds = DomainConcatDataset([_Recorder("a", 4), _Recorder("b", 3)], ["a", "b"])
    sampler = DomainBlockSampler(ds, batch_size=3, seed=0)
    assert sampler.sizes == [4, 3] and sampler.num_items == 7
    with pytest.raises(ValueError, match=r"the domains a \(4\), b \(3\) have fewer items than batch_size 5"):
        DomainBlockSampler(ds, batch_size=5)


def test_block_sampler_state_dict_and_load(caplog):
    sampler = DomainBlockSampler([4, 6], batch_size=2, seed=5, shuffle=True, num_replicas=2, rank=1)
    assert sampler.state_dict() == {
        "seed": 5,
        "shuffle": True,
        "num_items": 10,
        "num_replicas": 2,
        "batch_size": 2,
        "sizes": [4, 6],
    }
    other = DomainBlockSampler([4, 6], batch_size=2, seed=0)
    with caplog.at_level(logging.WARNING):
        other.load_state_dict(DomainBlockSampler([4, 6], batch_size=2, seed=5).state_dict())
    assert other.seed == 5
    assert _take(other, 10) == _take(DomainBlockSampler([4, 6], batch_size=2, seed=5), 10)
    assert not any("domain stream" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.WARNING):
        other.load_state_dict({**other.state_dict(), "sizes": [5, 6], "num_items": 11})
    assert any("domain stream had sizes [5, 6]" in r.getMessage() for r in caplog.records)


def test_block_sampler_errors():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DomainBlockSampler([4, 4], batch_size=0)
    with pytest.raises(ValueError, match=r"the domains 1 \(2\) have fewer items than batch_size 3"):
        DomainBlockSampler([4, 2], batch_size=3)


# ----------------------------------------------------------------------------------- domain_datasets on phantoms
@pytest.fixture(scope="module")
def phantom_domains(tmp_path_factory) -> list[dict]:
    from mlm.data.phantoms.cephalogram import write_cephalogram_dataset
    from mlm.data.phantoms.hand_xray import write_hand_xray_dataset

    ceph, hand = tmp_path_factory.mktemp("ceph"), tmp_path_factory.mktemp("hand_xray")
    write_cephalogram_dataset(ceph, num_images=6, seed=0, pixel_size=4.0, overwrite=True, show_progress=False)
    write_hand_xray_dataset(hand, num_images=6, seed=0, pixel_size=4.0, overwrite=True, show_progress=False)
    domains = {
        "head": _entry("head", dataset_name="ceph", dataset_dir=str(ceph), patch_size=[48, 64]),
        "hand": _entry("hand", dataset_name="hand_xray", dataset_dir=str(hand), patch_size=[40, 56]),
    }
    # landmark_names of 3 are only the fallback: the datalists declare 19 and 37
    return domain_settings(domains, ["head", "hand"])


def test_domain_datasets_on_phantoms(phantom_domains: list[dict]):
    from mlm.bundle.resumable_dataset import ResumableCacheDataset

    ds = domain_datasets(phantom_domains, "train_split", spatial_dims=2)
    assert ds.names == ["head", "hand"] and ds.sizes == [4, 4]  # 6 images: 4 training
    assert all(isinstance(d, ResumableCacheDataset) for d in ds.datasets)
    assert [item["domain"] for item in ds.data] == [0] * 4 + [1] * 4
    for i in range(len(ds)):
        item = ds[i]
        k = i // 4
        assert item["domain"] == k
        assert tuple(item["image"].shape) == ((1, 48, 64), (1, 40, 56))[k]
        assert tuple(item["landmarks"].shape) == ((19, 2), (37, 2))[k]
    assert len(ds._cache) == 8
    # one-domain batches through a DataLoader (collation of two domains' shapes would fail)
    loader = DataLoader(ds, batch_size=2, sampler=DomainBlockSampler(ds, batch_size=2, seed=0), num_workers=0)
    seen = set()
    for batch, _ in zip(loader, range(4)):
        k = int(batch["domain"][0])
        assert batch["domain"].tolist() == [k, k]
        assert tuple(batch["image"].shape) == ((2, 1, 48, 64), (2, 1, 40, 56))[k]
        assert tuple(batch["landmarks"].shape) == ((2, 19, 2), (2, 37, 2))[k]
        seen.add(k)
    assert seen == {0, 1}  # one pass of 4 blocks holds both domains

    val = domain_datasets(phantom_domains, "val_split", spatial_dims=2, resumable=False, max_items=1)
    assert val.sizes == [1, 1] and not any(isinstance(d, ResumableCacheDataset) for d in val.datasets)
    assert [val[i]["domain"] for i in range(2)] == [0, 1]


# ------------------------------------------------------------------------------------------------ geometry
GEOMETRY_DOMAINS = [
    {"name": "head", "pixdim": -1.0, "patch_size": [48, 64], "resize_mode": "fit", "intensity_normalization": "xray"},
    {"name": "hand", "pixdim": -1.0, "patch_size": [40, 56], "resize_mode": "fit", "intensity_normalization": "xray"},
]


def test_universal_geometry_state_dict_and_load():
    geometry = UniversalGeometry(GEOMETRY_DOMAINS, 2)
    state = geometry.state_dict()
    assert sorted(state) == ["domains"] and sorted(state["domains"]) == ["hand", "head"]
    assert state["domains"]["hand"] == {
        "spatial_dims": 2,
        "pixdim": -1.0,
        "preprocessed_size": [40, 56],
        "resize_mode": "fit",
        "intensity_normalization": "xray",
    }
    UniversalGeometry(GEOMETRY_DOMAINS[::-1], 2).load_state_dict(state)  # same domains in another order: fine
    UniversalGeometry(GEOMETRY_DOMAINS, 2).load_state_dict(None)  # nothing recorded: not checked
    with pytest.raises(ValueError, match=r"trained on the domains \['hand', 'head'\], this run has \['head'\]"):
        UniversalGeometry(GEOMETRY_DOMAINS[:1], 2).load_state_dict(state)
    single = PreprocessingGeometry(2, -1.0, [48, 64], "fit", "xray").state_dict()
    with pytest.raises(ValueError, match="single-domain model"):
        UniversalGeometry(GEOMETRY_DOMAINS, 2).load_state_dict(single)
    changed = [GEOMETRY_DOMAINS[0], {**GEOMETRY_DOMAINS[1], "patch_size": [48, 64]}]
    with pytest.raises(ValueError, match=r"domain 'hand': .*preprocessed_size: trained with \[40, 56\]"):
        UniversalGeometry(changed, 2).load_state_dict(state)


def test_preprocessing_geometry_checks_its_domain_of_a_universal_checkpoint():
    state = UniversalGeometry(GEOMETRY_DOMAINS, 2).state_dict()
    PreprocessingGeometry(2, -1.0, [40, 56], "fit", "xray", domain="hand").load_state_dict(state)
    PreprocessingGeometry(2, -1.0, [48, 64], "fit", "xray", domain="head").load_state_dict(state)
    with pytest.raises(ValueError, match=r"preprocessed_size: trained with \[48, 64\].*--preprocessed_size"):
        PreprocessingGeometry(2, -1.0, [40, 56], "fit", "xray", domain="head").load_state_dict(state)
    with pytest.raises(ValueError, match="--universal true"):
        PreprocessingGeometry(2, -1.0, [40, 56], "fit", "xray").load_state_dict(state)
    with pytest.raises(ValueError, match=r"no domain 'chest' \(its domains: \['hand', 'head'\]\)"):
        PreprocessingGeometry(2, -1.0, [40, 56], "fit", "xray", domain="chest").load_state_dict(state)
    single = PreprocessingGeometry(2, -1.0, [40, 56], "fit", "xray").state_dict()
    with pytest.raises(ValueError, match="single-domain model.*domain 'hand'"):
        PreprocessingGeometry(2, -1.0, [40, 56], "fit", "xray", domain="hand").load_state_dict(single)
    PreprocessingGeometry(2, -1.0, [40, 56], "fit", "xray").load_state_dict(single)  # single on single: fine


# --------------------------------------------------------------------------------------------- PrepareDomainBatch
def _batch(domains, n: int, size=(16, 16)) -> dict:
    b = len(domains)
    return {
        "image": torch.rand(b, 1, *size),
        "landmarks": torch.rand(b, n, 2, dtype=torch.float64) * 10,
        "domain": torch.tensor(domains),
    }


def test_prepare_domain_batch_returns_the_domain_as_a_keyword():
    batch = _batch([1, 1], 37)
    image, landmarks, args, kwargs = PrepareDomainBatch(num_landmarks=[19, 37])(batch, torch.device("cpu"))
    assert torch.equal(image, batch["image"]) and torch.equal(landmarks, batch["landmarks"])
    assert landmarks.dtype == torch.float64
    assert args == () and kwargs == {"domain": 1} and type(kwargs["domain"]) is int
    # a plain list of tags works as well as a tensor
    out = PrepareDomainBatch(num_landmarks=[19, 37])({**batch, "domain": [1, 1]})
    assert out[3] == {"domain": 1}


def test_prepare_domain_batch_refuses_mixed_domains():
    with pytest.raises(ValueError, match=r"one domain, got domains \[0, 1\]"):
        PrepareDomainBatch()(_batch([0, 1], 19))


def test_prepare_domain_batch_default_domain():
    batch = _batch([2], 6)
    del batch["domain"]
    assert PrepareDomainBatch(num_landmarks=[19, 37, 6], default_domain=2)(batch)[3] == {"domain": 2}
    assert PrepareDomainBatch()(batch)[3] == {"domain": 0}
    with pytest.raises(ValueError, match="domain 0 predicts 19"):
        PrepareDomainBatch(num_landmarks=[19, 37, 6])(batch)
    # inference without landmarks: no count to check
    image, landmarks, _, kwargs = PrepareDomainBatch(num_landmarks=[19, 37, 6], default_domain=1)(
        {"image": batch["image"]}
    )
    assert landmarks is None and kwargs == {"domain": 1}


def test_prepare_domain_batch_checks_the_domains_landmark_count():
    with pytest.raises(ValueError, match="19 landmarks per image, domain 1 predicts 37"):
        PrepareDomainBatch(num_landmarks=[19, 37])(_batch([1, 1], 19))
    with pytest.raises(ValueError, match="domain 2 is not one of the model's 2 domains"):
        PrepareDomainBatch(num_landmarks=[19, 37])(_batch([2], 6))
    assert PrepareDomainBatch()(_batch([2], 6))[3] == {"domain": 2}  # no counts given: not checked


class _DomainHeads(nn.Module):
    """A per-domain 1x1 conv to the domain's landmark count, sigmoid output; records the domains it is given."""

    def __init__(self, counts) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Conv2d(1, n, 1) for n in counts)
        self.domains: list = []

    def forward(self, x: torch.Tensor, domain) -> torch.Tensor:
        self.domains.append(domain)
        return torch.sigmoid(self.heads[domain](x))


def test_supervised_trainer_passes_the_domain_to_the_network():
    from monai.engines import SupervisedTrainer

    from mlm.gu2net_loss import HeatmapBCELoss

    torch.manual_seed(0)
    counts = [3, 5]

    def item(k: int) -> dict:
        return {"image": torch.rand(1, 16, 16), "landmarks": torch.rand(counts[k], 2) * 15, "domain": k}

    data = [item(1), item(1), item(0), item(0)]  # batches of 2: domain 1, then domain 0
    network = _DomainHeads(counts)
    before = [p.detach().clone() for p in network.parameters()]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=DataLoader(data, batch_size=2, shuffle=False),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=HeatmapBCELoss(2, sigma=1.0),
        prepare_batch=PrepareDomainBatch(num_landmarks=counts),
        epoch_length=2,
        decollate=False,
    )
    trainer.run()
    assert trainer.state.iteration == 2
    assert network.domains == [1, 0]
    assert np.isfinite(trainer.state.output["loss"].item())
    changed = [not torch.equal(a, p) for a, p in zip(before, network.parameters())]
    assert changed == [True] * 4  # both domains' heads (weight, bias) were trained
