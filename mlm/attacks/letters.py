"""Target points of a user's attack: reading/writing them (CSV or JSON), and letter shapes drawn with N landmarks.

The paper's demo figure ("Miss the Point", Yao et al., MICCAI 2020) moves the 19 cephalometric landmarks onto the
letters M, I, C, A (the authors' ``MICCAI/{M,I,C,A}.txt``). :func:`letter_points` draws such shapes from stroke
polylines of block letters (this project's own drawing, not the authors' files): ``num_points`` points spread evenly
along the strokes of the text, inside a box of the image.

Target files hold one point per landmark, in **pixels of the original image** in the image convention ``x`` (column,
left to right), ``y`` (row, top to bottom)[, ``z``] = voxel ``(i, j[, k])`` of the image as MONAI loads it:

- CSV: a header ``x,y[,z]`` (an optional first column ``landmark`` with names is ignored), one row per landmark;
  an empty or ``nan`` row keeps that landmark still;
- JSON: ``{"points": [[x, y], ...]}`` or a plain list; ``null`` keeps a landmark still.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from transforms.geometry import image_affine, original_affine, voxel_to_world, world_to_voxel
from transforms.io.atomic import atomic_write_text

__all__ = [
    "LETTER_STROKES",
    "letter_points",
    "network_to_original_pixels",
    "original_pixels_to_network",
    "read_target_points",
    "write_target_points",
]

#: block letters as stroke polylines in a unit box (x right, y down; width 1, height 1)
LETTER_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "A": [[(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)], [(0.25, 0.55), (0.75, 0.55)]],
    "C": [[(1.0, 0.15), (0.7, 0.0), (0.3, 0.0), (0.0, 0.3), (0.0, 0.7), (0.3, 1.0), (0.7, 1.0), (1.0, 0.85)]],
    "E": [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [(0.0, 0.5), (0.7, 0.5)]],
    "H": [[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (1.0, 1.0)], [(0.0, 0.5), (1.0, 0.5)]],
    "I": [[(0.5, 0.0), (0.5, 1.0)], [(0.2, 0.0), (0.8, 0.0)], [(0.2, 1.0), (0.8, 1.0)]],
    "L": [[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]],
    "M": [[(0.0, 1.0), (0.0, 0.0), (0.5, 0.6), (1.0, 0.0), (1.0, 1.0)]],
    "N": [[(0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0)]],
    "O": [[(0.3, 0.0), (0.7, 0.0), (1.0, 0.3), (1.0, 0.7), (0.7, 1.0), (0.3, 1.0), (0.0, 0.7), (0.0, 0.3), (0.3, 0.0)]],
    "T": [[(0.0, 0.0), (1.0, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],
    "V": [[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)]],
    "X": [[(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]],
}


def letter_points(
    text: str,
    num_points: int,
    box_min: Sequence[float] = (0.0, 0.0),
    box_max: Sequence[float] = (1.0, 1.0),
    spacing: float = 0.25,
) -> np.ndarray:
    """``(num_points, 2)`` points ``(x, y)`` spread evenly along the strokes of ``text`` inside a box.

    The letters share the box's width (each letter ``1`` wide, ``spacing`` between two letters) and fill its
    height. Every stroke gets a number of points in proportion to its length (at least one each, both ends of a
    stroke included when it gets two or more).

    Args:
        text: letters of :data:`LETTER_STROKES` (case-insensitive; spaces are gaps one letter wide).
        num_points: N, e.g. the 19 cephalometric landmarks.
        box_min, box_max: ``(x, y)`` corners of the box, pixels (or any unit).
        spacing: gap between letters, in letter widths.
    """
    letters = [c for c in str(text).upper()]
    if not letters or any(c != " " and c not in LETTER_STROKES for c in letters):
        raise ValueError(f"letter_points: text must use the letters {''.join(sorted(LETTER_STROKES))}, got {text!r}.")
    if int(num_points) < 1:
        raise ValueError(f"letter_points: num_points must be >= 1, got {num_points}.")
    strokes = []
    for i, c in enumerate(letters):
        for stroke in LETTER_STROKES.get(c, []):
            strokes.append(np.array([(x + i * (1.0 + spacing), y) for x, y in stroke], dtype=np.float64))
    if not strokes:
        raise ValueError(f"letter_points: {text!r} has no strokes.")
    if int(num_points) < len(strokes):
        raise ValueError(f"letter_points: {text!r} has {len(strokes)} strokes, more than {num_points} points.")
    lengths = np.array([np.linalg.norm(np.diff(s, axis=0), axis=1).sum() for s in strokes])
    # largest-remainder allocation of the points to the strokes, at least one each
    extra = int(num_points) - len(strokes)
    share = lengths / lengths.sum() * extra
    counts = 1 + np.floor(share).astype(int)
    for j in np.argsort(-(share - np.floor(share)))[: int(num_points) - int(counts.sum())]:
        counts[j] += 1
    points = []
    for stroke, count in zip(strokes, counts):
        seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.array([cum[-1] / 2]) if count == 1 else np.linspace(0.0, cum[-1], int(count))
        points.append(np.stack([np.interp(at, cum, stroke[:, d]) for d in range(2)], axis=1))
    pts = np.concatenate(points)
    width = len(letters) + (len(letters) - 1) * spacing
    lo, hi = np.asarray(box_min, dtype=np.float64), np.asarray(box_max, dtype=np.float64)
    if lo.shape != (2,) or hi.shape != (2,):
        raise ValueError(f"letter_points: box_min and box_max must be (x, y), got {box_min} and {box_max}.")
    return lo + pts / np.array([width, 1.0]) * (hi - lo)


def read_target_points(path: str | os.PathLike, num_landmarks: int | None = None) -> np.ndarray:
    """``(N, D)`` target points (pixels of the original image, ``x, y[, z]``; NaN rows: stationary) from a CSV or
    JSON file (see the module docstring). With ``num_landmarks``, a file with another number of rows raises."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"target points file {path} not found.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        rows = data.get("points") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"{path}: expected {{'points': [[x, y], ...]}} or a list of points.")
        dims = max(len(r) for r in rows if r is not None)
        points = np.array([[np.nan] * dims if r is None else [float(v) for v in r] for r in rows], dtype=np.float64)
    else:
        reader = csv.reader(io.StringIO(text))
        header = [h.strip().lower() for h in next(reader, [])]
        axes = [h for h in header if h in ("x", "y", "z")]
        if axes not in (["x", "y"], ["x", "y", "z"]):
            raise ValueError(f"{path}: the CSV header must name the columns x,y (or x,y,z), got {header}.")
        cols = [header.index(a) for a in axes]
        rows = [r for r in reader if r]
        points = np.array(
            [[float(r[c]) if c < len(r) and r[c].strip() else np.nan for c in cols] for r in rows], dtype=np.float64
        )
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValueError(f"{path}: expected N points of 2 or 3 coordinates, got shape {points.shape}.")
    points[~np.isfinite(points).all(axis=1)] = np.nan
    if num_landmarks is not None and points.shape[0] != int(num_landmarks):
        raise ValueError(
            f"{path}: {points.shape[0]} target points for a model of {num_landmarks} landmarks (one row per landmark; "
            "an empty row keeps a landmark still)."
        )
    return points


