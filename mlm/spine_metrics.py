"""Spine AP X-ray metrics: the AASCE 2019 challenge's and those of the papers on its data (BoostNet, FARNet).

Inputs are the 68 vertebra corners of :mod:`mlm.data.aasce` (17 vertebrae T1..L5 top to bottom, corners top-left,
top-right, bottom-left, bottom-right) in px of the original image, ``(B, 68, 2)`` or ``(68, 2)``, with the image sizes
``(W, H)`` px; a NaN row is a missing landmark.

- **MSE fraction** (:func:`mse_fraction`): the mean squared landmark error with every coordinate taken as a fraction
  of the image size, as the challenge's labels store them: ``((x_pred - x_true) / W)^2`` and
  ``((y_pred - y_true) / H)^2`` averaged over both coordinates of every landmark with ground truth and prediction.
  This is the "MSE" of Wu et al.'s BoostNet (MICCAI 2017: 0.0046 on the 128 test images, a network regressing the
  136 label ratios) that later papers on these images compare with; FARNet's authors published no spine code, so
  their exact averaging is not known.
- **Pearson r** (:func:`pearson_correlation`) between predicted and ground-truth coordinates in those same ratio units:
  every coordinate (x and y) of every present landmark of every image pooled into one sample (and per axis).
- **Cobb angles** (:func:`cobb_angles`) from the 68 corners, the way the challenge's own code (the organisers' MATLAB,
  ported to Python by the challenge's participants) measures them: each vertebra's direction is the line from the
  middle of its left side to the middle of its right side (the mean of its two endplates' slopes); the main angle is
  the largest angle between two vertebrae, the other two are found above and below it, or, on an S-shaped spine, in
  the upper or lower half. Returned in that code's order: the main (largest) angle, then the upper and the lower
  curve's; ``angles.csv`` of the challenge holds angles from the same code.
- **SMAPE** (:func:`smape`) of the Cobb angles, the challenge's ranking metric: the mean over images of
  ``sum_k |a_k - b_k| / sum_k (a_k + b_k)``, in percent.

:func:`spine_metrics` computes all of them; :class:`MSEFraction`, :class:`LandmarkPearsonR` and :class:`CobbAngleSMAPE`
are the Ignite metrics of a bundle's validation (``additional_metrics``); ``python -m mlm.spine_metrics`` evaluates
the prediction files of an evaluation run (:func:`evaluate_predictions`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from transforms.geometry import original_affine, original_spatial_shape, world_to_voxel

__all__ = [
    "S_SHAPE_TOLERANCE",
    "normalized_landmarks",
    "mse_fraction",
    "pearson_correlation",
    "cobb_angles",
    "is_s_shaped",
    "smape",
    "spine_metrics",
    "original_pixels",
    "MSEFraction",
    "LandmarkPearsonR",
    "CobbAngleSMAPE",
    "evaluate_predictions",
]

#: the challenge code's tolerance on ``(sum |d|)^2 - (sum d)^2`` of the centre line's deviations from its chord
#: (dimensionless: fractions of the chord) below which the spine is not S-shaped.
S_SHAPE_TOLERANCE = 1e-4


def _points(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().as_subclass(torch.Tensor).numpy()
    a = np.asarray(x, dtype=np.float64)
    a = a[None] if a.ndim == 2 else a
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name} must be (B, N, 2) or (N, 2) px (x, y), got shape {a.shape}.")
    return a


def _sizes(image_size, batch: int) -> np.ndarray:
    s = np.asarray(image_size, dtype=np.float64)
    if s.shape == (2,):
        s = np.broadcast_to(s, (batch, 2))
    if s.shape != (batch, 2) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"image_size must be (W, H) or (B, 2) positive px for {batch} images, got {image_size!r}.")
    return s


def normalized_landmarks(points, image_size) -> np.ndarray:
    """Landmarks as fractions of their image's size, the AASCE labels' units: ``(x / W, y / H)``.

    Args:
        points: ``(B, N, 2)`` or ``(N, 2)`` px ``(x, y)``.
        image_size: ``(W, H)`` px, or ``(B, 2)`` one per image.

    Returns:
        ``(B, N, 2)`` float64 (NaN rows kept).
    """
    p = _points(points, "points")
    return p / _sizes(image_size, len(p))[:, None, :]


def _pairs(pred, true, image_size) -> tuple[np.ndarray, np.ndarray, int]:
    """Ratio coordinates of the landmarks with both ground truth and prediction, and the count of missing predictions."""
    p, t = normalized_landmarks(pred, image_size), normalized_landmarks(true, image_size)
    if p.shape != t.shape:
        raise ValueError(f"pred and true must have the same shape, got {p.shape} and {t.shape}.")
    has_true = np.isfinite(t).all(-1)
    has_pred = np.isfinite(p).all(-1)
    both = has_true & has_pred
    return p[both], t[both], int((has_true & ~has_pred).sum())


def mse_fraction(pred, true, image_size) -> float:
    """Mean squared landmark error in fractions of the image size (see the module docstring), NaN when no landmark
    has both a prediction and ground truth.

    Args:
        pred: ``(B, N, 2)`` or ``(N, 2)`` px; NaN rows = no prediction (left out).
        true: the same shape; NaN rows = no ground truth (left out).
        image_size: ``(W, H)`` px, or ``(B, 2)``.
    """
    p, t, _ = _pairs(pred, true, image_size)
    return float(((p - t) ** 2).mean()) if p.size else float("nan")


def pearson_correlation(a, b) -> float:
    """Pearson's r of two equally long samples (flattened), NaN with fewer than 2 values or a constant sample."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"pearson_correlation: samples of {x.size} and {y.size} values.")
    if x.size < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


