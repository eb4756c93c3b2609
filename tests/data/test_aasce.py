"""AASCE 2019 spine AP layout (mlm.data.aasce): ratio tables -> px datalist, clear errors for bad tables, the
prepare_dataset.py subcommand, and the spine AP phantom written in that layout (mlm.data.phantoms.spine_ap)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlm.data import aasce
from mlm.data.datalist import load_datalist, validate_datalist
from mlm.data.phantoms.spine_ap import generate_spine_ap, write_spine_ap_dataset
from mlm.spine_metrics import cobb_angles
from transforms.io.landmark_files import read_landmark_file

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layout(root: Path, images: dict[str, dict[str, tuple[int, int]]], seed: int = 0) -> dict[str, np.ndarray]:
    """Write an AASCE layout: ``{split: {file name: (W, H)}}`` grey JPEGs, ratio tables and angles; returns
    ``{file name: (68, 2) ratios}``."""
    rng = np.random.default_rng(seed)
    ratios = {}
    for split, sizes in images.items():
        names = list(sizes)
        r = rng.uniform(0.05, 0.95, (len(names), 68, 2))
        for name, (w, h) in sizes.items():
            (root / "data" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w), 90, np.uint8)).save(root / "data" / split / name)
        aasce.write_landmarks_csv(root / "labels" / split / "landmarks.csv", r)
        aasce.write_filenames_csv(root / "labels" / split / "filenames.csv", names)
        aasce.write_angles_csv(root / "labels" / split / "angles.csv", rng.uniform(0, 40, (len(names), 3)))
        ratios.update(zip(names, r))
    return ratios


def test_landmark_table_holds_68_x_then_68_y_ratios(tmp_path):
    x, y = np.arange(68) / 100, 0.5 + np.arange(68) / 200
    (tmp_path / "landmarks.csv").write_text(",".join(repr(float(v)) for v in (*x, *y)) + "\n", encoding="utf-8")
    r = aasce.read_landmarks_csv(tmp_path / "landmarks.csv")
    assert r.shape == (1, 68, 2)
    np.testing.assert_array_equal(r[0, :, 0], x)
    np.testing.assert_array_equal(r[0, :, 1], y)


def test_landmark_names_are_17_vertebrae_by_4_corners_in_aasce_order():
    names = aasce.LANDMARK_NAMES
    assert len(names) == aasce.NUM_LANDMARKS == 68
    assert names[:4] == ("T1_top_left", "T1_top_right", "T1_bottom_left", "T1_bottom_right")
    assert names[4 * 12] == "L1_top_left" and names[-1] == "L5_bottom_right"


def test_convert_round_trip_ratios_to_pixels_with_angles_and_names(tmp_path):
    root = tmp_path / "aasce"
    images = {"training": {"a 1 AP.jpg": (50, 120), "b.jpg": (40, 100)}, "test": {"c,2.jpg": (60, 150)}}
    ratios = _layout(root, images)
    paths = aasce.convert_aasce(root, tmp_path / "out", validation_fraction=0.0)
    assert [p.name for p in paths] == ["datalist.json"]
    datalist = json.loads(paths[0].read_text(encoding="utf-8"))
    assert datalist["num_landmarks"] == 68 and datalist["landmark_names"] == list(aasce.LANDMARK_NAMES)
    assert [i["id"] for i in datalist["training"]] == ["a 1 AP", "b"] and [i["id"] for i in datalist["test"]] == ["c,2"]
    angles = aasce.read_angles_csv(root / "labels" / "training" / "angles.csv")
    assert datalist["training"][1]["cobb_angles"] == pytest.approx(angles[1].tolist(), abs=0)
    assert datalist["training"][0]["units"] == "px"
    assert validate_datalist(paths[0]) == {"training": 2, "test": 1}
    for split, sizes in images.items():
        for item, (name, (w, h)) in zip(load_datalist(paths[0], split), sizes.items()):
            landmarks = read_landmark_file(item["landmarks"])
            assert landmarks.coordinate_system == "voxel" and landmarks.names == list(aasce.LANDMARK_NAMES)
            np.testing.assert_allclose(landmarks.points, ratios[name] * [w, h], rtol=0, atol=1e-12)


def test_convert_holds_out_the_last_training_images_for_validation(tmp_path):
    """The layout has no validation split: the last 10% of the training images (at least one) become one."""
    root = tmp_path / "aasce"
    names = {f"t{k:02d}.jpg": (40, 100) for k in range(12)}
    _layout(root, {"training": names, "test": {"c.jpg": (40, 100)}})
    datalist = json.loads(aasce.convert_aasce(root, tmp_path / "out")[0].read_text(encoding="utf-8"))
    assert [i["id"] for i in datalist["validation"]] == ["t11"]  # round(12 x 0.1) = 1, the last in filenames.csv
    assert [i["id"] for i in datalist["training"]] == [f"t{k:02d}" for k in range(11)]
    assert [i["id"] for i in datalist["test"]] == ["c"]
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
        aasce.convert_aasce(root, tmp_path / "out2", validation_fraction=1.0)


def _nan_in_row_2(table: str) -> str:
    first, second = table.splitlines()[:2]
    return f"{first}\nnan{second[second.index(',') :]}\n"


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda t: t.replace(",", ";", 1), ValueError, r"landmarks\.csv: row 1 has 135 values, expected 136"),
        (lambda t: "abc" + t[t.index(",") :], ValueError, r"landmarks\.csv: row 1, column 1: 'abc' is not a number"),
        (_nan_in_row_2, ValueError, r"landmarks\.csv: row 2, column 1: 'nan' is not a finite number"),
        (lambda t: t + t.split("\n")[0] + "\n", ValueError, r"filenames\.csv: 2 file names but .*landmarks\.csv has 3"),
    ],
)
def test_bad_landmark_tables_name_the_file_and_row(tmp_path, edit, error, match):
    _layout(tmp_path, {"training": {"a.jpg": (20, 40), "b.jpg": (20, 40)}})
    table = tmp_path / "labels" / "training" / "landmarks.csv"
    table.write_text(edit(table.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(error, match=match):
        aasce.convert_aasce(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "datalist.json").exists()


def test_missing_image_bad_name_rows_and_angle_counts_are_named(tmp_path):
    _layout(tmp_path, {"training": {"a.jpg": (20, 40), "b.jpg": (20, 40)}})
    labels = tmp_path / "labels" / "training"
    (tmp_path / "data" / "training" / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"filenames\.csv row 2 names 'b\.jpg', but .*b\.jpg does not exist"):
        aasce.convert_aasce(tmp_path, tmp_path / "out")
    (labels / "filenames.csv").write_text("a.jpg\nb.jpg,extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"filenames\.csv: row 2 has 2 cells, expected one image file name"):
        aasce.convert_aasce(tmp_path, tmp_path / "out")
    (labels / "filenames.csv").write_text("a.jpg\na.jpg\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"filenames\.csv row 2: image id 'a' again \(first in row 1\)"):
        aasce.convert_aasce(tmp_path, tmp_path / "out")
    Image.fromarray(np.zeros((40, 20), np.uint8)).save(tmp_path / "data" / "training" / "b.jpg")
    (labels / "filenames.csv").write_text("a.jpg\nb.jpg\n", encoding="utf-8")
    (labels / "angles.csv").write_text("1,2,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"angles\.csv: 1 rows but .*filenames\.csv names 2 images"):
        aasce.convert_aasce(tmp_path, tmp_path / "out")
    (labels / "angles.csv").write_text("1,2,3\n4,5\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"angles\.csv: row 2 has 2 values, expected 3"):
        aasce.convert_aasce(tmp_path, tmp_path / "out")
    (labels / "angles.csv").unlink()  # optional: the items then carry no cobb_angles
    items = load_datalist(aasce.convert_aasce(tmp_path, tmp_path / "out", validation_fraction=0.0)[0], "training")
    assert len(items) == 2 and "cobb_angles" not in items[0]
    with pytest.raises(FileExistsError, match="datalist exists"):
        aasce.convert_aasce(tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"no training/ or test/ folder"):
        aasce.convert_aasce(tmp_path / "nowhere", tmp_path / "out2")


def test_prepare_dataset_aasce_subcommand(tmp_path, capsys):
    prepare_dataset = _script("prepare_dataset")
    _layout(tmp_path / "root", {"training": {"a.jpg": (20, 40)}, "test": {"b.jpg": (20, 40)}})
    assert prepare_dataset.main(["aasce", str(tmp_path / "root"), str(tmp_path / "out")]) == 0
    assert "datalist.json: OK (training: 1, test: 1" in capsys.readouterr().out
    assert prepare_dataset.main(["aasce", str(tmp_path / "root"), str(tmp_path / "out")]) == 1
    assert "exists" in capsys.readouterr().err


def test_spine_ap_phantom_is_the_aasce_layout_and_reads_back(tmp_path):
    datalist = write_spine_ap_dataset(tmp_path, num_images=5, seed=3, show_progress=False)
    assert json.loads(datalist.read_text(encoding="utf-8"))["name"] == "spine_ap_phantom"
    assert validate_datalist(datalist) == {"training": 3, "validation": 1, "test": 1}
    assert [i["id"] for i in load_datalist(datalist, "validation")] == ["s0003"]  # the last training image
    for split, index in (("training", 1), ("test", 4)):
        items = {i["id"]: i for i in load_datalist(datalist, split)}
        ph = generate_spine_ap(np.random.default_rng([3, index]))
        image = np.asarray(Image.open(tmp_path / "data" / split / f"s{index:04d}.jpg"))
        assert image.shape == ph.image.T.shape and np.abs(image.astype(int) - ph.image.T).mean() < 2  # JPEG q95
        points = read_landmark_file(items[f"s{index:04d}"]["landmarks"]).points
        np.testing.assert_allclose(points, ph.landmarks, rtol=0, atol=1e-9)
        rows = aasce.read_aasce_split(tmp_path, split)
        row = next(r for r in rows if r["id"] == f"s{index:04d}")
        np.testing.assert_allclose(row["cobb_angles"], cobb_angles(ph.landmarks, ph.image.shape[1]), atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spine_ap_phantom_corners_frame_bright_vertebrae_top_to_bottom(seed):
    ph = generate_spine_ap(np.random.default_rng(seed), width=128, height=320)
    w, h = ph.image.shape
    corners = ph.landmarks.reshape(17, 4, 2)
    assert np.all((ph.landmarks >= 0) & (ph.landmarks <= [w - 1, h - 1]))
    assert np.all(corners[:, 0, 0] < corners[:, 1, 0]) and np.all(corners[:, 2, 0] < corners[:, 3, 0])  # left < right
    assert np.all(corners[:, 0, 1] < corners[:, 2, 1]) and np.all(corners[:, 1, 1] < corners[:, 3, 1])  # top < bottom
    assert np.all(np.diff(corners.mean(1)[:, 1]) > 0)  # T1 at the top, L5 at the bottom
    assert np.all(corners[1:, :2, 1].mean(1) > corners[:-1, 2:, 1].mean(1))  # a disc gap below each vertebra
    to_centre = np.repeat(corners.mean(1), 4, axis=0) - ph.landmarks
    inward = ph.landmarks + 2.0 * to_centre / np.linalg.norm(to_centre, axis=1, keepdims=True)  # 2 px inside
    background = np.median(ph.image)
    bone = ph.image[tuple(np.round(inward).astype(int).T)]
    assert bone.min() > background + 60  # each corner is the corner of a bright block


def test_spine_ap_phantom_is_deterministic_and_the_cli_writes_it(tmp_path):
    generate_phantoms = _script("generate_phantoms")
    for name in ("a", "b"):
        args = ["spine_ap", "--out", str(tmp_path / name), "--num-images", "3", "--seed", "7", "--no-progress"]
        assert generate_phantoms.main(args) == 0
    write_spine_ap_dataset(tmp_path / "c", num_images=3, seed=8, show_progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".jpg"]) == 3
    for f in files:  # images, tables, landmark files and the datalist (relative paths) alike
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "data" / "training" / "s0000.jpg").read_bytes() != (
        tmp_path / "c" / "data" / "training" / "s0000.jpg"
    ).read_bytes()
