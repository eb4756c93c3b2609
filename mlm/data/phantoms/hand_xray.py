"""Hand X-ray phantom: 2D radiograph-like images with Payer's 37 hand landmarks (Digital Hand Atlas layout).

Each image draws one configuration from the point distribution model fitted to the 910 real annotations
(``hand_xray_shape_model.json``: similarity-aligned, mm with a 50 mm mean wrist width), applies a random
rotation (+-10 deg), scale (0.9-1.1) and shift, and draws a soft-tissue hand (palm polygon plus finger tubes)
with bones as tubes between consecutive joints of each digit (metacarpal base -> MCP -> PIP -> DIP -> tip),
a small joint gap at each landmark, carpal bones as blobs at the wrist points, and radius and ulna shafts.

Layout (Payer's ``hand_xray_dataset``)::

    out/images/<id>.mha       8-bit, stored W x H x 1 with spacing (p, p, 1) mm like the real files
    out/setup/all.csv         id,x1,y1,...,x37,y37 in px
    out/setup/cv/set1..3/train.txt, test.txt    3-fold cross-validation
    out/landmarks/<id>.json   "voxel" (x, y) px
    out/datalist.json
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolygonPath
from scipy.ndimage import gaussian_filter

from mlm.data.datalist import atomic_write_text, write_datalist
from mlm.data.hand_xray import write_all_csv
from mlm.data.phantoms.common import (
    HAND_XRAY_LANDMARKS,
    SPLITS,
    prepare_output_dir,
    progress,
    relative,
    split_sizes,
    write_mha,
)
from mlm.data.phantoms.drawing import paint_capsule
from mlm.data.phantoms.shape_model import PointDistributionModel, load_shape_model
from transforms.io.landmark_files import write_landmark_file

__all__ = ["HandXRayPhantom", "generate_hand_xray", "write_hand_xray_dataset", "HAND_XRAY_DIGITS"]

#: landmark chains per digit, proximal to distal (metacarpal base first).
HAND_XRAY_DIGITS: dict[str, tuple[int, ...]] = {
    "thumb": (17, 18, 19, 20),
    "index": (16, 21, 22, 23, 24),
    "middle": (15, 25, 26, 27, 28),
    "ring": (14, 29, 30, 31, 32),
    "little": (13, 33, 34, 35, 36),
}


@dataclass
class HandXRayPhantom:
    """One generated hand radiograph.

    Attributes:
        image: ``(W, H)`` uint8, indexed ``[x, y]``.
        pixel_size: mm per pixel.
        landmarks: ``(37, 2)`` px ``(x, y)``.
        hand_mask: ``(W, H)`` bool soft-tissue mask.
        bone_mask: ``(W, H)`` bool bone mask.
    """

    image: np.ndarray
    pixel_size: float
    landmarks: np.ndarray
    hand_mask: np.ndarray
    bone_mask: np.ndarray


def _transform(
    points: np.ndarray, rng: np.random.Generator, max_rot_deg: float, scale: tuple[float, float]
) -> np.ndarray:
    a = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - points.mean(0)) @ rot.T * rng.uniform(*scale)


def generate_hand_xray(
    rng: np.random.Generator,
    pixel_size: float = 1.0,
    image_size_mm: tuple[float, float] = (240.0, 300.0),
    shape_model: PointDistributionModel | None = None,
) -> HandXRayPhantom:
    """Generate one hand radiograph phantom of ``image_size_mm / pixel_size`` pixels (default 240 x 300)."""
    model = shape_model if shape_model is not None else load_shape_model("hand_xray")
    if model.mean.shape != (37, 2):
        raise ValueError(f"hand X-ray shape model must be (37, 2), got {model.mean.shape}")
    mm = 1.0 / pixel_size
    w, h = (int(round(s * mm)) for s in image_size_mm)
    pts_mm = _transform(model.sample(rng, clip=2.5), rng, 10.0, (0.9, 1.1))
    margin = 12.0  # mm between the outermost landmark and the border
    room = (np.array(image_size_mm) - 2 * margin) / np.ptp(pts_mm, axis=0)
    pts_mm *= min(1.0, float(room.min()))  # shrink hands that would not fit
    slack = np.maximum(np.array(image_size_mm) - 2 * margin - np.ptp(pts_mm, axis=0), 0.0)
    pts_mm += margin - pts_mm.min(0) + rng.uniform(0.0, 1.0, 2) * slack
    px = pts_mm * mm
    soft = np.zeros((w, h), dtype=bool)
    bone = np.zeros((w, h), dtype=bool)
    # soft tissue: palm polygon (wrist points and metacarpophalangeal joints) + finger tubes + forearm
    palm_idx = [0, 13, 33, 29, 25, 21, 18, 17, 12, 4]
    palm = px[palm_idx]
    gx, gy = np.meshgrid(np.arange(w), np.arange(h), indexing="ij")
    soft |= PolygonPath(palm).contains_points(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(w, h)
    wrist_dir = px[[0, 4]].mean(0) - px[[15, 25]].mean(0)
    wrist_dir /= np.linalg.norm(wrist_dir)
    for idx in range(13):
        paint_capsule(soft, px[idx], px[idx], 9.0 * mm, True)
    paint_capsule(soft, px[[0, 4]].mean(0), px[[0, 4]].mean(0) + wrist_dir * 200 * mm, 32.0 * mm, True)
    for chain in HAND_XRAY_DIGITS.values():
        for a, b in zip(chain[:-1], chain[1:]):
            paint_capsule(soft, px[a], px[b], 8.5 * mm, True)
    # bones: tubes between consecutive joints with a small gap at each joint
    gap = max(0.6 * mm, 0.5)
    for chain in HAND_XRAY_DIGITS.values():
        for j, (a, b) in enumerate(zip(chain[:-1], chain[1:])):
            d = px[b] - px[a]
            length = np.linalg.norm(d)
            u = d / max(length, 1e-6)
            r = (4.0 if j == 0 else 3.4 if j == 1 else 2.8) * mm
            end = px[b] - u * gap if j < len(chain) - 2 else px[b] - u * 0.5  # the tip is bone
            paint_capsule(bone, px[a] + u * gap, end, min(r, 0.3 * length), True)
    for idx in range(13):  # carpal bones, radius and ulna heads
        paint_capsule(bone, px[idx], px[idx], 4.5 * mm, True)
    for idx in (0, 4):
        paint_capsule(bone, px[idx] + wrist_dir * 8 * mm, px[idx] + wrist_dir * 200 * mm, 8.0 * mm, True)
    img = np.full((w, h), rng.uniform(10, 30), dtype=np.float32)
    img[soft] = rng.uniform(70, 95)
    img[bone] = rng.uniform(170, 210)
    img = gaussian_filter(img, 0.8)
    img += rng.normal(0, rng.uniform(3, 8), img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return HandXRayPhantom(image, float(pixel_size), px, soft, bone)


def write_hand_xray_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 60,
    seed: int = 0,
    pixel_size: float = 1.0,
    num_validation: int | None = None,
    num_test: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Generate a hand X-ray phantom dataset in Payer's layout plus a generic datalist and 3-fold CV lists.

    Ids are ``h0000``, ``h0001``, ...; image ``i`` depends only on ``(seed, i)``.

    Returns:
        the path of ``datalist.json``.
    """
    root = prepare_output_dir(out_dir, overwrite)
    sizes = split_sizes(num_images, num_validation, num_test)
    split_of = [s for s in SPLITS for _ in range(sizes[s])]
    model = load_shape_model("hand_xray")
    datalist = {
        "name": "hand_xray_phantom",
        "description": f"hand X-ray phantom (mlm.data.phantoms.hand_xray), seed {seed}, {pixel_size} mm/px",
        "spatial_dims": 2,
        "num_landmarks": 37,
        "landmark_names": list(HAND_XRAY_LANDMARKS),
        **{s: [] for s in SPLITS},
    }
    rows: dict[str, np.ndarray] = {}
    for i in progress(range(num_images), total=num_images, desc="hand_xray", enable=show_progress):
        hid = f"h{i:04d}"
        ph = generate_hand_xray(np.random.default_rng([seed, i]), pixel_size=pixel_size, shape_model=model)
        img_path = root / "images" / f"{hid}.mha"
        write_mha(img_path, ph.image[:, :, None], (pixel_size, pixel_size, 1.0))
        lm_path = root / "landmarks" / f"{hid}.json"
        write_landmark_file(lm_path, ph.landmarks, "voxel", names=list(HAND_XRAY_LANDMARKS))
        rows[hid] = ph.landmarks
        datalist[split_of[i]].append(
            {"id": hid, "image": relative(img_path, root), "landmarks": relative(lm_path, root)}
        )
    write_all_csv(root / "setup" / "all.csv", rows)
    ids = list(rows)
    for f in range(3):
        test = ids[f::3]
        train = [t for t in ids if t not in test]
        atomic_write_text(root / "setup" / "cv" / f"set{f + 1}" / "train.txt", "".join(f"{t}\n" for t in train))
        atomic_write_text(root / "setup" / "cv" / f"set{f + 1}" / "test.txt", "".join(f"{t}\n" for t in test))
    return write_datalist(root / "datalist.json", datalist, overwrite=True)
