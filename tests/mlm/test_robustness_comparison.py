"""The robustness comparison (mlm.bundle.robustness_comparison and its CLI scripts/compare_robustness.py) with the
bundle runs replaced by a recorder: what every model is run with, the table and its means, reuse, and a failing run.
The robustness overlay itself is tested in tests/bundles/test_adversarial_training_bundles.py."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

import mlm.bundle.robustness_comparison as robustness_comparison

REPO = Path(__file__).resolve().parents[2]

#: (clean MRE, MRE at eps 2) of each fake model
ERRORS = {"standard": (2.0, 9.0), "amat": (2.5, 4.0)}


def _fake_runs(monkeypatch, fail: str | None = None) -> list:
    """Replace the bundle runs: each writes its model's ``robustness.json``, except ``fail``'s, which exits 1."""
    calls = []

    def fake_run_bundle(bundle, configs, args, env=None):
        calls.append((bundle, list(configs), list(args), env))
        run_dir = Path(args[args.index("--output_dir") + 1])
        if run_dir.name == fail:
            return subprocess.CompletedProcess(args, 1, "evaluated 3 images\n", "Traceback ...\nerror: boom\n")
        clean, attacked = ERRORS[run_dir.name]
        rows = [{"eps": 0.0, "mre": clean, "sdr_2": 0.6}, {"eps": 2.0, "mre": attacked, "sdr_2": 0.2}]
        (run_dir / "robustness").mkdir(parents=True)
        (run_dir / "robustness" / "robustness.json").write_text(json.dumps({"rows": rows}), encoding="utf-8")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(robustness_comparison, "run_bundle", fake_run_bundle)
    return calls


def test_compare_robustness_runs_every_model_alike_writes_the_table_and_reuses_reports(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    models = {name: tmp_path / f"{name}.pt" for name in ERRORS}
    settings = {"dataset_dir": tmp_path / "data", "infer_split": "test1", "levels": [0, 2], "max_items": 3}
    result = robustness_comparison.compare_robustness(
        "mtunet_ceph", models, tmp_path / "out", iterations=5, extra=["--num_filters", "4"], **settings
    )
    assert [c[1] for c in calls] == [["inference.yaml", "evaluate.yaml", "cpu.yaml", "robustness.yaml"]] * 2
    for (bundle, _, args, env), (name, ckpt) in zip(calls, models.items()):
        assert bundle == "mtunet_ceph" and env == {"OMP_NUM_THREADS": "2"}
        assert args == [
            "--num_filters", "4",
            "--dataset_dir", str((tmp_path / "data").resolve()),
            "--infer_split", "test1",
            "--robustness_levels", "[0,2]",
            "--robustness_iterations", "5",
            "--max_items", "3",
            "--ckpt_path", str(ckpt.resolve()),
            "--output_dir", str(tmp_path / "out" / name),
        ]  # fmt: skip
    assert result["mean_mre"] == {"standard": pytest.approx(5.5), "amat": pytest.approx(3.25)}
    assert result["clean_mre"] == {"standard": 2.0, "amat": 2.5}
    assert [(r["model"], r["eps"]) for r in result["rows"]] == [
        ("standard", 0.0),
        ("standard", 2.0),
        ("amat", 0.0),
        ("amat", 2.0),
    ]
    assert all(r["mean_mre_over_levels"] == result["mean_mre"][r["model"]] for r in result["rows"])
    for kind, name in (
        ("csv", "robustness_comparison.csv"),
        ("md", "robustness_comparison.md"),
        ("png", "robustness_comparison.png"),
    ):
        assert result["files"][kind] == tmp_path / "out" / name and result["files"][kind].is_file()
    assert "| model | eps | mre | sdr_2 | mean_mre_over_levels |" in result["files"]["md"].read_text(encoding="utf-8")
    # reuse: no run again, the same numbers; without cpu.yaml and with inherited threads for a new model
    again = robustness_comparison.compare_robustness("mtunet_ceph", models, tmp_path / "out", reuse=True)
    assert len(calls) == 2 and again["mean_mre"] == result["mean_mre"]
    robustness_comparison.compare_robustness(
        "mtunet_ceph", {"amat": models["amat"]}, tmp_path / "o2", cpu=False, threads=None
    )
    assert calls[-1][1] == ["inference.yaml", "evaluate.yaml", "robustness.yaml"] and calls[-1][3] is None


def test_a_failing_run_raises_naming_the_model_with_the_end_of_its_output(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch, fail="amat")
    models = {name: tmp_path / f"{name}.pt" for name in ERRORS}
    with pytest.raises(RuntimeError, match=r"robustness run of amat failed \(exit 1") as failure:
        robustness_comparison.compare_robustness("mtunet_ceph", models, tmp_path / "out")
    assert "evaluated 3 images" in str(failure.value) and str(failure.value).endswith("error: boom\n")
    assert len(calls) == 2 and not (tmp_path / "out" / "robustness_comparison.md").exists()


def test_the_script_checks_its_models_and_reports_a_failing_run(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        "compare_robustness_script", REPO / "scripts" / "compare_robustness.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in ERRORS:
        (tmp_path / f"{name}.pt").write_bytes(b"weights")
    argv = ["--bundle", "mtunet_ceph", "--out", str(tmp_path / "out"), "--levels", "0,2", "--extra", "--num_filters 4"]
    argv += [arg for name in ERRORS for arg in ("--model", f"{name}={tmp_path / f'{name}.pt'}")]
    with pytest.raises(SystemExit):  # a checkpoint that does not exist: an argparse error
        script.main(argv + ["--model", f"sat={tmp_path / 'missing.pt'}"])
    assert "expected NAME=CHECKPOINT" in capsys.readouterr().err
    calls = _fake_runs(monkeypatch, fail="amat")
    assert script.main(argv + ["--threads", "1"]) == 1
    assert "error: the robustness run of amat failed" in capsys.readouterr().err
    assert calls[0][2][:4] == ["--num_filters", "4", "--robustness_levels", "[0,2]"] and calls[0][3] == {
        "OMP_NUM_THREADS": "1"
    }
    calls = _fake_runs(monkeypatch)
    assert script.main(argv + ["--reuse"]) == 0 and len(calls) == 1  # the standard model's report reused, amat run
    assert (
        "[standard] reusing" in capsys.readouterr().out and (tmp_path / "out" / "robustness_comparison.png").is_file()
    )
