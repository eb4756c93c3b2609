"""The project's generic datalist: a MONAI decathlon-style JSON naming images and landmark files.

Format (paths relative to the datalist's folder, see ``docs/datasets.md``)::

    {"name": "spine_phantom", "spatial_dims": 3, "num_landmarks": 26,
     "landmark_names": ["C1", "..."],
     "training":   [{"id": "s000", "image": "images/s000.nii.gz", "landmarks": "landmarks/s000.json"}],
     "validation": [...], "test": [...]}

An item may add ``"spacing": [0.1, 0.1]`` (mm per pixel, in the image array's axis order) for
images without physical metadata (BMP, JPEG), and ``"coordinate_system"`` (``"LPS"``, ``"RAS"`` or
``"voxel"``) for its landmarks (a top-level ``"coordinate_system"`` is the default of every item); a
landmark file stating another one is an error. ``"landmarks"`` is either a landmark file (the
project's JSON/CSV/fcsv formats read by ``transforms.io.read_landmark_file``) or an inline list of
points (``null`` for a missing one) in voxel coordinates.

Ids name the output files (``<id>_landmarks.json``): they must be safe file names
(:func:`check_safe_id`), unique within a split, and name the same image in every split they appear in.
:func:`load_datalist` checks the ids; :func:`check_datalist` (``scripts/prepare_dataset.py
generic-check``) checks everything, image headers included, and reports every problem.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlm.data.image_header import read_image_header
from transforms.geometry import affine_with_spacing, spatial_affine
from transforms.io.atomic import atomic_write_text
from transforms.io.landmark_files import (
    COORDINATE_SYSTEMS,
    LandmarkFile,
    check_landmark_names,
    parse_point_list,
    read_landmark_file,
    write_landmark_file,
)
from transforms.landmarks.array import outside_image, points_to_voxels

__all__ = [
    "DATALIST_RESERVED_KEYS",
    "atomic_write_text",
    "write_datalist",
    "load_datalist",
    "read_datalist_json",
    "validate_datalist",
    "check_datalist",
    "DatalistCheck",
    "check_safe_id",
    "item_id",
    "check_datalist_ids",
    "read_item_landmarks",
    "check_item_spacing",
    "datalist_split_names",
    "read_coordinate_table",
    "write_coordinate_table",
    "read_id_list",
    "relative_path",
    "write_landmark_datalist",
]

#: top-level keys of a datalist that are not splits.
DATALIST_RESERVED_KEYS = (
    "name",
    "spatial_dims",
    "num_landmarks",
    "landmark_names",
    "description",
    "source",
    "units",
    "coordinate_system",
)

#: longest id accepted, in UTF-8 bytes (file names are limited to 255 bytes; outputs add suffixes).
MAX_ID_BYTES = 200


def datalist_split_names(datalist: dict) -> list[str]:
    """Names of the splits in ``datalist``: the top-level keys whose values are lists of item dicts."""
    return [
        k
        for k, v in datalist.items()
        if k not in DATALIST_RESERVED_KEYS and isinstance(v, list) and all(isinstance(i, dict) for i in v)
    ]


def write_datalist(path: str | os.PathLike, datalist: dict, overwrite: bool = False) -> Path:
    """Write a datalist dict as JSON, atomically.

    Args:
        path: destination ``.json``; item paths in ``datalist`` should be relative to its folder.
        datalist: the datalist dict (see the module docstring). Must have ``num_landmarks`` and at
            least one split (a list of items, each with ``"id"`` and ``"image"``).
        overwrite: replace an existing file (default False: raise ``FileExistsError``).

    Returns:
        the written path.
    """
    path = Path(path)
    if not isinstance(datalist, dict):
        raise ValueError(f"{path}: datalist must be a dict, got {type(datalist).__name__}.")
    if "num_landmarks" not in datalist:
        raise ValueError(f"{path}: datalist has no 'num_landmarks'.")
    splits = datalist_split_names(datalist)
    if not splits:
        raise ValueError(f"{path}: datalist has no split (e.g. 'training': [...]).")
    for s in splits:
        for n, item in enumerate(datalist[s]):
            for key in ("id", "image"):
                if key not in item:
                    raise ValueError(f"{path}: item {n} of split '{s}' has no '{key}'.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: datalist exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    return atomic_write_text(path, json.dumps(datalist, indent=2, default=_json_default) + "\n", overwrite=overwrite)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_datalist_json(path: str | os.PathLike) -> dict:
    """Read a datalist JSON as a dict (paths untouched), with clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: datalist not found.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a datalist must be a JSON object, got {type(data).__name__}.")
    return data


