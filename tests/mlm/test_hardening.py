"""The hardening protocol's orchestration (mlm.bundle.hardening) with the bundle runs replaced by recorders: what
is fine-tuned from what, what a re-run skips, and the bars. The bundle runs themselves (train_sat / train_amat /
robustness overlays, --init_ckpt) are tested in tests/bundles/test_adversarial_training_bundles.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import mlm.bundle.hardening as hardening
import mlm.bundle.robustness_comparison as robustness_comparison

REPO = Path(__file__).resolve().parents[2]


def test_hardening_bars_compare_amat_with_the_best_sat_and_its_clean_error_with_standard_training():
    mean = {"standard": 9.0, "sat_eps1": 5.0, "sat_eps2": 4.0, "amat": 3.9}
    clean = {"standard": 2.0, "sat_eps1": 2.2, "sat_eps2": 2.4, "amat": 2.1}
    bars = hardening.hardening_bars(mean, clean)
    assert [b["passed"] for b in bars] == [True, True] and "sat_eps2" in bars[0]["bar"]
    bars = hardening.hardening_bars({**mean, "amat": 4.1}, {**clean, "amat": 2.11})
    assert [b["passed"] for b in bars] == [False, False] and "1.055x" in bars[1]["measured"]
    with pytest.raises(ValueError, match="at least one sat"):
        hardening.hardening_bars({"standard": 1.0, "amat": 1.0}, clean)


def test_run_hardening_fine_tunes_every_model_alike_from_the_checkpoint_and_skips_what_is_done(tmp_path, monkeypatch):
    init = tmp_path / "trained.pt"
    init.write_bytes(b"weights")
    calls, compared = [], []

    def fake_step(bundle, configs, args, log_file, env=None):
        calls.append((bundle, list(configs), list(args)))
        ckpt = Path(args[args.index("--ckpt_dir") + 1])
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "model.pt").write_bytes(b"tuned")
        return "cmd"

    def fake_robustness_run(bundle, configs, args, env=None):  # the bundle's robustness overlay on one model
        compared.append((list(configs), list(args), env))
        run_dir = Path(args[args.index("--output_dir") + 1])
        errors = {"standard": (2.0, 9.0), "sat_eps1": (2.2, 5.0), "sat_eps2": (2.5, 4.5), "amat": (2.05, 4.0)}
        clean, attacked = errors[run_dir.name]
        (run_dir / "robustness").mkdir(parents=True)
        rows = [{"eps": 0.0, "mre": clean, "sdr_2": 0.5}, {"eps": 2.0, "mre": attacked, "sdr_2": 0.1}]
        (run_dir / "robustness" / "robustness.json").write_text(json.dumps({"rows": rows}), encoding="utf-8")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(hardening, "run_bundle_step", fake_step)
    monkeypatch.setattr(robustness_comparison, "run_bundle", fake_robustness_run)
    settings = {
        "iterations": 7,
        "val_interval": 7,
        "pgd_iterations": 3,
        "levels": [2.0],
        "extra": ["--num_filters", "4"],
    }
    summary = hardening.run_hardening("mtunet_ceph", init, tmp_path / "data", tmp_path / "out", **settings)
    assert [c[1] for c in calls] == [
        ["train.yaml", "cpu.yaml"],
        ["train.yaml", "cpu.yaml", "train_sat.yaml"],
        ["train.yaml", "cpu.yaml", "train_sat.yaml"],
        ["train.yaml", "cpu.yaml", "train_amat.yaml"],
    ]
    for _, _, args in calls:  # every model: from the same weights, as many iterations, its own folder
        assert args[args.index("--init_ckpt") + 1] == str(init.resolve())
        assert args[args.index("--num_iterations") + 1] == "7" and args[-2:] == ["--num_filters", "4"]
        assert ("--adversarial_iterations" in args) == (args is not calls[0][2])
    assert [c[2][c[2].index("--adversarial_eps") + 1] for c in calls[1:3]] == ["1", "2"]
    assert [c[0] for c in compared] == [["inference.yaml", "evaluate.yaml", "cpu.yaml", "robustness.yaml"]] * 4
    for _, args, env in compared:  # every model attacked alike, on the same split, with the clean level added
        assert args[args.index("--robustness_levels") + 1] == "[0,2]" and args[:2] == ["--num_filters", "4"]
        assert args[args.index("--dataset_dir") + 1] == str((tmp_path / "data").resolve())
        assert args[args.index("--infer_split") + 1] == "test1" and env is None  # threads inherited
    assert [Path(c[1][c[1].index("--ckpt_path") + 1]).parent.parent.name for c in compared] == list(
        summary["clean_mre"]
    )
    assert (tmp_path / "out" / "robustness" / "robustness_comparison.md").is_file()
    assert summary["mean_mre_over_levels"]["amat"] == pytest.approx(3.025)
    assert [b["passed"] for b in summary["bars"]] == [True, True]
    # a re-run fine-tunes nothing again and rewrites the same summary
    again = hardening.run_hardening("mtunet_ceph", init, tmp_path / "data", tmp_path / "out", **settings)
    assert len(calls) == 4 and len(compared) == 4 and again["bars"] == summary["bars"]  # the reports are reused
    assert json.loads((tmp_path / "out" / "hardening.json").read_text(encoding="utf-8"))["clean_mre"]["amat"] == 2.05
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hardening.run_hardening("mtunet_ceph", tmp_path / "missing.pt", tmp_path, tmp_path / "o2")