def is_s_shaped(centre_line: np.ndarray, tolerance: float = S_SHAPE_TOLERANCE) -> bool:
    """Whether a spine's centre line crosses the chord from its first to its last point (the challenge's test).

    The deviation of point ``i`` (all but the last two) from the chord is ``(y_i - y_L) / (y_0 - y_L) -
    (x_i - x_L) / (x_0 - x_L)`` (``L`` the last point); the spine is S-shaped when the deviations do not all have one
    sign: ``(sum |d|)^2 - (sum d)^2 >= tolerance``. For a chord parallel to an image axis (where that quotient
    divides by zero) the deviation is the signed distance to the chord over its length, which has the same signs.

    Args:
        centre_line: ``(M, 2)`` points ``(x, y)`` top to bottom (the endplate midpoints).
        tolerance: see :data:`S_SHAPE_TOLERANCE`.
    """
    c = np.asarray(centre_line, dtype=np.float64)
    last = c[-1]
    chord = c[0] - last
    rel = c[:-2] - last
    if chord[0] != 0 and chord[1] != 0:
        dev = rel[:, 1] / chord[1] - rel[:, 0] / chord[0]
    else:
        dev = (rel[:, 1] * chord[0] - rel[:, 0] * chord[1]) / float(chord @ chord)
    return bool(abs(np.abs(dev).sum() ** 2 - dev.sum() ** 2) >= tolerance)