def check_safe_id(item_id: Any, where: str = "") -> str:
    """Check that a datalist id can name output files (``<output_dir>/<id>_landmarks.json``) and return it as text.

    An id is a non-empty string (or an integer) with no path separator (``/``, ``\\``), no ``..``, no
    control character, and at most :data:`MAX_ID_BYTES` bytes in UTF-8: ``../../x`` would write outside
    the output folder.

    Args:
        item_id: the id.
        where: what holds it, put first in the error message (e.g. ``"data/datalist.json [split 'test', item 3]"``).

    Returns:
        ``str(item_id)``.

    Raises:
        ValueError: the id is not safe; the message starts with ``where`` and says why.
    """
    prefix = f"{where}: " if where else ""
    if isinstance(item_id, bool) or not isinstance(item_id, str | int):
        raise ValueError(f"{prefix}id {item_id!r} must be a string, got {type(item_id).__name__}.")
    text = str(item_id)
    reason = None
    if not text.strip():
        reason = "it is empty"
    elif "/" in text or "\\" in text:
        reason = "it contains a path separator"
    elif ".." in text:
        reason = "it contains '..'"
    elif any(unicodedata.category(c) == "Cc" for c in text):
        reason = "it contains a control character"
    elif len(text.encode("utf-8")) > MAX_ID_BYTES:
        reason = f"it is longer than {MAX_ID_BYTES} bytes"
    if reason is not None:
        raise ValueError(
            f"{prefix}id {item_id!r} is not a safe file name: {reason} (ids name the output files "
            "<id>_landmarks.json and must not contain '/', '\\\\', '..' or control characters)."
        )
    return text


def item_id(item: dict) -> str:
    """The name of an item's output files: its ``"id"``, or its image file's name without extensions.

    The same rule as :class:`transforms.post.SaveLandmarksd`.
    """
    if item.get("id") is not None:
        return str(item["id"])
    image = item.get("image")
    if isinstance(image, list | tuple):
        image = image[0] if image else None
    if not isinstance(image, str):
        return ""
    return Path(image).name.split(".")[0] or "image"


def _image_key(item: dict) -> Any:
    """The item's image(s), normalised for comparison across splits."""
    image = item.get("image")
    if isinstance(image, str):
        return os.path.normpath(image)
    if isinstance(image, list):
        return tuple(os.path.normpath(i) if isinstance(i, str) else repr(i) for i in image)
    return repr(image)


def _id_problems(data: dict, path: Path | str) -> list[ValueError]:
    """Every id problem of a datalist: unsafe ids, duplicates in a split, one id for different images across splits."""
    problems: list[ValueError] = []
    first_image: dict[str, tuple[str, Any]] = {}
    for split in datalist_split_names(data):
        seen: dict[str, int] = {}
        for n, item in enumerate(data[split]):
            where = f"{path} [split '{split}', item {n}]"
            if "id" in item:
                try:
                    check_safe_id(item["id"], where)
                except ValueError as e:
                    problems.append(e)
                    continue
            key = item_id(item)
            if not key:
                continue  # no id and no image: reported by the item checks
            what = "id" if "id" in item else "image name (the item has no 'id')"
            if key in seen:
                problems.append(
                    ValueError(
                        f"{path}: duplicate {what} {key!r} in split '{split}' (items {seen[key]} and {n}); their "
                        "predictions would overwrite each other."
                    )
                )
                continue
            seen[key] = n
            image = _image_key(item)
            if key in first_image and first_image[key][1] != image:
                other, other_image = first_image[key]
                problems.append(
                    ValueError(
                        f"{path}: {what} {key!r} names {other_image!r} in split '{other}' but {image!r} in split "
                        f"'{split}'; an id must name one image in every split."
                    )
                )
            first_image.setdefault(key, (split, image))
    return problems


