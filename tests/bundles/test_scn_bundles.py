"""End-to-end tests of the SCN bundles through ``python -m monai.bundle run`` on tiny phantoms.

Each launch costs ~10-15 s of start-up: phantoms and trained checkpoints are shared (see conftest.py).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from _bundle_runs import BUNDLES, CEPH_TINY, SPINE_TINY, check, run_bundle

pytestmark = pytest.mark.slow


def test_spine_training_saves_model_optimizer_loss_and_trainer_state(spine_trained):
    ckpt = torch.load(spine_trained / "models" / "model.pt", weights_only=True)
    assert set(ckpt) >= {"model", "optimizer", "loss", "trainer", "lr_scheduler", "rng", "data"}
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["lr_scheduler"]["last_epoch"] == 2
    assert ckpt["data"]["samples"] == 2 and ckpt["data"]["num_replicas"] == 1  # 2 iterations of batch 1
    periodic = sorted(p.name for p in (spine_trained / "models").glob("checkpoint*.pt"))
    assert periodic == ["checkpoint_iteration=2.pt"]  # n_saved 1, named by iteration
    assert ckpt["loss"]["sigmas"].shape == (26,)
    assert (spine_trained / "models" / "model_best.pt").is_file()
    sig = json.loads((spine_trained / "eval" / "sigmas.json").read_text(encoding="utf-8"))
    assert sig["iteration"] == 2 and len(sig["sigmas"]) == 26 and "C1" in sig["sigmas"]
    assert torch.allclose(torch.tensor(list(sig["sigmas"].values())), ckpt["loss"]["sigmas"].float())


def test_spine_resume_continues_at_saved_iteration(spine_data, spine_trained, tmp_path):
    run = tmp_path / "resume"
    shutil.copytree(spine_trained / "models", run / "models")
    before = torch.load(run / "models" / "model.pt", weights_only=True)
    args = ["--dataset_dir", str(spine_data), "--ckpt_dir", str(run / "models"), "--output_dir", str(run / "eval")]
    # resumed with the cosine schedule over 3 iterations: the third step ends at lr_min_factor * lr
    args += SPINE_TINY + ["--sigma", "1.0", "--num_iterations", "3", "--val_interval", "1", "--lr_schedule", "cosine"]
    result = check(run_bundle("scn_spine_ct", ["train.yaml", "cpu.yaml"], args))
    log = result.stdout + result.stderr
    assert "resumed from" in log and "iteration 2" in log
    assert "Epoch: 1/3" not in log and "Epoch: 3/3" in log  # only the third iteration ran
    after = torch.load(run / "models" / "model.pt", weights_only=True)
    assert after["trainer"]["iteration"] == 3 and after["lr_scheduler"]["last_epoch"] == 3
    assert after["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.01)
    # the restored sigmas were the starting point: they moved by at most one Adam step (lr 1e-4)
    assert torch.allclose(after["loss"]["sigmas"], before["loss"]["sigmas"], atol=2e-4)


def test_spine_evaluate_writes_predictions_metrics_plots(spine_data, spine_trained, tmp_path):
    out = tmp_path / "eval"
    args = ["--dataset_dir", str(spine_data), "--ckpt_path", str(spine_trained / "models" / "model.pt")]
    args += ["--output_dir", str(out), "--save_heatmaps", "true"] + SPINE_TINY
    result = check(run_bundle("scn_spine_ct", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args))
    assert "ID rate (20 mm)" in result.stdout and "MRE" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] == "mm" and metrics["num_images"] == 1
    assert 0.0 <= metrics["identification_rate"] <= 1.0 and metrics["pe_mean"] > 0
    assert set(metrics["sdr"]) == {"2", "2.5", "3", "4", "10", "20"}
    for name in ("metrics_per_landmark.csv", "errors_per_image.csv", "cumulative_ipe.png"):
        assert (out / name).is_file()
    assert len(list((out / "overlays").glob("*.png"))) == 1
    test_id = json.loads((spine_data / "datalist.json").read_text(encoding="utf-8"))["test"][0]["id"]
    pred = json.loads((out / "predictions" / f"{test_id}_landmarks.json").read_text(encoding="utf-8"))
    assert pred["coordinate_system"] == "LPS" and pred["units"] == "mm" and len(pred["points"]) == 26
    assert (out / "predictions" / f"{test_id}_heatmaps.nii.gz").is_file()
    # voxel_points are indices of the ORIGINAL image: the LPS points map to them with the image's own affine
    import nibabel as nib

    img = nib.load(spine_data / "images" / f"{test_id}.nii.gz")
    lps = np.array(pred["points"], dtype=float)
    ras = lps * np.array([-1.0, -1.0, 1.0])
    vox = (np.linalg.inv(img.affine) @ np.c_[ras, np.ones(26)].T).T[:, :3]
    np.testing.assert_allclose(vox, np.array(pred["voxel_points"], dtype=float), atol=1e-4)
    # errors recomputed from the files agree with the report (ground truth LPS mm in the phantom's landmark file)
    gt = json.loads((spine_data / "landmarks" / f"{test_id}.json").read_text(encoding="utf-8"))
    assert gt["coordinate_system"] == "LPS"
    gt_pts = np.array([[np.nan] * 3 if p is None else p for p in gt["points"]], dtype=float)
    err = np.linalg.norm(lps - gt_pts, axis=1)
    np.testing.assert_allclose(np.nanmean(err), metrics["pe_mean"], rtol=1e-6)


def test_spine_multi_gpu_train_on_two_cpu_processes(spine_data, tmp_path):
    args = [
        "--dataset_dir",
        str(spine_data),
        "--ckpt_dir",
        str(tmp_path / "models"),
        "--output_dir",
        str(tmp_path / "eval"),
    ]
    args += SPINE_TINY + ["--sigma", "1.0", "--num_iterations", "2", "--val_interval", "1"]
    check(run_bundle("scn_spine_ct", ["train.yaml", "cpu.yaml", "multi_gpu_train.yaml"], args, torchrun=2))
    ckpt = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped, loadable without DDP
    # the two ranks shared one sample stream: 2 iterations x batch 1 x 2 processes
    assert ckpt["data"]["num_replicas"] == 2 and ckpt["data"]["samples"] == 4


def test_ceph_train_and_evaluate(ceph_data, ceph_trained, tmp_path):
    ckpt = torch.load(ceph_trained / "models" / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["loss"]["sigmas"].shape == (19,)
    out = tmp_path / "eval"
    args = ["--dataset_dir", str(ceph_data), "--ckpt_path", str(ceph_trained / "models" / "model.pt")]
    args += ["--output_dir", str(out)] + CEPH_TINY
    result = check(run_bundle("scn_ceph", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args))
    assert "MRE" in result.stdout and "ID rate" not in result.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["count"] == 19 and "identification_rate" not in metrics
    pred = json.loads(next((out / "predictions").glob("*_landmarks.json")).read_text(encoding="utf-8"))
    assert len(pred["points"]) == 19 and len(pred["points"][0]) == 2 and len(pred["voxel_points"][0]) == 2
    # pixel-only BMP with spacing 4 mm from the datalist: original pixel index * 4 = RAS mm = -LPS mm
    # (a landmark the 2-iteration model puts in the padding around the image is missing: null, NaN here)
    voxels = np.array([[np.nan] * 2 if p is None else p for p in pred["voxel_points"]], dtype=float)
    points = np.array([[np.nan] * 2 if p is None else p for p in pred["points"]], dtype=float)
    np.testing.assert_allclose(voxels * 4.0, -points, atol=1e-6)


def test_checkpoint_from_another_bundle_is_refused_with_both_counts(ceph_data, spine_trained, tmp_path):
    args = ["--dataset_dir", str(ceph_data), "--ckpt_path", str(spine_trained / "models" / "model.pt")]
    args += ["--output_dir", str(tmp_path)] + CEPH_TINY
    result = run_bundle("scn_ceph", ["inference.yaml", "cpu.yaml"], args)
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "trained for 26 landmarks" in log and "has 19" in log and "model.pt" in log


@pytest.mark.parametrize("bundle", ["scn_spine_ct", "scn_ceph", "scn_hand_xray", "scn_hand_mri"])
def test_metadata_and_network_io_verify(bundle, monkeypatch):
    from monai.bundle import verify_metadata, verify_net_in_out

    from mlm.bundle import metadata_schema_path

    monkeypatch.chdir(BUNDLES / bundle)  # as the README's commands run: in the bundle's folder
    verify_metadata(meta_file="configs/metadata.json", filepath=metadata_schema_path())
    verify_net_in_out(
        net_id="network_def",
        meta_file="configs/metadata.json",
        config_file="configs/inference.yaml",
        device="cpu",
        **{"num_filters": 4},
    )


def test_missing_dataset_dir_says_how_to_generate_it(tmp_path):
    args = ["--dataset_dir", str(tmp_path / "nowhere"), "--num_workers", "0"]
    result = run_bundle("scn_spine_ct", ["train.yaml", "cpu.yaml"], args)
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "does not exist" in log and "scripts/generate_phantoms.py spine_ct" in log and "prepare_dataset.py" in log


def test_bundle_files_present():
    for bundle in ("scn_spine_ct", "scn_ceph", "scn_hand_xray", "scn_hand_mri"):
        root = BUNDLES / bundle
        for f in (
            "metadata.json",
            "train.yaml",
            "inference.yaml",
            "evaluate.yaml",
            "multi_gpu_train.yaml",
            "cpu.yaml",
            "unet.yaml",
            "logging.conf",
        ):
            assert (root / "configs" / f).is_file(), f"{bundle}/configs/{f}"
        assert (root / "docs" / "README.md").is_file() and (root / "LICENSE").is_file()


@pytest.mark.parametrize("z4", [False, True])
@pytest.mark.parametrize("unet", [False, True])
def test_spine_demo_override_networks_fit_their_windows(unet, z4):
    """demo.yaml (the demo's size) and demo_z4.yaml (4 mm along z, the accuracy script's): SCN and 4-level U-Net map a
    window to 26 heatmaps; the SCN's spatial-configuration component trains at 0.1x the rate, the U-Net at one rate."""
    from mlm.bundle import bundle_config_parser

    files = ["train.yaml", "cpu.yaml", "demo.yaml"] + (["demo_z4.yaml"] if z4 else []) + (["unet.yaml"] if unet else [])
    overrides = {"num_filters": 4, **({"network_def#num_levels": 4} if unet else {})}
    parser = bundle_config_parser(BUNDLES / "scn_spine_ct", files, overrides)
    size = [24, 24, 96] if z4 else [24, 24, 48]
    assert parser["pixdim"] == ([8.0, 8.0, 4.0] if z4 else 8.0) and parser["patch_size"] == size
    net = parser.get_parsed_content("network_def")
    out = net(torch.zeros(1, 1, *size))
    assert tuple(out.shape) == (1, 26, *size) and torch.isfinite(out).all()
    lrs = sorted({round(g["lr"], 12) for g in parser.get_parsed_content("optimizer").param_groups})
    assert lrs == ([0.001] if unet else [0.0001, 0.001])
