"""AASCE 2019 spine AP X-rays (Wu et al.'s BoostNet data, 609 images): 68 vertebra corners in ratio CSV tables.

Original layout (``boostnet_labeldata``)::

    ROOT/data/training/*.jpg, ROOT/data/test/*.jpg     (grey AP radiographs, no pixel size)
    ROOT/labels/{training,test}/landmarks.csv          one row per image: x1..x68, then y1..y68, as ratios of the
                                                       image width and height; no header
    ROOT/labels/{training,test}/filenames.csv          the image file names, in the row order of landmarks.csv
    ROOT/labels/{training,test}/angles.csv             3 Cobb angles (degrees) per image, same order (optional here)

Landmarks: 17 vertebrae from T1 (top) to L5 (bottom), 4 corners each in the order top-left, top-right,
bottom-left, bottom-right (left and right of the image: smaller x is left) -- the order the challenge's Cobb angle
code pairs them in (:func:`mlm.spine_metrics.cobb_angles`). Landmark ``4 * v + c`` is corner ``c`` of vertebra ``v``
(:data:`LANDMARK_NAMES`: ``T1_top_left``, ``T1_top_right``, ..., ``L5_bottom_right``).

Pixels: ``x_px = x * W``, ``y_px = y * H`` (``W``, ``H`` the image size), as :mod:`mlm.data.chest` converts
GU2Net's ratios; px ``(x, y)`` is voxel ``(i, j)`` of the ``(W, H)`` array MONAI loads. The images have no pixel size:
errors are in px (the datalist items say ``"units": "px"``). The converter keeps the table's Cobb angles in each
item's ``cobb_angles`` (degrees, the file's order).
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from mlm.data.datalist import atomic_write_text, check_safe_id, write_landmark_datalist

__all__ = [
    "VERTEBRAE",
    "CORNERS",
    "NUM_VERTEBRAE",
    "NUM_LANDMARKS",
    "LANDMARK_NAMES",
    "SPLITS",
    "read_landmarks_csv",
    "write_landmarks_csv",
    "read_filenames_csv",
    "write_filenames_csv",
    "read_angles_csv",
    "write_angles_csv",
    "read_aasce_split",
    "convert_aasce",
]

#: the 17 vertebrae annotated, top to bottom.
VERTEBRAE: tuple[str, ...] = (*(f"T{i}" for i in range(1, 13)), *(f"L{i}" for i in range(1, 6)))
#: the 4 corners of each vertebra, in the AASCE order.
CORNERS: tuple[str, ...] = ("top_left", "top_right", "bottom_left", "bottom_right")
NUM_VERTEBRAE = len(VERTEBRAE)
NUM_LANDMARKS = 4 * NUM_VERTEBRAE
#: ``T1_top_left``, ``T1_top_right``, ``T1_bottom_left``, ``T1_bottom_right``, ``T2_top_left``, ... ``L5_bottom_right``.
LANDMARK_NAMES: tuple[str, ...] = tuple(f"{v}_{c}" for v in VERTEBRAE for c in CORNERS)
#: the layout's split folders (``data/<split>``, ``labels/<split>``), also the datalist's split names.
SPLITS: tuple[str, ...] = ("training", "test")


def _rows(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """``(1-based line, cells)`` of the non-blank rows of a CSV file (UTF-8, a byte-order mark allowed)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found.")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1)]
    return [(n, cells) for n, cells in rows if any(cells)]


def _numbers(path: Path, line: int, cells: list[str], expected: int, what: str) -> np.ndarray:
    """The ``expected`` finite numbers of one row, or a ``ValueError`` naming the file, the row and the problem."""
    if len(cells) != expected:
        raise ValueError(f"{path}: row {line} has {len(cells)} values, expected {expected} ({what}).")
    values = []
    for k, cell in enumerate(cells, 1):
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(f"{path}: row {line}, column {k}: {cell!r} is not a number.") from None
        if not math.isfinite(value):
            raise ValueError(f"{path}: row {line}, column {k}: {cell!r} is not a finite number.")
        values.append(value)
    return np.asarray(values, dtype=np.float64)


