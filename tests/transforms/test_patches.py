"""Landmark patches (transforms.patches): exact patch geometry in 2D and 3D, one-interpolation resampling, random
training patches around the landmarks.

Tolerances: world positions through patch coordinates + patch affine <= 1e-4 mm (float32 landmarks; measured
~1e-6 mm); a bright dot under each landmark lands at the landmark's patch coordinate <= 0.3 px with rotation and
scale (the project's bar; measured <= 0.02 px); a linear ramp is reproduced exactly by the (bi/tri)linear sampling
(and by the symmetric anti-aliasing kernel) <= 1e-3 of an image voxel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from landmark_blobs import blob_centroid, blob_image, window_inside
from monai.data import MetaTensor, decollate_batch, list_data_collate
from monai.transforms import Compose

from transforms.geometry import spatial_affine, voxel_to_world
from transforms.intensity import NormalizeXRay, NormalizeXRayd
from transforms.patches import (
    LandmarkPatches,
    LandmarkPatchesd,
    RandLandmarkPatches,
    RandLandmarkPatchesd,
    isotropic_offsets,
    patch_affines,
    rotation_matrices,
    sample_patches,
)

torch.set_num_threads(1)


def _affine(spacing, angle=0.0, origin=None, flip=False) -> torch.Tensor:
    """A MONAI-style affine: 4x4 for 2D (rows/columns [0, 1, 3]) and 3D, rotated in the first plane."""
    d = len(spacing)
    rot = np.eye(d)
    rot[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    if flip:
        rot[:2] *= -1.0  # RAS of an LPS file
    lin = rot @ np.diag(spacing)
    out = np.eye(4)
    out[:d, :d] = lin
    out[:d, 3] = np.zeros(d) if origin is None else origin
    return torch.as_tensor(out)


def _ramp_image(shape, coeffs, affine) -> MetaTensor:
    """``(1, *S)`` float64 image ``sum_d a_d x_d + b`` of voxel coordinates (bilinear sampling is exact on it)."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    img = sum(a * g for a, g in zip(coeffs[:-1], grids)) + coeffs[-1]
    return MetaTensor(torch.as_tensor(img)[None], affine=affine)


def test_patch_affine_centres_the_patch_and_follows_the_image_axes():
    aff = _affine([0.1, 0.1], angle=0.3, origin=[5.0, -7.0], flip=True)
    centre = torch.tensor([[12.34, -56.78]], dtype=torch.float64)
    rot = rotation_matrices(torch.tensor([0.2]), 2)
    a = patch_affines(centre, (64, 48), 0.25, aff, rot, torch.tensor([1.1]))[0]
    torch.testing.assert_close(a[:2, :2] @ torch.tensor([31.5, 23.5], dtype=torch.float64) + a[:2, 2], centre[0])
    lin = a[:2, :2]
    torch.testing.assert_close(lin.T @ lin, torch.eye(2, dtype=torch.float64) * (0.25 * 1.1) ** 2)
    # without rotation, the patch axes are the image axes (same directions, flips included)
    b = patch_affines(centre, (64, 48), 0.25, aff)[0]
    img_dirs = spatial_affine(aff, 2)[:2, :2] / 0.1
    torch.testing.assert_close(b[:2, :2] / 0.25, torch.as_tensor(img_dirs))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([2, 3]))
def test_landmark_world_position_is_preserved_through_patch_coordinates(seed, dims):
    rng = np.random.default_rng(seed)
    aff = _affine(
        rng.uniform(0.1, 2.0, dims), rng.uniform(-np.pi, np.pi), rng.uniform(-100, 100, dims), rng.random() < 0.5
    )
    shape = (40,) * dims
    img = MetaTensor(torch.zeros(1, *shape), affine=aff)
    pts = rng.uniform(0, 39, (5, dims))
    pts[2] = np.nan
    lm = MetaTensor(torch.as_tensor(pts, dtype=torch.float32), affine=aff)
    world = voxel_to_world(
        torch.as_tensor(pts, dtype=torch.float32).double(), torch.as_tensor(spatial_affine(aff, dims))
    )
    size = (16,) * dims
    spacing = float(rng.uniform(0.05, 1.0))
    t = RandLandmarkPatches(
        size,
        spacing,
        offset_sigma=spacing * 3,
        max_offset=spacing * 6,
        rotate_range=0.5,
        scale_range=0.2,
        sampling="all",
    )
    t.set_random_state(int(rng.integers(1 << 30)))
    patches, plm = t(img, lm)
    assert patches.shape == (4, 1, *size) and plm.shape == (4, 5, dims)
    assert patches.affine.shape == (4, 4, 4)
    a = torch.as_tensor(spatial_affine(plm.affine, dims))
    back = voxel_to_world(plm.as_tensor().double(), a)  # (K, N, D)
    inside = ~torch.isnan(plm).any(-1)
    assert not bool(inside[:, 2].any())  # a missing landmark stays missing
    for k, n in inside.nonzero().tolist():
        assert float((back[k, n] - world[n]).norm()) <= 1e-4  # mm
    # the centre landmark of each patch is inside it (offset <= 6 voxels, half extent >= 0.8 * 8) and the others are NaN
    # exactly when they fall beyond the patch's outer voxel faces
    for k, idx in enumerate(t.landmark_indices):
        assert bool(inside[k, idx])
    vox = (
        torch.einsum("kij,nj->kni", torch.linalg.inv(a)[:, :dims, :dims], world)
        + torch.linalg.inv(a)[:, None, :dims, dims]
    )
    expected = ((vox >= -0.5) & (vox <= 15.5)).all(-1)
    assert torch.equal(expected, inside)


