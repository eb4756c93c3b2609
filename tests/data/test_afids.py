"""AFIDs / Slicer .fcsv: RAS handling on the real template and the raters' error floor."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from mlm.data import afids
from mlm.data.datalist import load_datalist, validate_datalist
from transforms.io.landmark_files import read_landmark_file


def test_ras_voxel_roundtrip_on_template(shared_data):
    d = shared_data / "afids_mni152"
    img = nib.load(d / "tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz")
    pts, names = afids.read_fcsv(d / "tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv")
    assert pts.shape == (32, 3) and len(names) == 32
    vox = afids.ras_to_voxel(pts, img.affine)
    assert (vox >= 0).all() and (vox <= np.array(img.shape) - 1).all()
    np.testing.assert_allclose(afids.voxel_to_ras(vox, img.affine), pts, atol=1e-4)
    # AC is close to the MNI origin, i.e. voxel (96, 132, 78) of this grid
    np.testing.assert_allclose(vox[0], [96, 132, 78], atol=6)


def test_raters_mean_error_reproduced(shared_data):
    d = shared_data / "afids_mni152"
    raters = sorted((d / "raters_from_github").glob("*rater0*_afids.fcsv"))
    errs = afids.rater_errors(d / "tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv", raters)
    means = sorted(float(v.mean()) for v in errs.values())
    assert len(means) == 4
    np.testing.assert_allclose([means[0], means[-1]], [0.87, 1.61], atol=0.005)


def test_convert_template(shared_data, tmp_path):
    d = shared_data / "afids_mni152"
    paths = afids.convert_afids(
        d / "tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz",
        d / "tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv",
        tmp_path,
    )
    assert validate_datalist(paths[0]) == {"test": 1}
    lf = read_landmark_file(load_datalist(paths[0], "test")[0]["landmarks"])
    assert lf.coordinate_system == "RAS" and lf.points.shape == (32, 3)