def check_datalist_ids(data: dict, path: str | os.PathLike) -> None:
    """Check the ids of every split of a datalist dict (see :func:`check_safe_id`).

    Ids must be safe file names, unique within a split (items without ``"id"`` are named after their
    image file), and an id that appears in several splits must name the same image in each (ISBI 2015's
    ``test`` = ``test1`` + ``test2`` is fine; the same id for two different images is not).

    Raises:
        ValueError: the first problem, naming ``path``, the split and the id.
    """
    problems = _id_problems(data, path)
    if problems:
        more = f" ({len(problems) - 1} more id problems)" if len(problems) > 1 else ""
        raise ValueError(f"{problems[0]}{more}")


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str):
        p = Path(value)
        return str(p if p.is_absolute() else (base / p).resolve())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [_resolve(v, base) for v in value]
    return value


def load_datalist(path: str | os.PathLike, split: str = "training") -> list[dict]:
    """Items of one split with absolute ``image`` and ``landmarks`` paths, after checking the datalist's ids.

    Same semantics as ``monai.data.load_decathlon_datalist``: relative paths are joined to the
    datalist's folder. Inline landmark lists are returned unchanged. A top-level
    ``"coordinate_system"`` is copied into the items that do not give their own.

    Args:
        path: the datalist JSON.
        split: the split key, e.g. ``"training"``, ``"validation"``, ``"test"``.

    Returns:
        a list of item dicts (copies).

    Raises:
        FileNotFoundError: no datalist. ValueError: no such split, an item that is not an object, an
            unknown coordinate system, or an id problem (:func:`check_datalist_ids`); the message names the file.
    """
    path = Path(path)
    data = read_datalist_json(path)
    if split not in data or not isinstance(data[split], list):
        raise ValueError(f"{path}: no split '{split}' (available: {datalist_split_names(data)}).")
    for n, item in enumerate(data[split]):
        if not isinstance(item, dict):
            raise ValueError(f"{path} [split '{split}', item {n}]: an item must be a JSON object, got {item!r}.")
    check_datalist_ids(data, path)
    if data.get("coordinate_system") is not None:
        _coordinate_system(data["coordinate_system"], f"{path}: top-level 'coordinate_system'")
    for n, item in enumerate(data[split]):
        if "coordinate_system" in item:
            _coordinate_system(item["coordinate_system"], f"{path} [split '{split}', item {n}]")
    return _resolved_items(data, path, split)


def _resolved_items(data: dict, path: Path, split: str) -> list[dict]:
    """Copies of a split's items with absolute paths and the top-level ``coordinate_system`` as their default."""
    base = path.resolve().parent
    default_cs = data.get("coordinate_system")
    out = []
    for item in data[split]:
        item = dict(item)
        if "coordinate_system" not in item and default_cs is not None:
            item["coordinate_system"] = default_cs
        for key in ("image", "label", "mask"):
            if key in item:
                item[key] = _resolve(item[key], base)
        if isinstance(item.get("landmarks"), str):
            item["landmarks"] = _resolve(item["landmarks"], base)
        out.append(item)
    return out


