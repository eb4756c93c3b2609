"""The ``attack`` overlay (``configs/attack.yaml``) through ``python -m monai.bundle run`` on tiny phantom models, and
the attack scripts (``scripts/attack_protocol.py``, ``scripts/attack_letters.py``) in this process."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from _bundle_runs import CEPH_TINY, MTUNET_TINY, check, run_bundle

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["inference.yaml", "evaluate.yaml", "cpu.yaml", "attack.yaml"]
REPORT_FILES = (
    "attack_metrics.json",
    "attack_metrics.csv",
    "attack_errors.csv",
    "attack_convergence.png",
    "attack_isolation.png",
    "metrics.json",
)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _overrides(tiny: list[str]) -> list[str]:
    """``--key value`` command-line overrides as ``KEY=VALUE`` (the scripts' form)."""
    return [f"{k.removeprefix('--')}={v}" for k, v in zip(tiny[::2], tiny[1::2])]


@pytest.mark.parametrize(
    "bundle, trained, tiny, method, iterations, checkpoints, objective",
    [
        ("scn_ceph", "ceph_trained", CEPH_TINY, "ati", 21, [0, 1, 20], "HeatmapAttackObjective"),
        ("mtunet_ceph", "mtunet_trained", MTUNET_TINY, "ti", 2, [0, 1], "HeatmapOffsetAttackObjective"),
    ],
)
def test_attack_overlay_writes_the_metrics_at_the_requested_iterations(
    request, ceph_data, tmp_path, bundle, trained, tiny, method, iterations, checkpoints, objective
):
    run = request.getfixturevalue(trained)
    args = ["--dataset_dir", str(ceph_data), "--ckpt_path", str(run / "models" / "model.pt")]
    args += ["--output_dir", str(tmp_path), *tiny, "--attack_method", method, "--attack_iterations", str(iterations)]
    result = check(run_bundle(bundle, CONFIGS, args))
    assert f"attack {method.upper()}: 1 images" in result.stdout
    for name in REPORT_FILES:
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "attack_metrics.json").read_text(encoding="utf-8"))
    assert [row["iteration"] for row in report["iterations"]] == checkpoints
    settings = report["settings"]
    assert settings["eps"] == 8 / 128 and settings["step_size"] == pytest.approx(0.05 * 8 / 128)
    assert settings["checkpoints"] == checkpoints[1:] and objective in settings["attack"]
    assert settings["value_range"] == [-1.0, 1.0] and settings["num_iterations"] == iterations
    moved = report["moved_per_image"][0]
    assert 1 <= moved <= 17 and report["iterations"][-1]["targeted_count"] == moved
    assert report["iterations"][-1]["stationary_count"] + moved <= 19
    assert report["isolation"]["k"] == 5 and len(report["isolation"]["isolation"]) == 19
    with open(tmp_path / "attack_errors.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 19 and sum(int(r["moved"]) for r in rows) == moved


def test_attack_protocol_script_compares_ti_and_ati_and_prints_the_bars(ceph_data, ceph_trained, tmp_path, capsys):
    script = _script("attack_protocol")
    model = ["scn_ceph", str(ceph_trained / "models" / "model.pt"), *_overrides(CEPH_TINY)]
    code = script.main(
        [
            "--dataset-dir",
            str(ceph_data),
            "--out",
            str(tmp_path),
            "--model",
            *model,
            "--iterations",
            "2",
            "--eps",
            "4",
            "8",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ati_beats_ti" in printed and "stationary_kept_ati" in printed
    assert any(line.startswith(("PASS", "FAIL")) for line in printed.splitlines())
    for name in (
        "attack_table.md",
        "attack_table.csv",
        "attack_bars.json",
        "scn_ceph_eps8_convergence.png",
        "scn_ceph_eps_sweep.png",
    ):
        assert (tmp_path / name).is_file(), name
    with open(tmp_path / "attack_table.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2  # eps x methods x (clean, iteration 1)
    # the goals depend only on the seed and the image: TI and ATI move the same landmarks
    moved = {
        m: [
            r["moved"]
            for r in csv.DictReader(
                open(tmp_path / "scn_ceph" / "eps8" / m / "attack_errors.csv", encoding="utf-8", newline="")
            )
        ]
        for m in ("ti", "ati")
    }
    assert moved["ti"] == moved["ati"]

    # --reuse: the finished runs of the same settings are kept (an interrupted protocol resumes), same table
    table = (tmp_path / "attack_table.csv").read_text(encoding="utf-8")
    args = ["--dataset-dir", str(ceph_data), "--out", str(tmp_path), "--model", *model, "--eps", "4", "8", "--reuse"]
    assert script.main([*args, "--iterations", "2"]) == 0
    assert capsys.readouterr().out.count("reusing") == 4
    assert (tmp_path / "attack_table.csv").read_text(encoding="utf-8") == table
    # other settings (here the iterations) are attacked again
    assert script.main([*args, "--iterations", "1", "--methods", "ti"]) == 0
    assert "reusing" not in capsys.readouterr().out


def test_attack_letters_script_writes_the_adversarial_image_perturbation_and_overlay(
    ceph_data, mtunet_trained, tmp_path
):
    script = _script("attack_letters")
    image = next((ceph_data / "RawImage").rglob("*.bmp"))
    targets = np.full((19, 2), np.nan)
    targets[:5] = [[10.0, 20.0], [15.0, 20.0], [20.0, 20.0], [25.0, 20.0], [30.0, 20.0]]
    from mlm.attacks import write_target_points

    write_target_points(tmp_path / "targets_in.csv", targets)
    args = ["--bundle", "mtunet_ceph", "--ckpt", str(mtunet_trained / "models" / "model.pt"), "--image", str(image)]
    args += ["--spacing", "4", "4", "--targets", str(tmp_path / "targets_in.csv"), "--out", str(tmp_path / "out")]
    args += ["--iterations", "3"] + [a for o in _overrides(MTUNET_TINY) for a in ("--set", o)]
    assert script.main(args) == 0
    for name in ("adversarial.png", "perturbation_x8.png", "overlay.png", "clean_overlay.png", "targets.csv"):
        assert (tmp_path / "out" / name).is_file(), name
    report = json.loads((tmp_path / "out" / "letters_attack.json").read_text(encoding="utf-8"))
    assert [lm["moved"] for lm in report["landmarks"]] == [True] * 5 + [False] * 14
    np.testing.assert_allclose(report["landmarks"][2]["target_px"], [20.0, 20.0], atol=1e-6)
    # 3 steps of 0.05 x 8 grey levels
    assert report["linf_grey_levels"] == pytest.approx(1.2, abs=1e-3)
