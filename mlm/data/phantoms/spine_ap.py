"""Spine AP X-ray phantom in the AASCE 2019 layout: small grey JPEGs with 17 vertebra-like blocks and their 68 corners.

Each image draws a laterally curved centre line (a sine of random amplitude and frequency: straight, C- or S-shaped)
from about 10% to 85% of the image height, and along it 17 bright rectangles T1..L5, each turned to the line's local
direction plus a small random tilt, taller and wider towards L5, separated by darker disc gaps, on a grey background
with a brighter soft-tissue band, blurred and noisy. The rectangles' corners are the 68 landmarks in the AASCE order
(:mod:`mlm.data.aasce`: per vertebra top-left, top-right, bottom-left, bottom-right). Image ``i`` depends only on
``(seed, i)``; sizes vary by +-10% around ``width`` x ``height``.

Layout (the challenge's ``boostnet_labeldata``) plus the project's datalist::

    out/data/{training,test}/s<i>.jpg
    out/labels/{training,test}/landmarks.csv   x1..x68, y1..y68 as ratios of the image width and height
    out/labels/{training,test}/filenames.csv   the image names in row order
    out/labels/{training,test}/angles.csv      the Cobb angles of the corners (mlm.spine_metrics.cobb_angles)
    out/landmarks/<id>.json, out/datalist.json (mlm.data.aasce.convert_aasce: px, splits training and test)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from mlm.data.aasce import NUM_VERTEBRAE, convert_aasce, write_angles_csv, write_filenames_csv, write_landmarks_csv
from mlm.data.phantoms.common import prepare_output_dir, progress
from mlm.data.phantoms.drawing import local_coordinates
from mlm.spine_metrics import cobb_angles
from transforms.io.atomic import atomic_write

__all__ = ["SpineAPPhantom", "generate_spine_ap", "write_spine_ap_dataset"]


@dataclass
class SpineAPPhantom:
    """One generated spine AP radiograph.

    Attributes:
        image: ``(W, H)`` uint8, indexed ``[x, y]``.
        landmarks: ``(68, 2)`` px ``(x, y)``, 4 corners per vertebra T1..L5 (AASCE order).
    """

    image: np.ndarray
    landmarks: np.ndarray


def _vertebra_corners(center: np.ndarray, down: np.ndarray, height: float, width: float) -> np.ndarray:
    """``(4, 2)`` corners top-left, top-right, bottom-left, bottom-right of a rectangle whose axis ``down`` points
    to larger y (image down) and whose ``right`` = ``down`` turned to larger x."""
    right = np.array([down[1], -down[0]])
    h, w = height / 2, width / 2
    return np.stack([center - h * down - w * right, center - h * down + w * right, center + h * down - w * right,
                     center + h * down + w * right])  # fmt: skip


def generate_spine_ap(rng: np.random.Generator, width: int = 128, height: int = 320) -> SpineAPPhantom:
    """Generate one spine AP phantom of about ``width`` x ``height`` px (each +-10%, drawn from ``rng``)."""
    w = int(round(width * rng.uniform(0.9, 1.1)))
    h = int(round(height * rng.uniform(0.9, 1.1)))
    top, bottom = rng.uniform(0.07, 0.12) * h, rng.uniform(0.82, 0.88) * h
    sizes = np.linspace(1.0, 1.6, NUM_VERTEBRAE) * rng.uniform(0.95, 1.05, NUM_VERTEBRAE)  # relative heights
    discs = 0.3 * (sizes[:-1] + sizes[1:]) / 2
    unit = (bottom - top) / (sizes.sum() + discs.sum())  # px per relative height
    amplitude = rng.uniform(0.0, 0.1) * w
    cycles, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    x0 = w / 2 + rng.uniform(-0.05, 0.05) * w

    def line_x(y: float) -> float:
        return x0 + amplitude * np.sin(2 * np.pi * cycles * (y - top) / (bottom - top) + phase)

    widths = 0.12 * w * np.linspace(1.0, 1.5, NUM_VERTEBRAE)
    corners, y = [], top
    for k in range(NUM_VERTEBRAE):
        hk = sizes[k] * unit
        yc = y + hk / 2
        slope = (line_x(yc + 1.0) - line_x(yc - 1.0)) / 2.0  # dx/dy of the centre line
        angle = np.arctan(slope) + np.deg2rad(rng.uniform(-3.0, 3.0))
        down = np.array([np.sin(angle), np.cos(angle)])
        corners.append(_vertebra_corners(np.array([line_x(yc), yc]), down, hk, widths[k]))
        y += hk + (discs[k] * unit if k < NUM_VERTEBRAE - 1 else 0.0)
    landmarks = np.concatenate(corners)

    img = np.full((w, h), rng.uniform(30, 60), dtype=np.float64)
    img[np.abs(np.arange(w) - x0) <= 0.3 * w] += rng.uniform(30, 50)  # the body's soft tissue
    bone = rng.uniform(170, 210)
    for quad in corners:
        center = quad.mean(0)
        down = (quad[2] + quad[3] - quad[0] - quad[1]) / 2
        right = (quad[1] + quad[3] - quad[0] - quad[2]) / 2
        hk, wk = np.linalg.norm(down), np.linalg.norm(right)
        local = local_coordinates((w, h), center, np.stack([down / hk, right / wk]), (hk + wk) / 2 + 1)
        if local is not None:
            sl, (a, b) = local
            inside = (np.abs(a) <= hk / 2) & (np.abs(b) <= wk / 2)
            img[sl] = np.where(inside, bone + rng.uniform(-10, 10), img[sl])
    img = gaussian_filter(img, 0.7) + rng.normal(0, rng.uniform(2, 5), img.shape)
    return SpineAPPhantom(np.clip(np.rint(img), 0, 255).astype(np.uint8), landmarks)


def _write_jpeg(path: Path, image: np.ndarray) -> Path:
    """Write a ``(W, H)`` uint8 array as a grey JPEG (quality 95), atomically."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image.T), mode="L")
    return atomic_write(path, lambda tmp: pil.save(tmp, format="JPEG", quality=95))


