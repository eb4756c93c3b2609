"""Smoke test of the real-image recipe (``scripts/train_real.py``) on the 112 Digital Hand Atlas radiographs of
../shared/data: two iterations of each stage, every step through ``python -m monai.bundle run``, then a rerun that
only resumes. Skipped when ../shared is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlm.networks import LocalizationUNet, SpatialConfigurationNet

REPO = Path(__file__).resolve().parents[2]
HAND = REPO.parent / "shared" / "data" / "dha_hand_xray_half"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAND.is_dir(), reason=f"{HAND} is absent (the real hand radiographs live in ../shared)"),
]


def _recipe(out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "scripts/train_real.py", "hand_xray", str(HAND), "--out", str(out)]
    cmd += ["--global-iterations", "2", "--refine-iterations", "2", "--val-interval", "2", "--threads", "1"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=900)


def test_hand_recipe_trains_both_stages_evaluates_and_resumes(tmp_path):
    out = tmp_path / "hand"
    first = _recipe(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    figures = json.loads((out / "weights" / "figures.json").read_text(encoding="utf-8"))
    assert figures["recipe"] == "hand_xray" and figures["bundle"] == "scn_hand_xray"
    assert len(figures["data"]["fit_ids"]) == 82 and len(figures["data"]["validation_ids"]) == 9
    assert not set(figures["data"]["fit_ids"]) & set(figures["data"]["validation_ids"])
    validation = figures["figures"]["validation"]
    for stage in ("global", "refined"):
        assert validation[stage]["num_images"] == 21 and validation[stage]["units"] == "px"
        assert validation[stage]["normalized"]["pe_median"] > 0  # wrist-normalised mm
    assert figures["refine_offset_sigma"] > 0 and figures["refine_overrides"][0] == "--refine_spacing"
    # the table printed at the end: both stages of the 21 validation images, then the published figures
    assert (
        "| validation (payer) | global | 21 |" in first.stdout
        and "| validation (payer) | refined | 21 |" in first.stdout
    )
    assert "SCN (Payer et al. 2019" in first.stdout

    # plain state dicts that load into the networks
    global_state = torch.load(out / "weights" / "global.pt", weights_only=True)
    refine_state = torch.load(out / "weights" / "refine.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in global_state.values())
    SpatialConfigurationNet(2, 1, 37, num_filters=64).load_state_dict(global_state)
    LocalizationUNet(2, 1, 37, num_filters=32, num_levels=4).load_state_dict(refine_state)

    # a second run finds every step done and prints the same table
    again = _recipe(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done earlier") == 5 and "$ (cd bundles" not in again.stdout
    assert json.loads((out / "weights" / "figures.json").read_text(encoding="utf-8"))["figures"] == figures["figures"]
