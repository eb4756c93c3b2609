"""3D MR-like hand phantom with 28 landmarks (``common.HAND_MRI_LANDMARKS``).

The layout is built from the 2D hand X-ray shape model: 28 of its 37 points (radius and ulna styloids, six
carpal points, the thumb from CMC to tip, the four fingers from MCP to tip) are lifted to 3D with a random
finger flexion (each digit bends towards -y, the palmar side, by a few degrees per joint) inside a hand slab.
The volume is MR-like: background ~0, soft tissue ~300, bone marrow bright (~550) inside a dark cortex
(~80), Rician-like noise. Written as NIfTI (float32 intensities would be fine, int16 is used) with ITK
identity direction like the spine phantom, landmarks as JSON in LPS mm.

Layout::

    out/images/<id>.nii.gz, out/landmarks/<id>.json, out/datalist.json
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from mlm.data.datalist import write_datalist
from mlm.data.phantoms.common import (
    HAND_MRI_LANDMARKS,
    SPLITS,
    PhantomVolume,
    prepare_output_dir,
    progress,
    relative,
    split_sizes,
    write_nifti,
)
from mlm.data.phantoms.drawing import capsule_mask
from mlm.data.phantoms.hand_xray import HAND_XRAY_DIGITS, _transform
from mlm.data.phantoms.shape_model import PointDistributionModel, load_shape_model
from transforms.io.landmark_files import write_landmark_file

__all__ = ["HandMRIPhantom", "generate_hand_mri", "write_hand_mri_dataset", "HAND_MRI_FROM_XRAY"]

#: index into the 37 hand X-ray landmarks of each of the 28 MRI landmarks.
HAND_MRI_FROM_XRAY: tuple[int, ...] = (4, 0, 6, 7, 8, 9, 10, 11, 12, 18, 19, 20, *range(21, 37))


@dataclass
class HandMRIPhantom(PhantomVolume):
    """One generated MR-like hand volume.

    Attributes:
        image: ``(X, Y, Z)`` int16, ITK identity direction.
        spacing: ``(3,)`` mm.
        origin: ``(3,)`` LPS mm of voxel ``(0, 0, 0)``.
        landmarks: ``(28, 3)`` LPS mm.
        bone_mask: ``(X, Y, Z)`` bool.
    """

    bone_mask: np.ndarray


def generate_hand_mri(
    rng: np.random.Generator,
    spacing: float = 2.0,
    size_mm: tuple[float, float, float] = (240.0, 80.0, 320.0),
    shape_model: PointDistributionModel | None = None,
) -> HandMRIPhantom:
    """Generate one MR-like hand volume; the hand's plane is x-z (fingers towards +z), palm towards -y.

    Args:
        rng: numpy random Generator.
        spacing: isotropic voxel size, mm.
        size_mm: field of view (x, y, z), mm.
        shape_model: the 2D hand X-ray model (default: the shipped one).
    """
    model = shape_model if shape_model is not None else load_shape_model("hand_xray")
    p2 = _transform(model.sample(rng, clip=2.5), rng, 8.0, (0.9, 1.05))
    full = np.zeros((37, 3))  # all 37 X-ray points lifted to 3D; the 28 landmarks are a subset
    full[:, 0] = p2[:, 0]
    full[:, 2] = -p2[:, 1]  # image y grows towards the wrist: fingers point to +z (superior)
    for chain in HAND_XRAY_DIGITS.values():  # flexion: bend each digit towards the palm (-y), joint by joint
        angle = 0.0
        for j, (a, b) in enumerate(zip(chain[:-1], chain[1:])):
            angle += np.deg2rad(rng.uniform(3.0, 15.0))
            length = np.linalg.norm(full[b] - full[a])
            for later in chain[j + 1 :]:
                full[later, 1] -= length * np.sin(angle)
    full += rng.normal(0, 1.0, 3)
    pts = full[list(HAND_MRI_FROM_XRAY)]
    shape = tuple(int(round(s / spacing)) for s in size_mm)
    centre = (full.min(0) + full.max(0)) / 2 + np.array([0.0, 0.0, -10.0])  # leave room for the forearm
    origin = centre - (np.asarray(shape) - 1) * spacing / 2
    vox = (full - origin) / spacing
    mm = 1.0 / spacing
    soft = np.zeros(shape, dtype=bool)
    marrow = np.zeros(shape, dtype=bool)
    cortex = np.zeros(shape, dtype=bool)

    def tube(mask: np.ndarray, a: np.ndarray, b: np.ndarray, r: float) -> None:
        res = capsule_mask(mask.shape, a, b, r)
        if res is not None:
            mask[res[0]] |= res[1]

    wrist = vox[[0, 4]].mean(0)
    wrist_dir = wrist - vox[[15, 25]].mean(0)
    wrist_dir /= np.linalg.norm(wrist_dir)
    palm = [0, 4, 12, 13, 17, 18, 21, 25, 29, 33]
    for a in palm:  # palm slab: tubes between all pairs of palm points
        for b in palm:
            if a < b:
                tube(soft, vox[a], vox[b], 10.0 * mm)
    tube(soft, wrist, wrist + wrist_dir * 100 * mm, 28.0 * mm)
    gap = 0.8 * mm
    for chain in HAND_XRAY_DIGITS.values():
        for j, (a, b) in enumerate(zip(chain[:-1], chain[1:])):
            tube(soft, vox[a], vox[b], 9.0 * mm)
            r = (4.2, 3.6, 3.0, 2.6)[j] * mm
            u = (vox[b] - vox[a]) / max(np.linalg.norm(vox[b] - vox[a]), 1e-6)
            end = vox[b] - u * (gap if b != chain[-1] else 0.5)
            tube(cortex, vox[a] + u * gap, end, r)
            tube(marrow, vox[a] + u * gap, end, max(r - 1.2 * mm, 0.5))
    for k in range(13):  # radius and ulna heads, carpals
        tube(cortex, vox[k], vox[k], 4.5 * mm)
        tube(marrow, vox[k], vox[k], 3.0 * mm)
    for k in (0, 4):
        tube(cortex, vox[k] + wrist_dir * 6 * mm, vox[k] + wrist_dir * 100 * mm, 7.0 * mm)
        tube(marrow, vox[k] + wrist_dir * 6 * mm, vox[k] + wrist_dir * 100 * mm, 5.0 * mm)
    img = np.zeros(shape, dtype=np.float32)
    img[soft] = rng.uniform(260, 340)
    img[cortex] = rng.uniform(60, 100)
    img[marrow] = rng.uniform(500, 600)
    img = gaussian_filter(img, 0.6)
    sd = rng.uniform(10, 25)
    img = np.hypot(img + rng.normal(0, sd, shape), rng.normal(0, sd, shape))  # Rician magnitude noise
    image = np.clip(np.rint(img), 0, 32767).astype(np.int16)
    return HandMRIPhantom(image, np.full(3, float(spacing)), origin, pts, cortex | marrow)


def write_hand_mri_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 30,
    seed: int = 0,
    spacing: float = 2.0,
    num_validation: int | None = None,
    num_test: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Generate the MR-like hand dataset (NIfTI + LPS JSON landmarks + datalist); returns the datalist path."""
    root = prepare_output_dir(out_dir, overwrite)
    sizes = split_sizes(num_images, num_validation, num_test)
    split_of = [s for s in SPLITS for _ in range(sizes[s])]
    model = load_shape_model("hand_xray")
    datalist = {
        "name": "hand_mri_phantom",
        "description": f"MR-like hand phantom (mlm.data.phantoms.hand_mri), seed {seed}, spacing {spacing} mm",
        "spatial_dims": 3,
        "num_landmarks": 28,
        "landmark_names": list(HAND_MRI_LANDMARKS),
        **{s: [] for s in SPLITS},
    }
    for i in progress(range(num_images), total=num_images, desc="hand_mri", enable=show_progress):
        mid = f"m{i:03d}"
        ph = generate_hand_mri(np.random.default_rng([seed, i]), spacing=spacing, shape_model=model)
        img_path, lm_path = root / "images" / f"{mid}.nii.gz", root / "landmarks" / f"{mid}.json"
        write_nifti(img_path, ph.image, ph.spacing, ph.origin)
        write_landmark_file(lm_path, ph.landmarks, "LPS", names=list(HAND_MRI_LANDMARKS))
        datalist[split_of[i]].append(
            {"id": mid, "image": relative(img_path, root), "landmarks": relative(lm_path, root)}
        )
    return write_datalist(root / "datalist.json", datalist, overwrite=True)
