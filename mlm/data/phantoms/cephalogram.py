"""Cephalogram phantom: 2D 8-bit lateral skull radiographs with the 19 ISBI 2015 landmarks.

Each image draws one configuration from the point distribution model fitted to the 400 real ISBI 2015 senior
annotations (``ceph_shape_model.json``, mm in the challenge's 193.5 x 240 mm field of view) and draws, through
the landmarks: the cranial vault, the sella turcica (a cup around sella), frontal and nasal bones meeting at
nasion, the orbit (lowest point = orbitale), the ear canal (top = porion), the palate (PNS to ANS), the maxilla
down to the upper incisor, the mandible from articulare over gonion, menton, gnathion and pogonion to the lower
incisor, incisors and molars, and the soft-tissue profile through subnasale, the lips and soft-tissue pogonion.
Several landmarks sit on similar-looking bone corners (nasion, ANS, gonion, menton, incisal tips), so local
appearance alone is ambiguous.

The "senior" annotation is the generated truth; the "junior" one adds an inter-observer error drawn from the
real senior-junior differences (per-landmark mean and standard deviation, mm). Layout (ISBI 2015)::

    out/RawImage/TrainingData|Test1Data|Test2Data/NNN.bmp     8-bit grey, pixel size ``pixel_size`` mm
    out/AnnotationsByMD/400_senior|400_junior/NNN.txt        19 lines "x,y" in px
    out/landmarks/NNN.json                                   senior points, "voxel" (x, y) px
    out/datalist.json                                        items carry "spacing": [p, p]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolygonPath
from scipy.ndimage import gaussian_filter

from mlm.data.datalist import write_datalist
from mlm.data.isbi2015 import write_annotation_txt
from mlm.data.phantoms.common import (
    ISBI2015_LANDMARKS,
    SPLITS,
    prepare_output_dir,
    progress,
    relative,
    split_sizes,
)
from mlm.data.phantoms.drawing import paint_capsule, paint_polyline
from mlm.data.phantoms.shape_model import PointDistributionModel, load_shape_model
from transforms.io.atomic import atomic_write
from transforms.io.landmark_files import write_landmark_file

__all__ = ["CephalogramPhantom", "generate_cephalogram", "write_cephalogram_dataset", "FIELD_OF_VIEW_MM"]

#: the challenge's field of view (width, height) in mm: 1935 x 2400 px at 0.1 mm.
FIELD_OF_VIEW_MM = (193.5, 240.0)
_SPLIT_FOLDERS = {"training": "TrainingData", "validation": "Test1Data", "test": "Test2Data"}


@dataclass
class CephalogramPhantom:
    """One generated cephalogram.

    Attributes:
        image: ``(W, H)`` uint8, indexed ``[x, y]`` like MONAI's PIL reader gives a 2D image.
        pixel_size: mm per pixel (isotropic).
        landmarks: ``(19, 2)`` senior (true) positions, px ``(x, y)``.
        junior: ``(19, 2)`` junior annotation, px.
    """

    image: np.ndarray
    pixel_size: float
    landmarks: np.ndarray
    junior: np.ndarray


def generate_cephalogram(
    rng: np.random.Generator, pixel_size: float = 0.8, shape_model: PointDistributionModel | None = None
) -> CephalogramPhantom:
    """Generate one cephalogram phantom of ``round(193.5 / p) x round(240 / p)`` pixels (``p = pixel_size`` mm)."""
    model = shape_model if shape_model is not None else load_shape_model("ceph")
    if model.mean.shape != (19, 2):
        raise ValueError(f"cephalogram shape model must be (19, 2), got {model.mean.shape}")
    pts_mm = model.sample(rng, clip=2.5)
    w, h = (int(round(s / pixel_size)) for s in FIELD_OF_VIEW_MM)
    pts_mm = np.clip(pts_mm, 2.0, np.array(FIELD_OF_VIEW_MM) - 2.0)
    # pixel centres: pixel i covers [i p, (i + 1) p) mm, as 0.1 mm annotations map to px = mm / 0.1
    px = pts_mm / pixel_size
    mm = 1.0 / pixel_size
    img = np.full((w, h), 15.0, dtype=np.float32)
    S, N, Or, Po, A, B, Pog, Me, Gn, Go, LIT, UIT, UL, LL, Sn, sPog, PNS, ANS, Ar = px

    # soft tissue: head polygon = vault ellipse behind + facial profile in front
    vault_c = (S + N) / 2 + np.array([-8.0, -40.0]) * mm
    vault_ax = np.array([abs(N[0] - Po[0]) * 0.62 + 12 * mm, 75.0 * mm])

    def vault_arc(lo_deg: float, hi_deg: float, scale: float) -> np.ndarray:
        th = np.deg2rad(np.linspace(lo_deg, hi_deg, 40))
        return np.stack(
            [vault_c[0] + scale * vault_ax[0] * np.cos(th), vault_c[1] - scale * vault_ax[1] * np.sin(th)], 1
        )

    back = vault_arc(30.0, 235.0, 1.0)
    nose_tip = Sn + np.array([10.0, -8.0]) * mm
    soft_n = N + np.array([7.0, 0.0]) * mm
    chin_under = Me + np.array([-5.0, 9.0]) * mm
    neck_front = np.array([chin_under[0] - 15 * mm, h + 10.0])
    profile = np.array([soft_n, nose_tip, Sn, UL, (UL + LL) / 2 - [2 * mm, 0], LL, sPog, chin_under, neck_front])
    head = np.concatenate([back, [[back[-1, 0], h + 10.0]], profile[::-1]])
    gx, gy = np.meshgrid(np.arange(w), np.arange(h), indexing="ij")
    inside = PolygonPath(head).contains_points(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(w, h)
    tissue = rng.uniform(60.0, 80.0)
    img[inside] = tissue
    bone, dense, thin = rng.uniform(150.0, 185.0), rng.uniform(200.0, 235.0), max(1.5 * mm, 1.0)

    # cranial vault (thick bone ring) and skull base
    vault = vault_arc(20.0, 215.0, 0.92)
    paint_polyline(img, vault, 3.0 * mm, bone)
    paint_polyline(
        img,
        np.array([N, S + np.array([8, -6]) * mm, S + np.array([-8, -6]) * mm, Po + np.array([0, 3]) * mm]),
        thin,
        bone * 0.9,
    )
    # sella turcica: a cup below sella
    cup = np.array([S + 6 * mm * np.array([np.cos(a), np.sin(a)]) for a in np.linspace(0.1, np.pi - 0.1, 9)])
    paint_polyline(img, cup, thin, dense)
    # frontal and nasal bones meeting at nasion
    paint_polyline(img, np.array([vault[0], N + np.array([-2, -20]) * mm, N]), 2.5 * mm, bone)
    paint_capsule(img, N, N + np.array([10, 20]) * mm, thin, bone)
    # orbit (orbitale = lowest point) and ear canal (porion = top)
    orbit = np.array(
        [Or + 11 * mm * np.array([np.sin(a), -1 - np.cos(a)]) * [0.9, 1] for a in np.linspace(0, 2 * np.pi, 24)]
    )
    paint_polyline(img, orbit, thin, bone * 0.9)
    ear = np.array([Po + 4 * mm * np.array([np.sin(a), 1 - np.cos(a)]) for a in np.linspace(0, 2 * np.pi, 16)])
    paint_polyline(img, ear, thin, dense)
    # palate and maxilla, upper incisor
    paint_capsule(img, PNS, ANS, 2.0 * mm, bone)
    paint_polyline(img, np.array([ANS, A, UIT + np.array([-4, -9]) * mm]), 2.0 * mm, bone)
    paint_capsule(img, UIT, UIT + np.array([-6, -22]) * mm, 2.6 * mm, dense)
    # mandible: articulare - gonion - menton - gnathion - pogonion - B point - lower incisor root
    ramus = np.array([Ar, Go, Me, Gn, Pog, B, LIT + np.array([-4, 9]) * mm])
    paint_polyline(img, ramus, 3.0 * mm, bone)
    paint_capsule(img, LIT, LIT + np.array([-5, 20]) * mm, 2.4 * mm, dense)
    # molars between the jaws
    occl = (UIT + LIT) / 2
    for k in range(3):
        c = occl + np.array([-(18 + 9 * k), 1]) * mm
        paint_capsule(img, c - [0, 6 * mm], c + [0, 6 * mm], 3.5 * mm, dense * 0.95)
    img = gaussian_filter(img, 1.0)
    img += rng.normal(0, rng.uniform(3.0, 8.0), img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    off_mean = np.asarray(model.info.get("senior_junior_offset_mean_mm", np.zeros((19, 2))))
    off_std = np.asarray(model.info.get("senior_junior_offset_std_mm", np.ones((19, 2))))
    junior = px + (off_mean + rng.standard_normal((19, 2)) * off_std) / pixel_size
    junior = np.clip(junior, 0, np.array([w - 1, h - 1]))
    return CephalogramPhantom(image, float(pixel_size), px, junior)


def write_cephalogram_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 60,
    seed: int = 0,
    pixel_size: float = 0.8,
    num_validation: int | None = None,
    num_test: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Generate a cephalogram phantom dataset in the ISBI 2015 layout plus a generic datalist.

    Training images go to ``TrainingData``, validation to ``Test1Data``, test to ``Test2Data``; ids are
    ``001``, ``002``, ... Image ``i`` depends only on ``(seed, i)``.

    Returns:
        the path of ``datalist.json``.
    """
    from PIL import Image

    root = prepare_output_dir(out_dir, overwrite)
    sizes = split_sizes(num_images, num_validation, num_test)
    split_of = [s for s in SPLITS for _ in range(sizes[s])]
    model = load_shape_model("ceph")
    datalist = {
        "name": "cephalogram_phantom",
        "description": f"cephalogram phantom (mlm.data.phantoms.cephalogram), seed {seed}, {pixel_size} mm/px",
        "spatial_dims": 2,
        "num_landmarks": 19,
        "landmark_names": list(ISBI2015_LANDMARKS),
        **{s: [] for s in SPLITS},
    }
    for i in progress(range(num_images), total=num_images, desc="ceph", enable=show_progress):
        cid = f"{i + 1:03d}"
        ph = generate_cephalogram(np.random.default_rng([seed, i]), pixel_size=pixel_size, shape_model=model)
        img_path = root / "RawImage" / _SPLIT_FOLDERS[split_of[i]] / f"{cid}.bmp"
        bmp = Image.fromarray(np.ascontiguousarray(ph.image.T), mode="L")
        atomic_write(img_path, lambda tmp, bmp=bmp: bmp.save(tmp, format="BMP"))
        write_annotation_txt(root / "AnnotationsByMD" / "400_senior" / f"{cid}.txt", ph.landmarks)
        write_annotation_txt(root / "AnnotationsByMD" / "400_junior" / f"{cid}.txt", ph.junior)
        lm_path = root / "landmarks" / f"{cid}.json"
        write_landmark_file(lm_path, ph.landmarks, "voxel", names=list(ISBI2015_LANDMARKS))
        item = {
            "id": cid,
            "image": relative(img_path, root),
            "landmarks": relative(lm_path, root),
            "spacing": [pixel_size, pixel_size],
        }
        datalist[split_of[i]].append(item)
    return write_datalist(root / "datalist.json", datalist, overwrite=True)
