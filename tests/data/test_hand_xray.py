"""Hand X-ray (Digital Hand Atlas) reader, converter and the real .mha images."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from mlm.data import hand_xray
from mlm.data.datalist import load_datalist, validate_datalist
from transforms.io.landmark_files import read_landmark_file


def test_all_csv_roundtrip_is_byte_identical_on_real_file(shared_data, tmp_path):
    src = shared_data / "payer_hand_xray" / "setup" / "all.csv"
    rows = hand_xray.read_all_csv(src)
    assert len(rows) == 910 and all(v.shape == (37, 2) for v in rows.values())
    hand_xray.write_all_csv(tmp_path / "all.csv", rows)
    assert (tmp_path / "all.csv").read_bytes() == src.read_bytes()


def test_wrist_width_constants_and_scale():
    assert hand_xray.WRIST_WIDTH_PAIR == (1, 5) and hand_xray.WRIST_WIDTH_MM == 50.0
    pts = np.zeros((37, 2))
    pts[5] = [3.0, 4.0]
    assert hand_xray.wrist_width_scale(pts) == pytest.approx(10.0, abs=1e-12)
    with pytest.raises(ValueError, match="wrist width"):
        hand_xray.wrist_width_scale(np.zeros((37, 2)))


def test_real_mha_loads_2d_with_spacing_and_landmarks_on_bone(shared_data):
    root = shared_data / "payer_hand_xray"
    rows = hand_xray.read_all_csv(root / "setup" / "all.csv")
    for image_id in ("3167", "7236"):
        path = root / "images" / f"{image_id}.mha"
        ref = sitk.ReadImage(str(path))
        img = hand_xray.load_hand_image(path)
        w, h = ref.GetSize()[:2]
        assert tuple(img.shape) == (1, w, h)
        np.testing.assert_allclose(img.pixdim.numpy(), ref.GetSpacing()[:2], rtol=1e-6)
        pts = rows[image_id]
        assert (pts >= 0).all() and (pts[:, 0] <= w - 1).all() and (pts[:, 1] <= h - 1).all()
        arr = img[0].numpy().astype(float)
        # sitk array is (H, W): the MONAI array is its transpose, so voxel (i, j) = px (x, y)
        np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(ref)[0].T)
        ij = np.round(pts).astype(int)
        at_landmarks = arr[ij[:, 0], ij[:, 1]].mean()
        assert at_landmarks > arr.mean() + 10  # landmarks sit on bone, brighter than the image on average


def _fake_layout(root, ids=("10", "11", "12")):
    (root / "images").mkdir(parents=True)
    rows = {}
    rng = np.random.default_rng(0)
    for i in ids:
        im = sitk.GetImageFromArray(rng.integers(0, 255, (1, 30, 20), dtype=np.uint8))  # stored W x H x 1
        im.SetSpacing((0.125, 0.125, 0.125))
        sitk.WriteImage(im, str(root / "images" / f"{i}.mha"))
        rows[i] = rng.uniform(0, 19, (37, 2))
    hand_xray.write_all_csv(root / "setup" / "all.csv", rows)
    (root / "setup" / "cv" / "set1").mkdir(parents=True)
    (root / "setup" / "cv" / "set1" / "train.txt").write_text("10\n11\n", encoding="utf-8")
    (root / "setup" / "cv" / "set1" / "test.txt").write_text("12\n", encoding="utf-8")
    return rows


def test_convert_fake_layout(tmp_path):
    rows = _fake_layout(tmp_path / "hand")
    paths = hand_xray.convert_hand_xray(tmp_path / "hand", tmp_path / "out")
    assert [p.name for p in paths] == ["datalist.json", "datalist_cv1.json"]
    assert validate_datalist(paths[1]) == {"test": 1, "training": 2}
    item = load_datalist(paths[1], "test")[0]
    np.testing.assert_allclose(read_landmark_file(item["landmarks"]).points, rows["12"], atol=1e-9)
    img = hand_xray.load_hand_image(item["image"])
    assert tuple(img.shape) == (1, 20, 30)


def test_convert_image_without_annotation_names_file(tmp_path):
    _fake_layout(tmp_path / "hand")
    sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(tmp_path / "hand" / "images" / "99.mha"))
    with pytest.raises(ValueError, match=r"99\.mha: image has no row in .*all\.csv"):
        hand_xray.convert_hand_xray(tmp_path / "hand", tmp_path / "out")


def test_wrong_landmark_count_names_file(tmp_path):
    p = tmp_path / "all.csv"
    p.write_text("1," + ",".join(["1"] * 72) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"all\.csv:1: 72 values, expected 37 landmarks"):
        hand_xray.read_all_csv(p)
