"""A real ``python -m monai.bundle run`` training killed with SIGKILL, in the middle of an epoch and then during a
checkpoint save, then stopped by SIGTERM in the middle of an epoch, resumes to exactly the weights of an
uninterrupted run.

The kills are placed deterministically: a ``sitecustomize`` module (on the child's ``PYTHONPATH`` only) makes the
child hang at a chosen optimizer step or right after a checkpoint's temporary file is written (before it is moved
into place) and writes a marker file; the test waits for the marker and kills the process (or signals it and
removes the marker, which lets it go on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _bundle_runs import BUNDLES, CEPH_TINY, assert_identical, bundle_parser

from mlm.bundle.launch import bundle_command

pytestmark = pytest.mark.slow

HOOK = """
import os, time

_STEP = int(os.environ.get("MLM_TEST_HANG_AT_STEP", "0"))
_SAVE = int(os.environ.get("MLM_TEST_HANG_AT_SAVE", "0"))


def _hang(what):
    marker = os.environ["MLM_TEST_MARKER"]
    with open(marker, "w") as f:
        f.write(what)
    end = time.monotonic() + 600
    while os.path.exists(marker) and time.monotonic() < end:  # the test removes the marker to let it go on
        time.sleep(0.05)


if _STEP or _SAVE:
    import torch

    if _STEP:
        _step, _steps = torch.optim.Adam.step, [0]

        def _counting_step(self, *args, **kwargs):
            _steps[0] += 1
            if _steps[0] == _STEP:
                _hang(f"optimizer step {_STEP}")
            return _step(self, *args, **kwargs)

        torch.optim.Adam.step = _counting_step
    if _SAVE:
        _save, _saves = torch.save, [0]

        def _hanging_save(obj, f, *args, **kwargs):
            _save(obj, f, *args, **kwargs)
            if "checkpoint_iteration" in os.path.basename(str(f)):
                _saves[0] += 1
                if _saves[0] == _SAVE:
                    _hang(f"saved {f}")

        torch.save = _hanging_save
"""


def _start(args: list[str], hook_dir: Path, log: Path, **hang: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), env.get("PYTHONPATH", "")])
    env.update({f"MLM_TEST_HANG_AT_{k.upper()}": v for k, v in hang.items()})
    env["MLM_TEST_MARKER"] = str(hook_dir / "hanging")
    cmd = bundle_command(["train.yaml", "cpu.yaml"], args)
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(cmd, cwd=BUNDLES / "scn_ceph", env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_until_hanging(proc: subprocess.Popen, hook_dir: Path, log: Path, timeout: float = 180) -> str:
    marker = hook_dir / "hanging"
    end = time.monotonic() + timeout
    while not marker.is_file():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail(
                f"the training did not reach its hang point (exit {proc.poll()}):\n{log.read_text(encoding='utf-8')[-4000:]}"
            )
        time.sleep(0.2)
    return marker.read_text(encoding="utf-8")


def _kill_when_hanging(proc: subprocess.Popen, hook_dir: Path, log: Path) -> str:
    what = _wait_until_hanging(proc, hook_dir, log)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait(timeout=30)
    (hook_dir / "hanging").unlink()
    return what


def test_sigkill_mid_epoch_and_during_a_save_then_resume_equals_one_run(ceph_data, tmp_path):
    run = tmp_path / "run"
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(HOOK, encoding="utf-8")
    common = ["--dataset_dir", str(ceph_data), *CEPH_TINY, "--num_iterations", "8", "--val_interval", "3"]
    args = ["--ckpt_dir", str(run / "models"), "--output_dir", str(run / "eval"), *common]  # epochs end at 3, 6, 8
    models = run / "models"

    # killed inside iteration 5 (epoch 2): only the checkpoint of iteration 3 exists
    proc = _start(args, hook_dir, tmp_path / "kill1.log", step="5")
    assert _kill_when_hanging(proc, hook_dir, tmp_path / "kill1.log") == "optimizer step 5"
    assert sorted(p.name for p in models.glob("*.pt")) == ["checkpoint_iteration=3.pt", "model_best.pt"]

    # resumed, then killed while the checkpoint of iteration 6 is written: it is still a temporary file, and the
    # checkpoint of iteration 3 has not been removed for it
    proc = _start(args, hook_dir, tmp_path / "kill2.log", save="1")
    assert _kill_when_hanging(proc, hook_dir, tmp_path / "kill2.log").startswith("saved ")
    assert "resumed from" in (tmp_path / "kill2.log").read_text(encoding="utf-8")
    names = sorted(p.name for p in models.iterdir())
    assert [n for n in names if not n.startswith(".")] == ["checkpoint_iteration=3.pt", "model_best.pt"]
    assert any(n.startswith(".checkpoint_iteration=6.pt.") for n in names)
    assert torch.load(models / "checkpoint_iteration=3.pt", weights_only=True)["trainer"]["iteration"] == 3

    # resumed from iteration 3 again, then SIGTERM inside iteration 5 (the process's second optimizer step): the
    # iteration completes, the checkpoint is saved, the run exits 130 saying so in its last line
    proc = _start(args, hook_dir, tmp_path / "term.log", step="2")
    assert _wait_until_hanging(proc, hook_dir, tmp_path / "term.log") == "optimizer step 2"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    (hook_dir / "hanging").unlink()
    assert proc.wait(timeout=120) == 130, (tmp_path / "term.log").read_text(encoding="utf-8")[-4000:]
    last = (tmp_path / "term.log").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert last == "error: training stopped by SIGTERM after iteration 5; run the same command again to resume."
    assert torch.load(models / "model.pt", weights_only=True)["trainer"]["iteration"] == 5

    # resumed to the end: from iteration 5, the temporary file cleaned up, n_saved=1 kept
    proc = _start(args, hook_dir, tmp_path / "final.log")
    assert proc.wait(timeout=240) == 0, (tmp_path / "final.log").read_text(encoding="utf-8")[-4000:]
    log = (tmp_path / "final.log").read_text(encoding="utf-8")
    assert f"resumed from {models / 'model.pt'} at epoch 1, iteration 5" in log
    assert sorted(p.name for p in models.iterdir()) == ["checkpoint_iteration=8.pt", "model.pt", "model_best.pt"]

    # the same training without interruption, in this process (single-threaded like the launched runs)
    paths = ["--ckpt_dir", str(tmp_path / "one" / "models"), "--output_dir", str(tmp_path / "one" / "eval")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 in the launched runs: another thread count sums differently
    try:
        bundle_parser("scn_ceph", ["train.yaml", "cpu.yaml"], paths + common).get_parsed_content("train#trainer").run()
    finally:
        torch.set_num_threads(threads)
    one_run = torch.load(tmp_path / "one" / "models" / "model.pt", weights_only=True)
    assert_identical(one_run, torch.load(models / "model.pt", weights_only=True))