def cobb_angles(points, image_height: float) -> np.ndarray:
    """The three Cobb angles (degrees) of one spine from its vertebra corners, as the challenge's code measures them.

    Args:
        points: ``(4V, 2)`` px ``(x, y)``: V vertebrae top to bottom, corners top-left, top-right, bottom-left,
            bottom-right (AASCE: V = 17, T1..L5).
        image_height: H in the units of ``points`` (1 for ratio coordinates): on an S-shaped spine it decides whether
            the main curve lies in the upper half of the image.

    Returns:
        ``(3,)`` float64: the main (largest) angle, then the upper and the lower curve's (see the module docstring);
        NaN when a corner is missing.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] % 4 or p.shape[0] < 12:
        raise ValueError(f"cobb_angles: points must be (4V, 2) vertebra corners with V >= 3, got shape {p.shape}.")
    if not np.isfinite(p).all():
        return np.full(3, np.nan)
    nv = p.shape[0] // 4
    direction = (p[1::4] + p[3::4]) / 2 - (p[0::4] + p[2::4]) / 2  # middle of the left side -> middle of the right
    length = np.linalg.norm(direction, axis=1)
    if np.any(length == 0):
        raise ValueError("cobb_angles: a vertebra whose left and right sides coincide has no direction.")
    unit = direction / length[:, None]
    angles = np.degrees(np.arccos(np.clip(unit @ unit.T, 0.0, 1.0)))  # (V, V); beyond 90 degrees counts as 90
    upper = int(np.argmax(angles.max(axis=1)))  # the first of the two vertebrae of the largest angle
    lower = int(np.argmax(angles[upper]))
    main = angles[upper, lower]
    centre = (p[0::2] + p[1::2]) / 2  # (2V, 2) endplate midpoints, top to bottom
    if not is_s_shaped(centre):
        return np.array([main, angles[0, upper], angles[nv - 1, lower]])
    above = angles[upper, : upper + 1]
    if centre[2 * upper, 1] + centre[2 * lower, 1] < image_height:  # main curve in the upper half: the other below
        return np.array([main, above.max(), angles[lower, lower:].max()])
    k = int(np.argmax(above))
    return np.array([main, above.max(), angles[k, : k + 1].max()])


def smape(pred_angles, true_angles) -> float:
    """Symmetric mean absolute percentage error of Cobb angles (AASCE 2019), percent.

    Args:
        pred_angles: ``(B, K)`` (or ``(K,)``) degrees.
        true_angles: the same shape.

    Returns:
        the mean over images without a NaN angle of ``100 * sum_k |p_k - t_k| / sum_k (p_k + t_k)`` (an image whose
        angles are all 0 in both counts 0); NaN when no image is left.
    """
    p, t = np.atleast_2d(np.asarray(pred_angles, np.float64)), np.atleast_2d(np.asarray(true_angles, np.float64))
    if p.shape != t.shape:
        raise ValueError(f"smape: pred and true angles must have the same shape, got {p.shape} and {t.shape}.")
    keep = np.isfinite(p).all(1) & np.isfinite(t).all(1)
    if not keep.any():
        return float("nan")
    num, den = np.abs(p - t)[keep].sum(1), (p + t)[keep].sum(1)
    return float(np.mean(np.where(den > 0, 100.0 * num / np.where(den > 0, den, 1.0), 0.0)))


def spine_metrics(pred, true, image_size) -> dict:
    """Every spine metric of a set of images (px landmarks, see the module docstring).

    Args:
        pred: ``(B, 68, 2)`` px; NaN rows = no prediction.
        true: ``(B, 68, 2)`` px; NaN rows = no ground truth.
        image_size: ``(B, 2)`` (or ``(W, H)``) px.

    Returns:
        ``mse_fraction``, ``pearson_r`` (x and y pooled), ``pearson_r_x``, ``pearson_r_y``, ``num_landmarks`` (with
        both), ``num_missing_predictions``, ``smape`` (percent, images with all 68 predicted and true corners),
        ``num_images``, ``num_images_smape``, and ``cobb_angles_pred`` / ``cobb_angles_true`` (``(B, 3)`` degrees).
    """
    p, t = _points(pred, "pred"), _points(true, "true")
    sizes = _sizes(image_size, len(t))
    rp, rt, missing = _pairs(p, t, sizes)
    angles_pred = np.stack([cobb_angles(x, h) for x, h in zip(p, sizes[:, 1])])
    angles_true = np.stack([cobb_angles(x, h) for x, h in zip(t, sizes[:, 1])])
    return {
        "mse_fraction": float(((rp - rt) ** 2).mean()) if rp.size else float("nan"),
        "pearson_r": pearson_correlation(rp, rt),
        "pearson_r_x": pearson_correlation(rp[:, 0], rt[:, 0]),
        "pearson_r_y": pearson_correlation(rp[:, 1], rt[:, 1]),
        "num_landmarks": len(rp),
        "num_missing_predictions": missing,
        "smape": smape(angles_pred, angles_true),
        "num_images": len(t),
        "num_images_smape": int((np.isfinite(angles_pred).all(1) & np.isfinite(angles_true).all(1)).sum()),
        "cobb_angles_pred": angles_pred,
        "cobb_angles_true": angles_true,
    }


def original_pixels(world, image) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks in px of the image as read from disk, and that image's ``(W, H)``, from a bundle's output.

    Args:
        world: ``(N, 2)`` RAS mm (a bundle's decoded ``pred`` or world ``label``).
        image: the preprocessed ``MetaTensor`` it travels with: ``meta["spatial_shape"]`` gives the original size,
            ``meta["original_affine"]`` (identity for PNG/JPEG) its grid. A pixel size given only by the datalist's
            ``spacing`` is not in the meta: such images need the prediction files (``python -m mlm.spine_metrics``).
    """
    shape = original_spatial_shape(image, 2)
    if shape is None:
        raise ValueError("spine metrics need the image's original size: the image has no meta['spatial_shape'].")
    w = world.detach().cpu().as_subclass(torch.Tensor) if isinstance(world, torch.Tensor) else world
    px = world_to_voxel(np.asarray(w, dtype=np.float64), original_affine(image, 2).numpy())
    return np.asarray(px), np.asarray(shape, dtype=np.float64)


