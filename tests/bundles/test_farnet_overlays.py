"""farnet_ceph's dataset overlays through ``python -m monai.bundle run``: two training iterations, then inference and
evaluation, on tiny phantoms. hand.yaml: Payer's 37 hand landmarks, errors also normalised to the wrist width (the
pair of scn_hand_xray's facts). spine_ap.yaml: the AASCE layout's 68 vertebra corners, px, the spine metrics in
validation and by ``python -m mlm.spine_metrics`` on the evaluation's predictions."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _bundle_runs import check, run_bundle
from PIL import Image

from mlm.data import aasce
from transforms.io.landmark_files import read_landmark_file

pytestmark = pytest.mark.slow

#: FARNet's DenseNet-121 widths are fixed: a tiny run is a small input (multiples of 32) and no loader workers
HAND_TINY = ["--patch_size", "[64,64]", "--num_workers", "0"]
SPINE_TINY = ["--patch_size", "[64,128]", "--num_workers", "0"]


def _train_and_evaluate(overlay: str, data: Path, out: Path, tiny: list[str]) -> tuple[str, Path]:
    """Two training iterations (train.yaml, cpu.yaml, overlay) and an evaluation of model.pt on the test split;
    returns the training log and the evaluation folder."""
    data_args = ["--dataset_dir", str(data), *tiny]
    args = ["--ckpt_dir", str(out / "models"), "--output_dir", str(out / "train"), "--num_iterations", "2"]
    train = check(
        run_bundle("farnet_ceph", ["train.yaml", "cpu.yaml", overlay], [*data_args, *args, "--val_interval", "1"])
    )
    args = ["--ckpt_path", str(out / "models" / "model.pt"), "--output_dir", str(out / "eval")]
    check(run_bundle("farnet_ceph", ["inference.yaml", "evaluate.yaml", "cpu.yaml", overlay], [*data_args, *args]))
    return train.stdout + train.stderr, out / "eval"


def _heads(model: Path) -> tuple[tuple, dict]:
    checkpoint = torch.load(model, weights_only=True)
    return tuple(checkpoint["model"]["full_head.1.weight"].shape), checkpoint["geometry"]


def test_hand_overlay_trains_37_landmarks_and_reports_wrist_normalised_errors(hand_xray_data, tmp_path):
    _, report = _train_and_evaluate("hand.yaml", hand_xray_data, tmp_path, HAND_TINY)
    shape, geometry = _heads(tmp_path / "models" / "model.pt")
    assert shape == (37, 64 + 32 + 37, 1, 1)
    assert geometry["pixdim"] == -1.0 and geometry["resize_mode"] == "fit" and geometry["preprocessed_size"] == [64, 64]
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] == "mm" and sorted(metrics["sdr"], key=float) == ["2", "4", "10"]
    assert metrics["normalized"]["pair"] == [1, 5] and metrics["normalized"]["pair_names"] == ["wrist_01", "wrist_05"]
    # each normalised error is the mm error x 50 / the image's wrist width (ground truth, 4 mm pixels)
    datalist = json.loads((hand_xray_data / "datalist.json").read_text(encoding="utf-8"))
    item = datalist["test"][0]
    truth = read_landmark_file(hand_xray_data / item["landmarks"]).points * 4.0
    scale = 50.0 / np.linalg.norm(truth[1] - truth[5])
    rows = {}
    for name in ("errors_per_image.csv", "errors_per_image_normalized.csv"):
        with open(report / name, encoding="utf-8", newline="") as f:
            rows[name] = next(r for r in csv.DictReader(f) if r["id"] == item["id"])
    plain, normalised = rows["errors_per_image.csv"], rows["errors_per_image_normalized.csv"]
    pairs = [(float(plain[k]), float(normalised[k])) for k in plain if k != "id" and plain[k] not in ("", "inf")]
    assert pairs
    for mm, norm in pairs:
        assert norm == pytest.approx(mm * scale, rel=1e-6)
    prediction = json.loads((report / "predictions" / f"{item['id']}_landmarks.json").read_text(encoding="utf-8"))
    assert len(prediction["points"]) == 37 and prediction["names"][1] == "wrist_01"


@pytest.fixture(scope="module")
def spine_ap_data(tmp_path_factory) -> Path:
    from mlm.data.phantoms.spine_ap import write_spine_ap_dataset

    root = tmp_path_factory.mktemp("spine_ap")
    write_spine_ap_dataset(root, num_images=4, num_test=1, width=64, height=160, show_progress=False)
    return root


def test_spine_ap_overlay_trains_68_corners_and_reports_px_and_spine_metrics(spine_ap_data, tmp_path):
    log, report = _train_and_evaluate("spine_ap.yaml", spine_ap_data, tmp_path, SPINE_TINY)
    shape, geometry = _heads(tmp_path / "models" / "model.pt")
    assert shape == (68, 64 + 32 + 68, 1, 1)
    assert geometry["preprocessed_size"] == [64, 128] and geometry["resize_mode"] == "fit"
    # validation on the layout's test split, with the spine metrics next to the MRE
    found = re.findall(r"Epoch\[2\] Metrics -- (.*)", log)
    assert found, log[-3000:]
    values = dict(re.findall(r"(\w+): ([-\d.e+]+)", found[-1]))
    assert set(values) == {"val_cobb_smape", "val_mre", "val_mse_fraction", "val_pearson_r"}
    assert 0 <= float(values["val_mse_fraction"]) < 1 and -1 <= float(values["val_pearson_r"]) <= 1
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] == "px" and metrics["ids"] == ["s0003"]
    assert sorted(metrics["sdr"], key=float) == ["5", "10", "20", "40"]  # pixel-only images: the px radii
    prediction = json.loads((report / "predictions" / "s0003_landmarks.json").read_text(encoding="utf-8"))
    assert prediction["names"] == list(aasce.LANDMARK_NAMES)

    # python -m mlm.spine_metrics: the MSE fraction against the layout's own ratio table
    from mlm.spine_metrics import main

    assert main(["--predictions", str(report / "predictions"), "--dataset_dir", str(spine_ap_data)]) == 0
    summary = json.loads((report / "spine_metrics.json").read_text(encoding="utf-8"))
    assert summary["ids"] == ["s0003"] and summary["num_images"] == 1
    truth = aasce.read_landmarks_csv(spine_ap_data / "labels" / "test" / "landmarks.csv")[0]
    size = Image.open(spine_ap_data / "data" / "test" / "s0003.jpg").size
    pred = np.array([[np.nan, np.nan] if p is None else p for p in prediction["voxel_points"]]) / size
    present = np.isfinite(pred).all(1)
    assert present.any(), "the tiny model predicted no corner inside the image (seeded: deterministic)"
    assert summary["num_landmarks"] == present.sum() and summary["num_missing_predictions"] == 68 - present.sum()
    assert summary["mse_fraction"] == pytest.approx(((pred - truth)[present] ** 2).mean(), rel=1e-9)
