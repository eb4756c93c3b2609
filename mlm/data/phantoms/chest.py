"""Chest X-ray phantom: 2D 8-bit posterior-anterior radiographs with 6 lung-field landmarks, GU2Net's layout.

GU2Net (Zhu et al., MICCAI 2021) uses 6 points per Shenzhen chest radiograph, but neither its code
(``model/datasets/chest.py``) nor its label files name them, and its labels could not be read here. The names
below are therefore the phantom's own: three corners of each lung field, which are the extremes of the dark
lung region and so sit on strong intensity edges. In a PA view the patient faces the viewer, so the patient's
right lung is on the image's left (small ``x``):

==  ============================  ===========================================================================
0   ``right_lung_apex``           top of the right lung field (image left): the highest point of its dome
1   ``right_lung_costophrenic``   lateral costophrenic angle: the lowest, lateral corner (wall meets diaphragm)
2   ``right_lung_cardiophrenic``  cardiophrenic angle: the lower medial corner (heart border meets diaphragm)
3   ``left_lung_apex``            the same three points of the left lung field (image right)
4   ``left_lung_costophrenic``
5   ``left_lung_cardiophrenic``
==  ============================  ===========================================================================

A model trained on the phantom learns these points; the 6 points of real GU2Net labels may differ in meaning
and order. Each image draws a mean configuration (ratios of the image size) with random lung height, heart
width, hemidiaphragm asymmetry, per-point jitter and a small similarity transform, then draws through the
points: air outside a soft-tissue thorax with shoulders, the two lung fields (an apical dome, a lateral wall
down to the costophrenic angle, a diaphragm dome to the cardiophrenic angle and a medial border along the
heart and mediastinum), a brighter spine band and heart in the mediastinum, clavicles and faint posterior ribs
over the lungs, lung texture, blur and noise.

Layout (GU2Net's ``data/chest``) plus the project's datalist, written by :func:`write_chest_phantom`::

    root/pngs/CHNCXR_0001_0.png      8-bit grey, W x H (ids mimic Shenzhen's normal cases, ``_0``)
    root/labels/CHNCXR_0001_0.txt    "6", then 6 lines "x y": ratios of W and H (px = ratio * size)
    root/landmarks/CHNCXR_0001_0.json   "voxel" (x, y) px, from :func:`mlm.data.chest.convert_chest`
    root/datalist.json               training / validation / test in id order (2/3, 1/6, 1/6 by default)

The splits follow GU2Net's scheme (first ids training, next validation, rest test), with the sizes of the
other phantoms (:func:`mlm.data.phantoms.common.split_sizes`). Images carry no spacing: errors are in px.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolygonPath
from scipy.ndimage import gaussian_filter

from mlm.data.chest import convert_chest, write_chest_txt
from mlm.data.datalist import read_datalist_json, write_datalist
from mlm.data.phantoms.common import prepare_output_dir, progress, split_sizes
from mlm.data.phantoms.drawing import paint_capsule, paint_polyline
from transforms.io.atomic import atomic_write

__all__ = [
    "CHEST_LANDMARKS",
    "CHEST_MEAN_RATIOS",
    "ChestXRayPhantom",
    "generate_chest_xray",
    "write_chest_phantom",
    "chest_phantom_id",
]

#: the phantom's 6 landmark names (GU2Net names none); patient's right lung = image left in a PA view.
CHEST_LANDMARKS: tuple[str, ...] = (
    "right_lung_apex",
    "right_lung_costophrenic",
    "right_lung_cardiophrenic",
    "left_lung_apex",
    "left_lung_costophrenic",
    "left_lung_cardiophrenic",
)

#: ``(6, 2)`` mean configuration, ratios ``(x, y)`` of the image width and height.
CHEST_MEAN_RATIOS = np.array(
    [[0.31, 0.13], [0.13, 0.80], [0.43, 0.72], [0.69, 0.13], [0.87, 0.82], [0.62, 0.76]], dtype=np.float64
)

_MARGIN = 0.05  # ratio of the image size kept free around every landmark


@dataclass
class ChestXRayPhantom:
    """One generated PA chest radiograph.

    Attributes:
        image: ``(W, H)`` uint8, indexed ``[x, y]`` like MONAI's PIL reader gives a 2D image.
        landmarks: ``(6, 2)`` px ``(x, y)`` (voxel coordinates of ``image``), order :data:`CHEST_LANDMARKS`.
        lung_mask: ``(W, H)`` bool, the two lung fields (the landmarks lie on its boundary).
        body_mask: ``(W, H)`` bool, the thorax (soft tissue and lungs).
    """

    image: np.ndarray
    landmarks: np.ndarray
    lung_mask: np.ndarray
    body_mask: np.ndarray

    @property
    def ratios(self) -> np.ndarray:
        """``(6, 2)`` landmarks as GU2Net ratios ``(x / W, y / H)``."""
        return self.landmarks / np.asarray(self.image.shape, dtype=np.float64)


def chest_phantom_id(index: int) -> str:
    """Id of image ``index`` (0-based): ``CHNCXR_0001_0`` for 0, like a normal Shenzhen case."""
    return f"CHNCXR_{index + 1:04d}_0"


def _sample_ratios(rng: np.random.Generator) -> np.ndarray:
    """``(6, 2)`` landmark ratios: mean shape + anatomical variation + jitter + small similarity transform."""
    r = CHEST_MEAN_RATIOS.copy()
    r[[0, 3], 1] += rng.normal(0.0, 0.015)  # apex height
    r[[1, 2, 4, 5], 1] += rng.normal(0.0, 0.02)  # diaphragm height (lung length)
    r[[4, 5], 1] += abs(rng.normal(0.01, 0.01))  # the left hemidiaphragm sits lower
    heart = rng.normal(0.0, 0.015)  # heart width
    r[2, 0] -= heart
    r[5, 0] += heart
    width = rng.normal(0.0, 0.015)  # thorax width
    r[[1, 4], 0] += np.array([-width, width])
    r += rng.normal(0.0, 0.006, r.shape)
    a = np.deg2rad(rng.uniform(-3.0, 3.0))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = np.array([0.5, 0.47])
    r = (r - centre) @ rot.T * rng.uniform(0.92, 1.04) + centre + rng.uniform(-0.025, 0.025, 2)
    return np.clip(r, _MARGIN, 1.0 - _MARGIN)


def _cubic(p0: np.ndarray, c1: np.ndarray, c2: np.ndarray, p1: np.ndarray, n: int = 40) -> np.ndarray:
    """``(n, 2)`` points of the cubic Bezier ``p0 -> p1`` with controls ``c1``, ``c2`` (both ends included)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * p1


