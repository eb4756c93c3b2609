"""Tests of the checked image loader: unreadable, wrong-dimensional, multi-channel and NaN images name the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, LoadImage
from PIL import Image

from mlm.bundle import landmark_preprocessing
from transforms.io import CheckedLoadImage, CheckedLoadImaged


def _nifti(path, array, spacing=2.0):
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), np.diag([spacing] * 3 + [1.0])), str(path))
    return str(path)


def _volume(shape=(10, 12, 8)):
    return np.random.default_rng(0).random(shape)


def test_valid_images_load_exactly_as_monai_load_image(tmp_path):
    path = _nifti(tmp_path / "ok.nii.gz", _volume())
    img = CheckedLoadImage(spatial_dims=3)(path)
    ref = LoadImage(image_only=True, ensure_channel_first=True)(path)
    assert img.shape == (1, 10, 12, 8) and torch.equal(img, ref)
    assert torch.equal(img.affine, ref.affine) and img.meta["filename_or_obj"] == path
    # a 2D image stored as one slice is accepted for a 2D pipeline (EnsureSpatialDimsd drops the axis)
    assert CheckedLoadImage(spatial_dims=2)(_nifti(tmp_path / "slice.nii.gz", _volume((10, 12, 1)))).ndim == 4
    out = CheckedLoadImaged(keys="image", spatial_dims=3)({"image": path, "id": "ok"})
    assert out["id"] == "ok" and out["image"].shape == (1, 10, 12, 8)


def test_truncated_and_unreadable_files_raise_value_error_naming_the_file(tmp_path):
    full = _nifti(tmp_path / "full.nii.gz", _volume())
    raw = Path(full).read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(raw[: len(raw) // 2])  # header readable, data cut: a bare EOFError from gzip
    with pytest.raises(ValueError, match=r"truncated\.nii\.gz: cannot read the image.*EOFError") as err:
        CheckedLoadImage(spatial_dims=3)(str(truncated))
    assert isinstance(err.value.__cause__, EOFError)
    header_cut = tmp_path / "header_cut.nii.gz"
    header_cut.write_bytes(raw[:100])
    with pytest.raises(ValueError, match=r"header_cut\.nii\.gz: cannot read the image"):
        CheckedLoadImage(spatial_dims=3)(str(header_cut))
    bmp = tmp_path / "cut.bmp"
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(bmp)
    bmp.write_bytes(bmp.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.bmp: cannot read the image"):
        CheckedLoadImage(spatial_dims=2)(str(bmp))
    with pytest.raises(FileNotFoundError, match=r"missing\.nii\.gz: image file not found"):
        CheckedLoadImage()(str(tmp_path / "missing.nii.gz"))


def test_wrong_dimensionality_and_channels_name_expected_and_found(tmp_path):
    four_d = _nifti(tmp_path / "4d.nii.gz", _volume((10, 12, 8, 3)))
    with pytest.raises(ValueError, match=r"4d\.nii\.gz: expected a single-channel image, found 3 channels") as err:
        CheckedLoadImage(spatial_dims=3)(four_d)
    assert "(3, 10, 12, 8)" in str(err.value) and "stored as (10, 12, 8, 3)" in str(err.value)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 12), np.float32), np.eye(4)), str(flat))
    with pytest.raises(ValueError, match=r"flat\.nii\.gz: expected a 3D image, found 2 spatial dims.*\(1, 10, 12\)"):
        CheckedLoadImage(spatial_dims=3)(str(flat))
    volume = _nifti(tmp_path / "ct.nii.gz", _volume())
    with pytest.raises(ValueError, match=r"ct\.nii\.gz: expected a 2D image, found 3 spatial dims.*\(1, 10, 12, 8\)"):
        CheckedLoadImage(spatial_dims=2)(volume)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(rgb)
    with pytest.raises(
        ValueError, match=r"rgb\.png: expected a single-channel image, found 3 channels.*colour image\.$"
    ):
        CheckedLoadImage(spatial_dims=2, grey=False)(str(rgb))
    assert CheckedLoadImage(spatial_dims=2, channels=None)(str(rgb)).shape == (3, 30, 20)


@pytest.mark.parametrize("mode,suffix", [("RGB", ".png"), ("RGBA", ".png"), ("LA", ".png"), ("RGB", ".jpg")])
def test_grey_xray_saved_in_colour_loads_as_one_grey_channel(tmp_path, mode, suffix):
    """The ISBI 2015 mirrors store grey cephalograms as 3-channel JPEG: every path must see one grey channel."""
    grey = (np.arange(30 * 20).reshape(30, 20) % 251).astype(np.uint8)  # (H, W) as PIL stores it
    path = tmp_path / f"xray_{mode}{suffix}"
    options = {"quality": 100} if suffix == ".jpg" else {}
    Image.fromarray(grey, mode="L").convert(mode).save(path, **options)
    expected = CheckedLoadImage(spatial_dims=2)(str(_save_grey(tmp_path, grey)))
    img = CheckedLoadImage(spatial_dims=2)(str(path))
    assert img.shape == (1, 20, 30) == expected.shape
    if suffix == ".png":  # lossless: exactly the grey values
        assert torch.equal(img.as_tensor(), expected.as_tensor())
    else:  # JPEG: the decoder's grey, within its quantisation
        assert float((img - expected).abs().max()) <= 4.0
    # through the bundles' preprocessing (training, inference and predict all load with it)
    out = Compose(landmark_preprocessing(spatial_dims=2, spacing=1.0, spatial_size=[32, 32], with_landmarks=False))(
        {"image": str(path)}
    )
    assert out["image"].shape[0] == 1


def _save_grey(tmp_path: Path, grey: np.ndarray) -> Path:
    path = tmp_path / "grey.png"
    Image.fromarray(grey, mode="L").save(path)
    return path


def test_real_colour_image_becomes_its_luma(tmp_path):
    from transforms.io import colour_to_grey

    rgb = torch.tensor([[[10.0]], [[200.0]], [[50.0]]])
    np.testing.assert_allclose(colour_to_grey(rgb).numpy(), [[[0.299 * 10 + 0.587 * 200 + 0.114 * 50]]], rtol=1e-6)
    rgba = torch.cat([rgb, torch.full((1, 1, 1), 255.0)])
    assert torch.equal(colour_to_grey(rgba), colour_to_grey(rgb))
    with pytest.raises(ValueError, match="2, 3 or 4 channels"):
        colour_to_grey(torch.zeros(5, 2, 2))


def test_nan_and_infinite_values_are_refused(tmp_path):
    vol = _volume()
    vol[1, 2, 3] = np.nan
    vol[4, 5, 6] = np.inf
    path = _nifti(tmp_path / "nan.nii.gz", vol)
    with pytest.raises(ValueError, match=r"nan\.nii\.gz: the image holds 1 NaN and 1 infinite values \(of 960"):
        CheckedLoadImage(spatial_dims=3)(path)
    assert torch.isnan(CheckedLoadImage(spatial_dims=3, allow_non_finite=True)(path)).sum() == 1


def test_bundle_preprocessing_uses_the_checked_loader(tmp_path):
    four_d = _nifti(tmp_path / "4d.nii.gz", _volume((10, 12, 8, 2)))
    pipeline = Compose(landmark_preprocessing(3, 2.0, [16, 16, -1], 26, with_landmarks=False))
    assert isinstance(pipeline.transforms[0], CheckedLoadImaged)
    with pytest.raises(RuntimeError) as err:  # MONAI's Compose wraps it: the cause names the file
        pipeline({"image": four_d})
    cause = err.value.__cause__
    assert isinstance(cause, ValueError) and "4d.nii.gz: expected a single-channel image, found 2" in str(cause)
    ok = pipeline({"image": _nifti(tmp_path / "ok.nii.gz", _volume())})
    assert ok["image"].shape == (1, 16, 16, 8)