def read_landmarks_csv(path: str | os.PathLike) -> np.ndarray:
    """Read an AASCE ``landmarks.csv``: ``(M, 68, 2)`` ratios ``(x, y)`` of the image width and height, file order.

    Each row holds 136 numbers: the 68 x ratios, then the 68 y ratios.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a row without 136 values or with a non-numeric or non-finite one (the message names the file,
            the 1-based row and column), or no row at all.
    """
    path = Path(path)
    what = f"{NUM_LANDMARKS} x ratios then {NUM_LANDMARKS} y ratios"
    rows = [_numbers(path, n, cells, 2 * NUM_LANDMARKS, what) for n, cells in _rows(path, "landmark table")]
    if not rows:
        raise ValueError(f"{path}: no landmark rows.")
    return np.stack([np.stack([r[:NUM_LANDMARKS], r[NUM_LANDMARKS:]], axis=1) for r in rows])


def write_landmarks_csv(path: str | os.PathLike, ratios: np.ndarray, overwrite: bool = True) -> Path:
    """Write ``(M, 68, 2)`` ratios as an AASCE ``landmarks.csv`` (x1..x68, y1..y68 per row, no header), atomically."""
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 3 or r.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"{path}: ratios must be (M, {NUM_LANDMARKS}, 2), got {r.shape}.")
    lines = [",".join(repr(float(v)) for v in (*row[:, 0], *row[:, 1])) for row in r]
    return atomic_write_text(path, "".join(f"{line}\n" for line in lines), overwrite=overwrite)


def read_filenames_csv(path: str | os.PathLike) -> list[str]:
    """Read an AASCE ``filenames.csv``: the image file names, one per row, in the row order of ``landmarks.csv``."""
    path = Path(path)
    names = []
    for n, cells in _rows(path, "file name table"):
        if len(cells) != 1:
            raise ValueError(f"{path}: row {n} has {len(cells)} cells, expected one image file name.")
        names.append(cells[0])
    if not names:
        raise ValueError(f"{path}: no file names.")
    return names


