"""ISBI 2015 cephalometric reader/writer and converter."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlm.data import isbi2015
from mlm.data.datalist import load_datalist, read_id_list, validate_datalist
from transforms.io.landmark_files import read_landmark_file


def test_annotation_txt_roundtrip_ignores_extra_lines(tmp_path):
    pts = np.random.default_rng(0).integers(0, 1900, size=(19, 2)).astype(float)
    p = isbi2015.write_annotation_txt(tmp_path / "001.txt", pts)
    with open(p, "a", encoding="utf-8") as f:
        f.write("3\n1\n2\n")  # classification labels that follow the points in the real files
    np.testing.assert_array_equal(isbi2015.read_annotation_txt(p), pts)


def test_annotation_txt_too_short_names_file(tmp_path):
    p = tmp_path / "002.txt"
    p.write_text("1,2\n" * 5, encoding="utf-8")
    with pytest.raises(ValueError, match=r"002\.txt: 5 non-empty lines"):
        isbi2015.read_annotation_txt(p)


def test_real_payer_csvs_parse_to_400_by_19(shared_data):
    root = shared_data / "isbi2015_annotations_payer"
    senior = isbi2015.read_payer_csv(root / "all_senior.csv")
    junior = isbi2015.read_payer_csv(root / "all_junior.csv")
    assert len(senior) == len(junior) == 400
    a = np.stack(list(senior.values()))
    assert a.shape == (400, 19, 2) and not np.isnan(a).any()  # ISBI has no missing landmarks
    np.testing.assert_allclose(senior["001"][0], [835, 996], atol=1e-6)  # the well-known L1 of image 001
    assert (a >= 0).all() and (a[..., 0] < 1935).all() and (a[..., 1] < 2400).all()
    # senior vs junior: 2.15 mm mean distance in Payer's README (0.1 mm / px)
    b = np.stack([junior[k] for k in senior])
    assert np.linalg.norm(a - b, axis=-1).mean() * 0.1 == pytest.approx(2.15, abs=0.05)
    splits = [read_id_list(root / f) for f in ("train.txt", "test1.txt", "test2.txt")]
    assert [len(s) for s in splits] == [150, 150, 100]


def _fake_layout(root, ids=("001", "002", "151", "301")):
    rng = np.random.default_rng(1)
    truth = {}
    for i in ids:
        n = int(i)
        folder = "TrainingData" if n <= 150 else "Test1Data" if n <= 300 else "Test2Data"
        (root / "RawImage" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(root / "RawImage" / folder / f"{i}.bmp")
        s = rng.integers(0, 19, (19, 2)).astype(float)
        j = rng.integers(0, 19, (19, 2)).astype(float)
        isbi2015.write_annotation_txt(root / "AnnotationsByMD" / "400_senior" / f"{i}.txt", s)
        isbi2015.write_annotation_txt(root / "AnnotationsByMD" / "400_junior" / f"{i}.txt", j)
        truth[i] = (s, j)
    return truth


def test_convert_fake_layout_gives_valid_datalist_with_official_splits(tmp_path):
    truth = _fake_layout(tmp_path / "isbi")
    (tmp_path / "cv" / "set1").mkdir(parents=True)
    (tmp_path / "cv" / "set1" / "train.txt").write_text("001\n151\n", encoding="utf-8")
    (tmp_path / "cv" / "set1" / "val.txt").write_text("002\n", encoding="utf-8")
    out = tmp_path / "out"
    paths = isbi2015.convert_isbi2015(tmp_path / "isbi", out, cv_dir=tmp_path / "cv")
    assert [p.name for p in paths] == ["datalist.json", "datalist_cv1.json"]
    assert validate_datalist(out / "datalist.json") == {"training": 2, "test1": 1, "test2": 1, "test": 2}
    assert validate_datalist(out / "datalist_cv1.json") == {"training": 2, "validation": 1}
    item = load_datalist(out / "datalist.json", "test1")[0]
    assert item["spacing"] == [0.1, 0.1] and item["image"].endswith("Test1Data/151.bmp")
    lf = read_landmark_file(item["landmarks"])
    assert lf.coordinate_system == "voxel"
    np.testing.assert_allclose(lf.points, (truth["151"][0] + truth["151"][1]) / 2, atol=1e-12)
    with pytest.raises(FileExistsError, match="datalist.json"):
        isbi2015.convert_isbi2015(tmp_path / "isbi", out)
    isbi2015.convert_isbi2015(tmp_path / "isbi", out, annotation="senior", overwrite=True)
    lf = read_landmark_file(load_datalist(out / "datalist.json", "test1")[0]["landmarks"])
    np.testing.assert_allclose(lf.points, truth["151"][0], atol=1e-12)


def test_convert_annotation_without_image_names_file(tmp_path):
    _fake_layout(tmp_path / "isbi")
    (tmp_path / "isbi" / "RawImage" / "Test2Data" / "301.bmp").unlink()
    with pytest.raises(FileNotFoundError, match=r"AnnotationsByMD.*'301'"):
        isbi2015.convert_isbi2015(tmp_path / "isbi", tmp_path / "out")
    assert not (tmp_path / "out" / "datalist.json").exists()


def test_convert_duplicate_image_id_names_file(tmp_path):
    _fake_layout(tmp_path / "isbi")
    dup = tmp_path / "isbi" / "RawImage" / "Test1Data" / "001.bmp"
    dup.write_bytes((tmp_path / "isbi" / "RawImage" / "TrainingData" / "001.bmp").read_bytes())
    with pytest.raises(ValueError, match=r"001\.bmp: duplicate image id '001'"):
        isbi2015.convert_isbi2015(tmp_path / "isbi", tmp_path / "out")


def test_convert_with_payer_csv_uses_mm_over_spacing(tmp_path):
    _fake_layout(tmp_path / "isbi", ids=("001",))
    pts = np.full((19, 2), 12.5)
    isbi2015.write_payer_csv(tmp_path / "all.csv", {"001": pts})
    assert (tmp_path / "all.csv").read_text(encoding="utf-8").startswith("001,1.25,1.25")
    isbi2015.convert_isbi2015(tmp_path / "isbi", tmp_path / "out", annotation_csv=tmp_path / "all.csv")
    lf = read_landmark_file(load_datalist(tmp_path / "out" / "datalist.json")[0]["landmarks"])
    np.testing.assert_allclose(lf.points, pts, atol=1e-9)
