"""``scripts/predict.py`` / ``mlm.bundle.predict``: landmarks on a folder of a user's own images, no datalist.

Tiny bundles trained for 2 iterations (``ceph_trained``, ``spine_trained``) predict garbage, but the geometry and the
files can be checked: every file of every image, world mm against the px through the image affine, the Slicer markups
against Slicer's schema and against ITK's geometry of the file (what Slicer reads it with), and the predictions
against the bundle's own ``configs/inference.yaml`` run (``python -m monai.bundle run``) on the same images.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from _bundle_runs import CEPH_TINY, SPINE_TINY, bundle_parser, check, run_bundle
from PIL import Image

from mlm.bundle.export import export_bundle
from mlm.bundle.image_folder import find_images, image_ids
from mlm.bundle.launch import REPO_DIR
from mlm.bundle.predict import PredictError, inference_parser, predict_folder
from mlm.data.datalist import check_safe_id
from transforms.io.landmark_files import read_landmark_file
from transforms.io.slicer_markups import MARKUPS_SCHEMA_ID, markups_fiducials

# ---------------------------------------------------------------------------------------------- Slicer's schema
_POINT3 = {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}
#: The parts of Slicer's markups schema v1.0.3 (Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json,
#: draft-07) that a fiducial file uses, transcribed (its "$id"s, titles and descriptions left out; additional
#: properties allowed, as there). The "@schema" pattern is not in the schema: it is the check of Slicer's reader
#: (vtkMRMLMarkupsJsonStorageNode::ReadMarkupsFile, ".*markups-schema-v1\.[0-9]+\.[0-9]+\.json#*$", lower-cased).
SLICER_MARKUPS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "required": ["@schema", "markups"],
    "additionalProperties": True,
    "properties": {
        "@schema": {"type": "string", "pattern": r"markups-schema-v1\.[0-9]+\.[0-9]+\.json#*$"},
        "markups": {
            "type": "array",
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["type"],
                        "additionalProperties": True,
                        "properties": {
                            "type": {
                                "type": "string",
                                "enum": ["Fiducial", "Line", "Angle", "Curve", "ClosedCurve", "Plane", "ROI"],
                            },
                            "name": {"type": "string"},
                            "coordinateSystem": {"type": "string", "enum": ["LPS", "RAS"]},
                            "coordinateUnits": {
                                "anyOf": [
                                    {"type": "string", "enum": ["mm", "um"]},
                                    {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3},
                                ]
                            },
                            "locked": {"type": "boolean"},
                            "fixedNumberOfControlPoints": {"type": "boolean"},
                            "labelFormat": {"type": "string"},
                            "controlPoints": {
                                "type": "array",
                                "items": {
                                    "anyOf": [
                                        {
                                            "type": "object",
                                            "required": [],
                                            "additionalProperties": True,
                                            "properties": {
                                                "id": {"type": "string"},
                                                "label": {"type": "string"},
                                                "description": {"type": "string"},
                                                "associatedNodeID": {"type": "string"},
                                                "position": _POINT3,
                                                "orientation": {
                                                    "type": "array",
                                                    "items": {"type": "number"},
                                                    "minItems": 9,
                                                    "maxItems": 9,
                                                },
                                                "selected": {"type": "boolean"},
                                                "locked": {"type": "boolean"},
                                                "visibility": {"type": "boolean"},
                                                "positionStatus": {
                                                    "type": "string",
                                                    "enum": ["undefined", "preview", "defined"],
                                                },
                                            },
                                        }
                                    ]
                                },
                            },
                            "measurements": {"type": "array"},
                            "display": {
                                "type": "object",
                                "additionalProperties": True,
                                "properties": {
                                    "visibility": {"type": "boolean"},
                                    "pointLabelsVisibility": {"type": "boolean"},
                                },
                            },
                        },
                    }
                ]
            },
        },
    },
}


def check_markups(path: Path, names: list[str], lps: np.ndarray) -> None:
    """``path`` validates against Slicer's schema and holds ``names`` at ``lps`` ``(N, 3)`` (NaN rows unplaced)."""
    content = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(SLICER_MARKUPS_SCHEMA).validate(content)
    (markup,) = content["markups"]
    assert markup["type"] == "Fiducial" and markup["coordinateSystem"] == "LPS" and markup["coordinateUnits"] == "mm"
    points = markup["controlPoints"]
    assert [p["label"] for p in points] == names
    for p, expected in zip(points, lps):
        if np.isnan(expected).any():
            assert p["positionStatus"] == "undefined" and "position" not in p
        else:
            assert p["positionStatus"] == "defined"
            np.testing.assert_allclose(p["position"], expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------- helpers
def tiny_overrides(tiny: list[str], extra: list[str] = ()) -> dict:
    """A bundle test's ``--key value`` overrides as ``predict_folder``'s dict (values read as YAML)."""
    args = [*tiny, *extra]
    return {k.removeprefix("--"): yaml.safe_load(v) for k, v in zip(args[::2], args[1::2])}


def read_csv(path: Path) -> list[dict]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def px_of(rows: list[dict], dims: int) -> np.ndarray:
    return np.array([[float(r[f"{a}_px"]) if r[f"{a}_px"] else np.nan for a in "xyz"[:dims]] for r in rows])


def itk_lps(image: str | Path, voxels: np.ndarray) -> np.ndarray:
    """LPS positions of continuous voxel indices of ``image`` as ITK (and so 3D Slicer) places them, ``(N, 3)``."""
    img = sitk.ReadImage(str(image)) if Path(image).is_file() else _read_series(Path(image))
    out = []
    for v in voxels:
        p = [np.nan] * 3 if np.isnan(v).any() else list(img.TransformContinuousIndexToPhysicalPoint(v.tolist()))
        out.append((p + [0.0])[:3])
    return np.asarray(out)


def _read_series(folder: Path):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def write_dicom_series(volume: Path, folder: Path) -> None:
    """The NIfTI ``volume`` as a DICOM series of ``.dcm`` slices (int16) in ``folder``."""
    img = sitk.Cast(sitk.ReadImage(str(volume)), sitk.sitkInt16)
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = img.GetDirection()
    tags = {
        "0020|000d": "1.2.826.0.1.3680043.2.1125.1.1",
        "0020|000e": "1.2.826.0.1.3680043.2.1125.1.2",
        "0020|0037": "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        "0008|0060": "CT",
    }
    for k in range(img.GetDepth()):
        s = img[:, :, k]
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        s.SetMetaData("0020|0032", "\\".join(str(v) for v in img.TransformIndexToPhysicalPoint((0, 0, k))))
        s.SetMetaData("0020|0013", str(k + 1))
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(s)


def bundle_predictions(
    bundle: str, items: list[dict], model: Path, tmp: Path, tiny: list[str], launch: bool = True
) -> dict[str, dict]:
    """The bundle's own ``inference.yaml`` + ``cpu.yaml`` over a datalist of ``items``, run as a user runs it
    (``python -m monai.bundle run``; ``launch=False``: its parsed ``evaluator`` in this process, as MONAI's run does):
    ``{id: its <id>_landmarks.json}``."""
    (tmp / "data").mkdir(parents=True)
    (tmp / "data" / "datalist.json").write_text(json.dumps({"name": "own", "test": items}), encoding="utf-8")
    args = ["--dataset_dir", str(tmp / "data"), "--infer_split", "test", "--ckpt_path", str(model)]
    args += ["--output_dir", str(tmp / "out"), *tiny]
    if launch:
        check(run_bundle(bundle, ["inference.yaml", "cpu.yaml"], args))
    else:
        bundle_parser(bundle, ["inference.yaml", "cpu.yaml"], args).get_parsed_content("evaluator").run()
    return {
        i["id"]: json.loads((tmp / "out" / "predictions" / f"{i['id']}_landmarks.json").read_text(encoding="utf-8"))
        for i in items
    }


def file_names(item: str) -> list[str]:
    return [f"{item}.json", f"{item}.csv", f"{item}.mrk.json", f"{item}_overlay.png"]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ceph_images(ceph_data, tmp_path_factory) -> Path:
    """2D images as a user has them: a BMP, a grey X-ray saved as RGB PNG (with a space in its name), a JPEG that
    declares 96 dpi, a MetaImage with a pixel size and an origin, and a file that is not an image."""
    folder = tmp_path_factory.mktemp("ceph_images")
    src = sorted((ceph_data / "RawImage").rglob("*.bmp"))
    shutil.copy(src[0], folder / "001.bmp")
    grey = np.asarray(Image.open(src[1]).convert("L"))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / "002 rgb.png")
    Image.open(src[2]).convert("L").save(folder / "003.jpg", quality=95, dpi=(96, 96))  # ITK, Slicer: 0.26 mm/px
    mha = sitk.GetImageFromArray(np.asarray(Image.open(src[3]).convert("L"), dtype=np.float32))
    mha.SetSpacing((4.0, 4.0))
    mha.SetOrigin((10.0, -20.0))
    sitk.WriteImage(mha, str(folder / "004.mha"))
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def spine_images(spine_data, tmp_path_factory) -> Path:
    """3D images: a NIfTI volume and a DICOM series (a folder of .dcm slices)."""
    folder = tmp_path_factory.mktemp("spine_images")
    volumes = sorted((spine_data / "images").glob("*.nii.gz"))
    shutil.copy(volumes[0], folder / "s000.nii.gz")
    write_dicom_series(volumes[1], folder / "s001_dicom")
    return folder