def _coordinate_system(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.strip().upper() not in {c.upper() for c in COORDINATE_SYSTEMS}:
        raise ValueError(f"{where}: unknown coordinate_system {value!r}, expected one of {COORDINATE_SYSTEMS}.")
    return next(c for c in COORDINATE_SYSTEMS if c.upper() == value.strip().upper())


def read_item_landmarks(
    item: dict,
    num_landmarks: int | None = None,
    spatial_dims: int | None = None,
    landmark_names: Sequence[str] | None = None,
    where: str = "",
    names_from: str = "the datalist's landmark_names",
) -> LandmarkFile:
    """Read and check the landmarks of one datalist item (absolute paths, as :func:`load_datalist` gives them).

    Checks, each failing with one sentence that starts with the landmark file (or ``where`` for inline
    lists) and ends with ``where``: the file exists and is readable, its coordinates are numbers, the
    item's ``coordinate_system`` agrees with the file's, ``num_landmarks`` rows of ``spatial_dims``
    coordinates, and the file's landmark names (if it has names) are ``landmark_names`` in that order.

    Args:
        item: a datalist item with ``"landmarks"`` (a file path or an inline list of voxel points).
        num_landmarks: expected rows ``N`` (missing landmarks included), None: not checked.
        spatial_dims: expected coordinates per landmark, None: not checked.
        landmark_names: expected names, None: not checked.
        where: the datalist, split and id, appended to the messages.
        names_from: where ``landmark_names`` come from, for the message.

    Returns:
        a :class:`transforms.io.LandmarkFile` (inline lists: voxel, or the item's coordinate system; no names).

    Raises:
        FileNotFoundError: the landmark file does not exist. ValueError: any other problem.
    """
    ctx = f" [{where}]" if where else ""
    landmarks = item.get("landmarks")
    cs = item.get("coordinate_system")
    if isinstance(landmarks, str | os.PathLike):
        source = str(landmarks)
        try:
            lf = read_landmark_file(landmarks, cs, coordinate_system_source="the datalist item")
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}{ctx}") from None
        except ValueError as e:
            raise ValueError(f"{e}{ctx}") from None
    elif isinstance(landmarks, list):
        source = f"inline landmarks{ctx}"
        points = parse_point_list(landmarks, source)
        lf = LandmarkFile(
            points, "voxel" if cs is None else _coordinate_system(cs, source), [str(k) for k in range(len(points))]
        )
        ctx = ""
    else:
        raise ValueError(f"'landmarks' must be a landmark file path or a list of points, got {landmarks!r}{ctx}.")
    n, d = lf.points.shape
    if num_landmarks is not None and n != int(num_landmarks):
        hint = "; a blank CSV row is a missing landmark" if source.lower().endswith(".csv") else ""
        raise ValueError(f"{source}: {n} landmarks, expected {int(num_landmarks)}{hint}{ctx}.")
    if spatial_dims is not None and d != int(spatial_dims):
        raise ValueError(f"{source}: landmarks have {d} coordinates, the dataset is {int(spatial_dims)}D{ctx}.")
    if lf.has_names and landmark_names is not None:
        try:
            check_landmark_names(lf.names, landmark_names, source, expected_from=names_from)
        except ValueError as e:
            raise ValueError(f"{e}{ctx}") from None
    return lf


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_item_spacing(spacing: Any, spatial_dims: int | None = None, where: str = "") -> list[float]:
    """Check a datalist item's ``spacing`` (mm per pixel, for images without physical metadata) and return it.

    Args:
        spacing: the item's value: a list of ``spatial_dims`` finite positive numbers.
        spatial_dims: expected length, None: any.
        where: the datalist, split and id, put first in the message.

    Raises:
        ValueError: not a list of numbers, the wrong length, a zero, negative or non-finite value.
    """
    why = _spacing_problem(spacing, spatial_dims)
    if why:
        raise ValueError(f"{where}: {why}." if where else f"{why}.")
    return [float(v) for v in spacing]


def _spacing_problem(spacing: Any, spatial_dims: int | None) -> str | None:
    """Why an item's ``spacing`` is wrong (None if it is right): D finite positive numbers (mm)."""
    if not isinstance(spacing, list) or not spacing or not all(_is_number(v) for v in spacing):
        return f"'spacing' must be a list of numbers (mm per pixel), got {spacing!r}"
    if spatial_dims is not None and len(spacing) != int(spatial_dims):
        return f"'spacing' has {len(spacing)} values, the dataset is {int(spatial_dims)}D"
    if not all(math.isfinite(v) and v > 0 for v in spacing):
        return f"'spacing' must be positive and finite, got {spacing}"
    return None


@dataclass
class DatalistCheck:
    """What :func:`check_datalist` found.

    Attributes:
        path: the datalist.
        counts: items per split.
        problems: one exception per problem (``ValueError`` or ``FileNotFoundError``), each message one
            line that names the file (datalist, image or landmark file) and the problem.
        warnings: findings that are not problems (landmarks outside their image with ``allow_outside``).
        images_checked: image files whose header was read.
        landmark_files_checked: items whose landmarks were read.
    """

    path: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Exception] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    images_checked: int = 0
    landmark_files_checked: int = 0

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def summary(self) -> str:
        """One line: ``<path>: OK (training: 4, test: 2; N images, M landmark sets checked)`` or the problem count."""
        splits = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        checked = f"{self.images_checked} images, {self.landmark_files_checked} landmark sets checked"
        if self.warnings:
            checked += f", {len(self.warnings)} warning(s)"
        if self.ok:
            return f"{self.path}: OK ({splits}; {checked})"
        return f"{self.path}: {len(self.problems)} problem(s) ({splits}; {checked})"


