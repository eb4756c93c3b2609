"""MICCAI CSI 2014 vertebrae localisation (Glocker et al. 2013): spine CTs, 26 vertebra centroids.

Layout the converter reads::

    IMAGES/<scan id>.nii.gz | .nii | .mha | .nrrd     (CT, HU)
    SETUP/points_world_coordinates.csv                (Payer: ``id,x1,y1,z1,...,x26,y26,z26``, LPS mm, ``NaN`` absent)
    SETUP/train_all.txt, test_all.txt, cv/{0,1}/train.txt, val.txt
      or, instead of the CSV, one centroid file per scan next to the image
    IMAGES/<scan id>.lml | .json | .csv | .fcsv      (rows naming a vertebra, e.g. ``C1``, with x y z)

Slots (row ``k`` of every landmark array), from the top of the spine down: ``C1..C7`` (0-6),
``T1..T12`` (7-18), ``L1..L5`` (19-23), ``S1``, ``S2`` (24, 25). Checked on the real CSV: the
median centroid distance between neighbouring slots is 17-20 mm for 0-6 (cervical), rises from
19 to 34 mm over 7-18 (thoracic), is ~36 mm for 19-23 (lumbar), and slot 24 -> 25 is the shorter,
strongly tilted S1 -> S2 step (29.5 mm, only 15 mm in z).

Coordinates are ITK physical (LPS) mm; the landmark files the converter writes say ``"LPS"``.
MONAI's affines are RAS: ``ras = diag(-1, -1, 1) @ lps`` (:func:`transforms.geometry.lps_to_ras`; see
``tests/data/test_csi2014.py`` for the check on a real CT).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mlm.data.datalist import read_coordinate_table, read_id_list, write_coordinate_table, write_landmark_datalist
from transforms.geometry import lps_to_ras
from transforms.io.landmark_files import read_landmark_file

__all__ = [
    "NUM_LANDMARKS",
    "VERTEBRA_NAMES",
    "read_points_csv",
    "write_points_csv",
    "read_centroid_file",
    "lps_to_ras",
    "find_ct_images",
    "convert_csi2014",
]

NUM_LANDMARKS = 26
#: slot names, top of the spine first.
VERTEBRA_NAMES = (
    [f"C{k}" for k in range(1, 8)] + [f"T{k}" for k in range(1, 13)] + [f"L{k}" for k in range(1, 6)] + ["S1", "S2"]
)

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
_CENTROID_SUFFIXES = (".lml", ".json", ".csv", ".fcsv", ".txt")


def read_points_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read Payer's ``points_world_coordinates.csv``: ``{scan id: (26, 3) LPS mm}``, NaN rows absent."""
    return read_coordinate_table(path, NUM_LANDMARKS, 3)


def write_points_csv(path: str | os.PathLike, rows: dict[str, np.ndarray], overwrite: bool = True) -> Path:
    """Write ``{scan id: (26, 3) LPS mm}`` like Payer's file, atomically.

    Numbers are float32's shortest text (``73.2301``, ``125.0``), absent vertebrae ``NaN``: the real
    file is reproduced byte for byte.
    """
    return write_coordinate_table(
        path, rows, NUM_LANDMARKS, 3, fmt=lambda v: str(np.float32(v)), nan="NaN", overwrite=overwrite
    )


def read_centroid_file(path: str | os.PathLike, coordinate_system: str = "LPS") -> np.ndarray:
    """Read one scan's centroid file into the 26-slot order.

    ``.json``/``.csv``/``.fcsv`` go through ``transforms.io.read_landmark_file`` (names map to
    slots; RAS files are converted to LPS). Other files (Glocker's ``.lml``, plain text) are read
    line by line: a token naming a vertebra (``C1`` ... ``S2``) and the last three numbers of the line.

    Args:
        path: the centroid file.
        coordinate_system: the convention of files that do not state one (``"LPS"`` or ``"RAS"``).

    Returns:
        ``(26, 3)`` LPS mm, NaN rows for absent vertebrae.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: centroid file not found.")
    out = np.full((NUM_LANDMARKS, 3), np.nan)
    if path.suffix.lower() in (".json", ".csv", ".fcsv"):
        lf = read_landmark_file(path)
        pts = np.asarray(lf.points, dtype=np.float64)
        names = list(lf.names) if lf.names else []
        cs = lf.coordinate_system or coordinate_system
        if cs == "voxel":
            raise ValueError(f"{path}: centroids must be in mm (LPS or RAS), this file holds voxel coordinates.")
        if pts.shape[1] != 3:
            raise ValueError(f"{path}: expected 3D points, got shape {pts.shape}.")
        if names and all(n in VERTEBRA_NAMES for n in names):
            for n, p in zip(names, pts):
                out[VERTEBRA_NAMES.index(n)] = p
        elif len(pts) == NUM_LANDMARKS:
            out[:] = pts
        else:
            raise ValueError(f"{path}: names {names[:5]} are not vertebra names and there are {len(pts)} != 26 points.")
    else:
        names_re = re.compile(r"^(C[1-7]|T(1[0-2]|[1-9])|L[1-5]|S[12])$")
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            tokens = [t for t in re.split(r"[\s,;]+", line.strip()) if t]
            if not tokens or tokens[0].startswith("#"):
                continue
            name = next((t for t in tokens if names_re.match(t)), None)
            if name is None:
                continue
            nums = []
            for t in tokens:
                try:
                    nums.append(float(t))
                except ValueError:
                    pass
            if len(nums) < 3:
                raise ValueError(f"{path}:{lineno}: vertebra {name} without three coordinates: {line!r}.")
            out[VERTEBRA_NAMES.index(name)] = nums[-3:]
        cs = coordinate_system
    if cs == "RAS":
        out = lps_to_ras(out)
    elif cs != "LPS":
        raise ValueError(f"{path}: unknown coordinate system {cs!r}.")
    return out


def find_ct_images(image_dir: str | os.PathLike) -> dict[str, Path]:
    """``{scan id: path}`` of the CT volumes in ``image_dir`` (id = file name before its suffix)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: image folder not found.")
    found: dict[str, Path] = {}
    for p in sorted(image_dir.iterdir()):
        name = p.name
        suffix = next((s for s in _IMAGE_SUFFIXES if name.lower().endswith(s)), None)
        if suffix is None or not p.is_file():
            continue
        stem = name[: -len(suffix)]
        if stem in found:
            raise ValueError(f"{p}: duplicate image id '{stem}' (also {found[stem]}).")
        found[stem] = p
    return found


