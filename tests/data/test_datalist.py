"""Generic datalist: writing, loading with absolute paths, validation with clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlm.data.datalist import (
    atomic_write_text,
    load_datalist,
    read_coordinate_table,
    validate_datalist,
    write_coordinate_table,
    write_datalist,
)
from transforms.io.landmark_files import write_landmark_file


def _make(tmp_path, n_items=2, num_landmarks=3):
    import nibabel as nib

    (tmp_path / "images").mkdir()
    items = []
    for k in range(n_items):
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), tmp_path / "images" / f"s{k}.nii.gz")
        pts = np.arange(num_landmarks * 3.0).reshape(-1, 3) % 7 * np.array([-1.0, -1.0, 1.0])  # LPS, inside
        write_landmark_file(tmp_path / "landmarks" / f"s{k}.json", pts, "LPS")
        items.append({"id": f"s{k}", "image": f"images/s{k}.nii.gz", "landmarks": f"landmarks/s{k}.json"})
    return {"name": "t", "spatial_dims": 3, "num_landmarks": num_landmarks, "training": items}


def test_write_load_validate_roundtrip_gives_absolute_paths(tmp_path):
    path = write_datalist(tmp_path / "datalist.json", _make(tmp_path))
    items = load_datalist(path)
    assert [i["id"] for i in items] == ["s0", "s1"]
    assert items[0]["image"] == str((tmp_path / "images" / "s0.nii.gz").resolve())
    assert items[0]["landmarks"] == str((tmp_path / "landmarks" / "s0.json").resolve())
    assert validate_datalist(path) == {"training": 2}


def test_write_datalist_refuses_overwrite_and_leaves_no_temp_file(tmp_path):
    dl = _make(tmp_path)
    path = write_datalist(tmp_path / "datalist.json", dl)
    before = path.read_text(encoding="utf-8")
    with pytest.raises(FileExistsError, match="datalist.json"):
        write_datalist(path, {**dl, "name": "other"})
    assert path.read_text(encoding="utf-8") == before
    write_datalist(path, {**dl, "name": "other"}, overwrite=True)
    assert json.loads(path.read_text(encoding="utf-8"))["name"] == "other"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_atomic_write_keeps_old_content_when_interrupted(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")

    with pytest.raises(TypeError):
        atomic_write_text(path, 123)  # type: ignore[arg-type]  # fails while writing the temp file
    assert path.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_validate_duplicate_id_names_file(tmp_path):
    dl = _make(tmp_path)
    dl["training"][1]["id"] = "s0"
    path = write_datalist(tmp_path / "dl.json", dl)
    with pytest.raises(ValueError, match=r"dl\.json.*duplicate id 's0'"):
        validate_datalist(path)


def test_validate_missing_image_names_file(tmp_path):
    dl = _make(tmp_path)
    (tmp_path / "images" / "s1.nii.gz").unlink()
    path = write_datalist(tmp_path / "dl.json", dl)
    with pytest.raises(FileNotFoundError, match=r"s1\.nii\.gz"):
        validate_datalist(path)


def test_validate_wrong_landmark_count_names_file(tmp_path):
    dl = _make(tmp_path)
    dl["num_landmarks"] = 4
    path = write_datalist(tmp_path / "dl.json", dl)
    with pytest.raises(ValueError, match=r"s0\.json: 3 landmarks, expected 4"):
        validate_datalist(path)


def test_validate_inline_landmarks_and_missing_split(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "a.png")
    dl = {
        "num_landmarks": 2,
        "spatial_dims": 2,
        "training": [{"id": "a", "image": "a.png", "landmarks": [[1, 2], None]}],
    }
    path = write_datalist(tmp_path / "dl.json", dl)
    assert validate_datalist(path) == {"training": 1}
    with pytest.raises(ValueError, match="no split 'test'"):
        load_datalist(path, "test")


def test_write_datalist_rejects_item_without_image(tmp_path):
    with pytest.raises(ValueError, match="has no 'image'"):
        write_datalist(tmp_path / "dl.json", {"num_landmarks": 1, "training": [{"id": "a"}]})


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=6, max_size=6), min_size=1, max_size=4),
    st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_coordinate_table_roundtrip_keeps_values_and_nan_rows(tmp_path_factory, rows, missing):
    path = tmp_path_factory.mktemp("t") / "t.csv"
    data = {}
    for k, r in enumerate(rows):
        a = np.asarray(r, dtype=np.float64).reshape(3, 2)
        a[np.asarray(missing)] = np.nan
        data[f"id{k}"] = a
    write_coordinate_table(path, data, 3, 2, fmt="{!r}")
    back = read_coordinate_table(path, 3, 2)
    assert list(back) == list(data)
    for k in data:
        np.testing.assert_array_equal(back[k], data[k])  # exact: repr round-trips floats


def test_coordinate_table_wrong_column_count_names_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,1,2,3,4\nb,1,2,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv:2: 3 values, expected 2 landmarks x 2"):
        read_coordinate_table(p, 2, 2)