def _header_problem(
    header: Any, item: dict, spatial_dims: int | None, where: str
) -> tuple[np.ndarray | None, str | None]:
    """(affine (D+1, D+1) of the image as the bundles see it, problem) from an image header and the item's spacing."""
    shape = tuple(header.spatial_shape)
    affine = np.asarray(header.affine, dtype=np.float64)
    dims = int(spatial_dims) if spatial_dims is not None else len(shape)
    if len(shape) < dims or any(s != 1 for s in shape[dims:]):
        return None, f"{header.path}: a {len(shape)}D image of size {shape}, the dataset is {dims}D [{where}]."
    if any(s < 1 for s in shape[:dims]):
        return None, f"{header.path}: empty image size {shape} [{where}]."
    volumes = int(getattr(header, "volumes", 1))
    if volumes != 1:
        return None, (
            f"{header.path}: a 4D image ({volumes} volumes of size {shape}), the bundles expect one {dims}D volume "
            f"per item [{where}]."
        )
    affine = spatial_affine(affine, dims)
    spacing = item.get("spacing")
    cols = affine[:dims, :dims]
    norms = np.linalg.norm(cols, axis=0)
    if (
        not np.all(np.isfinite(affine))
        or np.any(norms <= 0)
        or abs(np.linalg.det(cols)) < 1e-12 * float(np.prod(norms))
    ):
        return None, (
            f"{header.path}: the header's voxel-to-world matrix is degenerate (spacing {norms.round(6).tolist()}): "
            f"a zero or non-finite spacing or direction [{where}]."
        )
    if isinstance(spacing, list) and _spacing_problem(spacing, dims) is None:
        affine = affine_with_spacing(affine, spacing)  # as transforms.SetSpacingd gives it to the loaded image
    return affine, None


