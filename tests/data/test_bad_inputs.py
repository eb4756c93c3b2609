"""Every bad datalist of ``bad_inputs.py`` is refused by each entry point it reaches, with a named error."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import BAD_CASES, NAMES, VOXELS, BadCase, write_tiny_dataset

from mlm.bundle import load_split
from mlm.data.datalist import check_datalist, check_safe_id, load_datalist, validate_datalist

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prepare_dataset.py"
_spec = importlib.util.spec_from_file_location("prepare_dataset", SCRIPT)
prepare_dataset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_dataset)


def _load_with_transforms(case: BadCase) -> list[dict]:
    """LoadImaged + LoadLandmarksd on every item of the case's split (called one by one: no Compose wrapping)."""
    from monai.transforms import LoadImaged

    from transforms.landmarks import LoadLandmarksd

    load_image = LoadImaged(keys="image", ensure_channel_first=True, image_only=True)
    load_landmarks = LoadLandmarksd(keys="landmarks", num_landmarks=3, landmark_names=NAMES)
    return [load_landmarks(load_image(i)) for i in load_datalist(case.datalist, case.split)]


def _run_stage(stage: str, case: BadCase, capsys):
    if stage == "load_split":
        return load_split(case.root, case.split, num_landmarks=3, spatial_dims=3, dataset="tiny")
    if stage == "load_datalist":
        return load_datalist(case.datalist, case.split)
    if stage == "transform":
        return _load_with_transforms(case)
    if stage == "image_load":
        from transforms.io import CheckedLoadImaged

        load_image = CheckedLoadImaged(keys="image", spatial_dims=3)
        return [load_image(i) for i in load_datalist(case.datalist, case.split)]
    assert stage == "generic_check"
    capsys.readouterr()
    code = prepare_dataset.main(["generic-check", str(case.datalist)])
    return code, capsys.readouterr()


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content: a refused input must leave the dataset as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_is_refused_naming_the_file(tmp_path, capsys, name):
    case = BAD_CASES[name](tmp_path / name)
    assert case.stages
    before = _snapshot(case.root)
    _check_every_stage(case, capsys, name)
    assert _snapshot(case.root) == before, f"{name}: a refused input changed, added or removed files"


def _check_every_stage(case: BadCase, capsys, name: str) -> None:
    for stage in case.stages:
        if case.error is None:  # tolerated input: loads, with the missing landmark a NaN row
            result = _run_stage(stage, case, capsys)
            if stage == "generic_check":
                assert result[0] == 0, result[1].err
            if stage == "transform":
                pts = result[0]["landmarks"].numpy()
                assert pts.shape == (3, 3)
                assert [k for k in range(3) if np.isnan(pts[k]).all()] == list(case.missing)
                np.testing.assert_allclose(
                    np.delete(pts, case.missing, 0), np.delete(VOXELS, case.missing, 0), atol=1e-5
                )
            continue
        if stage == "generic_check":
            code, out = _run_stage(stage, case, capsys)
            assert code == 1, f"{name}: generic-check passed: {out.out}"
            lines = [line for line in out.err.splitlines() if line.startswith("error: ")]
            assert any(str(case.file) in line and re.search(case.match, line) for line in lines), (name, out.err)
            last = out.err.splitlines()[-1]  # the problem count, or the one error that stopped the check
            assert "problem(s)" in last or (last.startswith("error: ") and str(case.file) in last), last
            continue
        with pytest.raises(case.error, match=case.match) as err:
            _run_stage(stage, case, capsys)
        assert str(case.file) in str(err.value), (name, stage, str(err.value))
        assert "\n" not in str(err.value).replace(repr("a\nb")[1:-1], ""), "one line"


def test_the_tiny_dataset_itself_passes_every_stage(tmp_path, capsys):
    path = write_tiny_dataset(tmp_path)
    case = BadCase("valid", tmp_path, path, "training", None, "", path, ())
    items = load_split(tmp_path, "training", num_landmarks=3, spatial_dims=3)
    assert [i["id"] for i in items] == ["t0", "t1"]
    assert prepare_dataset.main(["generic-check", str(path)]) == 0
    assert "OK (training: 2, validation: 1, test: 1; 4 images, 4 landmark sets checked)" in capsys.readouterr().out
    for d in _load_with_transforms(case):
        np.testing.assert_allclose(d["landmarks"].numpy(), VOXELS, atol=1e-5)


