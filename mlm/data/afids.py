"""AFIDs anatomical fiducials (Lau et al. 2019) and any 3D Slicer markups ``.fcsv`` (RAS mm).

Layout of the AFIDs template (as in TemplateFlow / afids-data)::

    ROOT/tpl-<template>_res-01_T1w.nii.gz
    ROOT/tpl-<template>_res-01_desc-groundtruth_afids.fcsv     (32 fiducials, RAS mm)
    ROOT/**/tpl-<template>_res-01_desc-rater0N_afids.fcsv      (per-rater placements)

The converter writes the landmark file in ``"RAS"`` (the fcsv's own convention); the loader
converts to voxels through the image affine (MONAI's affine is RAS too).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlm.data.datalist import write_landmark_datalist
from transforms.geometry import to_ras, voxel_to_world, world_to_voxel
from transforms.io.landmark_files import read_landmark_file

__all__ = [
    "NUM_LANDMARKS",
    "read_fcsv",
    "ras_to_voxel",
    "voxel_to_ras",
    "rater_errors",
    "convert_afids",
]

NUM_LANDMARKS = 32


def read_fcsv(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a Slicer ``.fcsv``: ``((N, 3) RAS mm, names)``; an LPS file is converted to RAS."""
    path = Path(path)
    if path.suffix.lower() != ".fcsv":
        raise ValueError(f"{path}: expected a Slicer markups .fcsv file.")
    lf = read_landmark_file(path)
    if lf.coordinate_system not in ("LPS", "RAS"):
        raise ValueError(f"{path}: unexpected coordinate system {lf.coordinate_system!r}.")
    return to_ras(lf.points, lf.coordinate_system), [str(n) for n in lf.names]


def ras_to_voxel(points_ras: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(N, 3)`` RAS mm -> voxel indices through a 4x4 RAS ``affine`` (NIfTI / MONAI):
    :func:`transforms.geometry.world_to_voxel`."""
    return world_to_voxel(np.asarray(points_ras, dtype=np.float64), np.asarray(affine, dtype=np.float64))


def voxel_to_ras(points_vox: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(N, 3)`` voxel indices -> RAS mm through a 4x4 RAS ``affine``: :func:`transforms.geometry.voxel_to_world`."""
    return voxel_to_world(np.asarray(points_vox, dtype=np.float64), np.asarray(affine, dtype=np.float64))


def rater_errors(groundtruth_fcsv: str | os.PathLike, rater_fcsvs: list[str | os.PathLike]) -> dict[str, np.ndarray]:
    """Per-fiducial Euclidean distance (mm) of each rater's file to the ground truth.

    Returns:
        ``{rater file stem: (N,) mm}``, fiducials matched by row: AFIDs have a fixed order 1..32,
        and the files name them differently (the ground truth's ``label`` column holds ``1``..``32``
        with the name in ``desc``; rater03 uses abbreviations such as ``ICS``).
    """
    gt, _ = read_fcsv(groundtruth_fcsv)
    out = {}
    for f in rater_fcsvs:
        pts, names = read_fcsv(f)
        if pts.shape != gt.shape:
            raise ValueError(f"{f}: {len(pts)} fiducials, the ground truth {groundtruth_fcsv} has {len(gt)}.")
        out[Path(f).stem] = np.linalg.norm(pts - gt, axis=1)
    return out


def convert_afids(
    image: str | os.PathLike,
    fcsv: str | os.PathLike,
    output_dir: str | os.PathLike,
    subject_id: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Make a one-item datalist (``test`` split) from an image and its ``.fcsv`` (e.g. the AFIDs template)."""
    image, fcsv = Path(image), Path(fcsv)
    if not image.is_file():
        raise FileNotFoundError(f"{image}: image not found.")
    pts, names = read_fcsv(fcsv)
    sid = subject_id or image.name.split(".")[0]
    header = {
        "name": "afids",
        "description": "AFIDs anatomical fiducials, RAS mm (Slicer convention)",
        "spatial_dims": 3,
        "num_landmarks": len(pts),
        "landmark_names": names,
    }
    items = {sid: {"image": str(image), "points": pts}}
    return write_landmark_datalist(
        output_dir, header, items, {"datalist.json": {"test": [sid]}}, "RAS", overwrite=overwrite
    )
