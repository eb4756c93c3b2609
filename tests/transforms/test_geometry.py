"""transforms.geometry: the one home of LPS/RAS flips, affine slicing, spacing and voxel <-> world mapping."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from transforms.geometry import (
    affine_with_spacing,
    flip_affine_lps_ras,
    from_ras,
    image_affine,
    lps_ras_flip,
    lps_to_ras,
    original_affine,
    ras_to_lps,
    spatial_affine,
    to_ras,
    voxel_to_world,
    world_to_voxel,
)
from transforms.landmarks import SetSpacing


@pytest.mark.parametrize("dims", [2, 3])
def test_lps_ras_flip_negates_the_first_two_axes_and_is_its_own_inverse(dims):
    lps = np.array([[1.0, 2.0, 3.0][:dims], [np.nan] * dims])
    ras = lps_to_ras(lps)
    np.testing.assert_array_equal(ras[0], [-1.0, -2.0, 3.0][:dims])
    assert np.isnan(ras[1]).all() and ras.dtype == np.float64 and lps[0, 0] == 1.0  # a copy
    np.testing.assert_array_equal(ras_to_lps(ras), lps)
    t = torch.tensor(lps, dtype=torch.float32)
    assert lps_to_ras(t).dtype == torch.float32 and torch.equal(lps_to_ras(t)[0], torch.tensor(ras[0]).float())
    np.testing.assert_array_equal(to_ras(lps, "LPS"), ras)
    np.testing.assert_array_equal(to_ras(lps, "RAS"), lps)
    np.testing.assert_array_equal(from_ras(ras, "LPS"), lps)
    with pytest.raises(ValueError, match="expected LPS or RAS"):
        to_ras(lps, "voxel")
    np.testing.assert_array_equal(lps_ras_flip(dims), np.diag([-1.0, -1.0] + [1.0] * (dims - 1)))


@pytest.mark.parametrize("dims", [2, 3])
def test_flipped_itk_geometry_is_the_affine_monai_loads(tmp_path, dims):
    """ITK stores LPS direction, spacing and origin; MONAI's ITKReader gives ``flip @ lps_affine`` (RAS)."""
    img = sitk.GetImageFromArray(np.zeros((5, 6, 7)[:dims], np.float32))
    spacing, origin = (0.5, 0.7, 1.3)[:dims], (10.0, -20.0, 30.0)[:dims]
    angle = 0.3
    rot = np.eye(dims)
    rot[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(rot.ravel().tolist())
    sitk.WriteImage(img, str(tmp_path / "x.mha"))
    lps = np.eye(dims + 1)
    lps[:dims, :dims] = rot * np.asarray(spacing)
    lps[:dims, dims] = origin
    loaded = LoadImage(image_only=True, ensure_channel_first=True, reader="ITKReader")(str(tmp_path / "x.mha"))
    np.testing.assert_allclose(spatial_affine(loaded.affine, dims), flip_affine_lps_ras(lps), atol=1e-6)


def test_spatial_affine_of_a_2d_image_takes_rows_and_columns_0_1_3():
    full = np.arange(16, dtype=float).reshape(4, 4)
    np.testing.assert_array_equal(spatial_affine(full, 2), full[np.ix_([0, 1, 3], [0, 1, 3])])
    np.testing.assert_array_equal(spatial_affine(torch.as_tensor(full), 3), full)
    batched = np.stack([full, full + 1])
    assert spatial_affine(batched, 2).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="cannot describe 3D points"):
        spatial_affine(np.eye(3), 3)


def test_affine_with_spacing_keeps_directions_and_origin_like_set_spacing():
    a = np.eye(4)
    a[:2, :2] = [[0.0, -2.0], [3.0, 0.0]]  # a rotation with spacing (3, 2)
    a[:3, 3] = [5.0, 6.0, 7.0]
    out = affine_with_spacing(a, [0.5, 0.25])
    np.testing.assert_allclose(np.linalg.norm(out[:2, :2], axis=0), [0.5, 0.25])
    np.testing.assert_allclose(out[:2, :2] / [0.5, 0.25], a[:2, :2] / [3.0, 2.0])
    np.testing.assert_array_equal(out[:, 2:], a[:, 2:])
    image = MetaTensor(torch.zeros(1, 4, 4), affine=torch.as_tensor(a))
    np.testing.assert_allclose(SetSpacing()(image, [0.5, 0.25]).affine.numpy(), out)


def test_voxel_world_round_trip_batched_and_nan():
    a = np.array([[0.0, -2.0, 0.0, 5.0], [3.0, 0.0, 0.0, 6.0], [0.0, 0.0, 1.5, 7.0], [0, 0, 0, 1]])
    vox = np.array([[1.0, 2.0, 3.0], [np.nan] * 3])
    world = voxel_to_world(vox, a)
    np.testing.assert_allclose(world[0], (a @ [1.0, 2.0, 3.0, 1.0])[:3])
    assert np.isnan(world[1]).all() and isinstance(world, np.ndarray)
    np.testing.assert_allclose(world_to_voxel(world, a)[0], vox[0], atol=1e-12)
    batch = torch.as_tensor(np.stack([vox, vox + 1]))  # (B, N, D) with (B, D+1, D+1)
    out = voxel_to_world(batch, torch.as_tensor(np.stack([a, 2 * a])))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out[1, 0].numpy(), (2 * a @ [2.0, 3.0, 4.0, 1.0])[:3])


def test_image_and_original_affines():
    a = torch.as_tensor(np.diag([2.0, 3.0, 1.0, 1.0]))
    img = MetaTensor(
        torch.zeros(1, 4, 5), affine=a, meta={"original_affine": torch.as_tensor(np.diag([4.0, 4.0, 4.0, 1.0]))}
    )
    np.testing.assert_array_equal(image_affine(img, 2).numpy(), np.diag([2.0, 3.0, 1.0]))
    np.testing.assert_array_equal(original_affine(img, 2).numpy(), np.diag([4.0, 4.0, 1.0]))
    pixel_only = MetaTensor(torch.zeros(1, 4, 5))
    np.testing.assert_array_equal(original_affine(pixel_only, 2, [0.1, 0.2]).numpy(), np.diag([0.1, 0.2, 1.0]))
    assert torch.equal(image_affine(torch.zeros(1, 4, 5), 2), torch.eye(3, dtype=torch.float64))
