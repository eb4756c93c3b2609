"""The project's generic datalist: a MONAI decathlon-style JSON naming images and landmark files.

Format (paths relative to the datalist's folder, see ``docs/datasets.md``)::

    {"name": "spine_phantom", "spatial_dims": 3, "num_landmarks": 26,
     "landmark_names": ["C1", "..."],
     "training":   [{"id": "s000", "image": "images/s000.nii.gz", "landmarks": "landmarks/s000.json"}],
     "validation": [...], "test": [...]}

An item may add ``"spacing": [0.1, 0.1]`` (mm per pixel, in the image array's axis order) for
images without physical metadata (BMP, JPEG). ``"landmarks"`` is either a landmark file (the
project's JSON/CSV/fcsv formats read by ``transforms.io.read_landmark_file``) or an inline list of
points (``null`` for a missing one) in voxel coordinates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transforms.io.atomic import atomic_write_text

__all__ = [
    "DATALIST_RESERVED_KEYS",
    "atomic_write_text",
    "write_datalist",
    "load_datalist",
    "read_datalist_json",
    "validate_datalist",
    "datalist_split_names",
    "read_coordinate_table",
    "write_coordinate_table",
    "read_id_list",
    "relative_path",
    "write_landmark_datalist",
]

#: top-level keys of a datalist that are not splits.
DATALIST_RESERVED_KEYS = ("name", "spatial_dims", "num_landmarks", "landmark_names", "description", "source", "units")


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


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str):
        p = Path(value)
        return str(p if p.is_absolute() else (base / p).resolve())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [_resolve(v, base) for v in value]
    return value


def load_datalist(path: str | os.PathLike, split: str = "training") -> list[dict]:
    """Items of one split with absolute ``image`` and ``landmarks`` paths.

    Same semantics as ``monai.data.load_decathlon_datalist``: relative paths are joined to the
    datalist's folder. Inline landmark lists are returned unchanged.

    Args:
        path: the datalist JSON.
        split: the split key, e.g. ``"training"``, ``"validation"``, ``"test"``.

    Returns:
        a list of item dicts (copies).
    """
    path = Path(path)
    data = read_datalist_json(path)
    if split not in data or not isinstance(data[split], list):
        raise ValueError(f"{path}: no split '{split}' (available: {datalist_split_names(data)}).")
    base = path.resolve().parent
    out = []
    for item in data[split]:
        item = dict(item)
        for key in ("image", "label", "mask"):
            if key in item:
                item[key] = _resolve(item[key], base)
        if isinstance(item.get("landmarks"), str):
            item["landmarks"] = _resolve(item["landmarks"], base)
        out.append(item)
    return out


def _landmark_count(landmarks: Any, where: str) -> tuple[int, int]:
    """(rows, dims) of an item's landmarks: a file path or an inline list."""
    if isinstance(landmarks, str):
        if not os.path.isfile(landmarks):
            raise FileNotFoundError(f"{where}: landmark file not found: {landmarks}")
        try:
            from transforms.io.landmark_files import read_landmark_file
        except ImportError as e:  # pragma: no cover - the module ships with the project
            raise ImportError("transforms.io.landmark_files is needed to validate landmark files") from e
        try:
            pts = np.asarray(read_landmark_file(landmarks).points, dtype=float)
        except (ValueError, KeyError) as e:
            raise ValueError(f"{where}: cannot read landmark file {landmarks}: {e}") from e
    elif isinstance(landmarks, Sequence):
        rows = [p for p in landmarks if p is not None]
        dims = len(rows[0]) if rows else 0
        return len(landmarks), dims
    else:
        raise ValueError(f"{where}: 'landmarks' must be a file path or a list of points.")
    if pts.ndim != 2:
        raise ValueError(f"{where}: landmark file {landmarks} does not hold an (N, D) array.")
    return pts.shape[0], pts.shape[1]


def validate_datalist(path: str | os.PathLike, check_files: bool = True) -> dict[str, int]:
    """Check a datalist: splits present, ids unique, files exist, landmark counts match.

    Args:
        path: the datalist JSON.
        check_files: also check that every image and landmark file exists and that each landmark
            file holds ``num_landmarks`` rows of ``spatial_dims`` coordinates.

    Returns:
        number of items per split.

    Raises:
        FileNotFoundError: the datalist, an image or a landmark file is missing (message names it).
        ValueError: duplicate ids, a wrong landmark count or dimension, a malformed item.
    """
    path = Path(path)
    data = read_datalist_json(path)
    if "num_landmarks" not in data:
        raise ValueError(f"{path}: datalist has no 'num_landmarks'.")
    num_landmarks = int(data["num_landmarks"])
    spatial_dims = data.get("spatial_dims")
    names = data.get("landmark_names")
    if names is not None and len(names) != num_landmarks:
        raise ValueError(f"{path}: 'landmark_names' has {len(names)} entries but num_landmarks = {num_landmarks}.")
    splits = datalist_split_names(data)
    if not splits:
        raise ValueError(f"{path}: datalist has no split (e.g. 'training': [...]).")
    counts: dict[str, int] = {}
    for split in splits:
        seen: set[str] = set()
        for n, item in enumerate(load_datalist(path, split)):
            where = f"{path} [{split}][{n}]"
            for key in ("id", "image"):
                if key not in item:
                    raise ValueError(f"{where}: item has no '{key}'.")
            where = f"{path} [{split}] id={item['id']}"
            if item["id"] in seen:
                raise ValueError(f"{path}: duplicate id '{item['id']}' in split '{split}'.")
            seen.add(item["id"])
            if "spacing" in item:
                sp = item["spacing"]
                if not isinstance(sp, list) or (spatial_dims is not None and len(sp) != int(spatial_dims)):
                    raise ValueError(f"{where}: 'spacing' must be a list of {spatial_dims} numbers, got {sp!r}.")
            if not check_files:
                continue
            images = item["image"] if isinstance(item["image"], list) else [item["image"]]
            for img in images:
                if not os.path.exists(img):
                    raise FileNotFoundError(f"{where}: image not found: {img}")
            if "landmarks" in item:
                rows, dims = _landmark_count(item["landmarks"], where)
                if rows != num_landmarks:
                    raise ValueError(f"{where}: {rows} landmarks in {item['landmarks']}, expected {num_landmarks}.")
                if spatial_dims is not None and dims and dims != int(spatial_dims):
                    raise ValueError(f"{where}: landmarks are {dims}D, the datalist says spatial_dims={spatial_dims}.")
        counts[split] = len(data[split])
    return counts


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
    from transforms.io.landmark_files import write_landmark_file

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
