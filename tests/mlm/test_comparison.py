"""mlm.bundle.comparison: the model comparison's tables and figure from fake reports, its refusals, the parameter count,
the model specs and overrides, and the resumable evaluation step (without launching a bundle)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlm.bundle import comparison
from mlm.bundle.comparison import (
    ComparisonError,
    Measurement,
    ModelSpec,
    check_comparable,
    count_parameters,
    evaluate_model,
    model_overrides,
    read_result,
    timing_caption,
    write_comparison,
)
from mlm.metrics import summarize_errors
from mlm.reports import write_metrics_csv, write_metrics_json

#: model a: 2 images x 2 landmarks; MRE 2.5, SD sqrt(1.25), median 2.5, SDR 2 mm 50%, 4 mm 100%
ERRORS_A = np.array([[1.0, 2.0], [3.0, 4.0]])
#: model b: one missing prediction (inf): MRE 2.0 over the finite errors, SDR 2 and 4 mm 75% (the miss is a failure)
ERRORS_B = np.array([[2.0, 2.0], [2.0, np.inf]])


def fake_report(folder: Path, errors: np.ndarray, units: str = "mm", radii=(2.0, 4.0), ids=("001", "002")) -> Path:
    """A bundle report as LandmarkReportHandler writes it: metrics.json and errors_per_image.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    write_metrics_json(folder / "metrics.json", {"units": units, "ids": list(ids), **summarize_errors(errors, radii)})
    rows = [{"id": i, "L0": e[0], "L1": e[1]} for i, e in zip(ids, errors)]
    write_metrics_csv(folder / "errors_per_image.csv", rows)
    return folder


def two_results(tmp_path: Path, units_b: str = "mm", **kwargs):
    a = read_result("a", fake_report(tmp_path / "a", ERRORS_A), "test", bundle="scn_ceph")
    b = read_result("b", fake_report(tmp_path / "b", ERRORS_B, units=units_b, **kwargs), "test", bundle="farnet_ceph")
    a.measurement = Measurement(1234, 0, 0.5, timed_runs=3, distinct_images=2, warmup=1, threads=1)
    b.measurement = Measurement(1000, 200, 0.25, timed_runs=3, distinct_images=2, warmup=1, threads=1)
    b.refined = True
    return [a, b]


def test_write_comparison_copies_the_reports_figures_into_the_csv_and_markdown(tmp_path):
    results = two_results(tmp_path)
    files = write_comparison(results, tmp_path / "out", caption=timing_caption([r.measurement for r in results]))
    with open(files["csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["a", "b"]
    assert [r["bundle"] for r in rows] == ["scn_ceph", "farnet_ceph"]
    a, b = rows
    assert list(a)[:7] == ["model", "bundle", "refined", "parameters", "seconds_per_image", "images", "mre"]
    assert (a["parameters"], b["parameters"]) == ("1234", "1200")  # global + refinement
    assert (float(a["seconds_per_image"]), float(b["seconds_per_image"])) == (0.5, 0.25)
    assert (a["refined"], b["refined"]) == ("False", "True")
    assert float(a["mre"]) == 2.5 and math.isclose(float(a["sd"]), math.sqrt(1.25)) and float(a["median"]) == 2.5
    assert float(a["sdr_2"]) == 0.5 and float(a["sdr_4"]) == 1.0 and a["missing_predictions"] == "0"
    assert float(b["mre"]) == 2.0 and float(b["sd"]) == 0.0 and float(b["max"]) == 2.0
    assert float(b["sdr_2"]) == 0.75 and float(b["sdr_4"]) == 0.75 and b["missing_predictions"] == "1"
    assert a["units"] == b["units"] == "mm" and a["images"] == b["images"] == "2"
    text = files["md"].read_text(encoding="utf-8")
    assert "| a | scn_ceph | 1,234 | 0.500 | 2 | 2.50 | 1.12 | 2.50 | 50.0% | 100.0% |" in text
    assert "| b (+ refinement) | farnet_ceph | 1,200 | 0.250 | 2 | 2.00 | 0.00 | 2.00 | 75.0% | 75.0% |" in text
    assert "median of 3 timed runs (after 1 untimed) over the split's first 2 images, 1 torch thread" in text
    assert "BatchNorm running statistics are not counted" in text
    png = files["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [comparison.TABLE_CSV, comparison.TABLE_MD, comparison.FIGURE]
    )


def test_models_in_other_units_are_refused(tmp_path):
    results = two_results(tmp_path, units_b="px")
    with pytest.raises(ComparisonError, match=r"units differ \(a \(.*a/metrics.json\): mm; b \(.*\): px\)"):
        write_comparison(results, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: setattr(r, "split", "test2"), "splits differ"),
        (lambda r: setattr(r, "ground_truth", "other"), "ground truths differ"),
        (lambda r: r.metrics.update(ids=["001", "003"]), "evaluated images differ"),
        (lambda r: setattr(r, "errors", np.ones((2, 3))), "landmark counts differ"),
    ],
)
def test_models_of_other_splits_ground_truths_images_or_landmarks_are_refused(tmp_path, change, message):
    results = two_results(tmp_path)
    results[0].ground_truth = "same"
    results[1].ground_truth = "same"
    change(results[1])
    with pytest.raises(ComparisonError, match=message):
        check_comparable(results)