def _lung_outline(
    apex: np.ndarray,
    costo: np.ndarray,
    cardio: np.ndarray,
    side: int,
    size: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Closed outline ``(P, 2)`` px of one lung field through its 3 landmarks (vertices of the outline).

    ``side`` is the lateral direction in ``x``: -1 for the image-left (patient's right) lung, +1 for the other.
    """
    w, h = size
    m = -side  # medial direction
    rx, ry = rng.uniform(0.06, 0.08) * w, rng.uniform(0.05, 0.07) * h
    q = apex + np.array([0.0, ry])  # apical dome: half ellipse whose top is the apex
    th = np.linspace(0.0, np.pi, 41)
    dome = np.stack([q[0] + m * rx * np.cos(th), q[1] - ry * np.sin(th)], 1)  # medial end -> apex -> lateral end
    lat0, med0 = dome[-1], dome[0]
    # lateral wall: widens quickly below the dome (ribs), arrives steeply at the costophrenic angle
    dy = costo[1] - lat0[1]
    dx_wall = costo[0] - lat0[0]
    c2 = np.array([costo[0] + m * 0.015 * w, lat0[1] + 0.5 * dy])
    wall = _cubic(lat0, lat0 + np.array([0.6 * dx_wall, 0.12 * dy]), c2, costo)
    # diaphragm: leaves the costophrenic angle upwards-medially, dome, comes down into the cardiophrenic angle
    dome_h = rng.uniform(0.05, 0.08) * h
    dx = abs(cardio[0] - costo[0])
    top = min(costo[1], cardio[1]) - dome_h
    diaph = _cubic(
        costo, np.array([costo[0] + m * 0.55 * dx, top]), np.array([cardio[0] + side * 0.35 * dx, top]), cardio
    )
    # medial border: heart border (convex towards the lung) then the mediastinum up to the dome
    dm = cardio[1] - med0[1]
    if side < 0:  # right heart border: up and slightly lateral, then medial to the superior vena cava
        c1 = cardio + np.array([side * rng.uniform(0.02, 0.04) * w, -0.3 * dm])
        c2 = med0 + np.array([0.0, 0.35 * dm])
    else:  # left heart border: up and medial from the heart's apex, aortic knob bulging laterally
        c1 = cardio + np.array([m * rng.uniform(0.0, 0.02) * w, -0.35 * dm])
        c2 = med0 + np.array([side * rng.uniform(0.02, 0.04) * w, 0.45 * dm])
    medial = _cubic(cardio, c1, c2, med0)
    return np.concatenate([dome, wall[1:], diaph[1:], medial[1:-1]])


def _fill(outline: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Bool mask ``(W, H)`` of the pixel centres inside the closed polygon ``outline (P, 2)`` px."""
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    return PolygonPath(outline).contains_points(pts).reshape(gx.shape)


def generate_chest_xray(rng: np.random.Generator, size: tuple[int, int] = (256, 256)) -> ChestXRayPhantom:
    """Generate one PA chest radiograph phantom of ``size = (W, H)`` pixels (at least 64 x 64)."""
    w, h = (int(s) for s in size)
    if w < 64 or h < 64:
        raise ValueError(f"chest phantom size must be at least 64 x 64 px, got {w} x {h}")
    sz = np.array([w, h], dtype=np.float64)
    unit = min(w, h) / 256.0  # thickness scale
    px = _sample_ratios(rng) * sz
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64), indexing="ij")

    right = _lung_outline(px[0], px[1], px[2], -1, sz, rng)
    left = _lung_outline(px[3], px[4], px[5], +1, sz, rng)
    lung_r, lung_l = _fill(right, gx, gy), _fill(left, gx, gy)
    lung = lung_r | lung_l
    mid_x = 0.5 * (px[2, 0] + px[5, 0])

    # thorax: neck, sloping shoulders, chest walls outside the costophrenic angles
    wall = rng.uniform(0.05, 0.08) * w
    neck = rng.uniform(0.08, 0.11) * w
    top_y = min(px[0, 1], px[3, 1])
    body_outline = np.array(
        [
            [mid_x - neck, -2.0],
            [mid_x - neck, top_y - 0.1 * h],
            [px[1, 0] - wall, top_y - 0.03 * h],
            [px[1, 0] - 1.15 * wall, h + 2.0],
            [px[4, 0] + 1.15 * wall, h + 2.0],
            [px[4, 0] + wall, top_y - 0.03 * h],
            [mid_x + neck, top_y - 0.1 * h],
            [mid_x + neck, -2.0],
        ]
    )
    body = _fill(body_outline, gx, gy) | lung

    tissue = rng.uniform(125.0, 150.0)
    img = np.full((w, h), rng.uniform(10.0, 25.0), dtype=np.float64)
    img[body] = tissue
    # mediastinum: spine band and heart, only outside the lungs
    spine = np.abs(gx - mid_x) < rng.uniform(0.035, 0.05) * w
    img[body & spine & ~lung] += rng.uniform(25.0, 40.0)
    hc = np.array([mid_x + 0.03 * w, 0.5 * (px[2, 1] + px[5, 1]) - 0.1 * h])
    heart = ((gx - hc[0]) / (0.17 * w)) ** 2 + ((gy - hc[1]) / (0.12 * h)) ** 2 <= 1.0
    img[heart & ~lung & body] += rng.uniform(15.0, 30.0)
    # lungs: dark fields, brighter towards the apices, low-frequency texture (vessels)
    apex_y = np.where(gx < mid_x, px[0, 1], px[3, 1])
    base_y = np.where(gx < mid_x, px[1, 1], px[4, 1])
    depth = np.clip((gy - apex_y) / np.maximum(base_y - apex_y, 1.0), 0.0, 1.0)
    texture = gaussian_filter(rng.standard_normal((w, h)), 2.0 * unit)
    texture *= rng.uniform(5.0, 9.0) / max(float(texture.std()), 1e-6)
    lung_val = rng.uniform(45.0, 70.0)
    img[lung] = (lung_val + 18.0 * (1.0 - depth) + texture)[lung]
    # bones added on top (they overlap the lungs): faint posterior ribs, then the clavicles
    bone = np.zeros((w, h), dtype=np.float64)
    rib_val = rng.uniform(10.0, 16.0)
    for s, apex, costo in ((-1, px[0], px[1]), (+1, px[3], px[4])):
        for k in range(7):
            y0 = apex[1] + (0.08 + 0.12 * k) * (costo[1] - apex[1])
            t = np.linspace(0.0, 1.0, 12)
            xs = mid_x + s * (0.05 * w + t * (abs(costo[0] - mid_x) + 0.02 * w - 0.05 * w))
            ys = y0 - 0.03 * h * np.sin(np.pi * t * 0.8) + 0.05 * h * t
            paint_polyline(bone, np.stack([xs, ys], 1), 1.6 * unit, rib_val)
    clav_val = rng.uniform(35.0, 55.0)
    for s, apex in ((-1, px[0]), (+1, px[3])):
        p0 = np.array([mid_x + s * 0.05 * w, apex[1] + rng.uniform(0.06, 0.08) * h])
        p1 = np.array([apex[0] + s * 0.17 * w, apex[1] + rng.uniform(0.02, 0.035) * h])
        paint_capsule(bone, p0, p1, 3.0 * unit, clav_val)
    img += bone * body
    img = gaussian_filter(img, 0.9 * unit)
    img += rng.normal(0.0, rng.uniform(2.0, 5.0), img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return ChestXRayPhantom(image, px, lung, body)


def write_chest_phantom(
    root: str | os.PathLike,
    num_images: int = 60,
    seed: int = 0,
    size: tuple[int, int] = (256, 256),
    num_validation: int | None = None,
    num_test: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Write a chest X-ray phantom in GU2Net's layout (``pngs/``, ``labels/``) plus the project's datalist.

    Image ``i`` (id :func:`chest_phantom_id`) depends only on ``(seed, i)``. The datalist comes from
    :func:`mlm.data.chest.convert_chest` with ``split=(n_training, n_validation)`` from
    :func:`~mlm.data.phantoms.common.split_sizes` and the names :data:`CHEST_LANDMARKS`, so ``root`` works as a
    bundle's ``dataset_dir`` and as GU2Net's ``data/chest``.

    Args:
        root: output folder (created; must be empty unless ``overwrite``).
        num_images: number of images.
        seed: random seed.
        size: ``(W, H)`` px of every image.
        num_validation: validation images (default ``num_images / 6``).
        num_test: test images (default ``num_images / 6``).
        overwrite: write into a non-empty folder, replacing files of the same names.
        show_progress: show a progress bar (tqdm) when available.

    Returns:
        the path of ``datalist.json``.
    """
    from PIL import Image

    root = prepare_output_dir(root, overwrite)
    sizes = split_sizes(num_images, num_validation, num_test)
    ids = [chest_phantom_id(i) for i in range(num_images)]
    stale = sorted(p.name for p in (root / "labels").glob("*.txt") if p.stem not in set(ids))
    if stale:  # convert_chest lists every label file: old ones would enter the datalist
        raise FileExistsError(
            f"{root / 'labels'}: holds {len(stale)} label file(s) this run does not write ({', '.join(stale[:3])}"
            f"{', ...' if len(stale) > 3 else ''}); use an empty folder"
        )
    for i in progress(range(num_images), total=num_images, desc="chest", enable=show_progress):
        cid = ids[i]
        ph = generate_chest_xray(np.random.default_rng([seed, i]), size=size)
        png = Image.fromarray(np.ascontiguousarray(ph.image.T))  # (H, W) uint8: 8-bit grey
        atomic_write(root / "pngs" / f"{cid}.png", lambda tmp, png=png: png.save(tmp, format="PNG"))
        write_chest_txt(root / "labels" / f"{cid}.txt", ph.ratios)
    split = (sizes["training"], sizes["validation"])
    (path,) = convert_chest(root, root, overwrite=True, split=split, landmark_names=CHEST_LANDMARKS)
    datalist = read_datalist_json(path)
    datalist["name"] = "chest_phantom"
    datalist["description"] = f"chest X-ray phantom (mlm.data.phantoms.chest), seed {seed}, {size[0]} x {size[1]} px"
    return write_datalist(path, datalist, overwrite=True)
