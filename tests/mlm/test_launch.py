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
    assert ddp[2:6] == ["torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"] and ddp[-3:-1] == [
        "run",
        "--config_file",
    ]


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


def test_stream_progress_shows_the_bar_and_metrics_and_logs_everything():
    import io
    import subprocess
    import sys

    from mlm.bundle.launch import stream_progress

    script = (
        "import sys\n"
        "print('2026 - INFO - loading data')\n"
        "for i in range(1, 4):\n"
        "    sys.stdout.write(f'Epoch [1/1]: [{i}/3]  {33 * i}%|###| [00:0{i}<00:00]\\r')\n"
        "    print(f'2026 - INFO - Epoch: 1/1, Iter: {i}/3 -- train_loss: {10 - i}.0 ')\n"
        "print('2026 - INFO - Epoch[1] Metrics -- val_mre: 1.2345 ')\n"
        "print('error: data/x.json: broken.')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log, terminal = io.StringIO(), io.StringIO()
    stream_progress(process, log, terminal, every=2)
    process.wait()
    shown = terminal.getvalue()
    assert "loading data" in log.getvalue() and "loading data" not in shown  # noise only in the log
    assert "Epoch [1/1]: [3/3]" in shown and "val_mre: 1.2345" in shown and "error: data/x.json: broken." in shown
    assert "train_loss: 8.0" in shown and "train_loss: 9.0" not in shown  # every 2nd loss line
    assert log.getvalue().count("train_loss") == 3
