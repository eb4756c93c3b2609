"""Landmark file formats: round trips (NaN included), the real AFIDs .fcsv, and every error path naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from transforms.io import read_landmark_file, write_landmark_file

POINTS_3D = np.array([[1.5, -2.25, 3.0], [np.nan] * 3, [10.125, 0.0, -7.5]])
POINTS_2D = np.array([[1.5, -2.25], [np.nan, np.nan], [10.125, 7.5]])


@pytest.mark.parametrize("suffix", [".json", ".csv", ".fcsv"])
@pytest.mark.parametrize("cs", ["LPS", "RAS"])
def test_round_trip_3d_keeps_points_nan_names_and_system(tmp_path, suffix, cs):
    path = write_landmark_file(tmp_path / f"lm{suffix}", POINTS_3D, cs, names=["a", "b c", "d,e"])
    lf = read_landmark_file(path)
    np.testing.assert_array_equal(lf.points, POINTS_3D)  # exact: repr() of floats round-trips
    assert lf.coordinate_system == cs
    assert lf.names == ["a", "b c", "d,e"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_round_trip_2d_voxel(tmp_path, suffix):
    lf = read_landmark_file(write_landmark_file(tmp_path / f"lm{suffix}", POINTS_2D, "voxel"))
    np.testing.assert_array_equal(lf.points, POINTS_2D)
    assert lf.coordinate_system == "voxel" and lf.names == ["0", "1", "2"]


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, (4, 3), elements=st.floats(-1e4, 1e4, allow_nan=False)), st.sampled_from([".json", ".csv"]))
def test_round_trip_is_exact_for_any_finite_points(tmp_path_factory, pts, suffix):
    path = tmp_path_factory.mktemp("rt") / f"p{suffix}"
    np.testing.assert_array_equal(read_landmark_file(write_landmark_file(path, pts, "RAS")).points, pts)


def test_json_generic_format_with_null(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(
        json.dumps({"coordinate_system": "LPS", "units": "mm", "points": [[1, 2, 3], None]}), encoding="utf-8"
    )
    lf = read_landmark_file(path)
    assert lf.points.shape == (2, 3) and np.isnan(lf.points[1]).all() and lf.coordinate_system == "LPS"


def test_csv_headerless_and_header_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("1.0,2.0\n,\n3.5,nan\n".replace("3.5,nan", "nan,nan"), encoding="utf-8")
    lf = read_landmark_file(path, coordinate_system="voxel")
    np.testing.assert_array_equal(lf.points, [[1.0, 2.0], [np.nan, np.nan], [np.nan, np.nan]])
    path.write_text("# coordinate_system: RAS\nname,x,y,z\nAC,1,2,3\nPC,4,5,6\n", encoding="utf-8")
    lf = read_landmark_file(path)
    assert lf.names == ["AC", "PC"] and lf.coordinate_system == "RAS"
    np.testing.assert_array_equal(lf.points, [[1, 2, 3], [4, 5, 6]])


def test_fcsv_lps_header_variants(tmp_path):
    for header in ("LPS", "1"):
        path = tmp_path / f"a{header}.fcsv"
        path.write_text(f"# CoordinateSystem = {header}\n# columns = id,x,y,z,label\nn1,1,2,3,A\n", encoding="utf-8")
        lf = read_landmark_file(path)
        assert lf.coordinate_system == "LPS" and lf.names == ["A"]
        np.testing.assert_array_equal(lf.points, [[1, 2, 3]])


def test_real_afids_fcsv_reads_32_ras_points(shared_data):
    lf = read_landmark_file(shared_data / "afids_mni152" / "tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv")
    assert lf.points.shape == (32, 3) and lf.coordinate_system == "RAS"
    np.testing.assert_allclose(lf.points[0], [-0.204861407692308, 2.72288076923077, -4.88105282051282], atol=1e-12)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("a.json", "{not json", "not valid JSON"),
        ("a.json", '{"coordinate_system": "RAS", "points": [[1, 2], [1, 2, 3]]}', "inconsistent dimension"),
        ("a.json", '{"coordinate_system": "XYZ", "points": [[1, 2]]}', "unknown coordinate system"),
        ("a.json", '{"coordinate_system": "RAS", "points": [[1, null, 3]]}', "NaN in only some"),
        ("a.json", '{"coordinate_system": "RAS", "points": [[1]]}', "2 or 3 coordinates"),
        ("a.csv", "# coordinate_system: RAS\na,1,2\nb,1,nan\n", "NaN in only some"),
        ("a.csv", "# coordinate_system: RAS\na,1,2\nb,1,x\n", "cannot read coordinate"),
        ("a.csv", "1,2\n", "does not state its coordinate system"),
        ("a.fcsv", "# CoordinateSystem = XYZ\nn,1,2,3\n", "unknown CoordinateSystem"),
        ("a.txt", "1,2\n", "unknown landmark file suffix"),
    ],
)
def test_bad_files_raise_value_error_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match) as err:
        read_landmark_file(path)
    assert str(path) in str(err.value)


def test_missing_file_and_conflicting_system_and_bad_writes(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_landmark_file(tmp_path / "nope.json")
    path = write_landmark_file(tmp_path / "a.json", POINTS_3D, "RAS")
    with pytest.raises(ValueError, match="states coordinate system 'RAS' but the caller says 'LPS'") as err:
        read_landmark_file(path, coordinate_system="LPS")
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="fcsv"):
        write_landmark_file(tmp_path / "b.fcsv", POINTS_2D, "RAS")
    with pytest.raises(ValueError, match="unknown coordinate system"):
        write_landmark_file(tmp_path / "b.json", POINTS_2D, "ijk")
    with pytest.raises(ValueError, match="NaN in only some"):
        write_landmark_file(tmp_path / "b.json", [[1.0, np.nan]], "RAS")
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(
    "content, missing",
    [
        ("# coordinate_system: voxel\nname,x,y\na,1,2\n\nc,5,6\n", [1]),  # a blank row in the middle
        ("# coordinate_system: voxel\nname,x,y\na,1,2\nb,3,4\n\n", [2]),  # the last landmark missing
        ("# coordinate_system: voxel\n\nname,x,y\n\na,1,2\nb,3,4\n", [0]),  # blank before the header: ignored
        ("1,2\n \n5,6\n", [1]),  # headerless, a white-space row
        ("name,x,y\na,1,2\nb\nc,5,6\n", [1]),  # a name with no coordinates
        ("name,x,y\r\na,1,2\r\n\r\nc,5,6\r\n", [1]),  # CRLF
    ],
)
def test_csv_blank_row_is_a_missing_landmark_not_a_dropped_one(tmp_path, content, missing):
    path = tmp_path / "a.csv"
    path.write_text(content, newline="", encoding="utf-8")
    lf = read_landmark_file(path, coordinate_system="voxel")
    assert lf.points.shape == (3, 2)
    assert [k for k in range(3) if np.isnan(lf.points[k]).all()] == missing
    assert not np.isnan(np.delete(lf.points, missing, 0)).any()


def test_csv_names_of_blank_rows_are_empty_and_not_compared(tmp_path):
    from transforms.io.landmark_files import check_landmark_names

    path = tmp_path / "a.csv"
    path.write_text("# coordinate_system: voxel\nname,x,y\na,1,2\n\nc,5,6\n", encoding="utf-8")
    lf = read_landmark_file(path)
    assert lf.has_names and lf.names == ["a", "", "c"]
    check_landmark_names(lf.names, ["a", "b", "c"], path)
    with pytest.raises(ValueError, match=r"a\.csv: the landmark names differ .*first row 2: 'c' in the file, 'x'"):
        check_landmark_names(lf.names, ["a", "b", "x"], path)
    with pytest.raises(ValueError, match="3 landmark names, the dataset's landmark_names has 2"):
        check_landmark_names(lf.names, ["a", "b"], path)


@pytest.mark.parametrize(
    "name, content, has_names",
    [
        ("a.json", '{"coordinate_system": "RAS", "points": [[1, 2, 3]]}', False),
        ("a.json", '{"coordinate_system": "RAS", "names": ["x"], "points": [[1, 2, 3]]}', True),
        ("a.json", '{"coordinate_system": "RAS", "names": ["0"], "points": [[1, 2, 3]]}', False),
        ("a.csv", "# coordinate_system: RAS\n1,2,3\n", False),
        ("a.csv", "# coordinate_system: RAS\nx,y,z\n1,2,3\n", False),
        ("a.csv", "# coordinate_system: RAS\nname,x,y,z\nAC,1,2,3\n", True),
        ("a.fcsv", "# columns = id,x,y,z,label\nn1,1,2,3,AC\n", True),
        ("a.fcsv", "# columns = id,x,y,z,label\nn1,1,2,3,\n", False),
        ("a.fcsv", "# columns = id,x,y,z\nn1,1,2,3\n", False),
    ],
)
def test_has_names_only_when_the_file_names_its_landmarks(tmp_path, name, content, has_names):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    lf = read_landmark_file(path)
    assert lf.has_names is has_names
    assert lf.names == (["x"] if '"x"' in content else ["AC"] if has_names else ["0"])


@pytest.mark.parametrize(
    "points, match",
    [
        ("[[true, false], [1, 2]]", r"landmark 0 has the coordinate True \(bool\)"),
        ('[[1, 2], ["3", 4]]', r"landmark 1 has the coordinate '3' \(str\)"),
        ("[[1, [2]], [1, 2]]", r"coordinate \[2\] \(list\)"),
        ('[[1, {"a": 2}], [1, 2]]', r"\(dict\)"),
        ("[[1, 2], [Infinity, 2]]", "landmark 1 has an infinite coordinate"),
        ("[[1e999, 2], [1, 2]]", "infinite coordinate"),
        ("[[1, 2], [-1" + "0" * 400 + ", 2]]", "infinite coordinate"),
        ('[[1, 2], "1, 2"]', "each landmark must be a list of coordinates or null"),
        ('{"a": [1, 2]}', "must be a list of"),
        ("[null, null]", "every landmark is missing"),
    ],
)
def test_json_coordinates_must_be_real_numbers(tmp_path, points, match):
    path = tmp_path / "a.json"
    path.write_text(f'{{"coordinate_system": "voxel", "points": {points}}}', encoding="utf-8")
    with pytest.raises(ValueError, match=match) as err:
        read_landmark_file(path)
    assert str(err.value).startswith(str(path))


def test_json_nan_and_null_are_missing(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(
        '{"coordinate_system": "voxel", "points": [[1, 2], [NaN, NaN], [null, null], null]}', encoding="utf-8"
    )
    lf = read_landmark_file(path)
    assert lf.points.shape == (4, 2) and np.isnan(lf.points[1:]).all() and lf.points[0].tolist() == [1, 2]


def test_csv_module_errors_are_named_value_errors(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        "# coordinate_system: voxel\n1,2\n" + "3" * 200_000 + ",4\n", encoding="utf-8"
    )  # beyond csv's field size limit
    with pytest.raises(ValueError, match="not a readable CSV file") as err:
        read_landmark_file(path)
    assert str(path) in str(err.value)
