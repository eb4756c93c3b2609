"""Landmark files on disk: the generic JSON format, CSV and Slicer markups ``.fcsv``.

Every reader returns a :class:`LandmarkFile`: the points as an ``(N, D)`` float64 array (a row of NaN
for a missing landmark), the coordinate system they are expressed in (``"LPS"`` or ``"RAS"``
physical millimetres, or ``"voxel"`` array indices) and the landmark names.

Formats, chosen by the file suffix:

- ``.json``: ``{"coordinate_system": "LPS" | "RAS" | "voxel", "units": "mm" | "voxel" | "px", "names": [...],
  "points": [[x, y(, z)] | null, ...]}``; ``null`` (or a point of ``null``/``NaN`` coordinates) is a
  missing landmark. Coordinates must be JSON numbers: booleans, strings, nested lists and infinite
  values are refused.
- ``.csv``: rows ``name,x,y(,z)`` (an optional header row ``name,x,y(,z)``) or headerless rows
  ``x,y(,z)``; an empty or ``nan`` cell is missing, and so is a blank row (after the header, or
  after the leading comment lines of a headerless file, every row is one landmark); an optional
  first line ``# coordinate_system: LPS`` states the convention.
- ``.fcsv``: 3D Slicer markups fiducial file; RAS unless its ``# CoordinateSystem`` header says
  ``LPS`` (or ``1``). Missing points are written as ``nan`` coordinates.

A file "has names" when it names its landmarks (JSON ``names``, a CSV name column, ``.fcsv``
labels); :func:`check_landmark_names` compares them with the names a dataset expects, row by row.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text

__all__ = [
    "COORDINATE_SYSTEMS",
    "LandmarkFile",
    "check_landmark_names",
    "parse_point_list",
    "read_landmark_file",
    "write_landmark_file",
]

COORDINATE_SYSTEMS = ("LPS", "RAS", "voxel")
_SUFFIXES = (".json", ".csv", ".fcsv")


@dataclass
class LandmarkFile:
    """The content of one landmark file.

    Attributes:
        points: ``(N, D)`` float64 array, ``D`` in {2, 3}; a row of NaN marks a missing landmark.
        coordinate_system: ``"LPS"`` or ``"RAS"`` (physical mm) or ``"voxel"`` (array indices).
        names: ``N`` landmark names (``"0"``, ``"1"``, ... when the file has none; ``""`` for a row the
            file leaves unnamed, e.g. a blank CSV row).
        has_names: whether the file itself names its landmarks (False: ``names`` are the row indices, also
            when the file's names are exactly ``"0"``, ``"1"``, ...).
    """

    points: np.ndarray
    coordinate_system: str
    names: list[str] = field(default_factory=list)
    has_names: bool = False


def _check_coordinate_system(value: str | None, path: Path | str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    for cs in COORDINATE_SYSTEMS:
        if text.lower() == cs.lower():
            return cs
    raise ValueError(f"{path}: unknown coordinate system {value!r}, expected one of {COORDINATE_SYSTEMS}.")


def _parse_float(cell: str, path: Path, line: int) -> float:
    text = cell.strip()
    if text == "" or text.lower() in ("nan", "null", "none"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}, line {line}: cannot read coordinate {cell!r} as a number.") from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _validate_points(rows: list[list[float]], path: Path | str) -> np.ndarray:
    """Stack coordinate rows into ``(N, D)``, checking a single dimension in {2, 3} and whole-row NaNs."""
    if not rows:
        raise ValueError(f"{path}: the file holds no landmarks.")
    dims = {len(r) for r in rows}
    if len(dims) != 1:
        raise ValueError(f"{path}: inconsistent dimension, rows have {sorted(dims)} coordinates.")
    dim = dims.pop()
    if dim not in (2, 3):
        raise ValueError(f"{path}: landmarks must have 2 or 3 coordinates, found {dim}.")
    points = np.asarray(rows, dtype=np.float64).reshape(len(rows), dim)
    nan = np.isnan(points)
    partial = np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1))
    if partial.size:
        k = int(partial[0])
        raise ValueError(
            f"{path}: landmark {k} has NaN in only some coordinates ({points[k].tolist()}); "
            "a missing landmark must be missing in every coordinate."
        )
    if np.isinf(points).any():
        raise ValueError(f"{path}: infinite coordinate in row {int(np.flatnonzero(np.isinf(points).any(1))[0])}.")
    return points


def _coordinate(value: object, source: str, k: int) -> float:
    """One coordinate of landmark ``k``: a real number (NaN allowed) or None (NaN); anything else raises."""
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{source}: landmark {k} has the coordinate {value!r} ({type(value).__name__}); coordinates must be "
            "numbers (null or NaN for a missing landmark)."
        )
    try:
        out = float(value)
    except OverflowError:  # a JSON integer beyond the float range
        out = math.inf
    if math.isinf(out):
        raise ValueError(f"{source}: landmark {k} has an infinite coordinate ({value!r}).")
    return out


def parse_point_list(raw: object, source: str | os.PathLike) -> np.ndarray:
    """Strictly read a list of points such as a JSON file's ``points`` or a datalist's inline landmarks.

    Each entry is ``None`` (a missing landmark) or a list of 2 or 3 coordinates, each a real number,
    ``NaN`` or ``None``; a point must be missing in all its coordinates or none. Booleans, strings,
    nested lists and infinite values are refused (``[true, false]`` is not the point ``(1, 0)``).

    Args:
        raw: the list (or an ``(N, D)`` array / tensor).
        source: the file or item the list comes from, named in the error messages.

    Returns:
        ``(N, D)`` float64 array, NaN rows for missing landmarks.

    Raises:
        ValueError: not a list of points, a non-numeric or infinite coordinate, mixed dimensions, a
            dimension other than 2 or 3, partly missing points, no known point at all.
    """
    if hasattr(raw, "tolist") and not isinstance(raw, list | tuple):
        raw = raw.tolist()  # numpy array / torch tensor: their numbers are real or NaN/inf, checked below
    if not isinstance(raw, list | tuple):
        raise ValueError(f"{source}: landmarks must be a list of [x, y(, z)] points or null, got {type(raw).__name__}.")
    rows: list[list[float] | None] = []
    for k, p in enumerate(raw):
        if p is None:
            rows.append(None)
        elif isinstance(p, list | tuple):
            rows.append([_coordinate(c, str(source), k) for c in p])
        else:
            raise ValueError(
                f"{source}: landmark {k} is {p!r} ({type(p).__name__}); each landmark must be a list of "
                "coordinates or null."
            )
    known = [r for r in rows if r is not None]
    if not known:
        raise ValueError(f"{source}: every landmark is missing (or there are none); the dimension cannot be known.")
    dim = len(known[0])
    return _validate_points([[math.nan] * dim if r is None else r for r in rows], source)


def check_landmark_names(
    names: Sequence[str],
    expected: Sequence[str],
    source: str | os.PathLike,
    expected_from: str = "the dataset's landmark_names",
) -> None:
    """Check that a file's landmark names are ``expected``, in the same order (row ``k`` = landmark ``k``).

    Unnamed rows (``""``, e.g. a blank CSV row) are not compared. Names are compared after
    stripping surrounding white space, case-sensitively.

    Args:
        names: the names read from the file (:attr:`LandmarkFile.names` of a file with ``has_names``).
        expected: the names the dataset declares (a datalist's ``landmark_names``).
        source: the file, named first in the error message.
        expected_from: where ``expected`` comes from, for the message.

    Raises:
        ValueError: a different count, a permutation or different names; the message names the file and
            the first differing row.
    """
    names, expected = [str(n).strip() for n in names], [str(n).strip() for n in expected]
    if len(names) != len(expected):
        raise ValueError(f"{source}: {len(names)} landmark names, {expected_from} has {len(expected)}: {expected}.")
    bad = [k for k, (a, b) in enumerate(zip(names, expected)) if a and a != b]
    if bad:
        k = bad[0]
        permuted = sorted(n for n in names if n) == sorted(e for e, n in zip(expected, names) if n)
        raise ValueError(
            f"{source}: the landmark names differ from {expected_from} "
            f"({'the same names in another order' if permuted else 'different names'}; {len(bad)} rows differ, "
            f"first row {k}: {names[k]!r} in the file, {expected[k]!r} expected); row k of every landmark file "
            "must be landmark k of the dataset."
        )


def _read_json(path: Path, text: str) -> tuple[np.ndarray, str | None, list[str] | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(data, dict) or "points" not in data:
        raise ValueError(f"{path}: expected a JSON object with a 'points' list.")
    points = parse_point_list(data["points"], path)
    names = data.get("names")
    if names is not None and (not isinstance(names, list) or len(names) != len(points)):
        raise ValueError(f"{path}: 'names' must be a list of {len(points)} names, got {names!r}.")
    if names is not None and not all(isinstance(n, str | int) and not isinstance(n, bool) for n in names):
        raise ValueError(f"{path}: 'names' must be strings, got {names!r}.")
    units = data.get("units")
    cs = _check_coordinate_system(data.get("coordinate_system"), path)
    if units is not None and cs is not None and (units in ("voxel", "px")) != (cs == "voxel"):
        raise ValueError(f"{path}: units {units!r} do not match coordinate system {cs!r}.")
    return points, cs, None if names is None else [str(n) for n in names]


def _csv_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of every CSV row; csv module errors (e.g. a NUL byte) become ValueError."""
    try:
        return list(enumerate(csv.reader(io.StringIO(text)), start=1))
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV file ({e}).") from None


def _is_blank(row: list[str]) -> bool:
    return all(not c.strip() for c in row)


def _read_csv(path: Path, text: str) -> tuple[np.ndarray, str | None, list[str] | None]:
    cs = None
    body: list[tuple[int, list[str]]] = []  # blank rows kept as [] (missing landmarks)
    for lineno, row in _csv_rows(path, text):
        if _is_blank(row):
            body.append((lineno, []))
            continue
        if row[0].lstrip().startswith("#"):
            comment = ",".join(row).lstrip()[1:].strip()
            key, sep, value = comment.partition(":")
            if sep and key.strip().lower().replace(" ", "_") == "coordinate_system":
                cs = _check_coordinate_system(value, path)
            continue
        body.append((lineno, row))
    first = next((i for i, (_, row) in enumerate(body) if row), None)
    if first is None:
        raise ValueError(f"{path}: the file holds no landmarks.")
    header = None
    if not all(_is_number(c) or not c.strip() for c in body[first][1][1:]):
        header = body[first][1]  # header row such as "name,x,y,z" or "x,y,z"; blank lines before it are ignored
        body = body[first + 1 :]
    if header is not None:
        named = header[0].strip().lower() != "x"
    else:
        named = any(row and not _is_number(row[0]) and row[0].strip() for _, row in body)
    names: list[str] = []
    rows: list[list[float] | None] = []
    for lineno, row in body:
        cells = row[1:] if named else row
        names.append((row[0].strip() if row else "") if named else str(len(names)))
        rows.append([_parse_float(c, path, lineno) for c in cells] if not _is_blank(cells) else None)
    known = [r for r in rows if r is not None]
    if not known:
        raise ValueError(f"{path}: every landmark is missing; the dimension cannot be known.")
    dim = len(known[0])
    return _validate_points([[math.nan] * dim if r is None else r for r in rows], path), cs, names if named else None


def _read_fcsv(path: Path, text: str) -> tuple[np.ndarray, str | None, list[str] | None]:
    cs = "RAS"
    columns = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID"]
    names, rows = [], []
    for lineno, row in _csv_rows(path, text):
        if _is_blank(row):
            continue
        if row[0].lstrip().startswith("#"):
            key, sep, value = ",".join(row).lstrip()[1:].partition("=")
            key = key.strip().lower()
            if sep and key == "coordinatesystem":
                value = value.strip()
                mapping = {"0": "RAS", "ras": "RAS", "1": "LPS", "lps": "LPS"}
                if value.lower() not in mapping:
                    raise ValueError(
                        f"{path}, line {lineno}: unknown CoordinateSystem {value!r} (expected RAS, LPS, 0 or 1)."
                    )
                cs = mapping[value.lower()]
            elif sep and key == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        try:
            ix = [columns.index(a) for a in ("x", "y", "z")]
        except ValueError:
            raise ValueError(f"{path}: the '# columns' header has no x, y, z columns: {columns}.") from None
        if len(row) <= max(ix):
            raise ValueError(f"{path}, line {lineno}: expected at least {max(ix) + 1} columns, found {len(row)}.")
        rows.append([_parse_float(row[i], path, lineno) for i in ix])
        label = columns.index("label") if "label" in columns else None
        names.append(row[label].strip() if label is not None and label < len(row) else "")
    return _validate_points(rows, path), cs, names if any(names) else None


def read_landmark_file(
    path: str | os.PathLike, coordinate_system: str | None = None, coordinate_system_source: str = "the caller"
) -> LandmarkFile:
    """Read a landmark file (``.json``, ``.csv`` or Slicer ``.fcsv``).

    Args:
        path: the file.
        coordinate_system: the convention of the points (``"LPS"``, ``"RAS"`` or ``"voxel"``), e.g. a
            datalist item's ``coordinate_system``. It applies to a file that does not state one; a file
            that states another one raises (never silently one or the other: LPS and RAS differ in sign).
        coordinate_system_source: who gave ``coordinate_system``, for the error message (e.g.
            ``"the datalist item"``).

    Returns:
        a :class:`LandmarkFile` with ``points`` ``(N, D)`` float64 (NaN rows for missing landmarks).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, unreadable content, a non-numeric or infinite coordinate,
            inconsistent dimension, partial NaN rows, unknown or conflicting coordinate system, or no
            coordinate system at all. The message names the file.
    """
    path = Path(path)
    wanted = _check_coordinate_system(coordinate_system, path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"{path}: unknown landmark file suffix {path.suffix!r}, expected one of {_SUFFIXES}.")
    if not path.is_file():
        raise FileNotFoundError(f"landmark file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the landmark file ({e}).") from None
    reader = {".json": _read_json, ".csv": _read_csv, ".fcsv": _read_fcsv}[suffix]
    points, stated, names = reader(path, text)
    if stated is not None and wanted is not None and stated != wanted:
        raise ValueError(
            f"{path}: the file states coordinate system {stated!r} but {coordinate_system_source} says {wanted!r}; "
            "they must agree (LPS and RAS differ in the sign of x and y)."
        )
    cs = stated or wanted
    if cs is None:
        raise ValueError(
            f"{path}: the file does not state its coordinate system; state it in the file, or give "
            "'coordinate_system' ('LPS', 'RAS' or 'voxel') to the datalist item, the datalist or the loader."
        )
    # names "0", "1", ... (what write_landmark_file writes when given none) carry no naming: not "has names"
    has_names = names is not None and names != [str(k) for k in range(len(points))]
    if names is None:
        names = [str(k) for k in range(len(points))]
    return LandmarkFile(points=points, coordinate_system=cs, names=names, has_names=has_names)


def _format(value: float) -> str:
    return "nan" if math.isnan(value) else repr(float(value))


def write_landmark_file(
    path: str | os.PathLike,
    points: np.ndarray | Sequence[Sequence[float]],
    coordinate_system: str,
    names: Sequence[str] | None = None,
) -> Path:
    """Write landmarks atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        path: target file; the suffix (``.json``, ``.csv``, ``.fcsv``) chooses the format.
        points: ``(N, D)`` coordinates, ``D`` in {2, 3}; a NaN row is a missing landmark.
        coordinate_system: ``"LPS"`` or ``"RAS"`` (mm) or ``"voxel"``; ``.fcsv`` holds only LPS/RAS 3D points.
        names: ``N`` names, default ``"0"``, ``"1"``, ...

    Returns:
        the path written.
    """
    path = Path(path)
    cs = _check_coordinate_system(coordinate_system, path)
    if cs is None:
        raise ValueError(f"{path}: coordinate_system is required.")
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"{path}: points must have shape (N, 2) or (N, 3), got {arr.shape}.")
    arr = _validate_points(arr.tolist(), path)
    names = [str(k) for k in range(len(arr))] if names is None else [str(n) for n in names]
    if len(names) != len(arr):
        raise ValueError(f"{path}: {len(names)} names for {len(arr)} landmarks.")
    suffix = path.suffix.lower()
    if suffix == ".json":
        content = {
            "coordinate_system": cs,
            "units": "voxel" if cs == "voxel" else "mm",
            "names": names,
            "points": [None if np.isnan(p).all() else [float(c) for c in p] for p in arr],
        }
        text = json.dumps(content, indent=2) + "\n"
    elif suffix == ".csv":
        buf = io.StringIO()
        buf.write(f"# coordinate_system: {cs}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", *"xyz"[: arr.shape[1]]])
        for n, p in zip(names, arr):
            w.writerow([n, *(_format(c) for c in p)])
        text = buf.getvalue()
    elif suffix == ".fcsv":
        if cs == "voxel" or arr.shape[1] != 3:
            raise ValueError(f"{path}: .fcsv holds 3D points in RAS or LPS, got {arr.shape[1]}D {cs!r}.")
        buf = io.StringIO()
        buf.write("# Markups fiducial file version = 4.11\n")
        buf.write(f"# CoordinateSystem = {cs}\n")
        buf.write("# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n")
        w = csv.writer(buf, lineterminator="\n")
        for k, (n, p) in enumerate(zip(names, arr), start=1):
            w.writerow([f"vtkMRMLMarkupsFiducialNode_{k}", *(_format(c) for c in p), 0, 0, 0, 1, 1, 1, 0, n, "", ""])
        text = buf.getvalue()
    else:
        raise ValueError(f"{path}: unknown landmark file suffix {path.suffix!r}, expected one of {_SUFFIXES}.")
    return atomic_write_text(path, text)
