"""GU2Net chest X-ray landmarks (Zhu et al. 2021): one ``.txt`` per image with ratio coordinates.

Format: first line the landmark count (6), then one line ``x y`` per landmark as ratios of the
image width and height. Pixels: ``x_px = x * W``, ``y_px = y * H`` (``W``, ``H`` the image size;
no ``-1``: GU2Net multiplies by the size). Layout: ``ROOT/pngs/<id>.png`` + ``ROOT/labels/<id>.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlm.data.datalist import atomic_write_text, write_landmark_datalist

__all__ = ["NUM_LANDMARKS", "read_chest_txt", "write_chest_txt", "ratios_to_pixels", "convert_chest"]

NUM_LANDMARKS = 6


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


def convert_chest(root: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Convert ``ROOT/pngs/*.png`` + ``ROOT/labels/*.txt`` to a datalist (voxel ``(x, y)``, all in ``training``)."""
    from PIL import Image

    root = Path(root)
    labels = sorted((root / "labels").glob("*.txt"))
    if not labels:
        raise FileNotFoundError(f"{root / 'labels'}: no label .txt files.")
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
    header = {
        "name": "chest_gu2net",
        "description": "GU2Net chest X-ray landmarks, voxel (x, y), px",
        "spatial_dims": 2,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_names": [f"L{k}" for k in range(NUM_LANDMARKS)],
    }
    return write_landmark_datalist(
        output_dir, header, items, {"datalist.json": {"training": sorted(items)}}, "voxel", overwrite=overwrite
    )