def write_filenames_csv(path: str | os.PathLike, names: list[str], overwrite: bool = True) -> Path:
    """Write image file names as an AASCE ``filenames.csv`` (one per row, quoted where CSV needs it), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for name in names:
        if not str(name).strip() or "\n" in name or "\r" in name:
            raise ValueError(f"{path}: file name {name!r} is empty or holds a line break.")
        writer.writerow([name])
    return atomic_write_text(path, text.getvalue(), overwrite=overwrite)


def read_angles_csv(path: str | os.PathLike) -> np.ndarray:
    """Read an AASCE ``angles.csv``: ``(M, 3)`` Cobb angles in degrees, file order (the challenge's three curves)."""
    path = Path(path)
    rows = [_numbers(path, n, cells, 3, "3 Cobb angles") for n, cells in _rows(path, "Cobb angle table")]
    if not rows:
        raise ValueError(f"{path}: no Cobb angle rows.")
    return np.stack(rows)


def write_angles_csv(path: str | os.PathLike, angles: np.ndarray, overwrite: bool = True) -> Path:
    """Write ``(M, 3)`` Cobb angles (degrees) as an AASCE ``angles.csv``, atomically."""
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{path}: angles must be (M, 3), got {a.shape}.")
    return atomic_write_text(
        path, "".join(",".join(repr(float(v)) for v in row) + "\n" for row in a), overwrite=overwrite
    )


def read_aasce_split(root: str | os.PathLike, split: str) -> list[dict]:
    """The annotated images of one split folder of the AASCE layout, in file order.

    Args:
        root: the layout's root (``data/``, ``labels/``).
        split: ``"training"`` or ``"test"``.

    Returns:
        one dict per row: ``id`` (the file name without its extension), ``image`` (path), ``ratios`` ``(68, 2)``
        and, when ``angles.csv`` exists, ``cobb_angles`` ``(3,)`` degrees.

    Raises:
        FileNotFoundError: a table or an image is missing (the message names the table row that names it).
        ValueError: a malformed table, tables of different lengths, an unsafe or repeated id.
    """
    root = Path(root)
    labels = root / "labels" / split
    landmarks_csv, filenames_csv, angles_csv = (labels / f for f in ("landmarks.csv", "filenames.csv", "angles.csv"))
    ratios = read_landmarks_csv(landmarks_csv)
    names = read_filenames_csv(filenames_csv)
    if len(names) != len(ratios):
        raise ValueError(
            f"{filenames_csv}: {len(names)} file names but {landmarks_csv} has {len(ratios)} landmark rows; row k of "
            "one names the image of row k of the other."
        )
    angles = read_angles_csv(angles_csv) if angles_csv.is_file() else None
    if angles is not None and len(angles) != len(names):
        raise ValueError(f"{angles_csv}: {len(angles)} rows but {filenames_csv} names {len(names)} images.")
    items, rows_of = [], {}
    for k, name in enumerate(names):
        where = f"{filenames_csv} row {k + 1}"
        image = root / "data" / split / name
        if not image.is_file():
            raise FileNotFoundError(f"{where} names {name!r}, but {image} does not exist.")
        item_id = check_safe_id(Path(name).stem, where)
        if item_id in rows_of:
            raise ValueError(f"{where}: image id {item_id!r} again (first in row {rows_of[item_id]}).")
        rows_of[item_id] = k + 1
        item = {"id": item_id, "image": image, "ratios": ratios[k]}
        if angles is not None:
            item["cobb_angles"] = angles[k]
        items.append(item)
    return items


def convert_aasce(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    name: str = "aasce2019",
    description: str = "AASCE 2019 spine AP X-rays, 17 vertebrae (T1-L5) x 4 corners, voxel (x, y), px",
    validation_fraction: float = 0.1,
) -> list[Path]:
    """Convert the AASCE layout into the project's datalist format.

    Writes ``output_dir/landmarks/<id>.json`` (voxel ``(x, y)`` px, 68 named landmarks) and ``datalist.json`` with the
    splits ``training``, ``validation`` and ``test``; each item keeps its ``cobb_angles`` (degrees, from ``angles.csv``)
    and says ``"units": "px"``. The layout has no validation split: the last ``validation_fraction`` of the training
    images (in ``filenames.csv`` order, at least one when training has two or more) become ``validation``, so that a
    model is chosen without looking at the test images.

    Args:
        root: the layout's root (``data/``, ``labels/``).
        output_dir: output folder (may be ``root``).
        overwrite: replace an existing datalist.
        name, description: the datalist's ``name`` and ``description``.
        validation_fraction: the share of the training images held out as ``validation`` (0: none).

    Returns:
        the paths of the written datalists.
    """
    from PIL import Image

    root = Path(root)
    present = [s for s in SPLITS if (root / "labels" / s).is_dir()]
    if not present:
        raise FileNotFoundError(f"{root / 'labels'}: no training/ or test/ folder with landmarks.csv, filenames.csv.")
    items: dict[str, dict] = {}
    splits: dict[str, list[str]] = {}
    for split in present:
        splits[split] = []
        for it in read_aasce_split(root, split):
            if it["id"] in items:
                raise ValueError(
                    f"{root / 'labels' / split / 'filenames.csv'}: image id {it['id']!r} is also in another split."
                )
            with Image.open(it["image"]) as im:
                w, h = im.size
            item = {"image": str(it["image"]), "points": it["ratios"] * np.array([w, h], dtype=np.float64)}
            item["units"] = "px"
            if "cobb_angles" in it:
                item["cobb_angles"] = [float(a) for a in it["cobb_angles"]]
            items[it["id"]] = item
            splits[split].append(it["id"])
    train = splits.get("training", [])
    if not 0.0 <= float(validation_fraction) < 1.0:
        raise ValueError(f"convert_aasce: validation_fraction must be in [0, 1), got {validation_fraction}.")
    if validation_fraction > 0 and len(train) >= 2:
        n_val = max(1, round(len(train) * float(validation_fraction)))
        splits["training"], splits["validation"] = train[:-n_val], train[-n_val:]
    header = {
        "name": name,
        "description": description,
        "spatial_dims": 2,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_names": list(LANDMARK_NAMES),
    }
    return write_landmark_datalist(output_dir, header, items, {"datalist.json": splits}, "voxel", overwrite=overwrite)
