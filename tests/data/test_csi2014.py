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
    (setup / "train_all.txt").write_text("100\n101\n")
    (setup / "test_all.txt").write_text("102\n")
    (setup / "cv" / "0").mkdir(parents=True)
    (setup / "cv" / "0" / "train.txt").write_text("100\n")
    (setup / "cv" / "0" / "val.txt").write_text("101\n")
    paths = csi2014.convert_csi2014(imgs, tmp_path / "out", points_csv=setup / "points_world_coordinates.csv")
    assert validate_datalist(paths[0]) == {"training": 2, "test": 1}
    assert validate_datalist(paths[1]) == {"training": 1, "validation": 1}
    lf = read_landmark_file(load_datalist(paths[0], "test")[0]["landmarks"])
    assert lf.coordinate_system == "LPS" and list(lf.names) == csi2014.VERTEBRA_NAMES
    np.testing.assert_allclose(lf.points, rows["102"], atol=1e-5)
    (setup / "test_all.txt").write_text("102\n103\n")
    with pytest.raises(FileNotFoundError, match=r"test_all\.txt: scans without an image .*'103'"):
        csi2014.convert_csi2014(imgs, tmp_path / "out2", points_csv=setup / "points_world_coordinates.csv")


def test_centroid_lml_file_and_ras_conversion(tmp_path):
    p = tmp_path / "s.lml"
    p.write_text("# id name x y z\n1\tC1\t1.0\t2.0\t3.0\n20\tL1\t-4 5 6\n")
    lps = csi2014.read_centroid_file(p)
    np.testing.assert_allclose(lps[0], [1, 2, 3])
    np.testing.assert_allclose(lps[19], [-4, 5, 6])
    assert np.isnan(lps[1:19]).all()
    np.testing.assert_allclose(csi2014.read_centroid_file(p, "RAS")[0], [-1, -2, 3])
