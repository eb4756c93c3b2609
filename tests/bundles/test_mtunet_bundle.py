"""mtunet_ceph through ``python -m monai.bundle run``: two training iterations, inference and evaluation on a tiny
cephalogram phantom (train.yaml + cpu.yaml; inference.yaml + evaluate.yaml + cpu.yaml)."""

from __future__ import annotations

import json

import torch
from _bundle_runs import MTUNET_TINY, check, run_bundle


def test_mtunet_ceph_trains_infers_and_evaluates(ceph_data, mtunet_trained, tmp_path):
    out = mtunet_trained
    state = torch.load(out / "models" / "model.pt", weights_only=True)["model"]
    assert state["head.weight"].shape == (19 * 3, 4, 1, 1)  # 19 heatmaps + 2 x 19 offset maps
    assert json.loads((out / "eval" / "sigmas.json").read_text(encoding="utf-8"))["mean"] == 3.0
    args = ["--dataset_dir", str(ceph_data), "--ckpt_path", str(out / "models" / "model.pt")]
    args += ["--output_dir", str(tmp_path / "test"), *MTUNET_TINY]
    result = check(run_bundle("mtunet_ceph", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args))
    assert "MRE" in result.stdout + result.stderr
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics
    predictions = sorted((tmp_path / "test" / "predictions").glob("*_landmarks.json"))
    assert predictions
    record = json.loads(predictions[0].read_text(encoding="utf-8"))
    assert len(record["points"]) == 19
