"""scripts/compare_models.py end to end on the tiny cephalogram phantom: the SCN and the multi-task U-Net trained for
two iterations (``ceph_trained``, ``mtunet_trained``), evaluated by their bundles on the test split and put in one
table; a second run reuses the reports."""

from __future__ import annotations

import csv
import importlib.util
import json
import os

import pytest
import torch
from _bundle_runs import BUNDLES, CEPH_TINY, MTUNET_TINY

SCRIPT = BUNDLES.parent / "scripts" / "compare_models.py"


def _script():
    spec = importlib.util.spec_from_file_location("compare_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model_sets(name: str, tiny: list[str]) -> list[str]:
    """``--model-set NAME:KEY=VALUE`` arguments from a tiny-geometry ``--key value`` list."""
    pairs = zip(tiny[::2], tiny[1::2])
    return [arg for key, value in pairs for arg in ("--model-set", f"{name}:{key.removeprefix('--')}={value}")]


def test_compare_models_evaluates_two_bundles_into_one_table_and_resumes(
    ceph_data, ceph_trained, mtunet_trained, tmp_path, capsys
):
    scn_ckpt = ceph_trained / "models" / "model.pt"
    mtunet_ckpt = mtunet_trained / "models" / "model.pt"
    out = tmp_path / "compare"
    base = ["--dataset-dir", str(ceph_data), "--split", "test", "--out", str(out), "--timing-images", "2"]
    argv = base + ["--model", f"scn=scn_ceph:{scn_ckpt}", "--model", f"mtunet=mtunet_ceph:{mtunet_ckpt}"]
    argv += _model_sets("scn", CEPH_TINY) + _model_sets("mtunet", MTUNET_TINY)
    script = _script()
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "python -m monai.bundle run" in printed and "--pixdim 8.0" in printed  # the checkpoint's geometry

    with open(out / "comparison.csv", newline="", encoding="utf-8") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["scn", "mtunet"]
    for name, bundle in (("scn", "scn_ceph"), ("mtunet", "mtunet_ceph")):
        metrics = json.loads((out / name / "metrics.json").read_text(encoding="utf-8"))
        row = rows[name]
        assert row["bundle"] == bundle and row["units"] == metrics["units"] == "mm"
        assert float(row["mre"]) == pytest.approx(metrics["pe_mean"], rel=1e-12)
        assert float(row["sdr_2"]) == pytest.approx(metrics["sdr"]["2"], rel=1e-12)
        assert int(row["images"]) == metrics["num_images"] == 1
        assert 0 < float(row["seconds_per_image"]) < 5
    # the SCN has no buffers: its parameters are exactly the numbers of its checkpoint's weights
    state = torch.load(scn_ckpt, weights_only=True)["model"]
    assert int(rows["scn"]["parameters"]) == sum(v.numel() for v in state.values())
    # the multi-task U-Net's state dict also holds BatchNorm buffers, which are not parameters
    state = torch.load(mtunet_ckpt, weights_only=True)["model"]
    buffers = sum(v.numel() for k, v in state.items() if k.rsplit(".", 1)[-1].startswith(("running_", "num_batches")))
    assert int(rows["mtunet"]["parameters"]) == sum(v.numel() for v in state.values()) - buffers
    assert int(rows["mtunet"]["parameters"]) != int(rows["scn"]["parameters"])
    markdown = (out / "comparison.md").read_text(encoding="utf-8")
    assert "| scn | scn_ceph |" in markdown and "| mtunet | mtunet_ceph |" in markdown
    assert (out / "cumulative_error.png").read_bytes()[:4] == b"\x89PNG"

    # a second run reuses both reports (newer than the checkpoints, same commands)
    stamps = {n: os.stat(out / n / "metrics.json").st_mtime_ns for n in rows}
    assert script.main(argv) == 0
    assert capsys.readouterr().out.count("not run again") == 2
    assert {n: os.stat(out / n / "metrics.json").st_mtime_ns for n in rows} == stamps

    # a bad model spec: one clear error, nothing run
    assert script.main([*base, "--model", f"scn=scn_ceph:{tmp_path / 'none.pt'}"]) == 1
    assert f"error: model scn: checkpoint {tmp_path / 'none.pt'} not found." in capsys.readouterr().err
