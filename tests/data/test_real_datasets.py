"""The readers on the real images of ../shared/data: the 400 ISBI 2015 cephalograms (both doctors) and the 112 Digital
Hand Atlas radiographs. Skipped with a message when ../shared is absent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from monai.transforms import Compose

from mlm.bundle import landmark_preprocessing
from mlm.data.isbi2015 import convert_isbi2015, read_annotations, read_payer_csv


@pytest.fixture(scope="module")
def isbi_datalist(shared_data, tmp_path_factory):
    root = shared_data / "isbi2015"
    if not (root / "RawImage").is_dir():
        pytest.skip(f"the ISBI 2015 images are not at {root}")
    out = tmp_path_factory.mktemp("isbi2015")
    convert_isbi2015(root, out)
    return root, out / "datalist.json"


def test_isbi_real_layout_converts_with_the_official_splits_and_the_doctors_mean(shared_data, isbi_datalist):
    root, path = isbi_datalist
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [len(data[s]) for s in ("training", "test1", "test2", "test")] == [150, 150, 100, 250]
    assert data["num_landmarks"] == 19 and data["training"][0]["spacing"] == [0.1, 0.1]
    # the ground truth is the mean of the two doctors (the challenge's definition); Payer's CSVs hold each doctor in
    # mm at 0.1 mm per pixel, rounded to 0.1 mm: the mean of both, in pixels, within one pixel of the converter's
    senior = read_payer_csv(shared_data / "isbi2015_annotations_payer" / "all_senior.csv")
    junior = read_payer_csv(shared_data / "isbi2015_annotations_payer" / "all_junior.csv")
    doctors = read_annotations(root, "average")
    assert len(doctors) == 400
    for item in data["training"][:3] + data["test2"][-2:]:
        lm = json.loads((path.parent / item["landmarks"]).read_text(encoding="utf-8"))
        points = np.asarray(lm["points"], dtype=float)
        np.testing.assert_allclose(points, doctors[item["id"]], atol=1e-9)
        np.testing.assert_allclose(points, (senior[item["id"]] + junior[item["id"]]) / 2, atol=1.0)


def test_isbi_real_colour_jpeg_loads_as_one_grey_channel_with_every_landmark_inside(isbi_datalist):
    _, path = isbi_datalist
    data = json.loads(path.read_text(encoding="utf-8"))
    item = {**data["test1"][0]}
    item["image"] = str((path.parent / item["image"]).resolve())
    item["landmarks"] = str(path.parent / item["landmarks"])
    pipeline = Compose(
        landmark_preprocessing(spatial_dims=2, spacing=0.9375, spatial_size=[256, 256], num_landmarks=19)
    )
    out = pipeline(item)
    assert out["image"].shape == (1, 256, 256)
    points = out["landmarks"].numpy()
    assert np.isfinite(points).all() and (points >= 0).all() and (points <= 255).all()


def test_hand_atlas_real_images_convert_with_37_landmarks_and_load_grey(shared_data, tmp_path):
    from mlm.data.hand_xray import convert_hand_xray

    root = shared_data / "dha_hand_xray_half"
    if not (root / "images").is_dir():
        pytest.skip(f"the hand atlas images are not at {root}")
    convert_hand_xray(root, tmp_path)
    data = json.loads((tmp_path / "datalist.json").read_text(encoding="utf-8"))
    train = (root / "setup" / "train.txt").read_text(encoding="utf-8").split()
    valid = (root / "setup" / "valid.txt").read_text(encoding="utf-8").split()
    # the layout's own split files become the datalist's training and validation splits (91 / 21)
    assert [item["id"] for item in data["training"]] == train and [item["id"] for item in data["validation"]] == valid
    assert (len(train), len(valid)) == (91, 21) and not set(train) & set(valid)
    item = {**data["training"][0]}
    item["image"] = str((tmp_path / item["image"]).resolve())
    item["landmarks"] = str(tmp_path / item["landmarks"])
    out = Compose(landmark_preprocessing(spatial_dims=2, spacing=None, spatial_size=None, num_landmarks=37))(item)
    assert out["image"].shape[0] == 1 and out["landmarks"].shape == (37, 2)
    assert np.isfinite(out["landmarks"].numpy()).all()