def test_sdr_columns_are_the_radii_every_report_has(tmp_path):
    results = two_results(tmp_path, radii=(2.0, 3.0, 4.0))
    assert check_comparable(results)["radii"] == ["2", "4"]
    b = read_result("b", tmp_path / "b", "test")
    assert sorted(b.metrics["sdr"]) == ["2", "3", "4"]


def test_normalised_errors_are_compared_when_every_report_has_them(tmp_path):
    results = two_results(tmp_path)
    for result, scale in zip(results, (10.0, 20.0)):
        norm = result.errors * scale
        section = {"units": "mm, normalised to 50 mm between landmarks 0 and 1", "ids": ["001", "002"]}
        result.metrics["normalized"] = {**section, **summarize_errors(norm, (2.0, 4.0))}
        result.normalized_errors = norm
    shared = check_comparable(results)
    assert shared["errors"] == "normalized" and shared["units"].startswith("mm, normalised")
    rows = comparison.comparison_rows(results)
    assert [r["mre"] for r in rows] == [25.0, 40.0]
    assert [r["mre"] for r in comparison.comparison_rows(results, errors="plain")] == [2.5, 2.0]
    del results[1].metrics["normalized"]
    assert check_comparable(results)["errors"] == "plain"
    with pytest.raises(ComparisonError, match="has no normalised errors"):
        check_comparable(results, errors="normalized")


def test_count_parameters_is_exact_and_leaves_out_buffers_and_frozen_weights():
    conv = nn.Conv2d(1, 3, 3)  # 1*3*9 + 3 = 30
    net = nn.Sequential(conv, nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(4, 2), conv)  # BN 3+3, linear 4*2+2
    assert sum(b.numel() for b in net.buffers()) == 7  # running mean, var, num_batches_tracked: not parameters
    assert count_parameters(net) == 30 + 6 + 10  # the shared conv counted once
    net[3].weight.requires_grad_(False)
    assert count_parameters(net) == 38
    assert count_parameters(net, trainable_only=False) == 46


def test_model_spec_parses_names_bundles_and_one_or_two_checkpoints(tmp_path):
    ckpt, refine = tmp_path / "g.pt", tmp_path / "r.pt"
    ckpt.write_bytes(b"x")
    refine.write_bytes(b"x")
    spec = ModelSpec.parse(f"scn=scn_ceph:{ckpt}")
    assert (spec.name, spec.bundle, spec.checkpoint, spec.refine_checkpoint) == ("scn", "scn_ceph", ckpt, None)
    spec = ModelSpec.parse(f"scn+r=scn_ceph:{ckpt}:{refine}")
    assert spec.checkpoints == [ckpt, refine]
    with pytest.raises(ComparisonError, match="expected NAME=BUNDLE:CHECKPOINT"):
        ModelSpec.parse(f"scn_ceph:{ckpt}")
    with pytest.raises(ComparisonError, match="no bundle 'nope'"):
        ModelSpec.parse(f"scn=nope:{ckpt}")
    with pytest.raises(ComparisonError, match=r"refinement checkpoint .*missing.pt not found"):
        ModelSpec.parse(f"scn=scn_ceph:{ckpt}:{tmp_path / 'missing.pt'}")
    with pytest.raises(ComparisonError, match="model name '../x'"):
        ModelSpec.parse(f"../x=scn_ceph:{ckpt}")
    with pytest.raises(ComparisonError, match=r"cannot override \['output_dir'\]"):
        ModelSpec("scn", "scn_ceph", ckpt, overrides=(("output_dir", "/tmp"),)).check()


