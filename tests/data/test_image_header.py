"""read_image_header gives MONAI's spatial shape and RAS affine from the header; non-images and truncated files fail."""

from __future__ import annotations

import numpy as np
import pytest

from mlm.data.image_header import read_image_header

AFFINE = np.array([[0, -2.0, 0, 10], [1.5, 0, 0, -3], [0, 0, 3, 7], [0, 0, 0, 1]])


def _write(path, kind):
    """Write a small image of ``kind`` (random content, so compressed files are not tiny)."""
    import nibabel as nib
    import SimpleITK as sitk
    from PIL import Image

    rng = np.random.default_rng(0)
    if kind == "nifti":
        nib.save(nib.Nifti1Image(rng.integers(0, 1000, (9, 10, 11)).astype(np.int16), AFFINE), path)
    elif kind == "nifti_slice":
        nib.save(nib.Nifti1Image(rng.random((9, 10, 1)).astype(np.float32), AFFINE), path)
    elif kind == "pil":
        Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(path)
    elif kind == "pil_rgb":
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(path)
    elif kind in ("itk", "itk_compressed"):
        im = sitk.GetImageFromArray(rng.random((7, 6, 5)).astype(np.float32))
        im.SetSpacing((1.5, 2.0, 3.0))
        im.SetOrigin((1.0, 2.0, 3.0))
        im.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
        sitk.WriteImage(im, str(path), kind == "itk_compressed")
    elif kind == "itk_2d":
        im = sitk.GetImageFromArray(rng.integers(0, 100, (30, 20)).astype(np.uint8))
        im.SetSpacing((0.5, 0.25))
        sitk.WriteImage(im, str(path))
    elif kind == "itk_slice":  # a 2D radiograph stored as W x H x 1 (Digital Hand Atlas .mha)
        im = sitk.GetImageFromArray(rng.random((1, 30, 20)).astype(np.float32))
        im.SetSpacing((0.5, 0.25, 1.0))
        sitk.WriteImage(im, str(path))
    elif kind == "numpy":
        np.save(path, rng.random((4, 5, 6)).astype(np.float32))
    return path


FORMATS = [
    ("a.nii.gz", "nifti", "nibabel"),
    ("a.nii", "nifti", "nibabel"),
    ("slice.nii.gz", "nifti_slice", "nibabel"),
    ("a.png", "pil", "pil"),
    ("rgb.png", "pil_rgb", "pil"),
    ("a.bmp", "pil", "pil"),
    ("a.jpg", "pil", "pil"),
    ("a.mha", "itk", "itk"),
    ("c.mha", "itk_compressed", "itk"),
    ("a.nrrd", "itk", "itk"),
    ("a2d.mha", "itk_2d", "itk"),
    ("slice.mha", "itk_slice", "itk"),
    ("a.tif", "itk_2d", "itk"),
    ("a.npy", "numpy", "numpy"),
]


@pytest.mark.parametrize("name, kind, reader", FORMATS)
def test_header_matches_what_monai_load_image_gives(tmp_path, name, kind, reader):
    from monai.transforms import LoadImage

    path = _write(tmp_path / name, kind)
    header = read_image_header(path)
    img = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    assert header.reader == reader
    assert header.spatial_shape == tuple(img.shape[1:])
    r = len(header.spatial_shape)
    affine = img.affine.numpy()
    idx = [*range(r), affine.shape[0] - 1]
    np.testing.assert_allclose(header.affine, affine[np.ix_(idx, idx)], atol=1e-6)
    np.testing.assert_allclose(header.spacing, np.linalg.norm(affine[np.ix_(idx, idx)][:-1, :-1], axis=0), atol=1e-6)


@pytest.mark.parametrize("name, kind, reader", [f for f in FORMATS if f[1] not in ("nifti_slice", "pil_rgb")])
def test_text_file_under_an_image_name_is_refused_naming_it(tmp_path, name, kind, reader):
    path = tmp_path / name
    path.write_text("this is a text file, not an image\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a readable image") as err:
        read_image_header(path)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("name, kind", [(n, k) for n, k, _ in FORMATS if k not in ("nifti_slice", "pil_rgb")])
def test_truncated_file_is_refused_naming_it(tmp_path, name, kind):
    path = _write(tmp_path / name, kind)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(ValueError) as err:
        read_image_header(path)
    assert str(err.value).startswith(str(path))
    assert any(w in str(err.value) for w in ("truncated", "not a readable image", "cannot read the image data"))


def test_truncated_gzip_data_passes_headers_only_and_fails_the_data_check(tmp_path):
    import nibabel as nib

    path = tmp_path / "big.nii.gz"
    rng = np.random.default_rng(1)
    nib.save(nib.Nifti1Image(rng.random((32, 32, 32)).astype(np.float32), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:-1000])
    assert read_image_header(path, verify_data=False).spatial_shape == (32, 32, 32)
    with pytest.raises(ValueError, match=r"big\.nii\.gz: truncated or corrupt gzip data"):
        read_image_header(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        read_image_header(tmp_path / "nope.nii.gz")
    with pytest.raises(ValueError, match="a folder, not an image file"):
        read_image_header(tmp_path)