@pytest.mark.parametrize(
    "shape, spacing, pts, patch, patch_spacing",
    [
        ((160, 140), (0.1, 0.1), [[50.3, 60.7], [90.6, 70.2], [70.1, 100.4]], (32, 32), 0.25),
        ((48, 44, 40), (0.8, 0.8, 1.2), [[16.3, 18.7, 14.2], [30.6, 24.2, 22.9]], (24, 24, 24), 1.0),
    ],
)
def test_bright_dot_lands_at_the_landmarks_patch_coordinate(shape, spacing, pts, patch, patch_spacing):
    dims = len(shape)
    aff = _affine(spacing, angle=0.2, origin=[3.0] * dims)
    # dots ~0.4 mm wide: 1.6 px in the 2D patches, ~1.6 voxels in the 3D ones
    img = blob_image(shape, pts, sigma=0.4 / min(spacing) if dims == 2 else 2.0, affine=aff)
    lm = MetaTensor(torch.tensor(pts, dtype=torch.float32), affine=aff)
    errs = []
    for seed in range(3):
        t = RandLandmarkPatches(
            patch, patch_spacing, offset_sigma=patch_spacing * 2, rotate_range=0.26, scale_range=0.1
        )
        t.num_samples, t.sampling = 1, "all"
        t.set_random_state(seed)
        patches, plm = t(img, lm)
        assert np.abs(t.angles).max() > 0.01 and np.abs(t.scales - 1).max() > 0.005  # really rotated and scaled
        for k, n in (~torch.isnan(plm).any(-1)).nonzero().tolist():
            p = plm[k, n].numpy()
            if window_inside(patch, p, radius=5.0):
                errs.append(float(np.linalg.norm(blob_centroid(patches[k, 0].numpy(), p, radius=5.0) - p)))
    assert len(errs) >= 3 * len(pts)
    assert max(errs) <= 0.3, errs  # px; measured <= 0.02
    assert np.median(errs) <= 0.05, errs


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("anti_aliasing", [False, True])
@pytest.mark.parametrize("num", [1, 6])  # 6 patches: the anti-aliasing takes its grouped-convolution path
def test_linear_ramp_is_sampled_exactly_with_rotation_and_scale(dims, anti_aliasing, num):
    rng = np.random.default_rng(dims)
    shape = (60, 50) if dims == 2 else (40, 38, 36)
    coeffs = rng.uniform(-2, 2, dims + 1)
    aff = _affine([0.1] * dims if dims == 2 else [0.5] * dims, angle=0.4, origin=[1.0] * dims)
    img = _ramp_image(shape, coeffs, aff)
    centre = [30.2, 24.9] if dims == 2 else [20.3, 18.6, 17.8]
    centres = voxel_to_world(
        torch.as_tensor([centre] * num) + torch.as_tensor(rng.uniform(-2, 2, (num, dims))), spatial_affine(aff, dims)
    )
    angles = rng.uniform(-0.3, 0.3, (num,) if dims == 2 else (num, 3))
    size = (12,) * dims if dims == 2 else (8,) * dims  # inside the image (the ramp is not linear in the padding)
    patch_spacing = 0.25 if dims == 2 else 1.1  # coarser than the image: the anti-aliasing kernel is active
    scales = torch.as_tensor(rng.uniform(0.9, 1.1, num))
    a = patch_affines(centres, size, patch_spacing, aff, rotation_matrices(angles, dims), scales)
    out = sample_patches(img.float(), aff, a, size, anti_aliasing=anti_aliasing)
    assert out.shape == (num, 1, *size)
    q = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in size], indexing="ij"), -1)
    slope = float(np.abs(coeffs[:-1]).sum())
    for k in range(num):
        to_img = torch.linalg.inv(torch.as_tensor(spatial_affine(aff, dims))) @ a[k]
        x = q @ to_img[:dims, :dims].T + to_img[:dims, dims]
        expected = (x * torch.as_tensor(coeffs[:-1])).sum(-1) + coeffs[-1]
        assert float((out[k, 0].double() - expected).abs().max()) <= 1e-3 * slope + 1e-4


