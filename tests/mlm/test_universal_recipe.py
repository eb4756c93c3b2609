"""The GU2Net universal recipe (mlm.bundle.universal_recipe, ``scripts/train_real.py universal``): argument handling,
the per-domain batch counts against the DomainBlockSampler's stream, the settings refusal, the table, and one run of
the whole recipe on tiny phantoms (slow)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlm.bundle import DomainBlockSampler
from mlm.bundle.universal_recipe import (
    DOMAINS,
    PHANTOM_NOTE,
    _literal,
    _prepare_source,
    _training_splits,
    bundle_domain_names,
    check_extra,
    default_sources,
    domain_block_counts,
    parse_domain_overrides,
    run_universal_recipe,
    scaled_step_iterations,
    state_dict_parameters,
    universal_table,
)
from mlm.data.datalist import read_datalist_json

REPO = Path(__file__).resolve().parents[2]


def _brute_force_counts(sizes, batch_size, iterations, seed=0):
    """Batches of each domain among the first ``iterations`` of the sampler's own stream (``__iter__``)."""
    sampler = DomainBlockSampler(sizes, batch_size, seed=seed)
    keys = list(itertools.islice(iter(sampler), iterations * batch_size))
    counts = [0] * len(sizes)
    for b in range(iterations):
        domains = {
            int(sampler.offsets.searchsorted(k.index, side="right")) - 1 for k in keys[b * batch_size :][:batch_size]
        }
        assert len(domains) == 1  # one domain per batch
        counts[domains.pop()] += 1
    return counts


@pytest.mark.parametrize(
    "sizes, batch_size, iterations, seed",
    [
        ([135, 82, 40], 4, 3000, 0),  # the real run: ISBI 150 - 15, DHA 91 - 9, chest phantom 40
        ([135, 82, 40], 4, 61, 0),  # one pass and a part
        ([4, 4, 4], 2, 5, 0),
        ([10, 7, 3], 3, 17, 3),
        ([5, 9, 6], 1, 7, 1),
    ],
)
def test_block_counts_match_the_sampler_stream(sizes, batch_size, iterations, seed):
    counts = domain_block_counts(sizes, batch_size, iterations, seed)
    assert counts == _brute_force_counts(sizes, batch_size, iterations, seed)
    assert sum(counts) == iterations


def test_block_counts_of_full_passes_are_the_domains_blocks():
    assert domain_block_counts([135, 82, 40], 4, 2 * 63) == [2 * 33, 2 * 20, 2 * 10]
    assert domain_block_counts([4, 4, 4], 2, 6) == [2, 2, 2]


def test_scaled_cyclic_half_cycle():
    assert scaled_step_iterations(21700) == 2000
    assert scaled_step_iterations(3000) == 276
    assert scaled_step_iterations(3) == 1


def test_state_dict_parameters_leave_out_batch_norm_statistics():
    from mlm.networks.gu2net import GU2Net, count_parameters

    model = GU2Net(2, 1, [19, 37, 6], num_filters=4)
    assert state_dict_parameters(model.state_dict()) == count_parameters(model)


def test_extra_and_domain_overrides_are_checked():
    assert check_extra(["--num_filters", "4"]) == ["--num_filters", "4"]
    for taken in (["--batch_size", "2"], ["--num_iterations=5"], ["--domain_overrides", "{}"]):
        with pytest.raises(ValueError, match="is set by the recipe"):
            check_extra(taken)
    assert parse_domain_overrides(None) == {}
    # the command line's --domain_overrides: JSON where it reads back as the same Python literal, else repr
    assert _literal({"head": {"cpu": {"patch_size": [32, 32]}}}) == '{"head": {"cpu": {"patch_size": [32, 32]}}}'
    assert _literal({"head": {"flag": True}}) == "{'head': {'flag': True}}"
    assert parse_domain_overrides("{'hand': {'cpu': {'patch_size': [32, 32]}}}") == {
        "hand": {"cpu": {"patch_size": [32, 32]}}
    }
    with pytest.raises(ValueError, match="not a Python literal"):
        parse_domain_overrides("{'hand': ")
    with pytest.raises(ValueError, match=r"unknown domains \['spine'\]"):
        parse_domain_overrides("{'spine': {}}")
    with pytest.raises(ValueError, match="expected"):
        parse_domain_overrides("[1, 2]")
    with pytest.raises(ValueError, match="dataset_dir are set by the recipe"):
        parse_domain_overrides("{'head': {'dataset_dir': '/x'}}")