def check_datalist(
    path: str | os.PathLike,
    check_files: bool = True,
    check_images: bool = True,
    verify_data: bool = True,
    required_splits: Iterable[str] = (),
    allow_outside: bool = False,
) -> DatalistCheck:
    """Check a datalist and report every problem (``scripts/prepare_dataset.py generic-check``).

    Checked: the header (``num_landmarks``, ``spatial_dims``, ``landmark_names``, ``coordinate_system``);
    at least one split, no empty split, the ``required_splits`` present; ids (:func:`check_datalist_ids`);
    each item's ``id``/``image``, ``spacing`` (positive) and ``coordinate_system``; with ``check_files``
    the landmarks (:func:`read_item_landmarks`: file, numbers, count, dimension, names, coordinate
    system; without ``landmark_names`` the first file with names is the reference); with ``check_images``
    each image's header (:func:`mlm.data.image_header.read_image_header`: readable, not truncated with
    ``verify_data``, the dataset's dimensionality, a non-degenerate spacing) and every landmark inside
    its image (within the outer voxel faces, after the item's ``spacing``).

    Args:
        path: the datalist JSON.
        check_files: read landmark files and images (False: the datalist itself only).
        check_images: read the image headers and check the landmarks lie inside.
        verify_data: also check each image file holds all its pixel data (streams gzipped NIfTI).
        required_splits: splits that must exist and hold items (e.g. a bundle's ``training``, ``validation``).
        allow_outside: report landmarks outside their image as ``warnings``, not problems (data a bundle
            loads with ``landmarks_outside: missing``, such as partial spine CTs).

    Returns:
        a :class:`DatalistCheck`; ``problems`` empty when the datalist is fine.

    Raises:
        FileNotFoundError, ValueError: only when the datalist itself cannot be read (missing, not JSON).
    """
    path = Path(path)
    data = read_datalist_json(path)
    report = DatalistCheck(str(path))
    problems = report.problems
    headers: dict[str, Any] = {}

    def problem(message: str, kind: type[Exception] = ValueError) -> None:
        problems.append(kind(message))

    num_landmarks = data.get("num_landmarks")
    if num_landmarks is None:
        problem(f"{path}: the datalist has no 'num_landmarks'.")
    elif isinstance(num_landmarks, bool) or not isinstance(num_landmarks, int) or num_landmarks < 1:
        problem(f"{path}: 'num_landmarks' must be a positive integer, got {num_landmarks!r}.")
        num_landmarks = None
    spatial_dims = data.get("spatial_dims")
    if spatial_dims is not None and (isinstance(spatial_dims, bool) or spatial_dims not in (2, 3)):
        problem(f"{path}: 'spatial_dims' must be 2 or 3, got {spatial_dims!r}.")
        spatial_dims = None
    names = data.get("landmark_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problem(f"{path}: 'landmark_names' must be a list of strings, got {names!r}.")
            names = None
        elif num_landmarks is not None and len(names) != num_landmarks:
            problem(f"{path}: 'landmark_names' has {len(names)} entries but num_landmarks = {num_landmarks}.")
            names = None
        elif len(set(names)) != len(names):
            problem(f"{path}: 'landmark_names' repeats {sorted({n for n in names if names.count(n) > 1})}.")
    if "coordinate_system" in data:
        try:
            _coordinate_system(data["coordinate_system"], f"{path}: top-level 'coordinate_system'")
        except ValueError as e:
            problems.append(e)
    splits = datalist_split_names(data)
    for key, value in data.items():
        if key not in DATALIST_RESERVED_KEYS and key not in splits and isinstance(value, list):
            problem(f"{path}: split '{key}' holds entries that are not items (JSON objects).")
    if not splits:
        problem(f"{path}: the datalist has no split (e.g. 'training': [...]).")
    for s in required_splits:
        if s not in data:
            problem(f"{path}: no split '{s}' (available: {splits}).")
    for s in splits:
        report.counts[s] = len(data[s])
        if not data[s]:
            problem(
                f"{path}: split '{s}' is empty; a bundle given this split has nothing to run on (remove it or add items)."
            )
    problems.extend(_id_problems(data, path))

    names_ref, names_from = names, "the datalist's landmark_names"
    for split in splits:
        items = _resolved_items(data, path, split)
        for n, item in enumerate(items):
            where = f"datalist {path}, split '{split}', id {item.get('id', n)!r}"
            for key in ("id", "image"):
                if key not in item:
                    problem(f"{path} [split '{split}', item {n}]: the item has no '{key}'.")
            if "coordinate_system" in item:
                try:
                    item["coordinate_system"] = _coordinate_system(item["coordinate_system"], f"{path} [{where}]")
                except ValueError as e:
                    if "coordinate_system" in data[split][n]:  # a bad top-level default is reported once, above
                        problems.append(e)
                    continue
            if "spacing" in item:
                why = _spacing_problem(item["spacing"], spatial_dims)
                if why:
                    problem(f"{path}: {why} [{where}].")
            if not check_files or "image" not in item:
                continue
            images = item["image"] if isinstance(item["image"], list) else [item["image"]]
            affine, shape = None, None
            for k, img in enumerate(images):
                if not isinstance(img, str):
                    problem(f"{path}: 'image' must be a file path or a list of paths, got {img!r} [{where}].")
                    continue
                if not os.path.exists(img):
                    problem(f"{img}: image not found [{where}].", FileNotFoundError)
                    continue
                if not check_images:
                    continue
                try:
                    if img not in headers:  # an image in several splits (ISBI's test = test1 + test2) is read once
                        headers[img] = read_image_header(img, verify_data=verify_data)
                        report.images_checked += 1
                    header = headers[img]
                except (ValueError, FileNotFoundError) as e:
                    problems.append(type(e)(f"{e} [{where}]"))
                    continue
                aff, why = _header_problem(header, item, spatial_dims, where)
                if why:
                    problem(why)
                elif k == 0:
                    affine, shape = aff, header.spatial_shape[: aff.shape[0] - 1]
            if "landmarks" not in item:
                continue
            try:
                lf = read_item_landmarks(item, num_landmarks, spatial_dims, names_ref, where, names_from)
            except (ValueError, FileNotFoundError) as e:
                problems.append(e)
                continue
            report.landmark_files_checked += 1
            if names_ref is None and lf.has_names:
                names_ref, names_from = (
                    lf.names,
                    f"the names in {item['landmarks']}, the first landmark file with names",
                )
            if affine is None or lf.points.shape[1] != affine.shape[0] - 1:
                continue
            voxels = points_to_voxels(lf.points, lf.coordinate_system, affine)
            outside = outside_image(voxels, shape)
            if outside.size:
                source = item["landmarks"] if isinstance(item["landmarks"], str) else "inline landmarks"
                listed = "; ".join(
                    f"{k} ({lf.names[k]}) at {lf.points[k].tolist()} {lf.coordinate_system} = voxel "
                    f"{np.round(voxels[k], 2).tolist()}"
                    for k in outside[:5]
                )
                more = f"; {outside.size - 5} more" if outside.size > 5 else ""
                message = (
                    f"{source}: {outside.size} landmark(s) outside the image {images[0]} of size {tuple(shape)}: "
                    f"{listed}{more} [{where}]."
                )
                if allow_outside:
                    report.warnings.append(message)
                else:
                    problem(message)
    return report


def validate_datalist(
    path: str | os.PathLike,
    check_files: bool = True,
    check_images: bool = True,
    verify_data: bool = False,
    allow_outside: bool = False,
) -> dict[str, int]:
    """Check a datalist (:func:`check_datalist`) and raise its first problem.

    Args:
        path: the datalist JSON.
        check_files: check the image and landmark files (existence, landmark count/dimension/names,
            coordinate system), not only the datalist.
        check_images: read the image headers (dimensionality, spacing) and check the landmarks lie inside.
        verify_data: also check each image holds all its pixel data (slower: streams gzipped files).
        allow_outside: accept landmarks outside their image (see :func:`check_datalist`).

    Returns:
        number of items per split.

    Raises:
        FileNotFoundError: the datalist, an image or a landmark file is missing (message names it).
        ValueError: any other problem (message names the file; ``"(N more problems)"`` when there are more).
    """
    report = check_datalist(
        path, check_files=check_files, check_images=check_images, verify_data=verify_data, allow_outside=allow_outside
    )
    if report.problems:
        first = report.problems[0]
        more = f" ({len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""
        raise type(first)(f"{first}{more}")
    return report.counts


def relative_path(target: str | os.PathLike, datalist_dir: str | os.PathLike) -> str:
    """``target`` relative to ``datalist_dir`` (POSIX separators), as datalist items store paths."""
    return Path(os.path.relpath(Path(target).resolve(), Path(datalist_dir).resolve())).as_posix()


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Ids of a split file (one id per line, blank lines ignored), e.g. Payer's ``train.txt``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found.")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_coordinate_table(path: str | os.PathLike, num_landmarks: int, dims: int) -> dict[str, np.ndarray]:
    """Read a Payer-style annotation table: one row ``id,x1,y1(,z1),...,xN,yN(,zN)``, no header.

    Empty cells and ``nan``/``NaN`` mean a missing coordinate (the landmark's row becomes NaN).

    Args:
        path: the CSV file.
        num_landmarks: N, the number of landmarks per row.
        dims: D, coordinates per landmark (2 or 3).

    Returns:
        ``{id: (N, D) float64 array}`` in file order.

    Raises:
        FileNotFoundError: no such file. ValueError: wrong number of columns, a non-number, a
            duplicate id (the message names the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found.")
    expected = 1 + num_landmarks * dims
    out: dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cells = [c.strip() for c in line.split(",")]
            if len(cells) != expected:
                raise ValueError(
                    f"{path}:{lineno}: {len(cells) - 1} values, expected {num_landmarks} landmarks x {dims} = "
                    f"{num_landmarks * dims}."
                )
            key = cells[0]
            if key in out:
                raise ValueError(f"{path}:{lineno}: duplicate id '{key}'.")
            try:
                vals = np.array([float(c) if c else np.nan for c in cells[1:]], dtype=np.float64)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not a number ({e}).") from e
            pts = vals.reshape(num_landmarks, dims)
            pts[np.isnan(pts).any(axis=1)] = np.nan
            out[key] = pts
    return out


def write_coordinate_table(
    path: str | os.PathLike,
    rows: dict[str, Any],
    num_landmarks: int,
    dims: int,
    fmt: str | Callable[[float], str] = "{:g}",
    nan: str = "NaN",
    overwrite: bool = True,
) -> Path:
    """Write ``{id: (N, D) array}`` as a Payer-style table ``id,x1,y1,...`` (no header), atomically.

    Args:
        path: destination CSV.
        rows: ids to coordinates; a row with any NaN is written as ``nan`` in all its cells.
        num_landmarks: N (checked). dims: D (checked).
        fmt: number format string (``"{:g}"``: 6 significant digits) or a callable ``float -> str``.
        nan: text for a missing coordinate.
        overwrite: replace an existing file.
    """
    to_text = fmt if callable(fmt) else fmt.format
    lines = []
    for key, pts in rows.items():
        arr = np.asarray(pts, dtype=np.float64)
        if arr.shape != (num_landmarks, dims):
            raise ValueError(f"{path}: row '{key}' has shape {arr.shape}, expected ({num_landmarks}, {dims}).")
        if "," in str(key):
            raise ValueError(f"{path}: id '{key}' contains a comma.")
        cells = [str(key)]
        for p in arr:
            missing = bool(np.isnan(p).any())
            cells.extend(nan if missing else to_text(float(v)) for v in p)
        lines.append(",".join(cells))
    return atomic_write_text(path, "\n".join(lines) + "\n", overwrite=overwrite)


def write_landmark_datalist(
    output_dir: str | os.PathLike,
    header: dict,
    items: dict[str, dict],
    split_sets: dict[str, dict[str, list[str]]],
    coordinate_system: str,
    overwrite: bool = False,
) -> list[Path]:
    """Write one landmark file per item and one or more datalists that share them (a converter's last step).

    Nothing is written when a datalist already exists and ``overwrite`` is False, and each file is
    written atomically, so an interrupted conversion never leaves a half-written datalist.

    Args:
        output_dir: folder for ``landmarks/<id>.json`` and the datalists.
        header: top-level datalist keys: ``name``, ``spatial_dims``, ``num_landmarks``,
            ``landmark_names`` (and optionally ``description``, ``source``, ``units``).
        items: ``{id: {"image": absolute image path, "points": (N, D) array, optional "spacing": [...]}}``;
            ``points`` are in ``coordinate_system`` (``"voxel"``, ``"LPS"`` or ``"RAS"``).
        split_sets: ``{datalist file name: {split name: [ids]}}``, e.g.
            ``{"datalist.json": {"training": [...], "test": [...]}, "datalist_cv1.json": {...}}``.
        coordinate_system: the convention of the points, stated in every landmark file.
        overwrite: replace existing datalists.

    Returns:
        paths of the written datalists.
    """
    output_dir = Path(output_dir)
    n = int(header["num_landmarks"])
    d = int(header["spatial_dims"])
    names = header.get("landmark_names")
    targets = [output_dir / fname for fname in split_sets]
    if not overwrite:
        for t in targets:
            if t.exists():
                raise FileExistsError(f"{t}: datalist exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    for fname, splits in split_sets.items():
        for split, ids in splits.items():
            if len(set(ids)) != len(ids):
                dup = sorted({i for i in ids if ids.count(i) > 1})
                raise ValueError(f"{output_dir / fname}: duplicate ids {dup[:5]} in split '{split}'.")
            for i in ids:
                if i not in items:
                    raise ValueError(
                        f"{output_dir / fname}: split '{split}' names id '{i}' that has no image/annotation."
                    )
    used = sorted({i for splits in split_sets.values() for ids in splits.values() for i in ids})
    rel: dict[str, dict] = {}
    for i in used:
        it = items[i]
        pts = np.asarray(it["points"], dtype=np.float64)
        if pts.shape != (n, d):
            raise ValueError(f"{it['image']}: landmarks of id '{i}' have shape {pts.shape}, expected ({n}, {d}).")
        lm_path = output_dir / "landmarks" / f"{i}.json"
        lm_path.parent.mkdir(parents=True, exist_ok=True)
        write_landmark_file(lm_path, pts, coordinate_system, names=names)
        entry = {"id": i, "image": relative_path(it["image"], output_dir), "landmarks": f"landmarks/{i}.json"}
        if it.get("spacing") is not None:
            entry["spacing"] = [float(s) for s in it["spacing"]]
        for k, v in it.items():
            if k not in ("image", "points", "spacing"):
                entry[k] = v
        rel[i] = entry
    written = []
    for fname, splits in split_sets.items():
        dl = dict(header)
        for split, ids in splits.items():
            dl[split] = [rel[i] for i in ids]
        written.append(write_datalist(output_dir / fname, dl, overwrite=overwrite))
    return written
