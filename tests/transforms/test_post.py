"""transforms.post: array forms of the post-transforms, their dictionary forms, and the names the configs still use."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from transforms.heatmap import gaussian_heatmaps
from transforms.io.prediction_files import read_prediction_file
from transforms.post import (
    HeatmapsToLandmarks,
    HeatmapsToLandmarksd,
    LandmarksToWorld,
    LandmarksToWorldd,
    SaveLandmarks,
    SaveLandmarksd,
)

AFFINE = torch.tensor([[0.0, -2.0, 0.0, 40.0], [1.5, 0.0, 0.0, -3.0], [0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1]]).double()


def _image() -> MetaTensor:
    image = MetaTensor(torch.zeros(1, 20, 16), affine=AFFINE)
    image.meta["filename_or_obj"] = "/data/ceph_01.bmp"
    return image


def test_heatmaps_to_landmarks_maps_decoded_voxels_through_the_2d_affine_and_drops_outside_peaks():
    voxels = torch.tensor([[[4.25, 7.5], [19.0, 3.0]]])
    heat = gaussian_heatmaps(voxels, (20, 16), torch.tensor([1.2, 1.2]), None)[0]
    image = _image()
    image.meta["spatial_shape"] = np.array([18, 16])  # the original image: row 19 lies in the padding
    image.meta["original_affine"] = AFFINE
    world, vox, values = HeatmapsToLandmarks(names=["S", "N"])(heat, image)
    expected = voxels[0, 0].double() @ AFFINE[:2, :2].T + AFFINE[:2, 3]
    torch.testing.assert_close(world[0], expected, atol=1e-4, rtol=0)
    assert torch.isnan(world[1]).all() and torch.isnan(vox[1]).all() and values.shape == (2,)
    kept, _, _ = HeatmapsToLandmarks(outside="keep")(heat, image)
    assert torch.isfinite(kept).all()
    d = HeatmapsToLandmarksd("pred", names=["S", "N"])({"pred": heat, "image": image})
    torch.testing.assert_close(d["pred"], world, equal_nan=True)


def test_landmarks_to_world_keeps_nan_rows_and_float64():
    lm = MetaTensor(torch.tensor([[1.0, 2.0], [float("nan")] * 2], dtype=torch.float64))
    world = LandmarksToWorld()(lm, _image())
    assert type(world) is torch.Tensor and world.dtype == torch.float64 and torch.isnan(world[1]).all()
    torch.testing.assert_close(world[0], torch.tensor([36.0, -1.5], dtype=torch.float64))
    d = LandmarksToWorldd("label")({"label": lm, "image": _image(), "other": None})
    torch.testing.assert_close(d["label"], world, equal_nan=True)
    assert LandmarksToWorldd("label")({"label": None, "image": _image()})["label"] is None


def test_save_landmarks_writes_a_prediction_file_that_reads_back_as_ras(tmp_path):
    world = torch.tensor([[36.0, -1.5], [float("nan")] * 2], dtype=torch.float64)
    path = SaveLandmarks(tmp_path, names=["S", "N"])(world, _image(), "ceph_01", values=torch.tensor([0.9, 0.1]))
    assert path == tmp_path / "ceph_01_landmarks.json"
    points, names = read_prediction_file(path)
    np.testing.assert_allclose(points, world.numpy(), equal_nan=True)
    assert names == ["S", "N"]
    SaveLandmarksd("pred", output_dir=tmp_path / "d", names=["S", "N"])({"pred": world, "image": _image()})
    again, _ = read_prediction_file(tmp_path / "d" / "ceph_01_landmarks.json")  # id from the image file name
    np.testing.assert_array_equal(again, points)
