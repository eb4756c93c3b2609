"""LoadLandmarksd / TrackLandmarksd / SetSpacingd: physical <-> voxel conversion, error paths, and landmarks
that stay under a blob through every affine-type MONAI transform (centroid error <= 0.05 px)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from landmark_blobs import blob_errors, blob_image
from monai.data import MetaTensor
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    Flipd,
    Orientationd,
    RandAffined,
    RandSpatialCropd,
    Resized,
    Rotated,
    Spacingd,
    SpatialPadd,
    Zoomd,
)

from transforms.io import write_landmark_file
from transforms.landmarks import LoadLandmarksd, SetSpacingd, TrackLandmarksd

torch.set_num_threads(1)

# rotation + flips + anisotropic spacing + offset (voxel -> RAS mm)
_R = np.array([[np.cos(0.4), -np.sin(0.4), 0], [np.sin(0.4), np.cos(0.4), 0], [0, 0, 1.0]])
AFFINE_3D = np.eye(4)
AFFINE_3D[:3, :3] = _R @ np.diag([-1.2, 0.8, -2.0])
AFFINE_3D[:3, 3] = [30.0, -12.5, 7.0]
AFFINE_2D = np.array([[0, -1.5, 0, 10], [1.2, 0, 0, -5], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # axes swapped, one flipped

PTS_2D = np.array([[14.3, 12.7], [33.6, 13.2], [22.1, 29.4]])
SHAPE_2D = (48, 40)
PTS_3D = np.array([[10.3, 9.7, 11.2], [23.6, 21.2, 12.9]])
SHAPE_3D = (34, 32, 26)


def _world(vox, affine, cs):
    w = vox @ affine[:3, :3].T[: vox.shape[1], : vox.shape[1]] + affine[: vox.shape[1], 3]
    if vox.shape[1] == 3:
        w = vox @ affine[:3, :3].T + affine[:3, 3]
    if cs == "LPS":
        w[:, :2] *= -1
    return w


@pytest.mark.parametrize("cs", ["RAS", "LPS", "voxel"])
@pytest.mark.parametrize("suffix", [".json", ".csv", ".fcsv"])
def test_physical_file_maps_to_voxels_through_flipped_rotated_affine(tmp_path, cs, suffix):
    if suffix == ".fcsv" and cs == "voxel":
        pytest.skip(".fcsv holds physical points only")
    img = MetaTensor(torch.zeros(1, *SHAPE_3D), affine=torch.as_tensor(AFFINE_3D), meta={"filename_or_obj": "img.nii"})
    pts = PTS_3D.copy()
    pts[1] = np.nan
    disk = pts if cs == "voxel" else _world(pts, AFFINE_3D, cs)
    path = write_landmark_file(tmp_path / f"lm{suffix}", disk, cs)
    out = LoadLandmarksd()({"image": img, "landmarks": str(path)})["landmarks"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.float64 and out.shape == (2, 3)
    np.testing.assert_allclose(out.numpy(), pts, atol=1e-9)  # float64: no float32 rounding of the coordinates
    np.testing.assert_allclose(out.affine.numpy(), AFFINE_3D)
    assert out.meta["filename_or_obj"] == str(path) and out.meta["coordinate_system"] == cs


@pytest.mark.parametrize("cs", ["RAS", "LPS"])
def test_2d_physical_points_use_in_plane_part_of_4x4_affine(tmp_path, cs):
    img = MetaTensor(torch.zeros(1, *SHAPE_2D), affine=torch.as_tensor(AFFINE_2D))
    world = PTS_2D @ AFFINE_2D[:2, :2].T + AFFINE_2D[:2, 3]
    if cs == "LPS":
        world *= -1
    path = write_landmark_file(tmp_path / "lm.json", world, cs)
    out = LoadLandmarksd()({"image": img, "landmarks": path})["landmarks"]
    np.testing.assert_allclose(out.numpy(), PTS_2D, atol=1e-5)


def test_inline_list_defaults_to_voxels_and_keeps_nan():
    img = MetaTensor(torch.zeros(1, *SHAPE_2D))
    out = LoadLandmarksd()({"image": img, "landmarks": [[1.5, 2.5], None]})["landmarks"]
    np.testing.assert_array_equal(out.numpy(), [[1.5, 2.5], [np.nan, np.nan]])


def test_afids_ras_to_voxel_to_ras_round_trip_on_real_mni152(shared_data):
    from monai.transforms import LoadImage

    from transforms.io import read_landmark_file

    folder = shared_data / "afids_mni152"
    fcsv = folder / "tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv"
    img = LoadImage(image_only=True, ensure_channel_first=True)(folder / "tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz")
    out = LoadLandmarksd(num_landmarks=32)({"image": img, "landmarks": fcsv})["landmarks"]
    vox = out.numpy().astype(np.float64)
    assert np.all(vox > -0.5) and np.all(vox < np.asarray(img.shape[1:]) - 0.5)
    aff = img.affine.numpy()
    back = vox @ aff[:3, :3].T + aff[:3, 3]
    np.testing.assert_allclose(back, read_landmark_file(fcsv).points, atol=1e-4)  # mm


@pytest.mark.parametrize(
    "kwargs, points, match",
    [
        ({"num_landmarks": 5}, PTS_3D, "2 landmarks, expected 5"),
        ({}, PTS_3D[:, :2], "2D landmarks do not match the 3D image"),
        ({}, np.array([[10.0, 9.0, 40.0], [1, 1, 1]]), r"landmark 0 at \[10.0, 9.0, 40.0\].*outside the image"),
    ],
)
def test_bad_landmarks_name_landmark_file_and_image(tmp_path, kwargs, points, match):
    img = MetaTensor(torch.zeros(1, *SHAPE_3D), meta={"filename_or_obj": "/data/img007.nii.gz"})
    path = write_landmark_file(tmp_path / "lm.json", points, "voxel")
    with pytest.raises(ValueError, match=match) as err:
        LoadLandmarksd(**kwargs)({"image": img, "landmarks": path})
    assert str(path) in str(err.value) and "img007.nii.gz" in str(err.value)


def test_outside_missing_sets_nan_and_keep_keeps(tmp_path):
    img = MetaTensor(torch.zeros(1, *SHAPE_3D))
    path = write_landmark_file(tmp_path / "lm.json", [[10.0, 9.0, 40.0], [1, 1, 1], [-0.5, 0, 25.5]], "voxel")
    out = LoadLandmarksd(outside="missing")({"image": img, "landmarks": path})["landmarks"].numpy()
    assert np.isnan(out[0]).all() and not np.isnan(out[1:]).any()  # the voxel faces -0.5 / S-0.5 are inside
    out = LoadLandmarksd(outside="keep")({"image": img, "landmarks": path})["landmarks"].numpy()
    np.testing.assert_array_equal(out[0], [10.0, 9.0, 40.0])
    with pytest.raises(ValueError, match="outside must be"):
        LoadLandmarksd(outside="drop")


def _data_2d():
    img = blob_image(SHAPE_2D, PTS_2D, affine=AFFINE_2D)
    lm = LoadLandmarksd()({"image": img, "landmarks": np.vstack([PTS_2D, [np.nan, np.nan]])})["landmarks"]
    return {"image": img, "landmarks": lm}


def _data_3d():
    img = blob_image(SHAPE_3D, PTS_3D, affine=AFFINE_3D)
    return {"image": img, "landmarks": LoadLandmarksd()({"image": img, "landmarks": PTS_3D})["landmarks"]}


AFFINE_TRANSFORMS = {
    "Spacingd": lambda d: Spacingd("image", (1.1,) * d, mode="bilinear"),
    "Orientationd": lambda d: Orientationd("image", "RAS"[:d], labels=None),
    "Resized": lambda d: Resized("image", (40, 46, 30)[:d], mode="bilinear"),
    "Zoomd": lambda d: Zoomd("image", 1.3, mode="bilinear", keep_size=True),
    "Zoomd_resize": lambda d: Zoomd("image", 0.8, mode="bilinear", keep_size=False),
    "Rotated": lambda d: Rotated("image", (0.3, 0.2, -0.1)[: 1 if d == 2 else 3], keep_size=False),
    "Flipd": lambda d: Flipd("image", 0),
    "SpatialPadd": lambda d: SpatialPadd("image", (56, 50, 30)[:d]),
    "CenterSpatialCropd": lambda d: CenterSpatialCropd("image", (36, 32) if d == 2 else (30, 28, 22)),
    "RandSpatialCropd": lambda d: RandSpatialCropd("image", (36, 32) if d == 2 else (30, 28, 22), random_size=False),
    "RandAffined": lambda d: RandAffined(
        "image",
        prob=1.0,
        rotate_range=(0.3, 0.2, 0.2)[: 1 if d == 2 else 3],
        translate_range=3,
        scale_range=(0.15,) * d,
    ),
    "Compose": lambda d: Compose(
        [
            Spacingd("image", (0.9,) * d, mode="bilinear"),
            Rotated("image", 0.2 if d == 2 else (0.2, 0.0, 0.1)),
            Flipd("image", 1),
            Zoomd("image", 1.1, mode="bilinear"),
            SpatialPadd("image", (60, 60, 40)[:d]),
        ]
    ),
}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", list(AFFINE_TRANSFORMS))
def test_landmarks_stay_under_blobs_through_monai_affine_transforms(name, spatial_dims):
    data = _data_2d() if spatial_dims == 2 else _data_3d()
    xform = AFFINE_TRANSFORMS[name](spatial_dims)
    if hasattr(xform, "set_random_state"):
        xform.set_random_state(3)
    out = TrackLandmarksd()(xform(data))
    assert out["landmarks"].shape == data["landmarks"].shape
    np.testing.assert_allclose(out["landmarks"].affine.numpy(), out["image"].affine.numpy())
    errs = blob_errors(out["image"], out["landmarks"][~torch.isnan(out["landmarks"]).any(1)])
    assert len(errs) >= 1
    assert max(errs) <= 0.05, errs  # px
    if spatial_dims == 2:
        assert torch.isnan(out["landmarks"][-1]).all()


def test_rand_affine_many_draws_2d():
    xform = AFFINE_TRANSFORMS["RandAffined"](2)
    xform.set_random_state(0)
    errs = []
    for _ in range(6):
        out = TrackLandmarksd()(xform(_data_2d()))
        errs += blob_errors(out["image"], out["landmarks"][:3])
    assert len(errs) >= 12 and max(errs) <= 0.05, errs


def test_track_landmarks_is_idempotent_and_batched():
    data = AFFINE_TRANSFORMS["Compose"](2)(_data_2d())
    once = TrackLandmarksd()(data)
    twice = TrackLandmarksd()(once)
    torch.testing.assert_close(once["landmarks"], twice["landmarks"], equal_nan=True, rtol=0, atol=0)
    batch_img = MetaTensor(torch.stack([once["image"].as_tensor()] * 2), affine=torch.stack([once["image"].affine] * 2))
    batch_lm = MetaTensor(
        torch.stack([data["landmarks"].as_tensor()] * 2), affine=torch.stack([data["landmarks"].affine] * 2)
    )
    out = TrackLandmarksd()({"image": batch_img, "landmarks": batch_lm})["landmarks"]
    torch.testing.assert_close(out[1], once["landmarks"].as_tensor(), equal_nan=True, rtol=0, atol=1e-5)


def test_track_landmarks_rejects_plain_tensors():
    with pytest.raises(TypeError, match="MetaTensor"):
        TrackLandmarksd()({"image": torch.zeros(1, 4, 4), "landmarks": torch.zeros(1, 2)})


def test_set_spacing_scales_affine_and_landmarks_follow(tmp_path):
    img = MetaTensor(
        torch.zeros(1, 30, 20), affine=torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
    )
    out = SetSpacingd()({"image": img, "spacing": [0.1, 0.2]})["image"]
    np.testing.assert_allclose(out.affine.numpy()[:2, :2], np.diag([-0.1, -0.2]))
    np.testing.assert_allclose(out.pixdim[:2].numpy(), [0.1, 0.2])
    world = np.array([[-1.0, -2.0]])  # RAS mm -> voxel (10, 10)
    lm = LoadLandmarksd()({"image": out, "landmarks": write_landmark_file(tmp_path / "a.json", world, "RAS")})
    np.testing.assert_allclose(lm["landmarks"].numpy(), [[10.0, 10.0]], atol=1e-6)
    with pytest.raises(ValueError, match="spacing must be 2 positive"):
        SetSpacingd()({"image": img, "spacing": [0.1]})


def test_outside_dropped_landmarks_are_logged_and_counted(tmp_path, caplog):
    from transforms.landmarks import dropped_landmark_counts

    img = MetaTensor(torch.zeros(1, *SHAPE_3D), meta={"filename_or_obj": "/data/img007.nii.gz"})
    path = write_landmark_file(
        tmp_path / "lm.json", [[1, 1, 1], [10.0, 9.0, 40.0], [2, 2, 2], [-3.0, 1, 1]], "voxel", names="abcd"
    )
    load = LoadLandmarksd(outside="missing")
    with caplog.at_level("WARNING", logger="transforms.landmarks"):
        out = load({"image": img, "landmarks": path})["landmarks"]
        load({"image": img, "landmarks": path})  # loaded again (next epoch): logged again
    assert np.isnan(out.numpy()[[1, 3]]).all() and not np.isnan(out.numpy()[[0, 2]]).any()
    assert out.meta["num_landmarks_outside"] == 2 and out.meta["landmarks_outside"] == "1,3"
    messages = [r.getMessage() for r in caplog.records if r.name == "transforms.landmarks"]
    assert len(messages) == 4
    assert f"landmark file {path}: landmark 1 (b) at [10.0, 9.0, 40.0] (voxel) lies outside the image" in messages[0]
    assert "/data/img007.nii.gz" in messages[0] and "set to missing" in messages[0]
    assert "landmark 3 (d) at [-3.0, 1.0, 1.0]" in messages[1]
    assert dropped_landmark_counts(out) == [2]
    kept = LoadLandmarksd(outside="keep")({"image": img, "landmarks": path})["landmarks"]
    assert kept.meta["num_landmarks_outside"] == 0 and dropped_landmark_counts(kept) == [0]
    assert dropped_landmark_counts(torch.zeros(4, 3)) == [0]  # no meta: nothing dropped


def test_outside_count_survives_tracking_and_collation(tmp_path):
    from monai.data import list_data_collate

    from transforms.landmarks import dropped_landmark_counts

    img = MetaTensor(torch.zeros(1, *SHAPE_3D))
    paths = [
        write_landmark_file(tmp_path / "a.json", [[1, 1, 1], [10.0, 9.0, 40.0]], "voxel"),
        write_landmark_file(tmp_path / "b.json", [[1, 1, 1], [2, 2, 2]], "voxel"),
    ]
    pipeline = Compose([LoadLandmarksd(outside="missing"), Zoomd("image", 0.5), TrackLandmarksd()])
    batch = list_data_collate([pipeline({"image": img, "landmarks": p}) for p in paths])
    assert batch["landmarks"].meta["num_landmarks_outside"].tolist() == [1, 0]
    assert dropped_landmark_counts(batch["landmarks"]) == [1, 0]


def test_item_coordinate_system_applies_and_a_conflict_with_the_file_raises(tmp_path):
    img = MetaTensor(torch.zeros(1, *SHAPE_3D), affine=torch.as_tensor(AFFINE_3D), meta={"filename_or_obj": "i.nii"})
    lps = _world(PTS_3D, AFFINE_3D, "LPS")
    bare = tmp_path / "bare.csv"
    bare.write_text(
        "\n".join(",".join(repr(float(c)) for c in p) for p in lps) + "\n", encoding="utf-8"
    )  # no coordinate system
    out = LoadLandmarksd()({"image": img, "landmarks": str(bare), "coordinate_system": "LPS"})["landmarks"]
    np.testing.assert_allclose(out.numpy(), PTS_3D, atol=1e-4)
    assert out.meta["coordinate_system"] == "LPS"
    # the item key beats the transform's default for files that state nothing
    out = LoadLandmarksd(coordinate_system="RAS", outside="keep")(
        {"image": img, "landmarks": str(bare), "coordinate_system": "LPS"}
    )["landmarks"]
    np.testing.assert_allclose(out.numpy(), PTS_3D, atol=1e-4)
    # a file declaring RAS that holds LPS numbers, the item saying LPS: refused, never 34 mm off in silence
    ras_file = write_landmark_file(tmp_path / "ras.json", lps, "RAS")
    with pytest.raises(ValueError, match="states coordinate system 'RAS' but the datalist item says 'LPS'") as err:
        LoadLandmarksd(outside="keep")({"image": img, "landmarks": ras_file, "coordinate_system": "LPS"})
    assert str(ras_file) in str(err.value)
    # coordinate_system_key=None ignores the item key (the file's own RAS applies)
    LoadLandmarksd(outside="keep", coordinate_system_key=None)(
        {"image": img, "landmarks": ras_file, "coordinate_system": "LPS"}
    )
    with pytest.raises(ValueError, match="unknown coordinate system 'ijk'"):
        LoadLandmarksd()({"image": img, "landmarks": ras_file, "coordinate_system": "ijk"})


@pytest.mark.parametrize(
    "names, match",
    [(["b", "a"], "same names in another order"), (["a", "z"], r"different names.*row 1: 'z' in the file, 'b'")],
)
def test_landmark_names_must_match_in_order(tmp_path, names, match):
    img = MetaTensor(torch.zeros(1, *SHAPE_3D))
    path = write_landmark_file(tmp_path / "lm.json", PTS_3D, "voxel", names=names)
    with pytest.raises(ValueError, match=match) as err:
        LoadLandmarksd(landmark_names=["a", "b"])({"image": img, "landmarks": path})
    assert str(path) in str(err.value)
    unnamed = write_landmark_file(tmp_path / "csv.csv", PTS_3D, "voxel")
    unnamed.write_text(
        "# coordinate_system: voxel\n" + "\n".join(",".join(map(str, p)) for p in PTS_3D) + "\n", encoding="utf-8"
    )
    LoadLandmarksd(landmark_names=["a", "b"])({"image": img, "landmarks": unnamed})  # a file without names: no check
    good = write_landmark_file(tmp_path / "good.json", PTS_3D, "voxel", names=["a", "b"])
    assert LoadLandmarksd(landmark_names=["a", "b"])({"image": img, "landmarks": good})["landmarks"].shape == (2, 3)


@pytest.mark.parametrize(
    "inline, match",
    [
        ([[True, False, True], [1, 2, 3]], r"coordinate True \(bool\)"),
        ([["1", 2, 3], [1, 2, 3]], r"coordinate '1' \(str\)"),
        ([[[1], 2, 3], [1, 2, 3]], r"coordinate \[1\] \(list\)"),
        ([[float("inf"), 2, 3], [1, 2, 3]], "infinite coordinate"),
        ([[1, 2, 3], "abc"], "must be a list of coordinates or null"),
    ],
)
def test_inline_landmarks_must_be_real_numbers(inline, match):
    img = MetaTensor(torch.zeros(1, *SHAPE_3D), meta={"filename_or_obj": "/data/img007.nii.gz"})
    with pytest.raises(ValueError, match=match) as err:
        LoadLandmarksd()({"image": img, "landmarks": inline})
    assert "inline landmarks of /data/img007.nii.gz" in str(err.value)
