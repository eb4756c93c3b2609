"""End-to-end tests of the hand bundles (``scn_hand_xray`` 2D, ``scn_hand_mri`` 3D) through
``python -m monai.bundle run`` on tiny phantoms: two training iterations, then inference + evaluation.

Each launch costs ~5-10 s of start-up; the phantoms and trained checkpoints are session fixtures (conftest.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _bundle_runs import HAND_MRI_TINY, HAND_XRAY_TINY, check, run_bundle

pytestmark = pytest.mark.slow


def _points(path, key: str = "points") -> np.ndarray:
    """``(N, D)`` points of a landmark file; ``null`` rows (missing) as NaN."""
    rows = json.loads(path.read_text(encoding="utf-8"))[key]
    dims = len(next(p for p in rows if p is not None))
    return np.array([[np.nan] * dims if p is None else p for p in rows], dtype=float)


def test_hand_xray_trains_infers_and_reports_mm_and_wrist_normalised_errors(
    hand_xray_data, hand_xray_trained, tmp_path
):
    ckpt = torch.load(hand_xray_trained / "models" / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["loss"]["sigmas"].shape == (37,)
    sig = json.loads((hand_xray_trained / "eval" / "sigmas.json").read_text(encoding="utf-8"))
    assert sig["iteration"] == 2 and len(sig["sigmas"]) == 37 and "little_tip" in sig["sigmas"]
    out = tmp_path / "eval"
    args = ["--dataset_dir", str(hand_xray_data), "--ckpt_path", str(hand_xray_trained / "models" / "model.pt")]
    args += ["--output_dir", str(out)] + HAND_XRAY_TINY
    result = check(run_bundle("scn_hand_xray", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args))
    assert "MRE" in result.stdout and "normalised (50 mm between wrist_01 and wrist_05)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] == "mm" and metrics["count"] == 37 and math.isfinite(metrics["pe_mean"])
    assert set(metrics["sdr"]) == {"2", "4", "10"} and "identification_rate" not in metrics
    norm = metrics["normalized"]
    assert norm["pair"] == [1, 5] and norm["pair_names"] == ["wrist_01", "wrist_05"] and norm["distance_mm"] == 50.0
    assert norm["count"] == 37 and norm["skipped_ids"] == [] and math.isfinite(norm["pe_mean"]) and norm["pe_mean"] > 0
    for name in ("metrics_per_landmark.csv", "errors_per_image.csv", "errors_per_image_normalized.csv"):
        assert (out / name).is_file()
    assert "pe_mean_normalized" in (out / "metrics_per_landmark.csv").read_text(encoding="utf-8").splitlines()[0]
    test_id = json.loads((hand_xray_data / "datalist.json").read_text(encoding="utf-8"))["test"][0]["id"]
    pred_path = out / "predictions" / f"{test_id}_landmarks.json"
    lps, vox = _points(pred_path), _points(pred_path, "voxel_points")
    assert lps.shape == (37, 2) and vox.shape == (37, 2)
    # the W x H x 1 .mha has 4 mm pixels and origin 0: LPS mm = original pixel index * 4; every prediction lies
    # inside the 2-iteration model's original image or is missing (null: decoded in the fit's padding)
    missing = np.isnan(lps).any(axis=1)
    np.testing.assert_allclose(vox * 4.0, lps, atol=1e-4)
    import SimpleITK as sitk

    size = np.array(sitk.ReadImage(str(hand_xray_data / "images" / f"{test_id}.mha")).GetSize()[:2])
    assert ((vox[~missing] >= -0.5) & (vox[~missing] <= size - 0.5)).all()
    assert metrics["num_missing_predictions"] == missing.sum() < 37
    # mm and normalised errors recomputed from the files (ground truth: the phantom's pixel landmark file); the
    # error statistics are over the present predictions, missing ones count as failures (SDR)
    gt = _points(hand_xray_data / "landmarks" / f"{test_id}.json") * 4.0
    err = np.linalg.norm(lps - gt, axis=1)
    np.testing.assert_allclose(np.nanmean(err), metrics["pe_mean"], rtol=1e-6)
    np.testing.assert_allclose(np.nanmean(err) * 50.0 / np.linalg.norm(gt[1] - gt[5]), norm["pe_mean"], rtol=1e-6)


def test_hand_mri_trains_infers_and_evaluates_in_world_mm(hand_mri_data, hand_mri_trained, tmp_path):
    ckpt = torch.load(hand_mri_trained / "models" / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["loss"]["sigmas"].shape == (28,)
    assert (hand_mri_trained / "models" / "model_best.pt").is_file()
    out = tmp_path / "eval"
    args = ["--dataset_dir", str(hand_mri_data), "--ckpt_path", str(hand_mri_trained / "models" / "model.pt")]
    args += ["--output_dir", str(out), "--save_heatmaps", "true"] + HAND_MRI_TINY
    result = check(run_bundle("scn_hand_mri", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args))
    assert "MRE" in result.stdout and "ID rate (20 mm)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] == "mm" and metrics["count"] == 28 and metrics["num_images"] == 1
    assert math.isfinite(metrics["pe_mean"]) and metrics["pe_mean"] > 0 and "normalized" not in metrics
    assert 0.0 <= metrics["identification_rate"] <= 1.0 and set(metrics["sdr"]) == {"2", "4", "10"}
    assert len(list((out / "overlays").glob("*.png"))) == 1 and (out / "cumulative_ipe.png").is_file()
    test_id = json.loads((hand_mri_data / "datalist.json").read_text(encoding="utf-8"))["test"][0]["id"]
    pred_path = out / "predictions" / f"{test_id}_landmarks.json"
    assert json.loads(pred_path.read_text(encoding="utf-8"))["coordinate_system"] == "LPS"
    import nibabel as nib

    heatmaps = nib.load(out / "predictions" / f"{test_id}_heatmaps.nii.gz")
    assert heatmaps.shape == (32, 16, 40, 28)  # the preprocessed 8 mm grid, one channel per landmark
    gt = _points(hand_mri_data / "landmarks" / f"{test_id}.json")  # LPS mm
    pred = _points(pred_path)
    missing = np.isnan(pred).any(axis=1)  # decoded in the padding of the 2-iteration model's input: null
    assert metrics["num_missing_predictions"] == missing.sum() < 28
    np.testing.assert_allclose(np.nanmean(np.linalg.norm(pred - gt, axis=1)), metrics["pe_mean"], rtol=1e-6)