def write_target_points(path: str | os.PathLike, points, names: Sequence[str] | None = None) -> Path:
    """Write ``(N, D)`` target points (pixels, ``x, y[, z]``) as a CSV readable by :func:`read_target_points`
    (atomically); NaN rows are written empty."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"write_target_points: points must be (N, 2|3), got shape {pts.shape}.")
    if names is not None and len(names) != len(pts):
        raise ValueError(f"write_target_points: {len(names)} names for {len(pts)} points.")
    header = (["landmark"] if names is not None else []) + ["x", "y", "z"][: pts.shape[1]]
    lines = [",".join(header)]
    for i, p in enumerate(pts):
        values = [""] * pts.shape[1] if not np.isfinite(p).all() else [f"{v:.3f}" for v in p]
        lines.append(",".join(([str(names[i])] if names is not None else []) + values))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def original_pixels_to_network(points, image: torch.Tensor, spacing: Sequence[float] | None = None) -> np.ndarray:
    """``(N, D)`` points in pixels (voxels) of the original image -> voxel coordinates of the preprocessed
    ``image`` (the network input), through world mm: the original grid's affine
    (:func:`transforms.geometry.original_affine`, with the item's ``spacing`` for pixel-only images), then the
    inverse of the preprocessed image's affine. NaN rows stay NaN."""
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64))
    dims = pts.shape[-1]
    world = voxel_to_world(pts, original_affine(image, dims, spacing))
    return world_to_voxel(world, image_affine(image, dims)).numpy()


def network_to_original_pixels(points, image: torch.Tensor, spacing: Sequence[float] | None = None) -> np.ndarray:
    """The inverse of :func:`original_pixels_to_network`: voxels of the preprocessed ``image`` -> pixels of the
    original image."""
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64))
    dims = pts.shape[-1]
    world = voxel_to_world(pts, image_affine(image, dims))
    return world_to_voxel(world, original_affine(image, dims, spacing)).numpy()
