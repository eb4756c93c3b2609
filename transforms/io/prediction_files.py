"""Prediction files: one ``<id>_landmarks.json`` per image, the bundles' inference output.

A prediction file is a landmark file of the project's JSON format (readable by :func:`read_landmark_file`):
``points`` are world mm in **LPS** (``coordinate_system: "LPS"``), ``null`` where there is no prediction. It adds
``image`` (the image file), ``units``, a human-readable ``convention``, ``voxel_points`` (array indices of the
ORIGINAL image grid, index ``i`` = centre of voxel ``i``, axes in the order of the image array) and ``values``
(the heatmap peak of each landmark). :func:`landmark_record` builds the content, :func:`read_prediction_file`
reads the points back as RAS mm.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from transforms.geometry import ras_to_lps, to_ras, world_to_voxel
from transforms.io.landmark_files import read_landmark_file

__all__ = ["PREDICTION_SUFFIX", "landmark_record", "read_prediction_file"]

#: file name of an item's predictions: ``f"{id}{PREDICTION_SUFFIX}"``.
PREDICTION_SUFFIX = "_landmarks.json"


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64)


def landmark_record(
    world_ras: torch.Tensor | np.ndarray,
    names: Sequence[str] | None = None,
    original_affine_ras: torch.Tensor | np.ndarray | None = None,
    values: torch.Tensor | np.ndarray | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """The JSON content of one prediction file.

    ``points`` are world mm in **LPS** (``coordinate_system: "LPS"``; RAS with x and y negated), so the file is a
    landmark file of the project's format; ``voxel_points`` are array indices of the ORIGINAL image grid
    (index ``i`` = centre of voxel ``i``, axes in the order of the image array). NaN coordinates become ``null``.

    Args:
        world_ras: ``(N, D)`` world coordinates, RAS mm.
        names: ``N`` landmark names (default ``"0"``, ``"1"``, ...).
        original_affine_ras: ``(D+1, D+1)`` voxel-to-RAS affine of the image as read from disk.
        values: ``(N,)`` heatmap peak values.
        image: the image file name.
    """
    w = _numpy(world_ras)
    n, dims = w.shape
    names = [str(k) for k in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"landmark_record: {len(names)} names for {n} landmarks (image {image}).")

    def rows(a: np.ndarray) -> list:
        return [None if not np.all(np.isfinite(p)) else [float(c) for c in p] for p in a]

    rec: dict[str, Any] = {
        "image": image,
        "coordinate_system": "LPS",
        "units": "mm",
        "convention": "world mm, LPS (ITK/DICOM): x right-to-left, y anterior-to-posterior"
        + (", z inferior-to-superior" if dims == 3 else ""),
        "names": names,
        "points": rows(ras_to_lps(w)),
    }
    if original_affine_ras is not None:
        vox = world_to_voxel(w, _numpy(original_affine_ras))
        rec["voxel_coordinate_system"] = "voxel indices of the original image (index i = centre of voxel i)"
        rec["voxel_points"] = rows(np.asarray(vox))
    if values is not None:
        rec["values"] = [float(v) for v in _numpy(values).reshape(-1)]
    return rec


def read_prediction_file(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """One prediction file (or any landmark file in world mm) as RAS mm.

    Returns:
        ``(points (N, D) RAS mm float64, NaN rows = no prediction; names)``.

    Raises:
        ValueError: the file holds voxel indices (or cannot be read, see :func:`read_landmark_file`).
    """
    lf = read_landmark_file(path)
    if lf.coordinate_system == "voxel":
        raise ValueError(f"{path}: prediction files must hold world mm (LPS or RAS), this one holds voxel indices.")
    return to_ras(lf.points, lf.coordinate_system), list(lf.names)