def test_uint8_image_is_converted_only_in_the_windows_and_matches_the_float_image():
    rng = np.random.default_rng(0)
    raw = torch.as_tensor(rng.integers(0, 256, (1, 300, 260)), dtype=torch.uint8)
    aff = _affine([0.1, 0.1])
    img8 = MetaTensor(raw, affine=aff)
    imgf = MetaTensor(NormalizeXRay()(raw.float()).as_tensor(), affine=aff)
    centres = torch.tensor([[10.0, 12.0], [20.3, 5.1]], dtype=torch.float64)
    rot = rotation_matrices(torch.tensor([0.1, -0.2]), 2)
    p8 = LandmarkPatches((32, 32), 0.25)(img8, centres, rotations=rot)
    pf = LandmarkPatches((32, 32), 0.25)(imgf, centres, rotations=rot)
    assert p8.dtype == torch.float32
    # "8bit" normalisation is linear, so it commutes with the (linear) resampling: normalise after sampling
    torch.testing.assert_close(NormalizeXRay()(p8).as_tensor(), pf.as_tensor(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("padding_mode, expected", [("zeros", 0.0), ("constant", -5.0), ("border", None)])
def test_padding_outside_the_image(padding_mode, expected):
    img = MetaTensor(torch.arange(20 * 30, dtype=torch.float32).reshape(1, 20, 30), affine=torch.eye(4))
    # a patch at the image's corner (0, 0), unit spacing: its first 5 rows and columns lie outside the image
    patches = LandmarkPatches((10, 10), 1.0, padding_mode=padding_mode, pad_value=-5.0)(
        img, torch.tensor([[-0.5, -0.5]])
    )
    p = patches[0, 0]
    torch.testing.assert_close(p[5:, 5:], img[0, :5, :5].as_tensor())  # exact copy where inside (integer grid)
    if expected is not None:
        assert torch.all(p[:5] == expected) and torch.all(p[:, :5] == expected)
    else:
        torch.testing.assert_close(p[:5, 5:], img[0, :1, :5].as_tensor().expand(5, 5))  # nearest edge row
        assert torch.all(p[:5, :5] == img[0, 0, 0])


def test_offsets_follow_the_global_error_distribution():
    rng = np.random.RandomState(0)
    o = isotropic_offsets(rng, 40000, 2, 2.0)
    assert abs(o.std(axis=0).mean() - 2.0) <= 0.05  # per-axis sigma, mm
    assert abs(np.linalg.norm(o, axis=1).mean() - 2.0 * np.sqrt(np.pi / 2)) <= 0.05  # MRE = 1.25 sigma in 2D
    heavy = isotropic_offsets(rng, 40000, 2, 2.0, df=3.0)
    assert np.quantile(np.linalg.norm(heavy, axis=1), 0.99) > 1.5 * np.quantile(np.linalg.norm(o, axis=1), 0.99)
    clipped = isotropic_offsets(rng, 1000, 3, 5.0, max_norm=4.0)
    assert np.linalg.norm(clipped, axis=1).max() <= 4.0 + 1e-9
    per_landmark = isotropic_offsets(rng, 2, 2, np.array([0.0, 1.0]))
    assert np.all(per_landmark[0] == 0.0)


def test_random_patches_choose_present_landmarks_and_are_reproducible():
    img = MetaTensor(torch.rand(1, 80, 90), affine=_affine([0.5, 0.5]))
    pts = torch.tensor([[20.0, 30.0], [float("nan")] * 2, [60.0, 50.0], [40.0, 40.0]])
    lm = MetaTensor(pts, affine=img.affine)
    t = RandLandmarkPatches((16, 16), 0.5, num_samples=50).set_random_state(3)
    patches, _ = t(img, lm)
    assert patches.shape == (50, 1, 16, 16)
    assert set(t.landmark_indices.tolist()) == {0, 2, 3}  # never the missing landmark 1
    again, _ = RandLandmarkPatches((16, 16), 0.5, num_samples=50).set_random_state(3)(img, lm)
    assert torch.equal(patches.as_tensor(), again.as_tensor())
    everyone = RandLandmarkPatches((16, 16), 0.5, sampling="all").set_random_state(0)
    assert everyone(img, lm)[0].shape[0] == 3 and everyone.landmark_indices.tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="no present landmark"):
        t(img, MetaTensor(torch.full((4, 2), float("nan")), affine=img.affine))


def test_dictionary_form_gives_one_dict_per_patch_that_collates():
    aff = _affine([0.1, 0.1], origin=[2.0, 3.0])
    pts = [[40.2, 50.6], [80.7, 90.1], [120.3, 60.8]]
    img = blob_image((160, 140), pts, sigma=3.0, affine=aff)
    img = MetaTensor((img * 200).to(torch.uint8), affine=aff, meta={"filename_or_obj": "ceph_001.bmp"})
    data = {"image": img, "landmarks": MetaTensor(torch.tensor(pts), affine=aff), "id": "001"}
    xform = Compose(
        [
            RandLandmarkPatchesd(
                keys="image", patch_size=(32, 32), spacing=0.25, offset_sigma=0.5, max_offset=3.0, num_samples=4
            ),
            NormalizeXRayd(keys="image"),
        ]
    ).set_random_state(7)
    items = xform(data)
    assert isinstance(items, list) and len(items) == 4
    for item in items:
        assert item["image"].shape == (1, 32, 32) and item["image"].affine.shape == (4, 4)
        assert item["landmarks"].shape == (3, 2) and item["id"] == "001"
        assert item["image"].meta["filename_or_obj"] == "ceph_001.bmp"
        k = int(item["patch_landmark"])
        assert not bool(torch.isnan(item["landmarks"][k]).any())  # the centre landmark is always inside
        assert float(item["image"].min()) >= -1.0 - 1e-6  # normalised after sampling
        world = voxel_to_world(item["landmarks"][k].double(), spatial_affine(item["image"].affine, 2))
        torch.testing.assert_close(
            world, voxel_to_world(torch.tensor(pts[k]).double(), spatial_affine(aff, 2)), atol=1e-4, rtol=0
        )
    batch = list_data_collate([items, items[:2]])  # MONAI's DataLoader flattens the per-image lists
    assert batch["image"].shape == (6, 1, 32, 32) and batch["landmarks"].shape == (6, 3, 2)
    assert batch["patch_landmark"].shape == (6,)


def test_inference_dictionary_form_skips_missing_centres():
    aff = _affine([0.1, 0.1])
    img = MetaTensor(torch.rand(1, 100, 100), affine=aff)
    centres = torch.tensor([[3.0, 4.0], [float("nan"), float("nan")], [6.0, 5.0]], dtype=torch.float64)
    lm = MetaTensor(torch.tensor([[30.0, 40.0], [50.0, 50.0], [60.0, 50.0]]), affine=aff)
    d = LandmarkPatchesd(keys="image", centers_key="pred", patch_size=(16, 16), spacing=0.2, landmark_key="landmarks")(
        {"image": img, "pred": centres, "landmarks": lm}
    )
    assert d["image"].shape == (2, 1, 16, 16) and d["patch_landmark"].tolist() == [0, 2]
    assert d["landmarks"].shape == (2, 3, 2)
    # landmark 0 sits exactly at the first patch's centre voxel (P - 1) / 2
    torch.testing.assert_close(d["landmarks"][0, 0].as_tensor(), torch.tensor([7.5, 7.5]), atol=1e-5, rtol=0)
    items = decollate_batch(d["image"])
    assert len(items) == 2 and items[1].affine.shape == (4, 4)
    torch.testing.assert_close(
        voxel_to_world(torch.tensor([7.5, 7.5]), spatial_affine(items[1].affine, 2)), centres[2].float().double()
    )


def test_world_axes_give_the_same_patch_whatever_the_storage_orientation():
    rng = np.random.default_rng(0)
    vol = torch.as_tensor(rng.random((1, 30, 26, 22)), dtype=torch.float32)
    aff = _affine([0.9, 1.1, 1.3], origin=[4.0, -2.0, 7.0])
    # the same volume stored flipped along axis 0 and with axes 1 and 2 swapped: same world, another array
    stored = vol.flip(1).transpose(2, 3)
    to_stored = torch.zeros(4, 4, dtype=torch.float64)  # stored voxel -> original voxel
    to_stored[0, 0], to_stored[0, 3] = -1.0, 29.0
    to_stored[1, 2] = to_stored[2, 1] = to_stored[3, 3] = 1.0
    img_a, img_b = MetaTensor(vol, affine=aff), MetaTensor(stored, affine=aff @ to_stored)
    centres = torch.tensor([[14.0, 12.5, 15.2], [10.3, 9.9, 11.0]], dtype=torch.float64)
    rot = rotation_matrices(torch.tensor([[0.2, -0.1, 0.3], [0.0, 0.1, 0.0]]), 3)
    world = LandmarkPatches((8, 8, 8), 0.7, axes="world")
    torch.testing.assert_close(
        world(img_a, centres, rotations=rot).as_tensor(),
        world(img_b, centres, rotations=rot).as_tensor(),
        atol=1e-5,
        rtol=0,
    )
    image = LandmarkPatches((8, 8, 8), 0.7)
    assert float((image(img_a, centres).as_tensor() - image(img_b, centres).as_tensor()).abs().max()) > 0.1
