"""VerSe 2019/2020 vertebra centroids (Sekuboyina et al.): ``*_ctd.json`` + CT / vertebra mask.

A centroid file is a JSON list: first ``{"direction": ["P", "I", "R"]}`` (the axis codes of the
voxel grid the centroids are expressed in), then ``{"label": k, "X": .., "Y": .., "Z": ..}`` in
voxel coordinates of the image reoriented to that direction. Labels: 1-7 = C1-C7, 8-19 = T1-T12,
20-24 = L1-L5, 25 = L6, 26 = sacrum, 28 = T13 (transitional vertebrae).

:func:`centroids_to_world` maps them to LPS mm through the NIfTI affine of the CT or mask (RAS):
reorient the image grid to the file's direction, apply the affine, flip x and y.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mlm.data.datalist import atomic_write_text, write_landmark_datalist
from transforms.geometry import lps_to_ras, ras_to_lps, voxel_to_world, world_to_voxel

__all__ = [
    "VERSE_LABEL_NAMES",
    "NUM_LANDMARKS",
    "read_centroid_json",
    "write_centroid_json",
    "centroids_to_world",
    "world_to_centroids",
    "verse_landmarks",
    "convert_verse",
]

#: VerSe label -> vertebra name.
VERSE_LABEL_NAMES = {
    **{k: f"C{k}" for k in range(1, 8)},
    **{k + 7: f"T{k}" for k in range(1, 13)},
    **{k + 19: f"L{k}" for k in range(1, 6)},
    25: "L6",
    26: "S1",
    28: "T13",
}
#: slots of the datalist's landmark files: labels 1..26 in order (row k = label k + 1); T13 not kept.
NUM_LANDMARKS = 26
_CODES = {"L", "R", "P", "A", "I", "S"}


def read_centroid_json(path: str | os.PathLike) -> tuple[tuple[str, str, str], dict[int, np.ndarray]]:
    """Read a VerSe ``*_ctd.json``.

    Returns:
        ``(direction codes, {label: (3,) voxel coordinates (X, Y, Z)})``.

    Raises:
        ValueError: no direction entry, an unknown or repeated orientation code, a malformed entry
            (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: centroid file not found.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from e
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: a VerSe centroid file is a non-empty JSON list.")
    direction = None
    centroids: dict[int, np.ndarray] = {}
    for n, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {n} is not an object.")
        if "direction" in entry:
            codes = tuple(str(c).upper() for c in entry["direction"])
            if len(codes) != 3 or not set(codes) <= _CODES:
                raise ValueError(
                    f"{path}: unknown orientation codes {entry['direction']!r} (expected three of {sorted(_CODES)})."
                )
            axes = {c: {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}[c] for c in codes}
            if len(set(axes.values())) != 3:
                raise ValueError(f"{path}: orientation codes {entry['direction']!r} repeat an axis.")
            direction = codes
            continue
        try:
            label = int(entry["label"])
            centroids[label] = np.array([float(entry["X"]), float(entry["Y"]), float(entry["Z"])])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: entry {n} is not {{'label', 'X', 'Y', 'Z'}}: {entry!r}.") from e
    if direction is None:
        raise ValueError(f"{path}: no {{'direction': [...]}} entry.")
    return direction, centroids


def write_centroid_json(
    path: str | os.PathLike, direction: tuple[str, str, str], centroids: dict[int, np.ndarray]
) -> Path:
    """Write a VerSe ``*_ctd.json`` (atomically)."""
    data: list[dict] = [{"direction": list(direction)}]
    data += [
        {"label": int(k), "X": float(v[0]), "Y": float(v[1]), "Z": float(v[2])} for k, v in sorted(centroids.items())
    ]
    return atomic_write_text(path, json.dumps(data) + "\n")


def _grid_affine(affine: np.ndarray, shape: tuple[int, ...], direction: tuple[str, str, str]) -> np.ndarray:
    """RAS affine of the image grid reoriented to ``direction``."""
    import nibabel as nib

    img_ornt = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(direction)
    transform = nib.orientations.ornt_transform(img_ornt, target)
    return affine @ nib.orientations.inv_ornt_aff(transform, shape[:3])


def centroids_to_world(
    centroids: dict[int, np.ndarray], direction: tuple[str, str, str], affine: np.ndarray, shape: tuple[int, ...]
) -> dict[int, np.ndarray]:
    """Voxel centroids in ``direction`` -> LPS mm through a RAS NIfTI ``affine`` (4x4) of ``shape``."""
    grid = _grid_affine(np.asarray(affine, dtype=np.float64), shape, direction)
    return {k: ras_to_lps(voxel_to_world(np.asarray(v, dtype=np.float64), grid)) for k, v in centroids.items()}


def world_to_centroids(
    points_lps: dict[int, np.ndarray], direction: tuple[str, str, str], affine: np.ndarray, shape: tuple[int, ...]
) -> dict[int, np.ndarray]:
    """Inverse of :func:`centroids_to_world`: LPS mm -> voxel coordinates in ``direction``."""
    grid = _grid_affine(np.asarray(affine, dtype=np.float64), shape, direction)
    return {k: world_to_voxel(lps_to_ras(v), grid) for k, v in points_lps.items()}


def verse_landmarks(ctd_path: str | os.PathLike, image_path: str | os.PathLike) -> np.ndarray:
    """``(26, 3)`` LPS mm landmarks (row k = VerSe label k + 1, NaN absent) of one subject.

    Args:
        ctd_path: the ``*_ctd.json``.
        image_path: the CT or vertebra mask (NIfTI) whose grid the centroids refer to.
    """
    import nibabel as nib

    direction, ctd = read_centroid_json(ctd_path)
    img = nib.load(str(image_path))
    world = centroids_to_world(ctd, direction, img.affine, img.shape)
    out = np.full((NUM_LANDMARKS, 3), np.nan)
    for k, v in world.items():
        if 1 <= k <= NUM_LANDMARKS:
            out[k - 1] = v
    return out


def convert_verse(root: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Convert a VerSe folder (any depth: ``*_ct.nii.gz`` or ``*_msk.nii.gz`` + ``*_ctd.json``) to a datalist.

    The subject id is the file name up to the first ``_``; the CT is the datalist image when
    present, else the mask (the centroids are mapped through its affine either way). VerSe's
    ``rawdata``/``derivatives`` split folders become the splits when named ``training``,
    ``validation``, ``test`` in the path; otherwise everything is ``training``.
    """
    root = Path(root)
    ctds = sorted(root.rglob("*_ctd.json"))
    if not ctds:
        raise FileNotFoundError(f"{root}: no *_ctd.json centroid files.")
    items: dict[str, dict] = {}
    splits: dict[str, list[str]] = {}
    for ctd in ctds:
        sid = ctd.name.split("_")[0]
        if sid in items:
            raise ValueError(f"{ctd}: duplicate subject id '{sid}' (also {items[sid]['ctd']}).")
        cands = sorted(root.rglob(f"{sid}_*ct.nii*")) + sorted(root.rglob(f"{sid}_*msk.nii*"))
        if not cands:
            raise FileNotFoundError(f"{ctd}: no CT or mask {sid}_*ct.nii.gz / {sid}_*msk.nii.gz under {root}.")
        image = cands[0]
        items[sid] = {"image": str(image), "points": verse_landmarks(ctd, image), "ctd": str(ctd)}
        split = next((s for s in ("validation", "test") if s in ctd.parts), "training")
        splits.setdefault(split, []).append(sid)
    for it in items.values():
        it.pop("ctd")
    header = {
        "name": "verse",
        "description": "VerSe vertebra centroids, LPS mm, row k = VerSe label k+1 (C1..L6, S1)",
        "spatial_dims": 3,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_names": [VERSE_LABEL_NAMES[k] for k in range(1, NUM_LANDMARKS + 1)],
    }
    return write_landmark_datalist(output_dir, header, items, {"datalist.json": splits}, "LPS", overwrite=overwrite)
