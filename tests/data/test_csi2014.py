"""CSI 2014 reader/writer, converter, and the LPS check on a real CT (TotalSegmentator labels)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from mlm.data import csi2014
from mlm.data.datalist import load_datalist, validate_datalist
from transforms.io.landmark_files import read_landmark_file

#: TotalSegmentator labels 26..33 = S1, L5, L4, L3, L2, L1, T12, T11.
TOTALSEG_LABELS = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}


def test_real_csv_parses_to_302_by_26_and_roundtrips_byte_identical(shared_data, tmp_path):
    src = shared_data / "csi2014_spine_centroids_payer" / "points_world_coordinates.csv"
    rows = csi2014.read_points_csv(src)
    a = np.stack(list(rows.values()))
    assert a.shape == (302, 26, 3)
    present = ~np.isnan(a[..., 0])
    assert present.sum() == 3552  # README: 3552 annotated centroids
    per_scan = present.sum(1)
    assert per_scan.min() == 2 and per_scan.max() == 26  # README: 2..26 per scan
    assert (np.isnan(a).any(-1) == np.isnan(a).all(-1)).all()  # a slot is missing as a whole row
    csi2014.write_points_csv(tmp_path / "p.csv", rows)
    assert (tmp_path / "p.csv").read_bytes() == src.read_bytes()
    # slot order: top of the spine first, so z (superior in LPS) decreases with the slot index
    dz = np.diff(a[..., 2], axis=1)
    assert np.nanmedian(dz) < -15 and (dz[~np.isnan(dz)] < 0).mean() > 0.99


def test_totalseg_centroids_written_as_csi_csv_land_in_their_vertebra(shared_data, tmp_path):
    lab_img = nib.load(shared_data / "totalseg_example_ct_vertebrae" / "spine_report" / "totalseg.nii.gz")
    lab = np.asarray(lab_img.dataobj).astype(int)
    pts = np.full((26, 3), np.nan)
    for label, name in TOTALSEG_LABELS.items():
        vox = np.argwhere(lab == label).mean(0)
        ras = lab_img.affine @ np.append(vox, 1.0)
        pts[csi2014.VERTEBRA_NAMES.index(name)] = csi2014.lps_to_ras(ras[:3])  # RAS -> LPS
    csi2014.write_points_csv(tmp_path / "points_world_coordinates.csv", {"example_ct": pts})
    back = csi2014.read_points_csv(tmp_path / "points_world_coordinates.csv")["example_ct"]
    np.testing.assert_allclose(back, pts, atol=1e-3)  # float32 text: < 1e-3 mm
    assert np.isnan(back[:17]).all() and np.isnan(back[25]).all()  # only T11..S1 (slots 17-24)
    inv = np.linalg.inv(lab_img.affine)
    hits = 0
    for label, name in TOTALSEG_LABELS.items():
        lps = back[csi2014.VERTEBRA_NAMES.index(name)]
        ijk = np.round((inv @ np.append(csi2014.lps_to_ras(lps), 1.0))[:3]).astype(int)
        hits += lab[tuple(ijk)] == label
        # reading the LPS numbers as if they were RAS lands outside the spine
        wrong = np.round((inv @ np.append(lps, 1.0))[:3]).astype(int)
        inside = (wrong >= 0).all() and (wrong < lab.shape).all()
        assert not inside or lab[tuple(wrong)] != label
    assert hits >= 7  # centroids of curved vertebrae may miss the body by a voxel; 7 of 8 is the floor
    # slot order: S1 below L5 below ... T11 (z decreases with the slot)
    z = back[17:25, 2]
    assert (np.diff(z) < 0).all()


def test_convert_fake_layout_with_split_files(tmp_path):
    imgs = tmp_path / "ct"
    imgs.mkdir()
    rows = {}
    for k, sid in enumerate(["100", "101", "102"]):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), imgs / f"{sid}.nii.gz")
        p = np.full((26, 3), np.nan)
        p[10 + k : 14 + k] = np.arange(12.0).reshape(4, 3) + k
        rows[sid] = p
    setup = tmp_path / "setup"
    csi2014.write_points_csv(setup / "points_world_coordinates.csv", rows)
    (setup / "train_all.txt").write_text("100\n101\n", encoding="utf-8")
    (setup / "test_all.txt").write_text("102\n", encoding="utf-8")
    (setup / "cv" / "0").mkdir(parents=True)
    (setup / "cv" / "0" / "train.txt").write_text("100\n", encoding="utf-8")
    (setup / "cv" / "0" / "val.txt").write_text("101\n", encoding="utf-8")
    paths = csi2014.convert_csi2014(imgs, tmp_path / "out", points_csv=setup / "points_world_coordinates.csv")
    with pytest.raises(ValueError, match=r"100\.json: 3 landmark\(s\) outside the image .*100\.nii\.gz"):
        validate_datalist(paths[0])  # the fake centroids lie outside the 4-voxel fake CTs
    assert validate_datalist(paths[0], allow_outside=True) == {"training": 2, "test": 1}
    assert validate_datalist(paths[1], allow_outside=True) == {"training": 1, "validation": 1}
    lf = read_landmark_file(load_datalist(paths[0], "test")[0]["landmarks"])
    assert lf.coordinate_system == "LPS" and list(lf.names) == csi2014.VERTEBRA_NAMES
    np.testing.assert_allclose(lf.points, rows["102"], atol=1e-5)
    (setup / "test_all.txt").write_text("102\n103\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"test_all\.txt: scans without an image .*'103'"):
        csi2014.convert_csi2014(imgs, tmp_path / "out2", points_csv=setup / "points_world_coordinates.csv")


def test_centroid_lml_file_and_ras_conversion(tmp_path):
    p = tmp_path / "s.lml"
    p.write_text("# id name x y z\n1\tC1\t1.0\t2.0\t3.0\n20\tL1\t-4 5 6\n", encoding="utf-8")
    lps = csi2014.read_centroid_file(p)
    np.testing.assert_allclose(lps[0], [1, 2, 3])
    np.testing.assert_allclose(lps[19], [-4, 5, 6])
    assert np.isnan(lps[1:19]).all()
    np.testing.assert_allclose(csi2014.read_centroid_file(p, "RAS")[0], [-1, -2, 3])


#: tiny SCN for the real-CT inference run (an untrained network: the test checks the path, not the accuracy)
TINY_SCN = {"num_filters": 4, "num_levels": 4, "spatial_downsample": 4, "spatial_kernel_size": 3}
#: cpu.yaml's 4 mm grid with 32x32x48 windows every 24 voxels along z: the CT's 84 z voxels need 3 windows
TINY_PATCH, TINY_STEP = [32, 32, 48], [32, 32, 24]


def test_scn_spine_ct_inference_end_to_end_on_real_ct(shared_data, tmp_path):
    """The scn_spine_ct bundle's inference (inference.yaml + cpu.yaml) on the real TotalSegmentator CT: real HU, real
    z extent tiled by sliding windows, 26 predictions in world mm inside the CT; the CSI-style centroid file derived
    from the vertebra labels is the datalist's ground truth, and the csi2014 protocol evaluates the predictions."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from mlm.inferers import window_starts
    from mlm.networks import SpatialConfigurationNet
    from mlm.protocols import evaluate_protocol

    ct_path = shared_data / "totalseg_example_ct_vertebrae" / "example_ct.nii.gz"
    lab_img = nib.load(shared_data / "totalseg_example_ct_vertebrae" / "spine_report" / "totalseg.nii.gz")
    lab = np.asarray(lab_img.dataobj).astype(int)
    pts = np.full((26, 3), np.nan)
    for label, name in TOTALSEG_LABELS.items():
        ras = lab_img.affine @ np.append(np.argwhere(lab == label).mean(0), 1.0)
        pts[csi2014.VERTEBRA_NAMES.index(name)] = csi2014.lps_to_ras(ras[:3])  # RAS -> LPS
    (tmp_path / "ct").mkdir()
    (tmp_path / "ct" / "example_ct.nii.gz").symlink_to(ct_path)
    csi2014.write_points_csv(tmp_path / "points_world_coordinates.csv", {"example_ct": pts})
    datalist = csi2014.convert_csi2014(
        tmp_path / "ct", tmp_path / "data", points_csv=tmp_path / "points_world_coordinates.csv"
    )[0]
    torch.manual_seed(0)
    net = SpatialConfigurationNet(
        spatial_dims=3, in_channels=1, num_landmarks=26, padding_mode="reflect", heatmap_init_std=0.001, **TINY_SCN
    )
    torch.save({"model": net.state_dict()}, tmp_path / "model.pt")

    bundle = Path(__file__).resolve().parents[2] / "bundles" / "scn_spine_ct"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "['configs/inference.yaml','configs/cpu.yaml']",
    ]
    cmd += [
        "--dataset_dir",
        str(tmp_path / "data"),
        "--infer_split",
        "training",
        "--ckpt_path",
        str(tmp_path / "model.pt"),
    ]
    cmd += ["--output_dir", str(tmp_path / "out"), "--save_heatmaps", "true"]
    cmd += ["--patch_size", str(TINY_PATCH).replace(" ", ""), "--sliding_window_step", str(TINY_STEP).replace(" ", "")]
    cmd += ["--num_filters", "4", "--network_def#spatial_downsample", "4", "--network_def#spatial_kernel_size", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    run = subprocess.run(cmd, cwd=bundle, env=env, capture_output=True, text=True, timeout=300, encoding="utf-8")
    assert run.returncode == 0, f"bundle run failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"

    pred_dir = tmp_path / "out" / "predictions"
    rec = json.loads((pred_dir / "example_ct_landmarks.json").read_text(encoding="utf-8"))
    assert rec["coordinate_system"] == "LPS" and rec["units"] == "mm" and rec["names"] == csi2014.VERTEBRA_NAMES
    lps = np.array(rec["points"], dtype=float)
    assert lps.shape == (26, 3) and np.isfinite(lps).all()
    # world mm inside the CT's physical bounding box (outer voxel faces)
    ct = nib.load(ct_path)
    corners = np.array(
        [
            [i, j, k]
            for i in (-0.5, ct.shape[0] - 0.5)
            for j in (-0.5, ct.shape[1] - 0.5)
            for k in (-0.5, ct.shape[2] - 0.5)
        ]
    )
    world = corners @ ct.affine[:3, :3].T + ct.affine[:3, 3]
    ras = csi2014.lps_to_ras(lps)
    assert (ras >= world.min(0) - 1e-3).all() and (ras <= world.max(0) + 1e-3).all()
    vox = np.array(rec["voxel_points"], dtype=float)  # the same points in the CT's own voxel grid
    assert (vox >= -0.5).all() and (vox <= np.array(ct.shape) - 0.5).all()
    np.testing.assert_allclose(np.c_[vox, np.ones(26)] @ ct.affine[:3].T, ras, atol=1e-3)
    # the z extent was kept at 4 mm (no z crop) and tiled: more than one window along z
    heat = nib.load(pred_dir / "example_ct_heatmaps.nii.gz")
    z_size = heat.shape[2]
    assert heat.shape[:2] == tuple(TINY_PATCH[:2]) and heat.shape[3] == 26
    assert z_size * 4.0 >= ct.shape[2] * 3.0 - 4.0 and z_size > TINY_PATCH[2]
    assert len(window_starts(z_size, TINY_PATCH[2], TINY_STEP[2])) > 1
    assert np.isfinite(np.asarray(heat.dataobj)).all()
    # the CSI 2014 protocol reads the bundle's predictions against the CSI-style ground truth
    res = evaluate_protocol("csi2014", [tmp_path / "out"], [datalist])
    s = res["groups"][0]["summary"]
    assert s["count"] == 8 and s["num_missing_predictions"] == 0 and np.isfinite(s["pe_mean"])
