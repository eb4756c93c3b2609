"""Bundle runs on bad input exit with status 1 and end with one line naming the file and the problem.

Before ``mlm.bundle.errors`` such runs ended with MONAI's generic "Failed to instantiate component ..." and, when
``CacheDataset``'s worker threads were still inside torch at exit, ``terminate called without an active
exception`` and exit status 134. Each launch costs ~10-15 s of start-up: one training and one inference case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _bundle_runs import CEPH_TINY, SPINE_TINY

from mlm.bundle.launch import run_bundle

pytestmark = pytest.mark.slow


def _run(bundle: str, configs: list[str], args: list[str], log: Path) -> tuple[int, str, list[str]]:
    """Run the bundle with stdout and stderr into one log, as a user's terminal shows them."""
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = run_bundle(bundle, configs, args, capture=False, log_file=log, timeout=240, env=threads)
    text = log.read_text(encoding="utf-8")
    return result.returncode, text, [line for line in text.splitlines() if line.strip()]


def test_training_with_a_corrupt_landmark_file_exits_1_and_names_it(ceph_data, tmp_path):
    data = tmp_path / "ceph"
    shutil.copytree(ceph_data, data)
    item = json.loads((data / "datalist.json").read_text(encoding="utf-8"))["training"][1]
    bad = (data / item["landmarks"]).resolve()
    bad.write_text('{"points": [[1.0, 2.0', encoding="utf-8")
    args = ["--dataset_dir", str(data), "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval")]
    args += [*CEPH_TINY, "--num_iterations", "2", "--val_interval", "1"]
    code, text, lines = _run("scn_ceph", ["train.yaml", "cpu.yaml"], args, tmp_path / "train.log")
    assert code == 1, text[-3000:]
    assert "terminate called" not in text and "Traceback (most recent call last)" in text
    assert lines[-1].startswith("error: ") and str(bad) in lines[-1] and "JSON" in lines[-1], lines[-1]


def test_inference_on_a_truncated_image_exits_1_and_names_it(spine_data, spine_trained, tmp_path):
    data = tmp_path / "spine"
    shutil.copytree(spine_data, data)
    item = json.loads((data / "datalist.json").read_text(encoding="utf-8"))["test"][0]
    image = (data / item["image"]).resolve()
    raw = image.read_bytes()
    image.write_bytes(raw[: len(raw) // 2])  # a bare EOFError from gzip before the image loader named the file
    args = ["--dataset_dir", str(data), "--ckpt_path", str(spine_trained / "models" / "model.pt")]
    args += ["--output_dir", str(tmp_path / "eval"), *SPINE_TINY]
    code, text, lines = _run("scn_spine_ct", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args, tmp_path / "i.log")
    assert code == 1, text[-3000:]
    assert "terminate called" not in text
    assert lines[-1].startswith(f"error: {image}: cannot read the image"), lines[-1]
    assert not (tmp_path / "eval" / "metrics.json").exists()