def test_overrides_are_the_checkpoints_geometry_then_the_common_then_the_models(tmp_path):
    geometry = {"spatial_dims": 2, "pixdim": 8.0, "preprocessed_size": [32, 32], "resize_mode": "auto"}
    geometry["intensity_normalization"] = None
    torch.save({"model": {}, "geometry": geometry}, tmp_path / "g.pt")
    torch.save({"model": {}, "geometry": {"pixdim": 2.0, "preprocessed_size": [16, 16]}}, tmp_path / "r.pt")
    spec = ModelSpec("m", "scn_ceph", tmp_path / "g.pt", tmp_path / "r.pt", overrides=(("--pixdim", "4.0"),))
    texts, values = model_overrides(spec, [("network_def::num_levels", "3"), ("pixdim", "6.0")])
    assert texts == {
        "spatial_dims": "2",
        "pixdim": "4.0",
        "preprocessed_size": "[32,32]",
        "resize_mode": "auto",
        "intensity_normalization": "None",
        "refine_spacing": "2.0",
        "refine_patch_size": "[16,16]",
        "network_def#num_levels": "3",
    }
    assert values["pixdim"] == 4.0 and values["preprocessed_size"] == [32, 32] and values["network_def#num_levels"] == 3
    assert values["intensity_normalization"] is None


def test_evaluate_model_skips_an_up_to_date_report_and_reruns_after_a_newer_checkpoint(tmp_path, monkeypatch):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (1e9, 1e9))  # written long before any report (whatever the file system's time resolution)
    spec = ModelSpec("m", "scn_ceph", ckpt)
    out = tmp_path / "out" / "m"
    calls = []

    def fake_run(bundle, configs, args, log, env=None):
        calls.append((bundle, list(configs), list(args)))
        fake_report(out, ERRORS_A)
        return "the command"

    monkeypatch.setattr(comparison, "run_bundle_step", fake_run)
    args = (spec, tmp_path / "data", "test", out, ["cpu.yaml"], {"num_filters": "4"}, "sha")
    assert evaluate_model(*args) == (out, True)
    assert calls[0][1] == ["inference.yaml", "evaluate.yaml", "cpu.yaml"]
    assert calls[0][2][-2:] == ["--num_filters", "4"] and "--refine_ckpt_path" not in calls[0][2]
    record = json.loads((out / comparison.RUN_RECORD).read_text(encoding="utf-8"))
    assert record["command"] == "the command" and record["ground_truth"] == "sha"
    assert evaluate_model(*args) == (out, False) and len(calls) == 1
    # another override, another ground truth: run again
    assert evaluate_model(spec, tmp_path / "data", "test", out, ["cpu.yaml"], {"num_filters": "8"}, "sha")[1]
    assert evaluate_model(*args)[1] and evaluate_model(*args[:-1], "other")[1] and len(calls) == 4
    # a checkpoint newer than the report: run again
    assert not evaluate_model(*args[:-1], "other")[1]
    later = os.stat(out / "metrics.json").st_mtime_ns + 10**9
    os.utime(ckpt, ns=(later, later))
    assert evaluate_model(*args[:-1], "other")[1] and len(calls) == 5


def test_ground_truth_fingerprint_changes_with_a_landmark_file(tmp_path):
    (tmp_path / "a.json").write_text("[[1, 2]]", encoding="utf-8")
    data = {
        "test": [
            {"id": "a", "image": "a.png", "landmarks": "a.json"},
            {"id": "b", "image": "b.png", "landmarks": [[3, 4]]},
        ]
    }
    (tmp_path / "datalist.json").write_text(json.dumps(data), encoding="utf-8")
    first = comparison.ground_truth_fingerprint(tmp_path, "test")
    assert first == comparison.ground_truth_fingerprint(tmp_path, "test") and len(first) == 64
    (tmp_path / "a.json").write_text("[[1, 2.5]]", encoding="utf-8")
    assert comparison.ground_truth_fingerprint(tmp_path, "test") != first
    with pytest.raises(ValueError, match="no split 'test2'"):
        comparison.ground_truth_fingerprint(tmp_path, "test2")
