"""The real-image recipe's pieces (mlm.bundle.recipes): validation hold-out, offset sigma, datalist copy, table."""

from __future__ import annotations

import json
import math

import pytest

from mlm.bundle.recipes import (
    FIT_SPLIT,
    RECIPES,
    VALIDATION_SPLIT,
    add_validation_split,
    copy_datalist,
    held_out_count,
    offset_sigma_from_report,
    recipe_table,
)
from mlm.data.datalist import read_datalist_json


def _datalist(folder, n=10):
    folder.mkdir(parents=True, exist_ok=True)
    items = [
        {"id": f"{k:03d}", "image": f"images/{k:03d}.png", "landmarks": f"landmarks/{k:03d}.json"} for k in range(n)
    ]
    data = {"name": "t", "spatial_dims": 2, "num_landmarks": 2, "training": items, "test": items[:2]}
    (folder / "datalist.json").write_text(json.dumps(data), encoding="utf-8")
    return folder / "datalist.json"


def test_validation_split_holds_out_the_last_training_images(tmp_path):
    path = _datalist(tmp_path)
    assert add_validation_split(path, 3) == (7, 3)
    data = read_datalist_json(path)
    assert [i["id"] for i in data[VALIDATION_SPLIT]] == ["007", "008", "009"]
    assert [i["id"] for i in data[FIT_SPLIT]] == [f"{k:03d}" for k in range(7)]
    assert len(data["training"]) == 10  # the original split stays
    with pytest.raises(ValueError, match="cannot hold out 10 of 10"):
        add_validation_split(path, 10)
    assert held_out_count(RECIPES["isbi2015"], 150) == 15 and held_out_count(RECIPES["hand_xray"], 91) == 9
    assert held_out_count(RECIPES["datalist"], 100) == 10 and held_out_count(RECIPES["datalist"], 4) == 1


def test_copy_datalist_makes_paths_absolute(tmp_path):
    source = _datalist(tmp_path / "user")
    copied = copy_datalist(source, tmp_path / "run" / "data")
    data = read_datalist_json(copied)
    assert data["training"][0]["image"] == str((tmp_path / "user" / "images" / "000.png").resolve())
    assert data["test"][1]["landmarks"] == str((tmp_path / "user" / "landmarks" / "001.json").resolve())


def test_offset_sigma_leaves_out_gross_failures(tmp_path):
    errors = [3.0, 4.0] * 50  # |e|^2 mean 12.5 -> sigma = sqrt(12.5 / 2) = 2.5 in 2D
    rows = ["id,L0,L1"] + [f"{k},{errors[2 * k]},{errors[2 * k + 1]}" for k in range(50)]
    (tmp_path / "errors_per_image.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert offset_sigma_from_report(tmp_path) == pytest.approx(2.5)
    # a 300 px failure, a missing prediction (inf) and an absent ground truth (empty) change nothing
    rows += ["50,300.0,inf", "51,,4.0", "52,3.0,"]
    (tmp_path / "errors_per_image.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert offset_sigma_from_report(tmp_path) == pytest.approx(math.sqrt((12.5 * 100 + 16 + 9) / 102 / 2))
    (tmp_path / "errors_per_image.csv").write_text("id,L0\n1,inf\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no finite error"):
        offset_sigma_from_report(tmp_path)


def _metrics(mean, units="mm", normalized=None):
    m = {"num_images": 2, "units": units, "pe_mean": mean, "pe_std": 0.5, "pe_median": mean - 0.1}
    m["sdr"] = {"2": 0.75, "2.5": 0.8, "3": 0.85, "4": 0.9, "10": 1.0}
    if normalized:
        m["normalized"] = normalized
    return m


def test_recipe_table_isbi_and_hand_layouts():
    isbi = {
        "recipe": "isbi2015",
        "figures": {"test1": {"ground_truth": "average", "global": _metrics(1.5), "refined": _metrics(1.25)}},
        "published": ["paper: 1.0 mm"],
    }
    table = recipe_table(isbi)
    assert "| split (ground truth) | stage | images | MRE +- SD (mm) | median | SDR 2 / 2.5 / 3 / 4 mm |" in table
    assert "| test1 (average) | refined | 2 | 1.25 +- 0.50 | 1.15 | 75.0% / 80.0% / 85.0% / 90.0% |" in table
    assert table.endswith("- paper: 1.0 mm")
    normalized = {"pe_median": 0.7, "pe_mean": 0.9, "pe_std": 0.4, "outliers": {"2": 3, "4": 1, "10": 0}}
    hand = {
        "recipe": "hand_xray",
        "figures": {
            "validation": {
                "ground_truth": "payer",
                "global": _metrics(5.0, "px", normalized),
                "refined": _metrics(4.0, "px", normalized),
            }
        },
        "published": [],
    }
    assert "| validation (payer) | global | 2 | 0.70 mm | 0.90 +- 0.40 mm | 3 | 1 | 0 |" in recipe_table(hand)


def test_a_run_folder_refuses_another_recipe_setting(tmp_path):
    from mlm.bundle.recipes import run_recipe

    out = tmp_path / "run"
    out.mkdir()
    settings = {"recipe": "hand_xray", "bundle": "scn_hand_xray", "model": "scn", "iterations": [4000, 3000, 250]}
    (out / "recipe.json").write_text(json.dumps({"steps": {}, "settings": settings}), encoding="utf-8")
    with pytest.raises(ValueError, match="holds a run of another recipe setting"):
        run_recipe("hand_xray", tmp_path / "no_data", out, model="unet")
    with pytest.raises(ValueError, match="holds a run of another recipe setting"):
        run_recipe("hand_xray", tmp_path / "no_data", out, global_iterations=10)


def test_recipe_bars_pass_and_fail_on_the_issue_thresholds():
    from mlm.bundle.recipes import recipe_bars

    passing = {"test1": {"refined": _metrics(1.5)}}  # exactly at the bar: 1.5 mm, SDR 2 mm 75%
    assert [b["passed"] for b in recipe_bars("isbi2015", passing)] == [True, True]
    failing = {"test1": {"refined": {**_metrics(1.51), "sdr": {"2": 0.7499}}}}
    assert [b["passed"] for b in recipe_bars("isbi2015", failing)] == [False, False]
    hand = {"pe_median": 0.8, "pe_mean": 1.0, "pe_std": 1.0, "outliers": {"2": 9, "4": 2, "10": 1}}
    bars = recipe_bars("hand_xray", {"validation": {"refined": _metrics(3.0, "px", hand)}})
    assert [(b["bar"], b["passed"]) for b in bars] == [("PE median <= 0.8 mm", True), ("no error above 10 mm", False)]
    assert recipe_bars("datalist", {"test": {"refined": _metrics(1.0)}}) == []
    summary = {"recipe": "hand_xray", "figures": {}, "published": [], "bars": bars}
    assert recipe_table(summary).endswith("PASS: PE median <= 0.8 mm (0.80 mm)\nFAIL: no error above 10 mm (1 above)")