CEPH_MODEL = "models/model.pt"
SPINE_OVERRIDES = tiny_overrides(SPINE_TINY, ["--sigma", "1.0"])


@pytest.fixture(scope="module")
def spine_state_dict(tmp_path_factory) -> Path:
    """An untrained tiny scn_spine_ct network saved as a plain state dict (the form of exported weights)."""
    torch.manual_seed(0)
    network = inference_parser("scn_spine_ct", ["cpu.yaml"], SPINE_OVERRIDES).get_parsed_content("network_def")
    path = tmp_path_factory.mktemp("spine_model") / "weights.pt"
    torch.save(network.state_dict(), path)
    return path


# ---------------------------------------------------------------------------------------------- finding images
def test_find_images_names_and_dicom_series(tmp_path):
    for name in ["a.png", "a.JPG", "b c.nii.gz", "predictions.bmp", "x.y.mha", ".hidden.png", "notes.txt", "1.dcm"]:
        (tmp_path / name).write_bytes(b"")
    for name in ["sub/a.png", "series/001.dcm", "series/002.dcm", "series/nested/z.nrrd"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found, ignored = find_images(tmp_path, spatial_dims=2, reserved=["predictions"])
    assert [(f.id, f.path.name, f.pixel_only) for f in found] == [
        ("1", "1.dcm", False),
        ("a_JPG", "a.JPG", True),
        ("a_png", "a.png", True),
        ("b_c", "b c.nii.gz", False),
        ("predictions_bmp", "predictions.bmp", True),  # "predictions" names the summary file
        ("x.y", "x.y.mha", False),
    ]
    assert [p.name for p in ignored] == ["notes.txt"]
    # 3D: a folder of .dcm files is one series, the images folder itself included; sub-folders are looked into
    found, _ = find_images(tmp_path, spatial_dims=3)
    assert [(f.id, f.path) for f in found if not f.path.is_file()] == [
        (tmp_path.name, tmp_path),
        ("series", tmp_path / "series"),
    ]
    found, _ = find_images(tmp_path, spatial_dims=2, recursive=True, exclude=[tmp_path / "series"])
    ids = [f.id for f in found]
    assert "sub_a_png" in ids and "a_png" in ids and not any("series" in i for i in ids)
    assert all(check_safe_id(i) == i for i in ids)
    assert image_ids([tmp_path / "A.png", tmp_path / "a.png", tmp_path / "../x.png"], tmp_path) == [
        "A_png",
        "a_png-2",  # names that differ only in case would be one file on macOS and Windows
        "x",
    ]


def test_markups_fiducials_follow_slicer_schema():
    content = markups_fiducials([[1.0, 2.0], [np.nan, np.nan]], ["a", "b"], name="case")
    jsonschema.Draft7Validator(SLICER_MARKUPS_SCHEMA).validate(content)
    assert content["@schema"] == MARKUPS_SCHEMA_ID
    a, b = content["markups"][0]["controlPoints"]
    assert a["position"] == [1.0, 2.0, 0.0] and a["positionStatus"] == "defined" and a["label"] == "a"
    assert "position" not in b and b["positionStatus"] == "undefined"
    with pytest.raises(ValueError, match="only some coordinates"):
        markups_fiducials([[1.0, np.nan, 3.0]], ["a"])
    with pytest.raises(ValueError, match="2 labels for 1 points"):
        markups_fiducials([[1.0, 2.0, 3.0]], ["a", "b"])


# ---------------------------------------------------------------------------------------------- 2D
def test_predict_2d_folder_mm_and_px(ceph_trained, ceph_images, tmp_path):
    model = ceph_trained / CEPH_MODEL
    overrides = tiny_overrides(CEPH_TINY)
    mm = predict_folder("scn_ceph", model, ceph_images, tmp_path / "mm", ["cpu.yaml"], overrides, [4.0], progress=False)
    ids = ["001", "002_rgb", "003", "004"]
    assert [r.id for r in mm.results] == ids and not mm.failed and [p.name for p in mm.ignored] == ["notes.txt"]
    assert all(r.units == "mm" for r in mm.results)
    only_px = tmp_path / "px_images"
    only_px.mkdir()
    for name in ("001.bmp", "002 rgb.png", "004.mha"):
        shutil.copy(ceph_images / name, only_px / name)
    px = predict_folder("scn_ceph", model, only_px, tmp_path / "px", ["cpu.yaml"], overrides, progress=False)
    assert [(r.id, r.units) for r in px.results] == [("001", "px"), ("002_rgb", "px"), ("004", "mm")]

    images = {r.id: Path(r.image) for r in mm.results}
    own_items = [{"id": f"{i}_mm", "image": str(p)} for i, p in images.items()]
    for item in own_items[:3]:  # the pixel-only files
        item["spacing"] = [4.0, 4.0]
    own_items += [{"id": f"{i}_px", "image": str(images[i])} for i in ("001", "002_rgb")]
    own = bundle_predictions("scn_ceph", own_items, model, tmp_path / "own", CEPH_TINY)

    for out, item in [(tmp_path / "mm", i) for i in ids] + [(tmp_path / "px", i) for i in ("001", "002_rgb")]:
        units = "px" if out.name == "px" else "mm"
        assert all((out / name).is_file() for name in file_names(item)), sorted(p.name for p in out.iterdir())
        record = json.loads((out / f"{item}.json").read_text(encoding="utf-8"))
        theirs = own[f"{item}_{units}"]
        names = theirs["names"]
        assert record["names"] == names and len(names) == 19 and record["units"] == units
        voxels = np.array([[np.nan] * 2 if p is None else p for p in record["voxel_points"]], dtype=float)
        # exactly the bundle's own inference on the same image
        assert record["voxel_points"] == theirs["voxel_points"]
        assert record["points"] == (theirs["points"] if units == "mm" else theirs["voxel_points"])
        lf = read_landmark_file(out / f"{item}.json")  # a landmark file of the project's format
        assert lf.names == names and lf.coordinate_system == ("LPS" if units == "mm" else "voxel")
        # the CSV: px = the voxel indices; mm = the JSON's world coordinates, or empty for px
        rows = read_csv(out / f"{item}.csv")
        assert [r["name"] for r in rows] == names and list(rows[0]) == ["name", "x_mm", "y_mm", "x_px", "y_px"]
        np.testing.assert_allclose(px_of(rows, 2), voxels, atol=1e-6)
        if units == "px":
            assert all(r["x_mm"] == r["y_mm"] == "" for r in rows)
            np.testing.assert_array_equal(lf.points, voxels)
        else:
            # a landmark the tiny model put in the padding is missing: empty cells, NaN in the landmark file
            world = np.array([[float(r["x_mm"] or "nan"), float(r["y_mm"] or "nan")] for r in rows])
            np.testing.assert_allclose(world, lf.points, atol=1e-6)
            # world mm through the image affine: the MetaImage's own (ITK, LPS); a pixel-only file read by MONAI
            # has an identity RAS affine, scaled by the spacing: LPS = -(4 mm x px)
            expected = itk_lps(images[item], voxels)[:, :2] if item == "004" else -4.0 * voxels
            np.testing.assert_allclose(lf.points, expected, atol=1e-6)
        # the markups lie where ITK, and so 3D Slicer, places these pixels of the file
        check_markups(out / f"{item}.mrk.json", names, itk_lps(images[item], voxels))
        overlay = Image.open(out / f"{item}_overlay.png")
        assert overlay.format == "PNG" and min(overlay.size) > 200
    summary = read_csv(tmp_path / "mm" / "predictions.csv")
    assert [(r["id"], r["status"], r["units"]) for r in summary] == [(i, "ok", "mm") for i in ids]
    # the px run's garbage model puts maxima in the padding of its 128 px grid: missing landmarks (null, empty, unplaced)
    assert any(r.missing for r in px.results)

    # a model-zoo export of the same model (merged configs, vendored code, a plain state dict) predicts the same
    zoo = export_bundle("scn_ceph", model, tmp_path / "zoo", ["cpu.yaml"], overrides).path
    exported = predict_folder(zoo, zoo / "models" / "model.pt", ceph_images, tmp_path / "zoo_out", spacing=[4.0])
    assert not exported.failed
    for item in ids:
        mine, theirs = (
            json.loads((out / f"{item}.json").read_text(encoding="utf-8"))
            for out in (tmp_path / "mm", tmp_path / "zoo_out")
        )
        assert mine["points"] == theirs["points"] and mine["voxel_points"] == theirs["voxel_points"]


# ---------------------------------------------------------------------------------------------- 3D
def test_predict_3d_nifti_and_dicom_series(spine_state_dict, spine_images, tmp_path):
    model = spine_state_dict
    summary = predict_folder(
        "scn_spine_ct", model, spine_images, tmp_path / "out", ["cpu.yaml"], SPINE_OVERRIDES, progress=False
    )
    assert [(r.id, r.status, r.units) for r in summary.results] == [("s000", "ok", "mm"), ("s001_dicom", "ok", "mm")]
    items = [{"id": r.id, "image": r.image} for r in summary.results]
    own = bundle_predictions("scn_spine_ct", items, model, tmp_path / "own", SPINE_TINY, launch=False)
    for r in summary.results:
        out = tmp_path / "out"
        assert all((out / name).is_file() for name in file_names(r.id))
        record = json.loads((out / f"{r.id}.json").read_text(encoding="utf-8"))
        assert record["points"] == own[r.id]["points"] and record["voxel_points"] == own[r.id]["voxel_points"]
        names = own[r.id]["names"]
        voxels = np.array([[np.nan] * 3 if p is None else p for p in record["voxel_points"]], dtype=float)
        lps = read_landmark_file(out / f"{r.id}.json").points
        rows = read_csv(out / f"{r.id}.csv")
        assert list(rows[0]) == ["name", "x_mm", "y_mm", "z_mm", "x_px", "y_px", "z_px"]
        np.testing.assert_allclose(px_of(rows, 3), voxels, atol=1e-6)
        np.testing.assert_allclose([[float(r[f"{a}_mm"]) for a in "xyz"] for r in rows], lps, atol=1e-6)
        # world mm = the file's geometry (ITK: DICOM and NIfTI) applied to the px
        np.testing.assert_allclose(itk_lps(r.image, voxels), lps, atol=1e-4)
        check_markups(out / f"{r.id}.mrk.json", names, lps)


# ---------------------------------------------------------------------------------------------- bad input
def run_main(argv: list[str], capsys, progress: bool = False) -> tuple[int, str]:
    """``scripts/predict.py``'s ``main(argv)`` in this process: exit status and what it printed."""
    spec = importlib.util.spec_from_file_location("predict_script", REPO_DIR / "scripts" / "predict.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main([*argv] if progress else [*argv, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_bad_input_one_clear_error(ceph_trained, spine_state_dict, ceph_images, tmp_path, capsys):
    model = ceph_trained / CEPH_MODEL
    tiny = [f"--set={k}={json.dumps(v)}" for k, v in tiny_overrides(CEPH_TINY).items()]
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("x", encoding="utf-8")
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me", encoding="utf-8")
    other_bundle = str(spine_state_dict)
    cases = [  # (--model, --images, --out, extra arguments), what the one error line says
        ((model, no_images, "o1", []), [str(no_images), "no images found"]),
        ((model, unreadable, "o2", []), [str(unreadable / "scan.png"), "cannot read the image"]),
        ((other_bundle, ceph_images, "o3", []), [other_bundle, "26 landmarks", "19"]),
        ((tmp_path / "none.pt", ceph_images, "o4", []), [str(tmp_path / "none.pt"), "not found"]),
        ((model, ceph_images, taken, []), [str(taken), "not empty", "--overwrite"]),
        ((model, ceph_images, "o5", ["--set", "ckpt_path=x"]), ["ckpt_path"]),
        ((model, ceph_images, "o6", ["--spacing", "1", "2", "3"]), ["--spacing", "3 values"]),
    ]
    for (weights, images, out, extra), expected in cases:
        args = ["scn_ceph", "--model", str(weights), "--images", str(images), "--out", str(tmp_path / out)]
        code, text = run_main([*args, "--configs", "cpu.yaml", *tiny, *extra], capsys)
        errors = [line for line in text.splitlines() if line.startswith("error: ")]
        assert code == 1 and len(errors) == 1 and all(e in errors[0] for e in expected), text
    # nothing written, except the summary of the folder whose only image is unreadable
    assert not any((tmp_path / f"o{k}").exists() for k in (1, 3, 4, 5, 6))
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["predictions.csv"]
    assert sorted(taken.iterdir()) == [taken / "mine.txt"]
    with pytest.raises(PredictError, match="no images found"):
        predict_folder("scn_ceph", model, no_images, tmp_path / "o7", ["cpu.yaml"], tiny_overrides(CEPH_TINY))


def test_cli_goes_on_after_an_unreadable_image(ceph_trained, ceph_images, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ceph_images / "001.bmp", images / "001.bmp")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me", encoding="utf-8")
    tiny = [f"--set={k}={json.dumps(v)}" for k, v in tiny_overrides(CEPH_TINY).items()]
    args = ["scn_ceph", "--model", str(ceph_trained / CEPH_MODEL), "--images", str(images), "--out", str(out)]
    args += ["--configs", "cpu.yaml", *tiny, "--spacing", "4", "--overwrite"]
    code, text = run_main(args, capsys, progress=True)
    assert code == 1, text
    assert "predicting: 100%" in text and "1/1" in text  # the progress bar
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(images / "broken.jpg") in errors[0], errors
    assert "predicted 1 of 2 images" in text and "1 of 2 images could not be predicted" in text
    assert (
        all((out / name).is_file() for name in file_names("001"))
        and (out / "mine.txt").read_text(encoding="utf-8") == "keep me"
    )
    summary = read_csv(out / "predictions.csv")
    assert [(r["id"], r["status"]) for r in summary] == [("001", "ok"), ("broken", "error")]
    assert "broken.jpg" in summary[1]["error"] and not list(out.glob(".predict-*"))
    # the command itself
    result = subprocess.run(
        [sys.executable, "scripts/predict.py", "--help"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        encoding="utf-8",
    )
    assert result.returncode == 0 and "--spacing" in result.stdout and "--overwrite" in result.stdout