def _batch(output) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pred px, true px, sizes)`` from ``(pred, label, image)`` lists (MONAI's decollated output)."""
    if not isinstance(output, (tuple, list)) or len(output) != 3:
        raise ValueError(
            "spine metrics expect output_transform to return (pred, label, image), e.g. "
            f"monai.handlers.from_engine(['pred', 'label', 'image']), got {type(output).__name__}."
        )
    preds, labels, images = (x if isinstance(x, (list, tuple)) else list(x) for x in output)
    rows = [(original_pixels(p, im), original_pixels(t, im)[0]) for p, t, im in zip(preds, labels, images)]
    pred = np.stack([r[0][0] for r in rows])
    true = np.stack([r[1] for r in rows])
    sizes = np.stack([r[0][1] for r in rows])
    return pred, true, sizes


class _SpineMetric(Metric):
    """Ignite metric over ``(pred, label, image)`` of a bundle's decollated output (see :func:`original_pixels`); the
    three lists are passed whole to ``update`` (Ignite unrolls only pairs)."""

    def __init__(self, output_transform: Callable = lambda x: x, device: str | torch.device = "cpu"):
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=True)

    def _zeros(self, n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.float64, device=self._device)


class MSEFraction(_SpineMetric):
    """Ignite metric: :func:`mse_fraction` over all validated images (``output_transform`` gives
    ``(pred, label, image)``: world RAS landmarks and the preprocessed image, e.g.
    ``monai.handlers.from_engine(['pred', 'label', 'image'])``). DDP-safe (sums are all-reduced)."""

    @reinit__is_reduced
    def reset(self) -> None:
        self._sums = self._zeros(2)  # squared ratio errors, coordinates

    @reinit__is_reduced
    def update(self, output) -> None:
        p, t, _ = _pairs(*_batch(output))
        self._sums += torch.tensor([((p - t) ** 2).sum(), p.size], dtype=torch.float64, device=self._device)

    @sync_all_reduce("_sums")
    def compute(self) -> float:
        if self._sums[1] == 0:
            raise NotComputableError("MSEFraction needs at least one landmark with ground truth and prediction.")
        return float(self._sums[0] / self._sums[1])


class LandmarkPearsonR(_SpineMetric):
    """Ignite metric: Pearson's r of predicted vs ground-truth landmark coordinates as fractions of the image size, x
    and y of every present landmark of every validated image pooled (``output_transform`` as :class:`MSEFraction`).
    DDP-safe (the moment sums are all-reduced)."""

    @reinit__is_reduced
    def reset(self) -> None:
        self._sums = self._zeros(6)  # n, sum x, sum y, sum xx, sum yy, sum xy

    @reinit__is_reduced
    def update(self, output) -> None:
        pred, true, sizes = _batch(output)
        p, t, _ = _pairs(pred, true, sizes)
        x, y = p.ravel(), t.ravel()
        moments = [x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]
        self._sums += torch.tensor(moments, dtype=torch.float64, device=self._device)

    @sync_all_reduce("_sums")
    def compute(self) -> float:
        n, sx, sy, sxx, syy, sxy = (float(v) for v in self._sums)
        if n < 2:
            raise NotComputableError(
                "LandmarkPearsonR needs at least two coordinates with ground truth and prediction."
            )
        cov, vx, vy = sxy - sx * sy / n, sxx - sx * sx / n, syy - sy * sy / n
        return cov / float(np.sqrt(vx * vy)) if vx > 0 and vy > 0 else float("nan")


