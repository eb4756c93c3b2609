"""The bundle launcher used by scripts/demo.py and scripts/accuracy.py (no bundle is started here)."""

from __future__ import annotations

import json
import sys

from mlm.bundle.launch import bundle_command, ensure_phantom


def test_bundle_command_merges_configs_in_order_and_passes_overrides():
    cmd = bundle_command(["train.yaml", "cpu.yaml"], ["--seed", 3])
    assert cmd[:4] == [sys.executable, "-m", "monai.bundle", "run"]
    assert cmd[4:] == ["--config_file", "['configs/train.yaml','configs/cpu.yaml']", "--seed", "3"]
    ddp = bundle_command(["train.yaml"], torchrun=2)
    assert ddp[2:4] == ["torch.distributed.run", "--nproc_per_node=2"] and ddp[-3:-1] == ["run", "--config_file"]


def test_existing_phantom_is_reused_and_a_different_size_is_reported(tmp_path, capsys):
    item = {"image": "images/a.nii.gz", "landmarks": "landmarks/a.json"}
    datalist = {"name": "x", "landmark_names": ["C1"], "training": [item, item], "validation": [item], "test": []}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    assert ensure_phantom("spine_ct", tmp_path, num_images=3) == tmp_path / "datalist.json"
    out = capsys.readouterr().out
    assert "using the existing spine_ct phantom" in out and "(3 images)" in out and "note:" not in out
    ensure_phantom("spine_ct", tmp_path, num_images=120)
    out = capsys.readouterr().out
    assert "note: 120 images were asked for" in out and str(tmp_path) in out
