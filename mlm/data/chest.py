"""GU2Net chest X-ray landmarks (Zhu et al. 2021): one ``.txt`` per image with ratio coordinates.

Format: first line the landmark count (6), then one line ``x y`` per landmark as ratios of the
image width and height. Pixels: ``x_px = x * W``, ``y_px = y * H`` (``W``, ``H`` the image size;
no ``-1``: GU2Net multiplies by the size). Layout: ``ROOT/pngs/<id>.png`` + ``ROOT/labels/<id>.txt``.

GU2Net's code and label files do not name the 6 points; :mod:`mlm.data.phantoms.chest` writes a phantom in this
layout with its own named points. GU2Net splits the sorted ids into the first 195 (training), the next 34
(validation) and the rest (test) (``model/datasets/chest.py``): :data:`GU2NET_SPLIT`, ``convert_chest(split=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlm.data.datalist import atomic_write_text, write_landmark_datalist

__all__ = ["NUM_LANDMARKS", "GU2NET_SPLIT", "read_chest_txt", "write_chest_txt", "ratios_to_pixels", "convert_chest"]

NUM_LANDMARKS = 6

#: GU2Net's chest split: (training, validation) counts over the sorted ids, the rest is the test set.
GU2NET_SPLIT = (195, 34)


def read_chest_txt(path: str | os.PathLike) -> np.ndarray:
    """Read a GU2Net chest label file: ``(N, 2)`` ratios ``(x, y)`` in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file not found.")
    lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    try:
        n = int(lines[0][0])
        pts = np.array([[float(a), float(b)] for a, b in lines[1 : 1 + n]], dtype=np.float64)
    except (IndexError, ValueError) as e:
        raise ValueError(f"{path}: expected a count line then 'x y' ratio lines ({e}).") from e
    if len(pts) != n:
        raise ValueError(f"{path}: the first line says {n} landmarks, found {len(pts)}.")
    return pts


def write_chest_txt(path: str | os.PathLike, ratios: np.ndarray) -> Path:
    """Write ``(N, 2)`` ratios in the GU2Net chest format, atomically."""
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != 2:
        raise ValueError(f"{path}: ratios must be (N, 2), got {r.shape}.")
    return atomic_write_text(path, f"{len(r)}\n" + "".join(f"{float(x)!r} {float(y)!r}\n" for x, y in r))


def ratios_to_pixels(ratios: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(N, 2)`` ratios -> ``(N, 2)`` px ``(x, y)`` = voxel ``(i, j)`` of a ``(W, H)`` MONAI image."""
    return np.asarray(ratios, dtype=np.float64) * np.array([width, height], dtype=np.float64)


def convert_chest(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    split: tuple[int, int] | None = None,
    landmark_names: Sequence[str] | None = None,
) -> list[Path]:
    """Convert ``ROOT/pngs/*.png`` + ``ROOT/labels/*.txt`` to a datalist (voxel ``(x, y)``, px).

    Args:
        root: the GU2Net chest folder.
        output_dir: folder for ``datalist.json`` and ``landmarks/<id>.json``.
        overwrite: replace an existing datalist.
        split: ``None`` (default): every image in ``training``. ``(n_train, n_val)``: GU2Net's scheme over the
            sorted ids, the first ``n_train`` in ``training``, the next ``n_val`` in ``validation``, the rest in
            ``test`` (:data:`GU2NET_SPLIT` = ``(195, 34)`` is GU2Net's split once its excluded ids are left out).
        landmark_names: the datalist's ``landmark_names`` (default ``L0`` ... ``L5``: GU2Net names none).

    Returns:
        paths of the written datalists (one, ``datalist.json``).
    """
    from PIL import Image

    root = Path(root)
    labels = sorted((root / "labels").glob("*.txt"))
    if not labels:
        raise FileNotFoundError(f"{root / 'labels'}: no label .txt files.")
    names = [f"L{k}" for k in range(NUM_LANDMARKS)] if landmark_names is None else [str(n) for n in landmark_names]
    if len(names) != NUM_LANDMARKS:
        raise ValueError(f"{root}: {len(names)} landmark names given, expected {NUM_LANDMARKS}.")
    items = {}
    for lab in labels:
        imgs = [p for p in (root / "pngs").glob(f"{lab.stem}.*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
        if not imgs:
            raise FileNotFoundError(f"{lab}: no image {root / 'pngs' / lab.stem}.png for this label file.")
        ratios = read_chest_txt(lab)
        if len(ratios) != NUM_LANDMARKS:
            raise ValueError(f"{lab}: {len(ratios)} landmarks, expected {NUM_LANDMARKS}.")
        with Image.open(imgs[0]) as im:
            w, h = im.size
        items[lab.stem] = {"image": str(imgs[0]), "points": ratios_to_pixels(ratios, w, h), "units": "px"}
    ids = sorted(items)
    if split is None:
        splits = {"training": ids}
    else:
        n_train, n_val = (int(n) for n in split)
        if n_train < 0 or n_val < 0 or n_train + n_val > len(ids):
            raise ValueError(
                f"{root}: split {tuple(split)} (training, validation) does not fit {len(ids)} labelled images."
            )
        splits = {
            "training": ids[:n_train],
            "validation": ids[n_train : n_train + n_val],
            "test": ids[n_train + n_val :],
        }
    header = {
        "name": "chest_gu2net",
        "description": "GU2Net chest X-ray landmarks, voxel (x, y), px",
        "spatial_dims": 2,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_names": names,
    }
    return write_landmark_datalist(output_dir, header, items, {"datalist.json": splits}, "voxel", overwrite=overwrite)
