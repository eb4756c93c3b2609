"""Spine CT phantom: partial-field-of-view CT volumes of a vertebral column with its 26 CSI 2014 centroids.

Each scan draws one spine configuration from the point distribution model fitted to the 302 real CSI 2014
configurations (``spine_shape_model.json``), rotates it slightly, and renders, in HU:

- air (-1000) outside a soft-tissue torso (~40 HU, fat rim ~-100 HU) that follows the spine's curve;
- vertebral bodies: elliptic cylinders along the local spine axis, cortical shell (~450-700 HU) around
  cancellous bone (~150-250 HU), centred exactly on the landmark; width grows caudally (C3 ~8 mm to
  L5 ~24 mm half-width), height is ~72 % of the local centroid spacing, discs (~90 HU) fill the gaps;
- posterior elements on every level (neural arch, spinous and transverse processes);
- level cues that are subtle and mostly non-local: C1 is a ring around the dens of C2 (C2 has a dens),
  ribs only on T1-T12 and lungs (~-800 HU) at thoracic heights, none on lumbar levels, S1/S2 are fused
  with sacral wings;
- per-scan bone/tissue intensity changes, per-vertebra cancellous variation, partial-volume smoothing and
  Gaussian noise.

The field of view covers a random contiguous piece of the spine (``length_mm``), so which vertebrae are
visible varies; a vertebra whose centroid lies outside the volume is a NaN row. Volumes are written as NIfTI
(int16 HU) with ITK identity direction (LPS): voxel ``(i, j, k)`` is at LPS mm ``origin + spacing * (i, j, k)``
(the NIfTI's RAS affine is ``diag(-1, -1, 1)`` times that).

Layout written by :func:`write_spine_ct_dataset`::

    out/images/<id>.nii.gz            CT volume, int16 HU
    out/landmarks/<id>.json           26 centroids, LPS mm, null = not in the field of view
    out/labels/<id>.nii.gz            vertebral body label map (1..26), only with write_labels=True
    out/setup/points_world_coordinates.csv, setup/train_all.txt, setup/test_all.txt   (CSI 2014 layout)
    out/datalist.json                 generic datalist (training / validation / test)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from mlm.data.csi2014 import write_points_csv
from mlm.data.datalist import atomic_write_text, write_datalist
from mlm.data.phantoms.common import (
    CSI2014_VERTEBRAE,
    SPLITS,
    PhantomVolume,
    prepare_output_dir,
    progress,
    relative,
    split_sizes,
    write_nifti,
)
from mlm.data.phantoms.drawing import local_coordinates, paint_capsule, paint_polyline
from mlm.data.phantoms.shape_model import PointDistributionModel, load_shape_model
from transforms.io.landmark_files import write_landmark_file

__all__ = ["SpineCTPhantom", "generate_spine_ct", "write_spine_ct_dataset", "SPINE_HU"]

NUM_VERTEBRAE = len(CSI2014_VERTEBRAE)
#: zero-based slots: C1..C7 = 0..6, T1..T12 = 7..18, L1..L5 = 19..23, S1, S2 = 24, 25
THORACIC = range(7, 19)

#: nominal tissue values (HU) before per-scan variation.
SPINE_HU = {"air": -1000.0, "fat": -100.0, "soft_tissue": 40.0, "lung": -800.0, "disc": 90.0, "csf": 15.0}

# half-width (mm, left-right) of the vertebral body by level, linearly interpolated between these slots
_WIDTH_SLOTS = np.array([0, 1, 2, 6, 7, 18, 19, 23, 24, 25])
_WIDTH_MM = np.array([11.0, 8.0, 8.0, 10.0, 11.0, 17.0, 19.0, 24.0, 25.0, 20.0])


@dataclass
class SpineCTPhantom(PhantomVolume):
    """One generated scan.

    Attributes:
        image: ``(X, Y, Z)`` int16 HU, indexed like the NIfTI array (LPS axes, identity direction).
        spacing: ``(3,)`` mm.
        origin: ``(3,)`` LPS mm of voxel ``(0, 0, 0)``.
        landmarks: ``(26, 3)`` vertebral body centroids, LPS mm; NaN rows outside the field of view.
        labels: ``(X, Y, Z)`` uint8 vertebral body masks, ``k + 1`` for slot ``k`` (0 = none).
    """

    labels: np.ndarray


def _rotation(rng: np.random.Generator, max_angle_rad: float) -> np.ndarray:
    ax, ay, az = rng.uniform(-max_angle_rad, max_angle_rad, 3)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _frames(points: np.ndarray) -> np.ndarray:
    """Per-vertebra local frames ``(26, 3, 3)``: rows = left (x), posterior (y), superior (spine tangent)."""
    n = len(points)
    frames = np.zeros((n, 3, 3))
    for k in range(n):
        up = points[max(k - 1, 0)] - points[min(k + 1, n - 1)]
        s = up / np.linalg.norm(up)
        left = np.array([1.0, 0.0, 0.0]) - s[0] * s
        left /= np.linalg.norm(left)
        post = np.cross(s, left)  # S x L = P in a right-handed LPS frame
        frames[k] = (left, post, s)
    return frames


def generate_spine_ct(
    rng: np.random.Generator,
    spacing: float = 2.0,
    size_xy: int = 64,
    length_mm: tuple[float, float] = (200.0, 400.0),
    min_visible: int = 4,
    noise_std: tuple[float, float] = (10.0, 30.0),
    shape_model: PointDistributionModel | None = None,
) -> SpineCTPhantom:
    """Generate one spine CT phantom.

    Args:
        rng: numpy random Generator (the only source of randomness).
        spacing: isotropic voxel size, mm.
        size_xy: voxels along x (left) and y (posterior); the axial field of view is ``size_xy * spacing`` mm.
        length_mm: range of the cranio-caudal extent of the field of view, mm (uniform draw).
        min_visible: redraw the field of view until at least this many centroids lie inside it.
        noise_std: range of the Gaussian noise standard deviation, HU.
        shape_model: spine point distribution model (default: the shipped ``spine_shape_model.json``).

    Returns:
        a :class:`SpineCTPhantom`.
    """
    model = shape_model if shape_model is not None else _default_model()
    if model.num_landmarks != NUM_VERTEBRAE or model.spatial_dims != 3:
        raise ValueError(f"spine shape model must be (26, 3), got {model.mean.shape}")
    pts = model.sample(rng, clip=2.0)
    pts = (pts - pts.mean(0)) @ _rotation(rng, np.deg2rad(4.0)).T
    pts *= rng.uniform(0.92, 1.08)  # patient size
    frames = _frames(pts)

    # field of view: a random piece of the column, centred on the spine in x/y
    for _ in range(100):
        length = rng.uniform(*length_mm)
        nz = max(int(round(length / spacing)), 8)
        z_hi, z_lo = pts[0, 2] + 60.0 - length / 2, pts[-1, 2] - 60.0 + length / 2
        zc = rng.uniform(min(z_lo, z_hi), max(z_lo, z_hi))
        origin = np.empty(3)
        origin[2] = zc - (nz - 1) * spacing / 2
        inside_z = (pts[:, 2] >= origin[2]) & (pts[:, 2] <= origin[2] + (nz - 1) * spacing)
        if inside_z.sum() >= min_visible:
            break
    else:
        raise ValueError(f"could not place a field of view of {length_mm} mm showing {min_visible} vertebrae")
    centre_xy = pts[inside_z, :2].mean(0) + np.array([0.0, -0.12 * size_xy * spacing]) + rng.normal(0, 3.0, 2)
    origin[:2] = centre_xy - (size_xy - 1) * spacing / 2
    shape = (size_xy, size_xy, nz)
    vox = (pts - origin) / spacing  # voxel coordinates (identity direction, isotropic spacing)
    visible = np.all((vox >= 0) & (vox <= np.asarray(shape) - 1), axis=1)

    # per-scan tissue values
    cortical = rng.uniform(450.0, 700.0)
    cancellous = rng.uniform(150.0, 250.0)
    tissue = SPINE_HU["soft_tissue"] + rng.normal(0, 8.0)
    vol = np.full(shape, SPINE_HU["air"], dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)

    # torso: per-slice ellipse around the spine, which it follows through the slices
    z_world = origin[2] + spacing * np.arange(nz)
    order = np.argsort(pts[:, 2])
    spine_x = np.interp(z_world, pts[order, 2], pts[order, 0])
    spine_y = np.interp(z_world, pts[order, 2], pts[order, 1])
    rx, ry = rng.uniform(0.38, 0.45) * size_xy * spacing, rng.uniform(0.36, 0.42) * size_xy * spacing
    x_world = origin[0] + spacing * np.arange(size_xy)
    y_world = origin[1] + spacing * np.arange(size_xy)
    dx = (x_world[:, None, None] - spine_x[None, None, :]) / rx
    dy = (y_world[None, :, None] - (spine_y[None, None, :] - 0.15 * ry)) / ry
    r2 = dx**2 + dy**2
    vol[r2 <= 1.0] = SPINE_HU["fat"]
    vol[r2 <= 0.82] = tissue
    # lungs at thoracic heights (between T1 and T12, even when those are outside the field of view)
    thoracic_z = (z_world <= pts[7, 2] + 10.0) & (z_world >= pts[18, 2] - 10.0)
    for side in (-1.0, 1.0):
        lx = (x_world[:, None, None] - (spine_x + side * 0.5 * rx)[None, None, :]) / (0.36 * rx)
        ly = (y_world[None, :, None] - (spine_y - 0.5 * ry)[None, None, :]) / (0.6 * ry)
        vol[((lx**2 + ly**2) <= 1.0) & thoracic_z[None, None, :]] = SPINE_HU["lung"]

    widths = np.interp(np.arange(NUM_VERTEBRAE), _WIDTH_SLOTS, _WIDTH_MM) * rng.uniform(0.92, 1.08)
    gaps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    for k in range(NUM_VERTEBRAE):
        local_gap = np.mean([gaps[j] for j in (k - 1, k) if 0 <= j < len(gaps)])
        _draw_vertebra(
            vol,
            labels,
            k,
            vox[k],
            frames[k],
            widths[k] / spacing,
            local_gap / spacing,
            spacing,
            rng,
            cortical=cortical,
            cancellous=cancellous + rng.normal(0, 20.0),
            rib_span=(rx, ry),
        )
        if k + 1 < NUM_VERTEBRAE:
            _draw_disc(vol, k, vox[k], vox[k + 1], frames[k], widths[k] / spacing, gaps[k] / spacing, cortical)

    vol = gaussian_filter(vol, sigma=0.6, mode="nearest")
    vol += rng.normal(0.0, rng.uniform(*noise_std), size=shape).astype(np.float32)
    image = np.clip(np.rint(vol), -1024, 3071).astype(np.int16)
    landmarks = np.where(visible[:, None], pts, np.nan)
    return SpineCTPhantom(image, np.full(3, float(spacing)), origin, landmarks, labels)


def _draw_vertebra(
    vol: np.ndarray,
    labels: np.ndarray,
    k: int,
    c: np.ndarray,
    frame: np.ndarray,
    a: float,
    gap: float,
    spacing: float,
    rng: np.random.Generator,
    cortical: float,
    cancellous: float,
    rib_span: tuple[float, float],
) -> None:
    """Vertebra ``k`` centred at voxel ``c`` with local ``frame`` rows (left, posterior, superior); sizes in voxels."""
    left, post, up = frame
    b = a * (0.7 if k < 7 else 0.78)  # antero-posterior half-depth
    hh = 0.36 * gap  # half-height
    shell = max(2.5 / spacing, 0.6)
    if k == 0:  # C1 (atlas): a ring around the dens, no body
        res = local_coordinates(vol.shape, c, frame, radius=1.5 * a + 2)
        if res is not None:
            sl, (u, v, w) = res
            q = (u / (1.25 * a)) ** 2 + (v / (1.25 * a)) ** 2
            ring = (q <= 1.0) & (q >= 0.5) & (np.abs(w) <= 0.45 * hh)
            vol[sl][ring] = cortical
            labels[sl][ring] = k + 1
        return
    res = local_coordinates(vol.shape, c, frame, radius=float(np.sqrt(a**2 + b**2 + hh**2)) + 1)
    if res is not None:
        sl, (u, v, w) = res
        q = (u / a) ** 2 + (v / b) ** 2
        body = (q <= 1.0) & (np.abs(w) <= hh)
        inner = ((u / max(a - shell, 0.5)) ** 2 + (v / max(b - shell, 0.5)) ** 2 <= 1.0) & (np.abs(w) <= hh - shell)
        vol[sl][body] = cortical
        vol[sl][inner] = cancellous
        labels[sl][body] = k + 1
    mm = 1.0 / spacing  # voxels per mm
    if k == 1:  # C2: the dens rises from the body into the ring of C1
        paint_capsule(vol, c + up * hh, c + up * (hh + 0.9 * gap), 0.35 * a, cortical)
    # posterior elements: neural arch around the canal, spinous and transverse processes
    canal_r = (5.5 if k < 7 else 4.5 if k < 19 else 6.0) * mm
    arch_c = c + post * (b + canal_r + 1.0 * mm)
    thick = max(2.5 * mm, 0.7)
    angles = np.linspace(-np.pi * 0.95, np.pi * 0.95, 9)
    ring = np.array([arch_c + (canal_r + thick / 2) * (np.sin(t) * left - np.cos(t) * post) for t in angles])
    paint_polyline(vol, ring, thick / 2 + 0.3, cortical)
    top = arch_c + post * (canal_r + thick / 2)
    if k < 24:
        spine_len = (8.0 if k < 7 else 13.0 if k < 19 else 10.0) * mm
        paint_capsule(vol, top, top + spine_len * (0.8 * post - 0.6 * up), max(2.0 * mm, 0.6), cortical)
    tp_len = (a * 0.9 if k < 19 else a * 1.2) + 4.0 * mm
    tips = []
    for side in (-1.0, 1.0):
        root = arch_c + side * canal_r * left
        tip = root + side * tp_len * left + 2.0 * mm * post
        paint_capsule(vol, root, tip, max(2.5 * mm, 0.6), cortical)
        tips.append((side, tip))
    if k in THORACIC:  # ribs: elliptic arcs from the transverse process tips round to the front, sloping down
        rib_x, rib_y = rib_span[0] * mm * 0.85, rib_span[1] * mm * 0.8
        centre = c - post * 0.45 * rib_y
        for side, tip in tips:
            lateral = float((tip - c) @ left) * side
            s0 = np.arcsin(min(lateral / rib_x, 0.9))
            t = np.linspace(s0, 0.8 * np.pi, 10)
            arc = np.array(
                [
                    centre + side * rib_x * np.sin(s) * left + rib_y * np.cos(s) * post - 0.3 * gap * (s / np.pi) * up
                    for s in t
                ]
            )
            paint_polyline(vol, np.concatenate([tip[None], arc]), max(2.0 * mm, 0.6), cortical * 0.85)
    if k >= 24:  # sacral wings
        for side in (-1.0, 1.0):
            paint_capsule(
                vol,
                c + side * a * left + post * b,
                c + side * 2.2 * a * left + post * 1.6 * b,
                0.45 * hh,
                cortical * 0.9,
            )


def _draw_disc(vol, k, c0, c1, frame, a, gap, cortical) -> None:
    """Intervertebral disc between slots ``k`` and ``k + 1`` (fused bone between S1 and S2), voxels."""
    mid = (c0 + c1) / 2
    axis = c0 - c1
    up = axis / np.linalg.norm(axis)
    left = frame[0] - (frame[0] @ up) * up
    left /= np.linalg.norm(left)
    post = np.cross(up, left)
    b = a * (0.7 if k < 7 else 0.78)
    res = local_coordinates(vol.shape, mid, np.stack([left, post, up]), radius=float(np.hypot(a, gap)) + 1)
    if res is None:
        return
    sl, (u, v, w) = res
    disc = ((u / (0.95 * a)) ** 2 + (v / (0.95 * b)) ** 2 <= 1.0) & (np.abs(w) <= 0.15 * gap)
    vol[sl][disc] = cortical * 0.8 if k == 24 else SPINE_HU["disc"]


_MODEL_CACHE: dict[str, PointDistributionModel] = {}


def _default_model() -> PointDistributionModel:
    if "spine" not in _MODEL_CACHE:
        _MODEL_CACHE["spine"] = load_shape_model("spine")
    return _MODEL_CACHE["spine"]


def write_spine_ct_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 60,
    seed: int = 0,
    spacing: float = 2.0,
    size_xy: int = 64,
    length_mm: tuple[float, float] = (200.0, 400.0),
    num_validation: int | None = None,
    num_test: int | None = None,
    write_labels: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Generate a spine CT phantom dataset in the CSI 2014 layout plus a generic datalist.

    Image ``i`` depends only on ``(seed, i)``: the first images of a bigger run equal those of a smaller one.

    Args:
        out_dir: dataset root (created; must be empty unless ``overwrite``).
        num_images: total number of scans; split training / validation / test (default 2/3, 1/6, 1/6).
        seed: random seed.
        spacing, size_xy, length_mm: see :func:`generate_spine_ct`.
        num_validation, num_test: split sizes (default ``round(num_images / 6)`` each).
        write_labels: also write the vertebral body label maps to ``labels/``.
        overwrite: write into a non-empty folder, replacing files.
        show_progress: tqdm progress bar.

    Returns:
        the path of ``datalist.json``.
    """
    root = prepare_output_dir(out_dir, overwrite)
    sizes = split_sizes(num_images, num_validation, num_test)
    split_of = [s for s in SPLITS for _ in range(sizes[s])]
    datalist = {
        "name": "spine_ct_phantom",
        "description": f"spine CT phantom (mlm.data.phantoms.spine_ct), seed {seed}, spacing {spacing} mm",
        "spatial_dims": 3,
        "num_landmarks": NUM_VERTEBRAE,
        "landmark_names": list(CSI2014_VERTEBRAE),
        **{s: [] for s in SPLITS},
    }
    rows: dict[str, np.ndarray] = {}
    for i in progress(range(num_images), total=num_images, desc="spine_ct", enable=show_progress):
        sid = f"s{i:03d}"
        ph = generate_spine_ct(np.random.default_rng([seed, i]), spacing=spacing, size_xy=size_xy, length_mm=length_mm)
        img_path = root / "images" / f"{sid}.nii.gz"
        lm_path = root / "landmarks" / f"{sid}.json"
        write_nifti(img_path, ph.image, ph.spacing, ph.origin)
        write_landmark_file(lm_path, ph.landmarks, "LPS", names=list(CSI2014_VERTEBRAE))
        if write_labels:
            write_nifti(root / "labels" / f"{sid}.nii.gz", ph.labels, ph.spacing, ph.origin)
        rows[sid] = ph.landmarks
        item = {"id": sid, "image": relative(img_path, root), "landmarks": relative(lm_path, root)}
        datalist[split_of[i]].append(item)
    write_points_csv(root / "setup" / "points_world_coordinates.csv", rows)
    train_ids = [it["id"] for s in ("training", "validation") for it in datalist[s]]
    atomic_write_text(root / "setup" / "train_all.txt", "".join(f"{t}\n" for t in train_ids))
    atomic_write_text(root / "setup" / "test_all.txt", "".join(f"{it['id']}\n" for it in datalist["test"]))
    return write_datalist(root / "datalist.json", datalist, overwrite=True)