def write_spine_ap_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 20,
    seed: int = 0,
    num_test: int | None = None,
    width: int = 128,
    height: int = 320,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Generate a spine AP phantom in the AASCE layout and convert it to a datalist in the same folder.

    Args:
        out_dir: the dataset root (created; a non-empty folder needs ``overwrite``).
        num_images: images in all; ids ``s0000``, ``s0001``, ...; image ``i`` depends only on ``(seed, i)``.
        seed: random seed.
        num_test: images of the ``test`` split (the last ones; default a fifth, at least one), the others ``training``.
        width, height: the mean image size, px.
        overwrite: write into a non-empty folder.
        show_progress: tqdm progress bar.

    Returns:
        the path of ``datalist.json``.
    """
    nt = max(1, round(num_images / 5)) if num_test is None else int(num_test)
    if num_images < 2 or not 0 < nt < num_images:
        raise ValueError(f"{num_images} images with {nt} for test leave no training or no test image.")
    root = prepare_output_dir(out_dir, overwrite)
    split_of = ["training"] * (num_images - nt) + ["test"] * nt
    tables: dict[str, dict[str, list]] = {s: {"names": [], "ratios": [], "angles": []} for s in ("training", "test")}
    for i in progress(range(num_images), total=num_images, desc="spine_ap", enable=show_progress):
        ph = generate_spine_ap(np.random.default_rng([seed, i]), width, height)
        w, h = ph.image.shape
        name = f"s{i:04d}.jpg"
        _write_jpeg(root / "data" / split_of[i] / name, ph.image)
        table = tables[split_of[i]]
        table["names"].append(name)
        table["ratios"].append(ph.landmarks / np.array([w, h], dtype=np.float64))
        table["angles"].append(cobb_angles(ph.landmarks, h))
    for split, table in tables.items():
        labels = root / "labels" / split
        write_landmarks_csv(labels / "landmarks.csv", np.stack(table["ratios"]))
        write_filenames_csv(labels / "filenames.csv", table["names"])
        write_angles_csv(labels / "angles.csv", np.stack(table["angles"]))
    description = f"spine AP phantom (mlm.data.phantoms.spine_ap), seed {seed}, AASCE layout, voxel (x, y), px"
    return convert_aasce(root, root, overwrite=True, name="spine_ap_phantom", description=description)[0]
