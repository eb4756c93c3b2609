"""Bad datalists for the reliability tests: each function writes one bad case into a folder, from a tiny valid dataset.

Usage (a test module in ``tests/data`` imports this file directly; elsewhere put ``tests/data`` on ``sys.path``)::

    case = BAD_CASES["id_path_traversal"](tmp_path)
    with pytest.raises(case.error, match=case.match) as err:
        load_split(case.root, case.split)
    assert str(case.file) in str(err.value)

Every case starts from :func:`write_tiny_dataset` (``datalist.json`` in ``root``: three 3D NIfTI images of
10 x 12 x 8 voxels at 2 mm, three named landmarks ``a``, ``b``, ``c`` in LPS mm per image, splits
``training`` (t0, t1), ``validation`` (v0), ``test`` (s0)) and breaks one thing. :class:`BadCase.stages` says
which entry points must refuse it:

- ``"load_split"``: :func:`mlm.bundle.load_split` (and so every bundle, before its engines start);
- ``"load_datalist"``: :func:`mlm.data.load_datalist` (ids only);
- ``"generic_check"``: ``scripts/prepare_dataset.py generic-check`` / :func:`mlm.data.check_datalist`;
- ``"transform"``: ``LoadImaged`` + ``transforms.LoadLandmarksd(num_landmarks=3, landmark_names=["a", "b", "c"])``
  on the split's items;
- ``"image_load"``: the bundles' image loader (``transforms.io.CheckedLoadImaged(spatial_dims=3)``) on the split's
  items.

A case with ``error=None`` is a tolerated input that must load, with ``missing`` rows NaN.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NAMES = ["a", "b", "c"]
SHAPE = (10, 12, 8)
SPACING = 2.0
#: voxel positions of the three landmarks (inside the 10 x 12 x 8 image); world RAS = voxel * 2 mm.
VOXELS = np.array([[2.0, 3.0, 4.0], [7.0, 5.0, 2.0], [4.0, 9.0, 6.0]])


def _lps(voxels: np.ndarray) -> np.ndarray:
    ras = np.asarray(voxels, dtype=np.float64) * SPACING
    return ras * np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class BadCase:
    """One bad input.

    Attributes:
        name: short name.
        root: the dataset folder (holds ``datalist.json``; ``load_split(root, split)``).
        datalist: the datalist file.
        split: the split to load.
        error: the exception type every stage raises (None: must load).
        match: a regular expression the message must match.
        file: the file the message must name.
        stages: entry points that must refuse it (see the module docstring).
        missing: for ``error=None``: landmark rows that must be NaN after loading.
    """

    name: str
    root: Path
    datalist: Path
    split: str
    error: type[Exception] | tuple[type[Exception], ...] | None
    match: str
    file: Path
    stages: tuple[str, ...]
    missing: tuple[int, ...] = field(default=())


def write_tiny_dataset(root: Path) -> Path:
    """The valid dataset every case starts from; returns ``root / "datalist.json"``."""
    import nibabel as nib

    from transforms.io.landmark_files import write_landmark_file

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    items = {}
    for k, i in enumerate(["t0", "t1", "v0", "s0"]):
        img = np.zeros(SHAPE, np.int16)
        img[tuple(VOXELS.astype(int).T)] = 100 + k
        nib.save(nib.Nifti1Image(img, affine), root / "images" / f"{i}.nii.gz")
        write_landmark_file(root / "landmarks" / f"{i}.json", _lps(VOXELS), "LPS", names=NAMES)
        items[i] = {"id": i, "image": f"images/{i}.nii.gz", "landmarks": f"landmarks/{i}.json"}
    datalist = {
        "name": "tiny",
        "spatial_dims": 3,
        "num_landmarks": 3,
        "landmark_names": NAMES,
        "training": [items["t0"], items["t1"]],
        "validation": [items["v0"]],
        "test": [items["s0"]],
    }
    path = root / "datalist.json"
    path.write_text(json.dumps(datalist, indent=2) + "\n", encoding="utf-8")
    return path


def _edit(root: Path, change: Callable[[dict], None]) -> Path:
    path = write_tiny_dataset(root)
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _landmarks(root: Path, item: str, content: str, suffix: str = ".json", split: str = "training", n: int = 0) -> Path:
    """Replace the landmark file of ``split[n]`` with ``content`` (a new file ``landmarks/<item><suffix>``)."""
    path = write_tiny_dataset(root)
    lm = root / "landmarks" / f"{item}{suffix}"
    lm.write_text(content, encoding="utf-8")
    data = json.loads(path.read_text(encoding="utf-8"))
    data[split][n]["landmarks"] = f"landmarks/{item}{suffix}"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return lm


ALL = ("load_split", "load_datalist", "generic_check")
LANDMARK_STAGES = ("load_split", "generic_check", "transform")


def id_path_traversal(root: Path) -> BadCase:
    """An id that would write the prediction file outside the output folder."""
    path = _edit(root, lambda d: d["training"][0].update(id="../../x"))
    return BadCase(
        "id_path_traversal", root, path, "training", ValueError, r"'\.\./\.\./x' is not a safe file name", path, ALL
    )


def id_backslash(root: Path) -> BadCase:
    path = _edit(root, lambda d: d["training"][0].update(id="a\\b"))
    return BadCase("id_backslash", root, path, "training", ValueError, "path separator", path, ALL)


def id_control_character(root: Path) -> BadCase:
    path = _edit(root, lambda d: d["training"][0].update(id="a\nb"))
    return BadCase("id_control_character", root, path, "training", ValueError, "control character", path, ALL)


def id_empty(root: Path) -> BadCase:
    path = _edit(root, lambda d: d["training"][0].update(id=""))
    return BadCase("id_empty", root, path, "training", ValueError, "is empty", path, ALL)


def id_duplicate_in_split(root: Path) -> BadCase:
    """Two items of one split with the same id: their predictions would overwrite each other."""
    path = _edit(root, lambda d: d["training"][1].update(id="t0"))
    return BadCase(
        "id_duplicate_in_split", root, path, "training", ValueError, r"duplicate id 't0' in split 'training'", path, ALL
    )


def id_reused_across_splits(root: Path) -> BadCase:
    """One id naming two different images in two splits."""
    path = _edit(root, lambda d: d["test"][0].update(id="t0"))
    return BadCase(
        "id_reused_across_splits",
        root,
        path,
        "test",
        ValueError,
        r"'t0' names .* but .* an id must name one image",
        path,
        ALL,
    )


def names_permuted(root: Path) -> BadCase:
    """A landmark file naming the same landmarks in another order."""
    pts = _lps(VOXELS)[[1, 0, 2]]
    content = json.dumps({"coordinate_system": "LPS", "names": ["b", "a", "c"], "points": pts.tolist()})
    lm = _landmarks(root, "t0_permuted", content)
    return BadCase(
        "names_permuted",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "same names in another order",
        lm,
        LANDMARK_STAGES,
    )


def names_different(root: Path) -> BadCase:
    content = json.dumps({"coordinate_system": "LPS", "names": ["a", "x", "c"], "points": _lps(VOXELS).tolist()})
    lm = _landmarks(root, "t0_renamed", content)
    return BadCase(
        "names_different",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        r"different names.*'x' in the file, 'b' expected",
        lm,
        LANDMARK_STAGES,
    )


def coordinate_system_conflict(root: Path) -> BadCase:
    """The item says LPS, the file says RAS (and holds LPS numbers): never silently one of them."""
    path = write_tiny_dataset(root)
    lm = root / "landmarks" / "t0.json"
    rec = json.loads(lm.read_text(encoding="utf-8"))
    rec["coordinate_system"] = "RAS"
    lm.write_text(json.dumps(rec), encoding="utf-8")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["training"][0]["coordinate_system"] = "LPS"
    path.write_text(json.dumps(data), encoding="utf-8")
    return BadCase(
        "coordinate_system_conflict",
        root,
        path,
        "training",
        ValueError,
        "states coordinate system 'RAS' but the datalist item says 'LPS'",
        lm,
        LANDMARK_STAGES,
    )


def coordinates_booleans(root: Path) -> BadCase:
    content = json.dumps({"coordinate_system": "voxel", "points": [[True, False, True], [1, 2, 3], [3, 4, 5]]})
    lm = _landmarks(root, "t0_bool", content)
    return BadCase(
        "coordinates_booleans",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        r"coordinate True \(bool\)",
        lm,
        LANDMARK_STAGES,
    )


def coordinates_strings(root: Path) -> BadCase:
    content = json.dumps({"coordinate_system": "voxel", "points": [["1", "2", "3"], [1, 2, 3], [3, 4, 5]]})
    lm = _landmarks(root, "t0_str", content)
    return BadCase(
        "coordinates_strings",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        r"coordinate '1' \(str\)",
        lm,
        LANDMARK_STAGES,
    )


def coordinates_nested(root: Path) -> BadCase:
    content = json.dumps({"coordinate_system": "voxel", "points": [[[1], 2, 3], [1, 2, 3], [3, 4, 5]]})
    lm = _landmarks(root, "t0_nested", content)
    return BadCase(
        "coordinates_nested",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        r"coordinate \[1\] \(list\)",
        lm,
        LANDMARK_STAGES,
    )


def coordinates_infinite(root: Path) -> BadCase:
    lm = _landmarks(root, "t0_inf", '{"coordinate_system": "voxel", "points": [[1e999, 2, 3], [1, 2, 3], [3, 4, 5]]}')
    return BadCase(
        "coordinates_infinite",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "infinite coordinate",
        lm,
        LANDMARK_STAGES,
    )


def landmark_count_wrong(root: Path) -> BadCase:
    content = json.dumps({"coordinate_system": "LPS", "points": _lps(VOXELS)[:2].tolist()})
    lm = _landmarks(root, "t0_two", content)
    return BadCase(
        "landmark_count_wrong",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "2 landmarks, expected 3",
        lm,
        LANDMARK_STAGES,
    )


def landmark_file_missing(root: Path) -> BadCase:
    path = _edit(root, lambda d: d["training"][0].update(landmarks="landmarks/nope.json"))
    lm = root / "landmarks" / "nope.json"
    return BadCase("landmark_file_missing", root, path, "training", FileNotFoundError, "not found", lm, LANDMARK_STAGES)


def landmark_outside_image(root: Path) -> BadCase:
    """A landmark beyond the image: generic-check reports it; LoadLandmarks(outside="error") raises."""
    pts = _lps(VOXELS)
    pts[1] = _lps(np.array([[30.0, 5.0, 2.0]]))[0]
    content = json.dumps({"coordinate_system": "LPS", "names": NAMES, "points": pts.tolist()})
    lm = _landmarks(root, "t0_outside", content)
    return BadCase(
        "landmark_outside_image",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "outside the image",
        lm,
        ("generic_check", "transform"),
    )


def csv_blank_row_is_missing(root: Path) -> BadCase:
    """Tolerated: a blank CSV row is a missing landmark (a NaN row), not a dropped one."""
    pts = _lps(VOXELS)
    rows = [
        "# coordinate_system: LPS",
        "name,x,y,z",
        "a," + ",".join(map(str, pts[0])),
        "",
        "c," + ",".join(map(str, pts[2])),
    ]
    lm = _landmarks(root, "t0_blank", "\n".join(rows) + "\n", suffix=".csv")
    return BadCase(
        "csv_blank_row_is_missing",
        root,
        root / "datalist.json",
        "training",
        None,
        "",
        lm,
        LANDMARK_STAGES,
        missing=(1,),
    )


def spacing_negative(root: Path) -> BadCase:
    path = _edit(root, lambda d: d["training"][0].update(spacing=[2.0, -2.0, 2.0]))
    return BadCase(
        "spacing_negative",
        root,
        path,
        "training",
        ValueError,
        "'spacing' must be positive",
        path,
        ("load_split", "generic_check"),
    )


def spacing_zero(root: Path) -> BadCase:
    path = _edit(root, lambda d: d["training"][0].update(spacing=[2.0, 0, 2.0]))
    return BadCase(
        "spacing_zero",
        root,
        path,
        "training",
        ValueError,
        "'spacing' must be positive",
        path,
        ("load_split", "generic_check"),
    )


def split_empty(root: Path) -> BadCase:
    path = _edit(root, lambda d: d.update(validation=[]))
    return BadCase(
        "split_empty",
        root,
        path,
        "validation",
        ValueError,
        "split 'validation' is empty",
        path,
        ("load_split", "generic_check"),
    )


def image_is_text(root: Path) -> BadCase:
    """A text file named .nii.gz."""
    write_tiny_dataset(root)
    img = root / "images" / "t0.nii.gz"
    img.write_text("this is not an image\n", encoding="utf-8")
    return BadCase(
        "image_is_text",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "not a readable image|cannot read the image",
        img,
        IMAGE_STAGES,
    )


def image_truncated(root: Path) -> BadCase:
    """A .nii.gz cut in the middle of its data (its header still reads)."""
    img = _nifti(root, np.random.default_rng(0).integers(0, 1000, SHAPE).astype(np.int16))
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    return BadCase(
        "image_truncated",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "truncated|cannot be read",
        img,
        IMAGE_STAGES,
    )


def image_wrong_dimensionality(root: Path) -> BadCase:
    """A 2D image in a 3D dataset."""
    img = _nifti(root, np.zeros(SHAPE[:2], np.int16))
    return BadCase(
        "image_wrong_dimensionality",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "a 2D image of size .* the dataset is 3D|2 spatial dim|2D",
        img,
        IMAGE_STAGES,
    )


def image_missing(root: Path) -> BadCase:
    write_tiny_dataset(root)
    img = root / "images" / "t0.nii.gz"
    img.unlink()
    return BadCase(
        "image_missing",
        root,
        root / "datalist.json",
        "training",
        FileNotFoundError,
        "image not found|not found",
        img,
        IMAGE_STAGES,
    )


IMAGE_STAGES = ("generic_check", "image_load")


def _nifti(root: Path, array: np.ndarray, name: str = "t0") -> Path:
    import nibabel as nib

    write_tiny_dataset(root)
    img = root / "images" / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(array, np.diag([SPACING] * 3 + [1.0])), img)
    return img


def image_not_finite(root: Path) -> BadCase:
    """NaN voxels (a float image written by a broken pipeline)."""
    array = np.zeros(SHAPE, np.float32)
    array[1, 2, 3] = np.nan
    img = _nifti(root, array)
    return BadCase(
        "image_not_finite", root, root / "datalist.json", "training", ValueError, "NaN", img, ("image_load",)
    )


def image_4d(root: Path) -> BadCase:
    """A 4D NIfTI (a time series or a multi-channel volume) in a 3D single-channel dataset."""
    img = _nifti(root, np.zeros((*SHAPE, 2), np.int16))
    return BadCase("image_4d", root, root / "datalist.json", "training", ValueError, "4D|channel", img, IMAGE_STAGES)


def datalist_invalid_json(root: Path) -> BadCase:
    path = write_tiny_dataset(root)
    path.write_text(path.read_text(encoding="utf-8")[:-20], encoding="utf-8")
    return BadCase("datalist_invalid_json", root, path, "training", ValueError, "JSON", path, ALL)


def split_missing(root: Path) -> BadCase:
    """A bundle asks for a split the datalist does not have."""
    path = _edit(root, lambda d: d.pop("validation"))
    return BadCase(
        "split_missing", root, path, "validation", (KeyError, ValueError), "validation", path, ("load_split",)
    )


def landmark_dims_wrong(root: Path) -> BadCase:
    """2D points in a 3D dataset."""
    content = json.dumps({"coordinate_system": "LPS", "points": _lps(VOXELS)[:, :2].tolist(), "names": NAMES})
    lm = _landmarks(root, "t0_2d", content)
    return BadCase(
        "landmark_dims_wrong",
        root,
        root / "datalist.json",
        "training",
        ValueError,
        "2D|2 coordinates",
        lm,
        LANDMARK_STAGES,
    )


def landmark_file_empty(root: Path) -> BadCase:
    lm = _landmarks(root, "t0_empty", "")
    return BadCase(
        "landmark_file_empty", root, root / "datalist.json", "training", ValueError, ".", lm, LANDMARK_STAGES
    )


def landmark_file_invalid_json(root: Path) -> BadCase:
    lm = _landmarks(root, "t0_broken", '{"coordinate_system": "LPS", "points": [[1, 2, 3],')
    return BadCase(
        "landmark_file_invalid_json", root, root / "datalist.json", "training", ValueError, "JSON", lm, LANDMARK_STAGES
    )


def coordinate_system_unknown(root: Path) -> BadCase:
    content = json.dumps({"coordinate_system": "XYZ", "points": _lps(VOXELS).tolist(), "names": NAMES})
    lm = _landmarks(root, "t0_xyz", content)
    return BadCase(
        "coordinate_system_unknown", root, root / "datalist.json", "training", ValueError, "XYZ", lm, LANDMARK_STAGES
    )


def csv_non_numeric(root: Path) -> BadCase:
    rows = [",".join(f"{v:g}" for v in row) for row in _lps(VOXELS)]
    rows[1] = "1.0,abc,2.0"
    lm = _landmarks(root, "t0_text", "# coordinate_system = LPS\n" + "\n".join(rows) + "\n", suffix=".csv")
    return BadCase("csv_non_numeric", root, root / "datalist.json", "training", ValueError, "abc", lm, LANDMARK_STAGES)


#: every case by name.
BAD_CASES: dict[str, Callable[[Path], BadCase]] = {
    f.__name__: f
    for f in (
        id_path_traversal,
        id_backslash,
        id_control_character,
        id_empty,
        id_duplicate_in_split,
        id_reused_across_splits,
        names_permuted,
        names_different,
        coordinate_system_conflict,
        coordinates_booleans,
        coordinates_strings,
        coordinates_nested,
        coordinates_infinite,
        landmark_count_wrong,
        landmark_file_missing,
        landmark_outside_image,
        csv_blank_row_is_missing,
        spacing_negative,
        spacing_zero,
        split_empty,
        image_is_text,
        image_truncated,
        image_wrong_dimensionality,
        image_missing,
        image_not_finite,
        image_4d,
        datalist_invalid_json,
        split_missing,
        landmark_dims_wrong,
        landmark_file_empty,
        landmark_file_invalid_json,
        coordinate_system_unknown,
        csv_non_numeric,
    )
}
