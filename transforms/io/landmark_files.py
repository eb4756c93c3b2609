"""Landmark files on disk: the generic JSON format, CSV and Slicer markups ``.fcsv``.

Every reader returns a :class:`LandmarkFile`: the points as an ``(N, D)`` float64 array (a row of NaN
for a missing landmark), the coordinate system they are expressed in (``"LPS"`` or ``"RAS"``
physical millimetres, or ``"voxel"`` array indices) and the landmark names.

Formats, chosen by the file suffix:

- ``.json``: ``{"coordinate_system": "LPS" | "RAS" | "voxel", "units": "mm" | "voxel", "names": [...],
  "points": [[x, y(, z)] | null, ...]}``; ``null`` is a missing landmark.
- ``.csv``: rows ``name,x,y(,z)`` (an optional header row ``name,x,y(,z)``) or headerless rows
  ``x,y(,z)``; an empty or ``nan`` cell is missing; an optional first line
  ``# coordinate_system: LPS`` states the convention.
- ``.fcsv``: 3D Slicer markups fiducial file; RAS unless its ``# CoordinateSystem`` header says
  ``LPS`` (or ``1``). Missing points are written as ``nan`` coordinates.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text

__all__ = ["COORDINATE_SYSTEMS", "LandmarkFile", "read_landmark_file", "write_landmark_file"]

COORDINATE_SYSTEMS = ("LPS", "RAS", "voxel")
_SUFFIXES = (".json", ".csv", ".fcsv")


@dataclass
class LandmarkFile:
    """The content of one landmark file.

    Attributes:
        points: ``(N, D)`` float64 array, ``D`` in {2, 3}; a row of NaN marks a missing landmark.
        coordinate_system: ``"LPS"`` or ``"RAS"`` (physical mm) or ``"voxel"`` (array indices).
        names: ``N`` landmark names (``"0"``, ``"1"``, ... when the file has none).
    """

    points: np.ndarray
    coordinate_system: str
    names: list[str] = field(default_factory=list)


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


def _validate_points(rows: list[list[float]], path: Path) -> np.ndarray:
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


def _read_json(path: Path, text: str) -> tuple[np.ndarray, str | None, list[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(data, dict) or "points" not in data:
        raise ValueError(f"{path}: expected a JSON object with a 'points' list.")
    raw = data["points"]
    if not isinstance(raw, list):
        raise ValueError(f"{path}: 'points' must be a list of [x, y(, z)] or null.")
    known = [p for p in raw if p is not None]
    if not known:
        raise ValueError(f"{path}: every landmark is null; the dimension cannot be known.")
    if not all(isinstance(p, list | tuple) for p in known):
        raise ValueError(f"{path}: each entry of 'points' must be a list of coordinates or null.")
    dim = len(known[0])
    rows = []
    for p in raw:
        if p is None:
            rows.append([math.nan] * dim)
        else:
            try:
                rows.append([math.nan if c is None else float(c) for c in p])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: cannot read landmark {p!r} as numbers.") from None
    points = _validate_points(rows, path)
    names = data.get("names")
    if names is not None and (not isinstance(names, list) or len(names) != len(points)):
        raise ValueError(f"{path}: 'names' must be a list of {len(points)} names, got {names!r}.")
    units = data.get("units")
    cs = _check_coordinate_system(data.get("coordinate_system"), path)
    if units is not None and cs is not None and (units == "voxel") != (cs == "voxel"):
        raise ValueError(f"{path}: units {units!r} do not match coordinate system {cs!r}.")
    return points, cs, None if names is None else [str(n) for n in names]


def _read_csv(path: Path, text: str) -> tuple[np.ndarray, str | None, list[str] | None]:
    cs = None
    body: list[tuple[int, list[str]]] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if row[0].lstrip().startswith("#"):
            comment = ",".join(row).lstrip()[1:].strip()
            key, sep, value = comment.partition(":")
            if sep and key.strip().lower().replace(" ", "_") == "coordinate_system":
                cs = _check_coordinate_system(value, path)
            continue
        body.append((lineno, row))
    header = None
    if body and not all(_is_number(c) or not c.strip() for c in body[0][1][1:]):
        header = body.pop(0)[1]  # header row such as "name,x,y,z" or "x,y,z"
    if header is not None:
        named = header[0].strip().lower() != "x"
    else:
        named = any(not _is_number(row[0]) and row[0].strip() for _, row in body)
    names, rows = [], []
    for lineno, row in body:
        cells = row[1:] if named else row
        names.append(row[0].strip() if named else str(len(names)))
        rows.append([_parse_float(c, path, lineno) for c in cells])
    return _validate_points(rows, path), cs, names


def _read_fcsv(path: Path, text: str) -> tuple[np.ndarray, str | None, list[str]]:
    cs = "RAS"
    columns = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID"]
    names, rows = [], []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not c.strip() for c in row):
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
        names.append(row[label] if label is not None and label < len(row) else str(len(names)))
    return _validate_points(rows, path), cs, names


def read_landmark_file(path: str | os.PathLike, coordinate_system: str | None = None) -> LandmarkFile:
    """Read a landmark file (``.json``, ``.csv`` or Slicer ``.fcsv``).

    Args:
        path: the file.
        coordinate_system: the convention of a file that does not state one (``"LPS"``, ``"RAS"`` or
            ``"voxel"``). When the file states one, this must agree with it or be None.

    Returns:
        a :class:`LandmarkFile` with ``points`` ``(N, D)`` float64 (NaN rows for missing landmarks).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, unreadable content, inconsistent dimension, partial NaN rows,
            unknown or conflicting coordinate system, or no coordinate system at all. The message
            names the file.
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
        raise ValueError(f"{path}: the file states coordinate system {stated!r} but {wanted!r} was requested.")
    cs = stated or wanted
    if cs is None:
        raise ValueError(
            f"{path}: the file does not state its coordinate system; pass coordinate_system='LPS', 'RAS' or 'voxel'."
        )
    if names is None:
        names = [str(k) for k in range(len(points))]
    return LandmarkFile(points=points, coordinate_system=cs, names=names)


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
