"""farnet_ceph through ``python -m monai.bundle run``: two training iterations, inference and evaluation on a tiny
cephalogram phantom (train.yaml + cpu.yaml; inference.yaml + evaluate.yaml + cpu.yaml)."""

from __future__ import annotations

import json

import torch
from _bundle_runs import FARNET_TINY, check, run_bundle


def test_farnet_ceph_trains_infers_and_evaluates(ceph_data, farnet_trained, tmp_path):
    out = farnet_trained
    state = torch.load(out / "models" / "model.pt", weights_only=True)["model"]
    assert state["full_head.1.weight"].shape == (19, 64 + 32 + 19, 1, 1)  # full-resolution heatmaps
    assert state["half_head.1.weight"].shape == (19, 64, 1, 1)  # half-resolution heatmaps
    assert state["features.norm5.weight"].shape == (1024,)  # DenseNet-121 features
    assert json.loads((out / "eval" / "sigmas.json").read_text(encoding="utf-8"))["mean"] == 3.0
    args = ["--dataset_dir", str(ceph_data), "--ckpt_path", str(out / "models" / "model.pt")]
    args += ["--output_dir", str(tmp_path / "test"), *FARNET_TINY]
    result = check(run_bundle("farnet_ceph", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args))
    assert "MRE" in result.stdout + result.stderr
    assert json.loads((tmp_path / "test" / "metrics.json").read_text(encoding="utf-8"))
    predictions = sorted((tmp_path / "test" / "predictions").glob("*_landmarks.json"))
    assert predictions
    assert len(json.loads(predictions[0].read_text(encoding="utf-8"))["points"]) == 19