def test_generic_check_prints_every_problem_on_its_own_line(tmp_path, capsys):
    path = write_tiny_dataset(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["training"][0]["id"] = "../../x"
    data["training"][1]["spacing"] = [1.0, -1.0, 1.0]
    data["validation"] = []
    data["test"][0]["landmarks"] = "landmarks/missing.json"
    (tmp_path / "images" / "t1.nii.gz").write_text("not an image", encoding="utf-8")
    path.write_text(json.dumps(data), encoding="utf-8")
    assert prepare_dataset.main(["generic-check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    problems = [line for line in err if line.startswith("error: ")]
    assert len(problems) == 5, err
    for fragment, file in [
        ("not a safe file name", path),
        ("'spacing' must be positive", path),
        ("split 'validation' is empty", path),
        ("not found", tmp_path / "landmarks" / "missing.json"),
        ("not a readable image", tmp_path / "images" / "t1.nii.gz"),
    ]:
        assert sum(fragment in line and str(file) in line for line in problems) == 1, (fragment, err)
    assert err[-1].endswith("5 problem(s) (training: 2, validation: 0, test: 1; 2 images, 2 landmark sets checked)")


def test_generic_check_required_splits_and_headers_only(tmp_path, capsys):
    path = write_tiny_dataset(tmp_path)
    assert prepare_dataset.main(["generic-check", str(path), "--splits", "training", "test2"]) == 1
    assert "no split 'test2'" in capsys.readouterr().err
    img = tmp_path / "images" / "t0.nii.gz"  # truncated data with an intact header: only the full check sees it
    img.write_bytes(img.read_bytes()[:-20])
    assert prepare_dataset.main(["generic-check", str(path), "--headers-only"]) == 0
    assert prepare_dataset.main(["generic-check", str(path)]) == 1
    assert f"{img}: truncated" in capsys.readouterr().err


@pytest.mark.parametrize("good", ["001", "case_01", "a.b", "Ünïcode-ö", 7, "x" * 200])
def test_check_safe_id_accepts_file_names(good):
    assert check_safe_id(good, "dl.json") == str(good)


@pytest.mark.parametrize(
    "bad, why",
    [
        ("../x", "path separator"),
        ("..", r"contains '\.\.'"),
        ("a\\b", "path separator"),
        ("", "empty"),
        ("  ", "empty"),
        ("a\x00b", "control character"),
        ("a\tb", "control character"),
        ("x" * 201, "longer than 200 bytes"),
        (None, "must be a string"),
        (True, "must be a string"),
        (["a"], "must be a string"),
    ],
)
def test_check_safe_id_refuses_unsafe_ids_naming_where(bad, why):
    with pytest.raises(ValueError, match=why) as err:
        check_safe_id(bad, "data/dl.json [split 'test', item 3]")
    assert str(err.value).startswith("data/dl.json [split 'test', item 3]: id ")


def test_same_id_for_the_same_image_in_two_splits_is_allowed(tmp_path):
    """ISBI 2015's ``test`` = ``test1`` + ``test2`` and the hand X-ray's ``train_10`` subsets reuse items."""
    path = write_tiny_dataset(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["test1"] = [data["test"][0]]
    data["train_small"] = [data["training"][1]]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert [i["id"] for i in load_datalist(path, "test1")] == ["s0"]
    assert check_datalist(path).ok
    assert validate_datalist(path)["train_small"] == 1


def test_items_without_id_are_named_after_their_image_for_duplicates(tmp_path):
    path = write_tiny_dataset(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    for i in data["training"]:
        del i["id"]
    data["training"][1]["image"] = "other/t0.nii.gz"  # same file name in another folder: same prediction file
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"duplicate image name \(the item has no 'id'\) 't0'"):
        load_datalist(path, "training")


def test_top_level_and_item_coordinate_system_apply_to_files_without_one(tmp_path):
    from transforms.io.landmark_files import read_landmark_file

    path = write_tiny_dataset(tmp_path)
    lm = tmp_path / "landmarks" / "t0.json"
    rec = json.loads(lm.read_text(encoding="utf-8"))
    del rec["coordinate_system"], rec["units"]
    lm.write_text(json.dumps(rec), encoding="utf-8")
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="does not state its coordinate system"):
        load_split(tmp_path, "training")
    data["coordinate_system"] = "LPS"
    path.write_text(json.dumps(data), encoding="utf-8")
    items = load_split(tmp_path, "training")
    assert items[0]["coordinate_system"] == "LPS"
    case = BadCase("cs", tmp_path, path, "training", None, "", lm, ())
    np.testing.assert_allclose(_load_with_transforms(case)[0]["landmarks"].numpy(), VOXELS, atol=1e-5)
    data["training"][0]["coordinate_system"] = "RAS"  # the item wins over the top-level default
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"t0\.json: landmark 0 \(a\) at \[-4.0, -6.0, 8.0\] \(RAS\) lies outside"):
        _load_with_transforms(case)  # the LPS numbers read as RAS: mirrored in x and y
    assert read_landmark_file(lm, "RAS").coordinate_system == "RAS"
    data["coordinate_system"] = "IJK"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"top-level 'coordinate_system': unknown coordinate_system 'IJK'"):
        load_datalist(path, "test")


def test_load_split_reports_the_first_problem_and_counts_the_others(tmp_path):
    path = write_tiny_dataset(tmp_path)
    for i in ("t0", "t1"):
        (tmp_path / "landmarks" / f"{i}.json").write_text(
            '{"coordinate_system": "LPS", "points": [[1, 2, 3]]}', encoding="utf-8"
        )
    with pytest.raises(
        ValueError, match=r"t0\.json: 1 landmarks, expected 3 .*\(1 more problems in this split; .*generic-check"
    ) as err:
        load_split(tmp_path, "training", num_landmarks=3)
    assert str(path) in str(err.value) and "split 'training'" in str(err.value) and "'t0'" in str(err.value)
    assert load_split(tmp_path, "training", check_landmarks=False)[0]["id"] == "t0"


def test_load_split_compares_the_bundle_landmark_names(tmp_path):
    write_tiny_dataset(tmp_path)
    assert len(load_split(tmp_path, "test", landmark_names=NAMES)) == 1
    with pytest.raises(ValueError, match=r"landmark_names \['a', 'b', 'c'\] are not the bundle's \['a', 'c', 'b'\]"):
        load_split(tmp_path, "test", landmark_names=["a", "c", "b"])


def test_names_of_the_first_named_file_are_the_reference_without_landmark_names(tmp_path):
    path = write_tiny_dataset(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["landmark_names"]
    path.write_text(json.dumps(data), encoding="utf-8")
    lm = tmp_path / "landmarks" / "t1.json"
    rec = json.loads(lm.read_text(encoding="utf-8"))
    rec["names"] = ["c", "b", "a"]
    lm.write_text(json.dumps(rec), encoding="utf-8")
    with pytest.raises(ValueError, match=r"t1\.json: the landmark names differ from the names in .*t0\.json"):
        load_split(tmp_path, "training")
    report = check_datalist(path)
    assert len(report.problems) == 1 and str(lm) in str(report.problems[0])


def test_generic_check_allow_outside_reports_a_warning_and_exits_0(tmp_path, capsys):
    case = BAD_CASES["landmark_outside_image"](tmp_path)
    assert prepare_dataset.main(["generic-check", str(case.datalist), "--allow-outside"]) == 0
    out = capsys.readouterr()
    warnings = [line for line in out.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and str(case.file) in warnings[0] and "landmark 1" not in warnings[0]
    assert "1 landmark(s) outside the image" in warnings[0] and "1 (b) at [-60.0, -10.0, 4.0] LPS" in warnings[0]
    assert "OK (training: 2, validation: 1, test: 1; 4 images, 4 landmark sets checked, 1 warning(s))" in out.out
