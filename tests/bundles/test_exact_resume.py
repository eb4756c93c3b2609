"""Exact resume of every bundle's CPU training, with trainers built in this process from the bundle configs.

N iterations in one run and k iterations, an interruption, then a new trainer resumed to N end with identical
checkpoints: network, loss (learned sigmas), optimizer and LR scheduler, trainer counters, random states and data
position all equal (max abs difference 0). The subprocess counterpart with real kills is in test_kill_resume.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from _bundle_runs import CEPH_TINY, HAND_MRI_TINY, HAND_XRAY_TINY, SPINE_TINY, assert_identical, bundle_parser
from ignite.engine import Events

torch.set_num_threads(1)

#: per bundle: its session phantom fixture and its tiny overrides (as the subprocess tests use them)
TINY = {
    "scn_spine_ct": ("spine_data", SPINE_TINY + ["--sigma", "1.0"]),
    "scn_ceph": ("ceph_data", CEPH_TINY),
    "scn_hand_xray": ("hand_xray_data", HAND_XRAY_TINY),
    "scn_hand_mri": ("hand_mri_data", HAND_MRI_TINY + ["--sigma", "1.0"]),
}


def _trainer(bundle: str, data: Path, run: Path, args: list[str]):
    paths = ["--dataset_dir", str(data), "--ckpt_dir", str(run / "models"), "--output_dir", str(run / "eval")]
    return bundle_parser(bundle, ["train.yaml", "cpu.yaml"], paths + TINY[bundle][1] + args).get_parsed_content(
        "train#trainer"
    )


def _train(bundle: str, data: Path, run: Path, args: list[str], stop_at: int | None = None) -> dict:
    """Train (resuming from ``run/models`` if it holds a checkpoint); ``stop_at``: interrupt after that iteration
    (``terminate``: the final checkpoint holds the state after it). Returns the final checkpoint."""
    trainer = _trainer(bundle, data, run, args)
    if stop_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
    trainer.run()
    return torch.load(run / "models" / "model.pt", weights_only=True)


@pytest.mark.parametrize(
    "bundle, num_iterations, val_interval, stop_at, workers",
    [
        ("scn_spine_ct", 5, 2, 3, 0),
        ("scn_ceph", 5, 2, 3, 2),  # resumed with 2 DataLoader worker processes: the same samples
        ("scn_ceph", 5, 5, 2, 0),  # no validation before the interruption
        ("scn_hand_xray", 5, 2, 3, 0),
        ("scn_hand_mri", 5, 2, 3, 0),
    ],
)
def test_training_interrupted_mid_epoch_and_resumed_equals_one_run(
    bundle, num_iterations, val_interval, stop_at, workers, request, tmp_path
):
    data = request.getfixturevalue(TINY[bundle][0])
    args = ["--num_iterations", str(num_iterations), "--val_interval", str(val_interval)]
    one_run = _train(bundle, data, tmp_path / "one", args)
    assert one_run["trainer"]["iteration"] == num_iterations  # exactly, also when val_interval does not divide it
    stopped = _train(bundle, data, tmp_path / "two", args, stop_at=stop_at)
    assert stopped["trainer"]["iteration"] == stop_at
    resumed = _train(bundle, data, tmp_path / "two", args + ["--num_workers", str(workers)])
    assert_identical(one_run, resumed)
    assert any(not torch.equal(stopped["model"][k], v) for k, v in resumed["model"].items())  # it trained on


def test_resumed_training_follows_its_own_num_iterations_and_val_interval(ceph_data, tmp_path, caplog):
    run = tmp_path / "run"
    _train("scn_ceph", ceph_data, run, ["--num_iterations", "4", "--val_interval", "2"])
    # the case: --num_iterations 6 --val_interval 1 after a run with val_interval 2
    trainer = _trainer("scn_ceph", ceph_data, run, ["--num_iterations", "6", "--val_interval", "1"])
    trained, validated = [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: trained.append(e.state.iteration))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validated.append(e.state.iteration))
    with caplog.at_level(logging.INFO):
        trainer.run()
    assert trained == [5, 6] and validated == [5, 6]
    assert "had 2 epochs of 2 iterations; this run has 6 epochs of 1 (val_interval)" in caplog.text
    models = sorted(p.name for p in (run / "models").iterdir())
    assert models == ["checkpoint_iteration=6.pt", "model.pt", "model_best.pt"]  # n_saved 1 across both runs