def test_default_sources_and_domain_order(tmp_path):
    assert bundle_domain_names() == list(DOMAINS)
    sources = default_sources(isbi=tmp_path / "isbi")
    assert sources["head"].kind == "isbi2015" and sources["head"].eval_splits == ("test1", "test2")
    assert sources["hand"].kind == "hand_xray" and sources["hand"].eval_splits == ("validation",)
    assert sources["chest"].is_phantom and sources["chest"].describe() == "phantom"
    sources = default_sources(chest=tmp_path / "c", head_prepared=tmp_path / "h", hand_prepared=tmp_path / "x")
    assert {s.kind for s in sources.values()} == {"prepared"}
    assert all(s.eval_splits == ("test",) for s in sources.values())
    assert sources["head"].describe() == f"prepared:{(tmp_path / 'h').resolve()}"


def _datalist(folder: Path, splits: dict[str, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"name": "t", "spatial_dims": 2, "num_landmarks": 6}
    k = 0
    for split, n in splits.items():
        data[split] = [{"id": f"{i:03d}", "image": f"images/{i:03d}.png"} for i in range(k, k + n)]
        k += n
    (folder / "datalist.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_prepared_datalists_keep_or_make_a_validation_split(tmp_path):
    from mlm.bundle.universal_recipe import DomainSource

    with_val = _datalist(tmp_path / "a", {"training": 8, "validation": 2, "test": 2})
    _prepare_source(DomainSource("chest", "prepared", with_val, ("test",)), tmp_path / "out_a")
    assert _training_splits(tmp_path / "out_a") == ("training", "validation")
    without = _datalist(tmp_path / "b", {"training": 20, "test": 2})
    _prepare_source(DomainSource("chest", "prepared", without / "datalist.json", ("test",)), tmp_path / "out_b")
    assert _training_splits(tmp_path / "out_b") == ("recipe_fit", "recipe_validation")
    data = read_datalist_json(tmp_path / "out_b" / "datalist.json")
    assert len(data["recipe_fit"]) == 18 and len(data["recipe_validation"]) == 2  # 10% held out
    no_test = _datalist(tmp_path / "c", {"training": 8, "validation": 2})
    with pytest.raises(ValueError, match="has no split test to evaluate on"):
        _prepare_source(DomainSource("chest", "prepared", no_test, ("test",)), tmp_path / "out_c")
    with pytest.raises(ValueError, match="no such datalist"):
        _prepare_source(DomainSource("chest", "prepared", tmp_path / "none", ("test",)), tmp_path / "out_d")
    with pytest.raises(ValueError, match="no such folder"):
        _prepare_source(DomainSource("head", "isbi2015", tmp_path / "none", ("test1",)), tmp_path / "out_e")


def test_a_run_folder_refuses_other_settings_and_bad_options(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    settings = {"recipe": "universal", "iterations": 3000}
    (out / "recipe.json").write_text(json.dumps({"steps": {}, "settings": settings}), encoding="utf-8")
    with pytest.raises(ValueError, match="holds a run of another recipe setting"):
        run_universal_recipe(out, default_sources(isbi=tmp_path / "none"))
    with pytest.raises(ValueError, match="--variant must be one of"):
        run_universal_recipe(tmp_path / "x", variant="unet")
    with pytest.raises(ValueError, match="must be >= 1"):
        run_universal_recipe(tmp_path / "x", iterations=0)
    with pytest.raises(ValueError, match="is set by the recipe"):
        run_universal_recipe(tmp_path / "x", extra=["--batch_size", "2"])
    # the command line: argparse refuses an unknown variant, the recipe's errors end as one line
    with pytest.raises(SystemExit):
        _main(["universal", "--out", str(tmp_path / "y"), "--variant", "unet"])
    with pytest.raises(SystemExit, match="train_real: .*holds a run of another recipe setting"):
        _main(["universal", "--out", str(out)])
    with pytest.raises(SystemExit):
        _main(["universal", str(tmp_path)])  # no root for the universal recipe


def _main(argv):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import train_real
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return train_real.main(argv)


def _metrics(mean, units="mm", sdr=None, normalized=None):
    m = {"num_images": 3, "units": units, "pe_mean": mean, "pe_std": 0.5, "pe_median": mean - 0.1}
    m["sdr"] = sdr or {"2": 0.75, "2.5": 0.8, "3": 0.85, "4": 0.9, "10": 1.0}
    if normalized:
        m["normalized"] = normalized
    return m


def _fake_summary(single: bool = True) -> dict:
    hand_norm = {"pe_mean": 1.2, "pe_std": 0.9, "pe_median": 0.8, "sdr": {"2": 0.8, "4": 0.95, "10": 1.0}}
    chest_sdr = {"3": 0.5, "6": 0.75, "9": 0.9}
    figures = {
        "head": {
            s: {"universal": _metrics(1.5), "single": _metrics(1.25) if single else None} for s in ("test1", "test2")
        },
        "hand": {
            "validation": {
                "universal": _metrics(9.0, "px", normalized=hand_norm),
                "single": _metrics(8.0, "px", normalized={**hand_norm, "pe_mean": 1.1}) if single else None,
            }
        },
        "chest": {"test": {"universal": _metrics(5.0, "px", chest_sdr), "single": None}},
    }
    models = {"universal": {"iterations": 3000, "minutes": 100.5, "parameters": 4381052, "batches": {}}}
    models["universal"]["batches"] = {"head": 1571, "hand": 952, "chest": 477}
    if single:
        models |= {
            "head": {"iterations": 1571, "minutes": 40.0, "parameters": 2742694},
            "hand": {"iterations": 952, "minutes": 30.0, "parameters": 2756554},
            "chest": {"iterations": 477, "minutes": 20.25, "parameters": 2732684},
        }
    data = {d: {"source": f"src_{d}", "phantom": d == "chest"} for d in DOMAINS}
    return {
        "domains": list(DOMAINS),
        "data": data,
        "models": models,
        "figures": figures,
        "notes": [PHANTOM_NOTE],
        "published": ["paper: see Zhu et al. 2021 Table 1"],
    }


def test_universal_table_layout():
    table = universal_table(_fake_summary())
    assert (
        "| split | model | iterations (head batches) | images | MRE +- SD (mm) | median | SDR 2 / 2.5 / 3 / 4 mm |"
        in table
    )
    assert "| test1 | universal | 3000 (1571) | 3 | 1.50 +- 0.50 | 1.40 | 75.0% / 80.0% / 85.0% / 90.0% |" in table
    assert "| test2 | single-domain | 1571 (1571) | 3 | 1.25 +- 0.50 | 1.15 | 75.0% / 80.0% / 85.0% / 90.0% |" in table
    # hands: the wrist-normalised errors and their SDR at 2 / 4 / 10 mm
    assert "MRE +- SD (mm, wrist-normalised) | median | SDR 2 / 4 / 10 mm |" in table
    assert "| validation | universal | 3000 (952) | 3 | 1.20 +- 0.90 | 0.80 | 80.0% / 95.0% / 100.0% |" in table
    assert "| validation | single-domain | 952 (952) | 3 | 1.10 +- 0.90 | 0.80 |" in table
    # chest: a phantom, pixels, SDR at 3 / 6 / 9 px; its single-domain row is absent (not evaluated)
    assert "chest (PHANTOM): src_chest" in table and "SDR 3 / 6 / 9 px |" in table
    assert "| test | universal | 3000 (477) | 3 | 5.00 +- 0.50 | 4.90 | 50.0% / 75.0% / 90.0% |" in table
    assert "| test | single-domain |" not in table
    assert "| universal (head + hand + chest) | 4,381,052 | 3000 | 100.5 |" in table
    assert "| single-domain chest | 2,732,684 | 477 | 20.25 |" in table
    assert "| single-domain, all 3 | 8,231,932 | 3000 | 90.25 |" in table
    assert f"NOTE: {PHANTOM_NOTE}" in table and table.endswith("- paper: see Zhu et al. 2021 Table 1")
    # an evaluation that reported other radii (pixel-only images: the report's pixel radii): those are shown
    other = _fake_summary()
    other["figures"]["chest"]["test"]["universal"]["sdr"] = {"5": 0.5, "10": 0.6, "20": 0.7, "40": 0.8}
    table = universal_table(other)
    assert "SDR 5 / 10 / 20 / 40 px |" in table and "| 50.0% / 60.0% / 70.0% / 80.0% |" in table
    alone = universal_table(_fake_summary(single=False))
    assert "single-domain" not in alone and "| universal (head + hand + chest) |" in alone


# ---- the whole recipe on tiny phantoms (slow: every step a python -m monai.bundle run) ----


def _phantoms(root: Path) -> dict[str, Path]:
    from mlm.data.phantoms.cephalogram import write_cephalogram_dataset
    from mlm.data.phantoms.chest import write_chest_phantom
    from mlm.data.phantoms.hand_xray import write_hand_xray_dataset

    kw = dict(num_images=6, seed=0, overwrite=True, show_progress=False)
    write_cephalogram_dataset(root / "ceph", pixel_size=4.0, **kw)
    write_hand_xray_dataset(root / "hand", pixel_size=4.0, **kw)
    write_chest_phantom(root / "chest", size=(64, 64), **kw)
    return {"head": root / "ceph", "hand": root / "hand", "chest": root / "chest"}


def _recipe(out: Path, data: dict[str, Path], *more: str) -> subprocess.CompletedProcess:
    tiny = repr({d: {"cpu": {"patch_size": [32, 32]}} for d in DOMAINS})
    cmd = [sys.executable, "scripts/train_real.py", "universal", "--out", str(out), "--threads", "1"]
    cmd += ["--head-prepared", str(data["head"]), "--hand-prepared", str(data["hand"]), "--chest", str(data["chest"])]
    cmd += ["--iterations", "6", "--val-interval", "3", "--batch-size", "2", "--domain-overrides", tiny]
    cmd += ["--extra=--num_filters 4 --num_workers 0", *more]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=600)


@pytest.mark.slow
def test_universal_recipe_runs_in_legs_and_resumes(tmp_path):
    from mlm.networks.gu2net import GU2Net

    data = _phantoms(tmp_path / "data")
    out = tmp_path / "run"
    leg = _recipe(out, data, "--stop-after", "universal")
    assert leg.returncode == 0, leg.stdout[-3000:] + leg.stderr[-3000:]
    assert (out / "universal" / "models" / "model.pt").is_file() and not (out / "weights").exists()
    # 4 training images per domain in batches of 2: 6 iterations are one pass, two batches of each domain
    assert "batches per domain head 2, hand 2, chest 2" in leg.stdout

    first = _recipe(out, data)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert first.stdout.count("done earlier") == 4  # the three prepared domains and the universal training
    figures = json.loads((out / "weights" / "figures.json").read_text(encoding="utf-8"))
    assert figures["settings"]["step_iterations"] == 1 and figures["settings"]["batch_size"] == 2
    models = figures["models"]
    assert models["universal"]["batches"] == {"head": 2, "hand": 2, "chest": 2}
    assert [models[d]["iterations"] for d in DOMAINS] == [2, 2, 2]
    for d, split in (("head", "test"), ("hand", "test"), ("chest", "test")):
        fig = figures["figures"][d][split]
        assert fig["universal"]["num_images"] == 1 and fig["single"]["num_images"] == 1
    assert "normalized" in figures["figures"]["hand"]["test"]["universal"]  # wrist-normalised hand errors
    assert figures["figures"]["chest"]["test"]["universal"]["units"] == "px"
    # plain state dicts: the universal model holds fewer parameters than the three single-domain ones
    universal = torch.load(out / "weights" / "universal.pt", weights_only=True)
    GU2Net(2, 1, [19, 37, 6], num_filters=4).load_state_dict(universal)
    for d, n in zip(DOMAINS, (19, 37, 6)):
        GU2Net(2, 1, [n], num_filters=4).load_state_dict(torch.load(out / "weights" / f"{d}.pt", weights_only=True))
    assert models["universal"]["parameters"] < sum(models[d]["parameters"] for d in DOMAINS)
    assert "| test | universal | 6 (2) | 1 |" in first.stdout and "| test | single-domain | 2 (2) | 1 |" in first.stdout
    assert "paper: see Zhu et al. 2021 Table 1" in first.stdout
    log = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    command = log["steps"]["single-domain training (hand)"]["commands"][0]
    assert "--domain hand" in command and "--num_iterations 2" in command and "--batch_size 2" in command

    again = _recipe(out, data)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done earlier") == 13 and "$ (cd bundles" not in again.stdout
    assert json.loads((out / "weights" / "figures.json").read_text(encoding="utf-8"))["figures"] == figures["figures"]
    other = _recipe(out, data, "--variant", "local_only")
    assert other.returncode != 0 and "holds a run of another recipe setting" in other.stderr
