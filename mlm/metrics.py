"""The field's landmark metrics: point errors, SDR / outliers, IPE, identification rate, and Ignite metrics.

Inputs are ``(B, N, D)`` landmark coordinates (numpy arrays or torch tensors); a NaN row is a missing
landmark. Conventions (``shared/docs/DESIGN.md``):

- Missing ground truth: the landmark is excluded everywhere (error NaN).
- Missing prediction for a present ground truth: error ``inf``. It is a failure for SDR and outliers and an
  incorrect identification; it is excluded from the mean / SD / median of the point error (which would
  otherwise be infinite) and counted in ``summary["num_missing_predictions"]``.
- Success at radius r: ``error <= r`` (ISBI 2015). Outlier at r: ``error > r`` (Payer's #O_r). SDR = 1 - outlier rate.
  (Payer's own code counts ``>= r`` as an outlier; at exactly r the two differ.)
- Identification (CSI 2014, Glocker et al. 2013): prediction i is correct when the nearest present
  ground-truth landmark of that image is landmark i (ties with another landmark count in i's favour) and
  it lies within ``max_dist`` mm (``<=``). Rate = correct / present ground-truth landmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from mlm.reports import write_metrics_csv, write_metrics_json

__all__ = [
    "DEFAULT_PIXEL_RADII",
    "DEFAULT_RADII",
    "HAND_XRAY_NORMALIZE_PAIR",
    "GU2NET_HAND_NORMALIZE_PAIR",
    "point_errors",
    "summarize_errors",
    "per_landmark_table",
    "identified_landmarks",
    "identification_rate",
    "identification_rate_per_landmark",
    "MeanRadialError",
    "IdentificationRate",
    "write_metrics_json",
    "write_metrics_csv",
]

DEFAULT_RADII = (2.0, 2.5, 3.0, 4.0, 10.0)
#: SDR radii (px) of images without a physical pixel size (a user's PNG/JPEG X-rays without a datalist spacing)
DEFAULT_PIXEL_RADII = (5.0, 10.0, 20.0, 40.0)
# Hand X-rays: errors normalised to a 50 mm wrist width measured between two landmarks (zero-based indices).
HAND_XRAY_NORMALIZE_PAIR = (1, 5)  # Payer et al. (MICCAI 2016 / MedIA 2019) code
GU2NET_HAND_NORMALIZE_PAIR = (0, 4)  # GU2Net (Zhu et al. 2021) code


def _as_array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().as_subclass(torch.Tensor).numpy()
    a = np.asarray(x, dtype=np.float64)
    return a


def _check_points(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_array(pred, "pred"), _as_array(true, "true")
    if p.ndim == 2:
        p = p[None]
    if t.ndim == 2:
        t = t[None]
    if p.ndim != 3 or p.shape != t.shape:
        raise ValueError(f"pred and true must both be (B, N, D) with the same shape, got {p.shape} and {t.shape}.")
    return p, t


def point_errors(
    pred,
    true,
    spacing: Sequence[float] | np.ndarray | None = None,
    normalize_pair: tuple[int, int] | None = None,
    normalize_distance: float = 50.0,
) -> np.ndarray:
    """Euclidean point errors, one per landmark, in mm (or normalised mm).

    Args:
        pred: ``(B, N, D)`` (or ``(N, D)``) predicted coordinates; NaN rows = no prediction.
        true: ``(B, N, D)`` ground truth; NaN rows = missing annotation.
        spacing: None when both are already in mm (or px for pixel-only data); else voxel coordinates and the
            voxel size in mm, ``(D,)`` or ``(B, D)``, applied per axis.
        normalize_pair: ``(a, b)``: scale each image's errors by ``normalize_distance / |true[a] - true[b]|``
            (hand X-rays: 50 mm wrist width; Payer uses the zero-based pair ``(1, 5)``
            = :data:`HAND_XRAY_NORMALIZE_PAIR`, GU2Net ``(0, 4)``). Raises if either is missing in an image.
        normalize_distance: the physical distance (mm) the pair is assumed to span.

    Returns:
        ``(B, N)`` float64: NaN where the ground truth is missing, ``inf`` where only the prediction is missing.
    """
    p, t = _check_points(pred, true)
    if spacing is not None:
        s = _as_array(spacing, "spacing")
        if s.ndim == 1:
            s = s[None, None, :]
        elif s.ndim == 2:
            s = s[:, None, :]
        if s.shape[-1] != p.shape[-1]:
            raise ValueError(f"spacing must have D = {p.shape[-1]} values per image, got shape {s.shape}.")
        p, t = p * s, t * s
    gt_valid = ~np.isnan(t).any(axis=-1)
    pred_valid = ~np.isnan(p).any(axis=-1)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(((p - t) ** 2).sum(axis=-1))
    err = np.where(gt_valid & ~pred_valid, np.inf, err)
    err = np.where(gt_valid, err, np.nan)
    if normalize_pair is not None:
        a, b = normalize_pair
        ref = np.sqrt(((t[:, a] - t[:, b]) ** 2).sum(axis=-1))  # (B,)
        bad = np.flatnonzero(~np.isfinite(ref) | (ref <= 0))
        if bad.size:
            raise ValueError(
                f"point_errors: cannot normalise by landmarks {normalize_pair}: missing or coincident in image(s) "
                f"{bad.tolist()}."
            )
        err = err * (normalize_distance / ref)[:, None]
    return err


def _radius_key(r: float) -> str:
    return f"{float(r):g}"


def _stats(values: np.ndarray) -> dict[str, float]:
    """mean, SD (population, ddof=0 as Payer's numpy code), median, max of finite values (NaN if none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v)), "max": float(v.max())}


def summarize_errors(errors, radii: Sequence[float] = DEFAULT_RADII) -> dict:
    """Summary statistics of point errors ``(B, N)`` from :func:`point_errors` (NaN = excluded, inf = failure).

    Returns a JSON-ready dict:

    - ``count``: present ground-truth landmarks; ``num_missing_predictions``: of those, with no prediction (inf);
      ``num_images``.
    - ``pe_mean``, ``pe_std`` (ddof 0), ``pe_median``, ``pe_max``: point error over finite errors.
    - ``ipe_mean``, ``ipe_std``, ``ipe_median``, ``ipe_max`` and ``ipe`` (list, one per image, NaN for an image
      without finite errors): per-image mean of finite errors.
    - ``sdr`` / ``outliers`` / ``outlier_rate``: dicts keyed by radius (``"2"``, ``"2.5"``...): fraction with
      ``error <= r``, count with ``error > r`` (missing predictions included), and count / ``count``.
    """
    e = _as_array(errors, "errors")
    if e.ndim == 1:
        e = e[None]
    if e.ndim != 2:
        raise ValueError(f"summarize_errors: errors must be (B, N), got shape {e.shape}.")
    present = ~np.isnan(e)
    count = int(present.sum())
    finite = np.isfinite(e)
    pe = _stats(e)
    with np.errstate(invalid="ignore"):
        n_finite = finite.sum(axis=1)
        ipe = np.where(n_finite > 0, np.where(finite, e, 0.0).sum(axis=1) / np.maximum(n_finite, 1), np.nan)
    ipe_stats = _stats(ipe)
    summary: dict = {
        "count": count,
        "num_missing_predictions": int(np.isinf(e).sum()),
        "num_images": int(e.shape[0]),
        **{f"pe_{k}": v for k, v in pe.items()},
        **{f"ipe_{k}": v for k, v in ipe_stats.items()},
        "ipe": [float(v) for v in ipe],
        "sdr": {},
        "outliers": {},
        "outlier_rate": {},
    }
    for r in radii:
        key = _radius_key(r)
        with np.errstate(invalid="ignore"):
            outliers = int((present & (e > r)).sum())
        summary["outliers"][key] = outliers
        summary["outlier_rate"][key] = outliers / count if count else float("nan")
        summary["sdr"][key] = 1.0 - outliers / count if count else float("nan")
    return summary


def per_landmark_table(
    errors, names: Sequence[str] | None = None, radii: Sequence[float] = DEFAULT_RADII
) -> list[dict]:
    """One row per landmark: ``name``, ``count``, ``num_missing_predictions``, ``pe_mean/std/median/max`` and
    ``sdr_<r>`` for each radius; the rows can be written with :func:`write_metrics_csv`.

    Args:
        errors: ``(B, N)`` point errors from :func:`point_errors`.
        names: N landmark names; default ``"0", "1", ...``.
        radii: SDR radii (same unit as the errors).
    """
    e = _as_array(errors, "errors")
    if e.ndim != 2:
        raise ValueError(f"per_landmark_table: errors must be (B, N), got shape {e.shape}.")
    names = [str(i) for i in range(e.shape[1])] if names is None else [str(n) for n in names]
    if len(names) != e.shape[1]:
        raise ValueError(f"per_landmark_table: {len(names)} names for {e.shape[1]} landmarks.")
    rows = []
    for i, name in enumerate(names):
        s = summarize_errors(e[:, i : i + 1], radii)
        row = {"name": name, "count": s["count"], "num_missing_predictions": s["num_missing_predictions"]}
        row.update({f"pe_{k}": s[f"pe_{k}"] for k in ("mean", "std", "median", "max")})
        row.update({f"sdr_{key}": v for key, v in s["sdr"].items()})
        rows.append(row)
    return rows


def identified_landmarks(pred, true, max_dist: float = 20.0) -> np.ndarray:
    """Per-landmark identification outcome ``(B, N)``: 1.0 correct, 0.0 wrong, NaN where the ground truth is missing.

    Prediction i is correct when, among the present ground-truth landmarks j of its image, the closest to it is i
    (``d_ii <= d_ij`` for all j) and ``d_ii <= max_dist``. A missing prediction is wrong. Inputs in mm.
    """
    p, t = _check_points(pred, true)
    gt_valid = ~np.isnan(t).any(axis=-1)  # (B, N)
    # d[b, i, j] = |pred_i - true_j|
    with np.errstate(invalid="ignore"):
        d = np.sqrt(((p[:, :, None, :] - t[:, None, :, :]) ** 2).sum(axis=-1))
    d_other = np.where(gt_valid[:, None, :], d, np.inf)
    n = p.shape[1]
    own = np.diagonal(d, axis1=1, axis2=2)  # (B, N)
    d_other[:, np.arange(n), np.arange(n)] = np.inf
    nearest_other = d_other.min(axis=-1) if n > 1 else np.full(own.shape, np.inf)
    with np.errstate(invalid="ignore"):
        correct = np.isfinite(own) & (own <= max_dist) & (own <= nearest_other)
    return np.where(gt_valid, correct.astype(np.float64), np.nan)


def identification_rate(pred, true, max_dist: float = 20.0) -> float:
    """Identification rate (CSI 2014): correct identifications / present ground-truth landmarks (NaN if none).

    Args:
        pred: ``(B, N, D)`` predictions in mm (NaN rows = no prediction, counted wrong).
        true: ``(B, N, D)`` ground truth in mm (NaN rows = absent, excluded).
        max_dist: the distance (mm) within which a nearest-correct prediction counts (``<=``).
    """
    ok = identified_landmarks(pred, true, max_dist)
    present = ~np.isnan(ok)
    return float(ok[present].sum() / present.sum()) if present.any() else float("nan")


def identification_rate_per_landmark(pred, true, max_dist: float = 20.0) -> np.ndarray:
    """Identification rate of each landmark ``(N,)`` over the images where it is present (NaN if never present)."""
    ok = identified_landmarks(pred, true, max_dist)
    present = (~np.isnan(ok)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, np.nansum(ok, axis=0) / np.maximum(present, 1), np.nan)


def _batch_points(output) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, true)`` from an output transform: ``(B, N, D)`` tensors/arrays or lists of ``(N, D)`` (decollated)."""
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        raise ValueError(f"landmark metrics expect output_transform to return (pred_mm, true_mm), got {type(output)}.")
    pred, true = output
    pred = (
        np.stack([_as_array(x, "pred") for x in pred]) if isinstance(pred, (list, tuple)) else _as_array(pred, "pred")
    )
    true = (
        np.stack([_as_array(x, "true") for x in true]) if isinstance(true, (list, tuple)) else _as_array(true, "true")
    )
    return _check_points(pred, true)


class MeanRadialError(Metric):
    """Ignite metric: mean radial (point) error in mm over present ground-truth landmarks (MRE).

    ``output_transform`` maps the engine output to ``(pred_mm, true_mm)``, each ``(B, N, D)`` or a list of ``(N, D)``
    (MONAI's decollated output, e.g. ``monai.handlers.from_engine(["pred_mm", "label_mm"])``); converting
    heatmaps to mm is a post-transform's job. Missing predictions are excluded from the mean and counted in
    :attr:`num_missing_predictions`. Works with ``metric.attach(engine, name)`` and as a MONAI
    ``SupervisedEvaluator`` ``key_val_metric``; DDP-safe (sums are all-reduced in ``compute``).

    Args:
        output_transform: engine output -> ``(pred_mm, true_mm)``.
        spacing: optional voxel spacing when the points are voxel coordinates (see :func:`point_errors`).
        device: where the accumulators live.
    """

    def __init__(self, output_transform: Callable = lambda x: x, spacing=None, device: str | torch.device = "cpu"):
        self.spacing = spacing
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._num = torch.tensor(0, dtype=torch.long, device=self._device)
        self._missing = torch.tensor(0, dtype=torch.long, device=self._device)

    @reinit__is_reduced
    def update(self, output) -> None:
        pred, true = _batch_points(output)
        err = point_errors(pred, true, spacing=self.spacing)
        finite = np.isfinite(err)
        self._sum += float(err[finite].sum())
        self._num += int(finite.sum())
        self._missing += int(np.isinf(err).sum())

    @sync_all_reduce("_sum", "_num", "_missing")
    def compute(self) -> float:
        if int(self._num) == 0:
            raise NotComputableError("MeanRadialError needs at least one landmark with ground truth and prediction.")
        self.num_missing_predictions = int(self._missing)
        return float(self._sum / self._num)


class IdentificationRate(Metric):
    """Ignite metric: identification rate (CSI 2014, see :func:`identification_rate`) accumulated over batches.

    Args:
        output_transform: engine output -> ``(pred_mm, true_mm)``, ``(B, N, D)`` or lists of ``(N, D)``.
        max_dist: identification radius in mm (``<=``), default 20.
        device: where the accumulators live.
    """

    def __init__(
        self, output_transform: Callable = lambda x: x, max_dist: float = 20.0, device: str | torch.device = "cpu"
    ):
        self.max_dist = float(max_dist)
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._correct = torch.tensor(0, dtype=torch.long, device=self._device)
        self._present = torch.tensor(0, dtype=torch.long, device=self._device)

    @reinit__is_reduced
    def update(self, output) -> None:
        pred, true = _batch_points(output)
        ok = identified_landmarks(pred, true, self.max_dist)
        present = ~np.isnan(ok)
        self._correct += int(ok[present].sum())
        self._present += int(present.sum())

    @sync_all_reduce("_correct", "_present")
    def compute(self) -> float:
        if int(self._present) == 0:
            raise NotComputableError("IdentificationRate needs at least one present ground-truth landmark.")
        return float(self._correct) / float(self._present)
