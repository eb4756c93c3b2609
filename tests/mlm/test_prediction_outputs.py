"""Predictions never leave the image silently, and prediction files never leave their folder.

- a volume smaller than the sliding window (padded by the preprocessing and by the windows): landmarks decoded in
  the padding are marked missing (NaN) with a logged warning, the others map back into the original grid;
- ``SaveLandmarksd`` refuses ids that resolve outside its output folder and writes files that follow the umask.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from PIL import Image

from mlm.bundle import landmark_preprocessing
from mlm.heatmaps import gaussian_heatmaps
from mlm.inferers import MaxSlidingWindowInferer
from transforms.post import HeatmapsToLandmarksd, SaveLandmarksd, outside_original_image


class FixedHeatmaps(torch.nn.Module):
    """A 'network' whose heatmaps peak at fixed voxels of every window, whatever the input."""

    def __init__(self, peaks: list[list[float]]):
        super().__init__()
        self.peaks = torch.tensor([peaks], dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heat = gaussian_heatmaps(self.peaks, tuple(x.shape[2:]), torch.tensor([1.0] * self.peaks.shape[1]), None)
        return heat.expand(x.shape[0], -1, *x.shape[2:])


def test_volume_smaller_than_the_window_gives_predictions_inside_or_missing(tmp_path, caplog):
    # 10 x 10 x 6 voxels of 2 mm: preprocessing pads x/y to 16 (3 voxels each side), the 16x16x32 window pads z
    path = tmp_path / "small.nii.gz"
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((10, 10, 6)).astype(np.float32), np.diag([2.0] * 3 + [1])),
        str(path),
    )
    image = Compose(landmark_preprocessing(3, 2.0, [16, 16, -1], 3, with_landmarks=False))({"image": str(path)})[
        "image"
    ]
    assert image.shape == (1, 16, 16, 6)
    # peaks: inside the original volume, in the x/y padding of the preprocessing, in the z padding of the window
    net = FixedHeatmaps([[8.0, 8.0, 3.0], [1.0, 8.0, 3.0], [8.0, 8.0, 20.0]])
    pred = MaxSlidingWindowInferer(roi_size=(16, 16, 32), step=(16, 16, 16), pad_value=-1.0)(image[None], net)
    assert pred.shape == (1, 3, 16, 16, 6)  # the windows' padding is cropped off the merged output
    with caplog.at_level(logging.WARNING, logger="transforms.post"):
        d = HeatmapsToLandmarksd("pred", names=["a", "b", "c"])({"pred": pred[0], "image": image})
    assert torch.isfinite(d["pred"][0]).all() and torch.isnan(d["pred"][1:]).all()
    assert torch.isnan(d["pred_voxel"][1:]).all()
    assert "small.nii.gz: 2 of 3 predicted landmarks lie outside the image (shape (10, 10, 6))" in caplog.text
    assert "marked missing: b, c." in caplog.text
    d = SaveLandmarksd("pred", output_dir=tmp_path / "predictions", names=["a", "b", "c"])({**d, "id": "small"})
    rec = json.loads((tmp_path / "predictions" / "small_landmarks.json").read_text(encoding="utf-8"))
    np.testing.assert_allclose(rec["voxel_points"][0], [5.0, 5.0, 3.0], atol=0.05)  # preprocessed (8, 8, 3) - pad
    assert rec["voxel_points"][1:] == [None, None] and rec["points"][1:] == [None, None]
    # outside="keep" reproduces the old behaviour: the padding peak comes back outside the 10 x 10 x 6 volume
    kept = HeatmapsToLandmarksd("pred", outside="keep")({"pred": pred[0], "image": image})
    assert outside_original_image(kept["pred"], image)[0].tolist() == [False, True, True]


def test_pixel_only_images_are_checked_in_their_own_pixel_grid(tmp_path, caplog):
    # a 48 x 60 px BMP at 4 mm (spacing from the datalist) padded to 64 x 64
    bmp = tmp_path / "ceph.bmp"
    Image.fromarray(np.full((60, 48), 100, np.uint8)).save(bmp)
    item = {"image": str(bmp), "spacing": [4.0, 4.0]}
    image = Compose(landmark_preprocessing(2, 4.0, [64, 64], 2, with_landmarks=False))(item)["image"]
    assert image.shape == (1, 64, 64)
    heat = gaussian_heatmaps(torch.tensor([[[30.0, 30.0], [30.0, 62.0]]]), (64, 64), torch.tensor([1.0, 1.0]), None)
    with caplog.at_level(logging.WARNING, logger="transforms.post"):
        d = HeatmapsToLandmarksd("pred")({"pred": heat[0], "image": image, "spacing": [4.0, 4.0]})
    assert torch.isfinite(d["pred"][0]).all() and torch.isnan(d["pred"][1]).all()
    assert "ceph.bmp: 1 of 2 predicted landmarks lie outside the image (shape (48, 60)) and are marked missing: 1." in (
        caplog.text
    )


def _item(item_id: str) -> dict:
    image = MetaTensor(torch.zeros(1, 8, 8, 8), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    image.meta["filename_or_obj"] = "/data/x.nii.gz"
    return {"id": item_id, "image": image, "pred": torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)}


def test_save_landmarks_refuses_ids_outside_the_output_folder(tmp_path):
    out = tmp_path / "run" / "predictions"
    save = SaveLandmarksd("pred", output_dir=out)
    for bad in ("../../evil", "/tmp/evil", "sub/../../evil"):
        with pytest.raises(ValueError, match="outside the output folder") as err:
            save(_item(bad))
        assert repr(bad) in str(err.value) and str(out) in str(err.value)
    assert not list(tmp_path.rglob("*evil*"))
    save(_item("train/s001"))  # a sub-folder inside the output folder is fine
    assert (out / "train" / "s001_landmarks.json").is_file()


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_prediction_files_follow_the_umask(tmp_path, mask, expected):
    old = os.umask(mask)
    try:
        d = {**_item("s001"), "pred_heatmaps": torch.rand(1, 8, 8, 8)}
        SaveLandmarksd("pred", output_dir=tmp_path, save_heatmaps=True)(d)
    finally:
        os.umask(old)
    for name in ("s001_landmarks.json", "s001_heatmaps.nii.gz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s001_heatmaps.nii.gz", "s001_landmarks.json"]


def test_report_overlays_refuse_ids_outside_their_folder(tmp_path):
    from ignite.engine import Engine

    from mlm.handlers import LandmarkReportHandler

    true = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 6.0]])
    image = MetaTensor(torch.zeros(1, 4, 4, 8))

    def run(item_id: str) -> None:
        handler = LandmarkReportHandler(tmp_path / "eval", names=["a", "b"], num_overlays=1)
        step = [{"pred": torch.as_tensor(true + 0.5), "label": torch.as_tensor(true), "image": image, "id": item_id}]
        engine = Engine(lambda e, b: step)
        handler.attach(engine)
        engine.run([0], max_epochs=1)

    with pytest.raises(ValueError, match=r"id '\.\./\.\./evil' would write .*outside the output folder"):
        run("../../evil")
    assert not list(tmp_path.rglob("evil*"))
    run("train/s001")  # a sub-folder inside overlays/ is fine
    assert (tmp_path / "eval" / "overlays" / "train" / "s001.png").is_file()
