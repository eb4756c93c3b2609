"""VerSe centroid JSON: orientation handling and the real sample's mask."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mlm.data import verse
from mlm.data.datalist import validate_datalist


def test_real_sample_centroids_land_in_their_label(shared_data, tmp_path):
    d = shared_data / "verse2019_sample_sub-verse004_NO_CT"
    msk = nib.load(d / "sub-verse004_seg-vert_msk.nii.gz")
    lab = np.asarray(msk.dataobj).astype(int)
    direction, ctd = verse.read_centroid_json(d / "sub-verse004_seg-subreg_ctd.json")
    assert direction == ("P", "I", "R") and sorted(ctd) == list(range(16, 25))
    pts = verse.verse_landmarks(d / "sub-verse004_seg-subreg_ctd.json", d / "sub-verse004_seg-vert_msk.nii.gz")
    inv = np.linalg.inv(msk.affine)
    for k in range(16, 25):
        ijk = np.round((inv @ np.append(pts[k - 1] * [-1, -1, 1], 1.0))[:3]).astype(int)
        assert lab[tuple(ijk)] == k
    assert np.isnan(pts[:15]).all() and np.isnan(pts[24:]).all()
    paths = verse.convert_verse(d, tmp_path / "out")
    assert validate_datalist(paths[0]) == {"training": 1}


def test_orientation_is_honoured_for_a_reoriented_grid(tmp_path):
    affine = np.diag([1.5, 2.0, 3.0, 1.0])
    affine[:3, 3] = [10, -20, 30]
    shape = (10, 12, 14)  # RAS image
    ras_vox = {1: np.array([2.0, 3.0, 4.0])}
    # the same point in PIR voxel coordinates: P = 11 - A, I = 13 - S, R = R
    pir = {1: np.array([12 - 1 - 3.0, 14 - 1 - 4.0, 2.0])}
    a = verse.centroids_to_world(ras_vox, ("R", "A", "S"), affine, shape)[1]
    b = verse.centroids_to_world(pir, ("P", "I", "R"), affine, shape)[1]
    np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(a, [-(10 + 3.0), -(-20 + 6.0), 30 + 12.0], atol=1e-9)  # LPS
    back = verse.world_to_centroids({1: b}, ("P", "I", "R"), affine, shape)[1]
    np.testing.assert_allclose(back, pir[1], atol=1e-9)


@pytest.mark.parametrize("codes", [["P", "I", "X"], ["P", "I"], ["P", "A", "R"]])
def test_unknown_orientation_code_names_file(tmp_path, codes):
    p = tmp_path / "sub-x_ctd.json"
    p.write_text(json.dumps([{"direction": codes}, {"label": 1, "X": 1, "Y": 2, "Z": 3}]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"sub-x_ctd\.json: .*orientation codes"):
        verse.read_centroid_json(p)
