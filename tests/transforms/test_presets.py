"""SCN presets end to end on small synthetic files: landmarks stay under blobs through preprocessing and
the full training augmentation (affine <= 0.05 px, with elastic <= 0.3 px)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from landmark_blobs import blob_errors, blob_image
from monai.transforms import Compose

from transforms.io import write_landmark_file
from transforms.presets import SCN_DEFAULTS, scn_preprocessing, scn_train_augmentation

torch.set_num_threads(1)

PTS_3D = np.array([[14.2, 16.8, 13.1], [30.6, 22.3, 24.7], [np.nan] * 3])


def _nifti_case(tmp_path):
    affine = np.array([[-1.5, 0, 0, 20.0], [0, 0, 1.2, -10.0], [0, -1.0, 0, 5.0], [0, 0, 0, 1.0]])  # not RAS-aligned
    img = blob_image((44, 40, 36), PTS_3D[:2], sigma=2.4)[0].numpy() * 1000.0
    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(img, affine), str(path))
    world = PTS_3D @ affine[:3, :3].T + affine[:3, 3]
    world[:, :2] *= -1  # to LPS
    return path, write_landmark_file(tmp_path / "lm.fcsv", world, "LPS")


def test_scn_3d_preprocessing_and_augmentation_keep_landmarks_under_blobs(tmp_path):
    image, landmarks = _nifti_case(tmp_path)
    pre = Compose(scn_preprocessing(spatial_dims=3, spacing=1.5, spatial_size=(40, 40, 40), num_landmarks=3))
    data = pre({"image": str(image), "landmarks": str(landmarks)})
    img, lm = data["image"], data["landmarks"]
    assert tuple(img.shape) == (1, 40, 40, 40) and lm.shape == (3, 3) and torch.isnan(lm[2]).all()
    np.testing.assert_allclose(img.pixdim[:3].numpy(), [1.5, 1.5, 1.5], atol=1e-6)
    assert float(img.max()) <= 1000 / 2048 + 1e-6  # CT normalisation
    assert max(blob_errors(img, lm[:2])) <= 0.05
    aug = scn_train_augmentation(spatial_dims=3, spacing=1.5, elastic_magnitude=4.0, translation=6.0)
    # seed each Compose after building it: MONAI's Compose re-seeds its transforms from the global seed when built
    affine_only = Compose(aug[:2]).set_random_state(5)(dict(data))
    assert max(blob_errors(affine_only["image"], affine_only["landmarks"][:2])) <= 0.05
    elastic = Compose(aug[2:3]).set_random_state(6)  # intensity shift/scale would move the centroid weights
    out = elastic(affine_only)
    errs = blob_errors(out["image"], out["landmarks"][:2])
    assert len(errs) == 2 and np.median(errs) <= 0.3, errs
    assert torch.isnan(out["landmarks"][2]).all()


def test_scn_2d_png_with_datalist_spacing(tmp_path):
    from PIL import Image

    pts = np.array([[20.3, 30.6], [44.8, 18.2]])  # MONAI (x, y) = (column, row) of the PNG
    arr = blob_image((64, 48), pts, sigma=2.4)[0].numpy()
    png = tmp_path / "ceph.png"
    Image.fromarray((arr.T * 255).round().astype(np.uint8)).save(png)
    pre = scn_preprocessing(spatial_dims=2, spacing=0.2, spatial_size=(48, 40), spacing_key="spacing")
    data = Compose(pre)({"image": str(png), "landmarks": pts.tolist(), "spacing": [0.1, 0.1]})
    assert tuple(data["image"].shape) == (1, 48, 40)
    # MONAI's Spacing keeps the first voxel centre: i -> i / 2; then the centre pad (32, 24) -> (48, 40) adds 8
    np.testing.assert_allclose(data["landmarks"].numpy(), pts / 2 + 8, atol=1e-4)
    assert max(blob_errors(data["image"] + 1.0, data["landmarks"])) <= 0.05  # X-ray normalisation: background -1
    assert float(data["image"].min()) >= -1.0 and float(data["image"].max()) <= 1.0
    aug = Compose(scn_train_augmentation(spatial_dims=2, spacing=0.2))
    aug.set_random_state(1)
    out = aug(data)
    assert out["image"].shape == data["image"].shape and out["landmarks"].shape == (2, 2)


def test_defaults_follow_methods_md_and_bad_arguments_raise():
    assert SCN_DEFAULTS[2]["translation"] == 10.0 and SCN_DEFAULTS[3]["elastic_magnitude"] == 15.0
    aug = scn_train_augmentation(spatial_dims=2)
    assert [type(t).__name__ for t in aug] == [
        "RandScaledAffined",
        "TrackLandmarksd",
        "RandLandmarkElasticd",
        "RandIntensityShiftScaled",
    ]
    np.testing.assert_allclose(aug[2].elastic.magnitude, [10 / 0.46875] * 2)
    with pytest.raises(ValueError, match="spatial_dims"):
        scn_train_augmentation(spatial_dims=4)
    with pytest.raises(ValueError, match="spatial_size"):
        scn_preprocessing(spatial_dims=3, spatial_size=(4, 4))


def test_scn_2d_one_slice_metaimage_fitted_with_aspect_ratio(tmp_path):
    """A 2D MetaImage stored W x H x 1 (Digital Hand Atlas layout) loads as 2D; ``resize="fit"`` keeps its own
    spacing, fits the whole image into the grid and the landmarks follow."""
    import SimpleITK as sitk

    pts = np.array([[30.2, 70.6], [50.8, 20.1]])  # (x, y) = (i, j) of the W x H array
    arr = blob_image((80, 100), pts, sigma=3.0)[0].numpy()
    mha = sitk.GetImageFromArray(np.ascontiguousarray((arr * 200).astype(np.uint8).T[None]))  # [z, y, x]
    mha.SetSpacing([0.15, 0.15, 0.15])
    sitk.WriteImage(mha, str(tmp_path / "hand.mha"))
    pre = scn_preprocessing(spatial_dims=2, spacing=-1.0, spatial_size=(50, 50), resize="fit", spacing_key="spacing")
    assert "Spacingd" not in [type(t).__name__ for t in pre]  # non-positive spacing: the image keeps its own
    data = Compose(pre)({"image": str(tmp_path / "hand.mha"), "landmarks": pts.tolist()})
    img, lm = data["image"], data["landmarks"]
    assert tuple(img.shape) == (1, 50, 50) and lm.shape == (2, 2)
    np.testing.assert_allclose(img.pixdim[:2].numpy(), [0.15 * 80 / 40, 0.3], rtol=1e-6)  # 80 x 100 -> 40 x 50
    np.testing.assert_allclose(lm.numpy(), (pts + 0.5) / 2 - 0.5 + [5, 0], atol=1e-4)  # half size, 5 px pad in x
    assert max(blob_errors(img + 1.0, lm)) <= 0.05
    with pytest.raises(ValueError, match="'fit'"):
        scn_preprocessing(spatial_dims=2, resize="stretch")


def test_scn_mr_normalisation_maps_the_1st_and_99th_percentiles_to_minus_one_and_one(tmp_path):
    image, landmarks = _nifti_case(tmp_path)
    pre = scn_preprocessing(spatial_dims=3, spacing=1.5, spatial_size=(40, 40, 40), normalization="mr")
    img = Compose(pre)({"image": str(image), "landmarks": str(landmarks)})["image"]
    assert float(img.min()) == -1.0 and float(img.max()) == 1.0
    assert float((img >= 1.0).float().mean()) == pytest.approx(0.01, abs=0.002)  # the top 1 % is clipped
    with pytest.raises(ValueError, match="'mr'"):
        scn_preprocessing(spatial_dims=3, normalization="t1")
