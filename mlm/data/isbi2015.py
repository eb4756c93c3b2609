"""ISBI 2015 cephalometric landmark challenge (Wang et al. 2016): 400 cephalograms, 19 landmarks.

Original layout (as distributed by the challenge)::

    ROOT/RawImage/TrainingData/001.bmp ... 150.bmp     (1935 x 2400 px, 0.1 mm/px, no spacing in the file)
    ROOT/RawImage/Test1Data/151.bmp ... 300.bmp
    ROOT/RawImage/Test2Data/301.bmp ... 400.bmp
    ROOT/AnnotationsByMD/400_senior/001.txt ...        (19 lines "x,y" in px, then classification lines)
    ROOT/AnnotationsByMD/400_junior/001.txt ...

Payer's setup files (``all_senior.csv``, ``all_junior.csv``, ``all_challenge.csv``: rows
``id,x1,y1,...,x19,y19`` in **mm** at 0.1 mm/px) are read as an alternative annotation source.

The converter writes landmark files in ``"voxel"`` coordinates ``(x, y)`` (MONAI's PIL reader gives
a 2D image as ``(W, H)``, so voxel ``(i, j) = (x, y)``) and datalist items with
``"spacing": [0.1, 0.1]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlm.data.datalist import (
    atomic_write_text,
    read_coordinate_table,
    read_id_list,
    write_coordinate_table,
    write_landmark_datalist,
)

__all__ = [
    "NUM_LANDMARKS",
    "LANDMARK_NAMES",
    "PIXEL_SPACING_MM",
    "IMAGE_SIZE",
    "SPLIT_FOLDERS",
    "read_annotation_txt",
    "write_annotation_txt",
    "read_payer_csv",
    "write_payer_csv",
    "read_annotations",
    "convert_isbi2015",
]

NUM_LANDMARKS = 19
#: landmark names in the challenge's order (L1..L19).
LANDMARK_NAMES = [
    "sella",
    "nasion",
    "orbitale",
    "porion",
    "subspinale",
    "supramentale",
    "pogonion",
    "menton",
    "gnathion",
    "gonion",
    "lower_incisal_incision",
    "upper_incisal_incision",
    "upper_lip",
    "lower_lip",
    "subnasale",
    "soft_tissue_pogonion",
    "posterior_nasal_spine",
    "anterior_nasal_spine",
    "articulare",
]
#: pixel size of the challenge's images, mm.
PIXEL_SPACING_MM = 0.1
#: (width, height) of the challenge's images, px.
IMAGE_SIZE = (1935, 2400)
#: official split -> image folder under ``RawImage``.
SPLIT_FOLDERS = {"training": "TrainingData", "test1": "Test1Data", "test2": "Test2Data"}


def read_annotation_txt(path: str | os.PathLike) -> np.ndarray:
    """Read one ``AnnotationsByMD/*/NNN.txt``: the first 19 lines ``x,y`` in px; later lines are ignored.

    Returns:
        ``(19, 2)`` float64 array of pixel coordinates ``(x, y)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found.")
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    if len(lines) < NUM_LANDMARKS:
        raise ValueError(f"{path}: {len(lines)} non-empty lines, expected at least {NUM_LANDMARKS} 'x,y' lines.")
    pts = np.empty((NUM_LANDMARKS, 2), dtype=np.float64)
    for k, line in enumerate(lines[:NUM_LANDMARKS]):
        cells = [c for c in line.replace(" ", ",").split(",") if c]
        if len(cells) != 2:
            raise ValueError(f"{path}:{k + 1}: expected 'x,y', got {line!r}.")
        try:
            pts[k] = [float(cells[0]), float(cells[1])]
        except ValueError as e:
            raise ValueError(f"{path}:{k + 1}: not a number in {line!r}.") from e
    return pts


def write_annotation_txt(path: str | os.PathLike, points_px: np.ndarray, overwrite: bool = True) -> Path:
    """Write 19 lines ``x,y`` (px) in the challenge's annotation format, atomically.

    Args:
        path: destination ``NNN.txt``.
        points_px: ``(19, 2)`` pixel coordinates ``(x, y)``; integers are written without decimals.
        overwrite: replace an existing file.
    """
    pts = np.asarray(points_px, dtype=np.float64)
    if pts.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"{path}: points have shape {pts.shape}, expected ({NUM_LANDMARKS}, 2).")
    if np.isnan(pts).any():
        raise ValueError(f"{path}: the ISBI 2015 format has no missing landmarks, got NaN.")
    text = "".join(f"{x:.10g},{y:.10g}\n" for x, y in pts)
    return atomic_write_text(path, text, overwrite=overwrite)


def read_payer_csv(path: str | os.PathLike, spacing: float = PIXEL_SPACING_MM) -> dict[str, np.ndarray]:
    """Read Payer's ``all_senior.csv``-style table (mm) and return pixel coordinates.

    Args:
        path: the CSV (``id,x1,y1,...,x19,y19`` in mm).
        spacing: mm per pixel (0.1).

    Returns:
        ``{id: (19, 2) px array}``.
    """
    return {k: v / spacing for k, v in read_coordinate_table(path, NUM_LANDMARKS, 2).items()}


def write_payer_csv(
    path: str | os.PathLike, rows: dict[str, np.ndarray], spacing: float = PIXEL_SPACING_MM, overwrite: bool = True
) -> Path:
    """Write ``{id: (19, 2) px array}`` as Payer's mm table (``value = px * spacing``), atomically."""
    mm = {k: np.asarray(v, dtype=np.float64) * spacing for k, v in rows.items()}
    return write_coordinate_table(path, mm, NUM_LANDMARKS, 2, fmt="{:.10g}", overwrite=overwrite)


def read_annotations(root: str | os.PathLike, annotation: str = "average") -> dict[str, np.ndarray]:
    """Read all ``AnnotationsByMD`` files of a dataset root.

    Args:
        root: the dataset root (holds ``AnnotationsByMD``).
        annotation: ``"senior"``, ``"junior"`` or ``"average"`` (mean of the two doctors, the
            challenge's ground truth).

    Returns:
        ``{id: (19, 2) px array}`` sorted by id.
    """
    root = Path(root)
    if annotation not in ("senior", "junior", "average"):
        raise ValueError(f"annotation must be 'senior', 'junior' or 'average', got {annotation!r}.")
    doctors = ["senior", "junior"] if annotation == "average" else [annotation]
    per_doctor = []
    for doc in doctors:
        folder = root / "AnnotationsByMD" / f"400_{doc}"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: annotation folder not found (expected the ISBI 2015 layout).")
        per_doctor.append({p.stem: read_annotation_txt(p) for p in sorted(folder.glob("*.txt"))})
    if len(per_doctor) == 2:
        a, b = per_doctor
        if set(a) != set(b):
            only = sorted(set(a) ^ set(b))
            raise ValueError(f"{root / 'AnnotationsByMD'}: senior and junior annotate different ids, e.g. {only[:5]}.")
        return {k: (a[k] + b[k]) / 2.0 for k in sorted(a)}
    return dict(sorted(per_doctor[0].items()))


def _find_images(root: Path) -> dict[str, tuple[str, Path]]:
    """``{id: (official split, image path)}`` from ``RawImage/<split folder>/*.bmp``."""
    raw = root / "RawImage"
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: image folder not found (expected the ISBI 2015 layout).")
    found: dict[str, tuple[str, Path]] = {}
    for split, folder in SPLIT_FOLDERS.items():
        for p in sorted((raw / folder).glob("*")):
            if p.suffix.lower() not in (".bmp", ".png", ".tif", ".tiff", ".jpg"):
                continue
            if p.stem in found:
                raise ValueError(f"{p}: duplicate image id '{p.stem}' (also {found[p.stem][1]}).")
            found[p.stem] = (split, p)
    if not found:
        raise FileNotFoundError(f"{raw}: no images in {', '.join(SPLIT_FOLDERS.values())}.")
    return found


def convert_isbi2015(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    annotation: str = "average",
    annotation_csv: str | os.PathLike | None = None,
    cv_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Convert the ISBI 2015 layout into the project's datalist format.

    Writes ``output_dir/landmarks/<id>.json`` (voxel coordinates ``(x, y)``), ``datalist.json``
    with the official splits ``training`` (001-150), ``test1`` (151-300), ``test2`` (301-400) and
    ``test`` (test1 + test2), and, when ``cv_dir`` is given, ``datalist_cv{k}.json`` with
    ``training``/``validation`` from ``cv_dir/set{k}/train.txt, val.txt`` (Payer's 4-fold CV).
    Images are referenced where they are, never copied.

    Args:
        root: dataset root with ``RawImage`` (and ``AnnotationsByMD`` unless ``annotation_csv``).
        output_dir: output folder.
        annotation: ``"average"`` (default), ``"senior"`` or ``"junior"``.
        annotation_csv: a Payer mm table (``all_senior.csv`` ...) to use instead of ``AnnotationsByMD``.
        cv_dir: folder with ``set1..set4/{train,val}.txt``.
        overwrite: replace existing datalists.

    Returns:
        paths of the written datalists.
    """
    root = Path(root)
    images = _find_images(root)
    if annotation_csv is not None:
        ann = read_payer_csv(annotation_csv)
        ann_src = str(annotation_csv)
    else:
        ann = read_annotations(root, annotation)
        ann_src = str(root / "AnnotationsByMD")
    missing = sorted(set(ann) - set(images))
    if missing:
        raise FileNotFoundError(
            f"{ann_src}: annotated ids without an image under {root / 'RawImage'}: {missing[:5]}"
            + (" ..." if len(missing) > 5 else "")
        )
    unannotated = sorted(set(images) - set(ann))
    if unannotated:
        raise ValueError(f"{images[unannotated[0]][1]}: image has no annotation in {ann_src}.")
    items = {
        i: {"image": str(p), "points": ann[i], "spacing": [PIXEL_SPACING_MM, PIXEL_SPACING_MM]}
        for i, (_, p) in images.items()
    }
    official = {s: sorted(i for i, (split, _) in images.items() if split == s) for s in SPLIT_FOLDERS}
    official["test"] = official["test1"] + official["test2"]
    split_sets = {"datalist.json": {k: v for k, v in official.items() if v}}
    if cv_dir is not None:
        cv_dir = Path(cv_dir)
        sets = sorted(p for p in cv_dir.glob("set*") if p.is_dir())
        if not sets:
            raise FileNotFoundError(f"{cv_dir}: no set*/ folders with train.txt/val.txt.")
        for s in sets:
            split_sets[f"datalist_cv{s.name[3:]}.json"] = {
                "training": read_id_list(s / "train.txt"),
                "validation": read_id_list(s / "val.txt"),
            }
    header = {
        "name": "isbi2015_cephalometric",
        "description": f"ISBI 2015 cephalometric landmarks ({annotation_csv or annotation}), voxel (x, y) at 0.1 mm",
        "spatial_dims": 2,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_names": LANDMARK_NAMES,
    }
    return write_landmark_datalist(output_dir, header, items, split_sets, "voxel", overwrite=overwrite)