def convert_csi2014(
    image_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    points_csv: str | os.PathLike | None = None,
    setup_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    centroid_coordinate_system: str = "LPS",
) -> list[Path]:
    """Convert CSI 2014 CTs and centroids into the project's datalist format.

    Writes ``output_dir/landmarks/<id>.json`` (LPS mm, 26 slots), ``datalist.json`` with
    ``training`` = ``train_all.txt`` and ``test`` = ``test_all.txt`` (all scans in ``training``
    without a ``setup_dir``), and ``datalist_cv{k}.json`` for each ``cv/k/{train,val}.txt``.

    Args:
        image_dir: folder with the CT volumes.
        output_dir: output folder.
        points_csv: Payer's world-coordinate table; when None, per-scan centroid files next to
            the images are read.
        setup_dir: folder with ``train_all.txt``, ``test_all.txt`` and ``cv/`` (default: the
            folder of ``points_csv`` when it holds ``train_all.txt``).
        overwrite: replace existing datalists.
        centroid_coordinate_system: convention of centroid files that do not state one.
    """
    images = find_ct_images(image_dir)
    if not images:
        raise FileNotFoundError(f"{image_dir}: no CT volumes ({', '.join(_IMAGE_SUFFIXES)}).")
    if points_csv is not None:
        ann = read_points_csv(points_csv)
        ann_src = Path(points_csv)
        missing = sorted(set(ann) - set(images))
        if setup_dir is None and (ann_src.parent / "train_all.txt").is_file():
            setup_dir = ann_src.parent
    else:
        ann = {}
        for i, p in images.items():
            cands = [p.parent / f"{i}{s}" for s in _CENTROID_SUFFIXES if (p.parent / f"{i}{s}").is_file()]
            if not cands:
                raise FileNotFoundError(f"{p}: no centroid file {i}.lml/.json/.csv/.fcsv/.txt next to the image.")
            ann[i] = read_centroid_file(cands[0], centroid_coordinate_system)
        ann_src = Path(image_dir)
        missing = []
    unannotated = sorted(set(images) - set(ann))
    if unannotated:
        raise ValueError(f"{images[unannotated[0]]}: image has no centroids in {ann_src}.")
    items = {i: {"image": str(images[i]), "points": ann[i]} for i in images}
    if setup_dir is not None:
        setup_dir = Path(setup_dir)
        train, test = read_id_list(setup_dir / "train_all.txt"), read_id_list(setup_dir / "test_all.txt")
        for f, ids in ((setup_dir / "train_all.txt", train), (setup_dir / "test_all.txt", test)):
            absent = [i for i in ids if i not in images]
            if absent:
                raise FileNotFoundError(f"{f}: scans without an image in {image_dir}: {absent[:5]} ({len(absent)}).")
        split_sets = {"datalist.json": {"training": train, "test": test}}
        for fold in sorted(p for p in (setup_dir / "cv").glob("*") if p.is_dir()):
            split_sets[f"datalist_cv{fold.name}.json"] = {
                "training": read_id_list(fold / "train.txt"),
                "validation": read_id_list(fold / "val.txt"),
            }
    else:
        if missing:
            raise FileNotFoundError(f"{ann_src}: annotated scans without an image in {image_dir}: {missing[:5]}")
        split_sets = {"datalist.json": {"training": sorted(images)}}
    header = {
        "name": "csi2014_spine",
        "description": "MICCAI CSI 2014 vertebra centroids, LPS mm, slots C1..C7, T1..T12, L1..L5, S1, S2",
        "spatial_dims": 3,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_names": VERTEBRA_NAMES,
    }
    return write_landmark_datalist(output_dir, header, items, split_sets, "LPS", overwrite=overwrite)