class CobbAngleSMAPE(_SpineMetric):
    """Ignite metric: :func:`smape` of the Cobb angles of the predicted vs the ground-truth corners (both measured by
    :func:`cobb_angles`), over the validated images with all corners (``output_transform`` as :class:`MSEFraction`).
    DDP-safe."""

    @reinit__is_reduced
    def reset(self) -> None:
        self._sums = self._zeros(2)  # per-image SMAPE, images

    @reinit__is_reduced
    def update(self, output) -> None:
        pred, true, sizes = _batch(output)
        for p, t, (_, h) in zip(pred, true, sizes):
            value = smape(cobb_angles(p, h), cobb_angles(t, h))
            if np.isfinite(value):
                self._sums += torch.tensor([value, 1.0], dtype=torch.float64, device=self._device)

    @sync_all_reduce("_sums")
    def compute(self) -> float:
        if self._sums[1] == 0:
            raise NotComputableError("CobbAngleSMAPE needs at least one image with all its corners.")
        return float(self._sums[0] / self._sums[1])


def evaluate_predictions(
    prediction_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    split: str = "test",
    datalist: str = "datalist.json",
) -> dict:
    """:func:`spine_metrics` of an evaluation run's prediction files against a datalist's ground truth.

    Args:
        prediction_dir: ``<output_dir>/predictions`` of ``inference.yaml`` (``<id>_landmarks.json``, whose
            ``voxel_points`` are px of the original image).
        dataset_dir: the folder holding the datalist (e.g. :func:`mlm.data.aasce.convert_aasce`'s output); its landmark
            files must hold voxel (px) coordinates.
        split: the datalist split that was evaluated.
        datalist: the datalist file name.

    Returns:
        :func:`spine_metrics`' dict plus ``ids``, ``split`` and ``units`` (``"fraction of the image size"``).

    Raises:
        FileNotFoundError: a prediction file or image is missing (named).
        ValueError: a landmark file not in voxel coordinates, or prediction and ground truth of different counts.
    """
    from mlm.data.datalist import load_datalist
    from mlm.data.image_header import read_image_header
    from transforms.io.landmark_files import read_landmark_file

    items = load_datalist(Path(dataset_dir) / datalist, split)
    preds, trues, sizes, ids = [], [], [], []
    for item in items:
        item_id = str(item["id"])
        path = Path(prediction_dir) / f"{item_id}_landmarks.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no prediction for id {item_id!r} of split '{split}'.")
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if "voxel_points" not in record:
            raise ValueError(f"{path}: no 'voxel_points' (px of the original image).")
        pred = np.array([[np.nan, np.nan] if v is None else v for v in record["voxel_points"]], dtype=np.float64)
        truth = read_landmark_file(item["landmarks"], item.get("coordinate_system"))
        if truth.coordinate_system != "voxel":
            raise ValueError(
                f"{item['landmarks']}: {truth.coordinate_system} coordinates; the spine metrics need voxel (px) "
                "ground truth (python scripts/prepare_dataset.py aasce writes it)."
            )
        if pred.shape != truth.points.shape:
            raise ValueError(
                f"{path}: {pred.shape} predicted points, the ground truth {item['landmarks']} has {truth.points.shape}."
            )
        preds.append(pred)
        trues.append(truth.points)
        sizes.append(read_image_header(item["image"], verify_data=False).spatial_shape[:2])
        ids.append(item_id)
    summary = spine_metrics(np.stack(preds), np.stack(trues), np.asarray(sizes, dtype=np.float64))
    return {"split": split, "ids": ids, "units": "fraction of the image size", **summary}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlm.spine_metrics --predictions DIR --dataset_dir D [--split test] [--output F]``."""
    from mlm.reports import write_metrics_json

    parser = argparse.ArgumentParser(description="Spine AP metrics (AASCE): MSE fraction, Pearson r, Cobb SMAPE.")
    parser.add_argument("--predictions", required=True, help="<output_dir>/predictions of an evaluation run")
    parser.add_argument("--dataset_dir", required=True, help="the folder holding datalist.json")
    parser.add_argument("--split", default="test", help="the evaluated split (default test)")
    parser.add_argument("--output", default=None, help="JSON report (default <predictions>/../spine_metrics.json)")
    args = parser.parse_args(argv)
    try:
        summary = evaluate_predictions(args.predictions, args.dataset_dir, args.split)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.output) if args.output else Path(args.predictions).resolve().parent / "spine_metrics.json"
    write_metrics_json(out, summary)
    print(
        f"{summary['num_images']} images: MSE fraction {summary['mse_fraction']:.3g}, Pearson r {summary['pearson_r']:.4f}"
        f", Cobb angle SMAPE {summary['smape']:.2f}% ({summary['num_images_smape']} images); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
