"""Metrics of the targeted landmark attacks of "Miss the Point" (Yao et al., MICCAI 2020), and the isolation analysis.

A targeted attack moves some landmarks of each image to goals and keeps the others still (:mod:`mlm.attacks`). Its
success is measured separately for the two groups (METHODS.md section 1; the MedRE and SDR of each group are in the
paper, not in the authors' code):

- *targeted* (moved) landmarks: the error of the attacked prediction against the **goal** (targeted MRE, MedRE, SDR);
- *stationary* landmarks: the error of the attacked prediction against the **ground truth** (MRE, MedRE, SDR), to be
  compared with the same landmarks' clean error: a good attack moves the chosen landmarks and leaves the others.

Every function takes coordinates in one physical space (world mm, or px for pixel-only images), ``(B, N, D)`` arrays
or tensors with NaN rows for missing points, and follows :mod:`mlm.metrics`'s conventions: success at radius ``r``
is ``error <= r``, a missing ground truth (or goal) is left out, a missing prediction of a present point is a failure
(``inf``, left out of the mean and median).

The *degree of isolation* of a landmark (the paper's analysis of which landmarks are hard to move) is its mean
distance to its ``k = 5`` nearest other landmarks in the ground truth; :func:`isolation_analysis` correlates it with
the targeted error (Pearson's r over landmarks, and over single moved instances).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from mlm.metrics import point_errors, summarize_errors

__all__ = [
    "PAPER_CHECKPOINTS",
    "attack_checkpoints",
    "attack_errors",
    "attack_metrics",
    "attack_summary",
    "isolation_analysis",
    "isolation_degree",
    "pearson_correlation",
]

#: the iterations at which the authors log their metrics during a 300-iteration attack (0-based loop counter: the
#: prediction on the image after ``k`` updates)
PAPER_CHECKPOINTS: tuple[int, ...] = (1, 20, 50, 99, 150, 200, 250, 299)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x, dtype=np.float64)


def attack_checkpoints(num_iterations: int, checkpoints: Sequence[int] = PAPER_CHECKPOINTS) -> list[int]:
    """The checkpoints ``k`` (sorted, unique) an attack of ``num_iterations`` updates can record: those of
    ``checkpoints`` in ``0..num_iterations``; when none is, ``[num_iterations]`` (the final image).

    ``attack_checkpoints(300)`` is the paper's 1, 20, 50, 99, 150, 200, 250, 299; ``attack_checkpoints(60)`` is
    1, 20, 50; ``attack_checkpoints(0)`` is ``[0]`` (the clean prediction).
    """
    n = int(num_iterations)
    if n < 0:
        raise ValueError(f"attack_checkpoints: num_iterations must be >= 0, got {num_iterations}.")
    ks = sorted({int(k) for k in checkpoints if 0 <= int(k) <= n})
    return ks or [n]


def attack_errors(pred, goals, truth) -> tuple[np.ndarray, np.ndarray]:
    """Point errors of an attacked prediction, split into moved and stationary landmarks.

    Args:
        pred: ``(B, N, D)`` (or ``(N, D)``) predicted coordinates (mm); NaN rows = no prediction.
        goals: ``(B, N, D)`` goals of the attack in the same space; a NaN row = a stationary landmark.
        truth: ``(B, N, D)`` ground truth; NaN rows = missing annotation.

    Returns:
        ``(targeted, stationary)``, both ``(B, N)`` float64: ``targeted`` = distance to the goal for the moved
        landmarks (NaN for the stationary ones); ``stationary`` = distance to the ground truth for the stationary
        landmarks (NaN for the moved ones and where the ground truth is missing). ``inf`` where a prediction is
        missing.
    """
    p, g, t = (_np(x) for x in (pred, goals, truth))
    p, g, t = (x[None] if x.ndim == 2 else x for x in (p, g, t))
    if not (p.shape == g.shape == t.shape) or p.ndim != 3:
        raise ValueError(
            f"attack_errors: pred, goals and truth must be (B, N, D) of one shape, got {p.shape}, {g.shape}, {t.shape}."
        )
    moved = np.isfinite(g).all(axis=-1)
    targeted = point_errors(p, g)  # NaN where the goal row is NaN (stationary)
    stationary = np.where(moved, np.nan, point_errors(p, t))
    return targeted, stationary


def attack_summary(targeted, stationary, radius: float = 4.0) -> dict[str, float | int]:
    """Summary of the errors of :func:`attack_errors` (``(B, N)`` each; NaN = not in the group).

    Returns:
        ``targeted_count``, ``targeted_mre``, ``targeted_medre``, ``targeted_sdr`` (fraction with error ``<=
        radius``), and the same four keys with the prefix ``stationary_``. An empty group gives count 0 and NaN
        values.
    """
    out: dict[str, float | int] = {}
    for name, errors in (("targeted", targeted), ("stationary", stationary)):
        e = _np(errors)
        s = summarize_errors(e if e.ndim == 2 else e.reshape(1, -1), [radius])
        out[f"{name}_count"] = s["count"]
        out[f"{name}_mre"] = s["pe_mean"]
        out[f"{name}_medre"] = s["pe_median"]
        out[f"{name}_sdr"] = s["sdr"][f"{float(radius):g}"]
    return out


def attack_metrics(
    pred_by_iteration: Mapping[int, object], goals, truth, clean_pred, radius: float = 4.0
) -> dict[str, object]:
    """The attack's metrics at its checkpoints and on the clean images.

    Args:
        pred_by_iteration: ``{k: (B, N, D)}`` the attacked prediction after ``k`` updates (mm).
        goals: ``(B, N, D)`` goals (mm), NaN rows = stationary landmarks.
        truth: ``(B, N, D)`` ground truth (mm), NaN rows = missing.
        clean_pred: ``(B, N, D)`` prediction on the clean images (mm).
        radius: SDR radius (the paper's 4 mm).

    Returns:
        ``{"radius": r, "clean": {...}, "iterations": [{"iteration": k, **attack_summary}, ...]}`` with, in
        ``clean``: ``mre``, ``medre``, ``sdr``, ``count`` of every landmark against the ground truth (the model's
        clean accuracy), and :func:`attack_summary` of the clean prediction (``targeted_*``: how far the goals are
        from the clean prediction; ``stationary_*``: the stationary landmarks' clean accuracy, the reference of
        the "stationary landmarks keep their accuracy" check).
    """
    truth_np = _np(truth)
    clean_errors = point_errors(_np(clean_pred), truth_np)
    s = summarize_errors(clean_errors, [radius])
    clean = {
        "count": s["count"],
        "mre": s["pe_mean"],
        "medre": s["pe_median"],
        "sdr": s["sdr"][f"{float(radius):g}"],
        **attack_summary(*attack_errors(clean_pred, goals, truth), radius=radius),
    }
    rows = [
        {"iteration": int(k), **attack_summary(*attack_errors(pred_by_iteration[k], goals, truth), radius=radius)}
        for k in sorted(pred_by_iteration)
    ]
    return {"radius": float(radius), "clean": clean, "iterations": rows}


def isolation_degree(truth, k: int = 5) -> np.ndarray:
    """Degree of isolation of each landmark of each image: the mean distance to its ``k`` nearest other landmarks.

    Args:
        truth: ``(B, N, D)`` (or ``(N, D)``) ground-truth coordinates (mm); NaN rows = missing (left out as
            neighbours).
        k: number of neighbours (the paper's 5); fewer when fewer other landmarks are present.

    Returns:
        ``(B, N)`` float64 (mm); NaN for a missing landmark or one without another present landmark.
    """
    t = _np(truth)
    t = t[None] if t.ndim == 2 else t
    if t.ndim != 3:
        raise ValueError(f"isolation_degree: truth must be (B, N, D), got shape {t.shape}.")
    if int(k) < 1:
        raise ValueError(f"isolation_degree: k must be >= 1, got {k}.")
    present = np.isfinite(t).all(axis=-1)  # (B, N)
    with np.errstate(invalid="ignore"):
        dist = np.sqrt(((t[:, :, None] - t[:, None]) ** 2).sum(axis=-1))  # (B, N, N)
    num = t.shape[1]
    valid = present[:, :, None] & present[:, None, :] & ~np.eye(num, dtype=bool)[None]
    dist = np.where(valid, dist, np.inf)
    nearest = np.sort(dist, axis=-1)[:, :, : int(k)]  # (B, N, k)
    finite = np.isfinite(nearest)
    counts = finite.sum(axis=-1)
    sums = np.where(finite, nearest, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        degree = np.where((counts > 0) & present, sums / np.maximum(counts, 1), np.nan)
    return degree


def pearson_correlation(x, y) -> float:
    """Pearson's r of the pairs where both ``x`` and ``y`` are finite; NaN with fewer than 2 pairs or a constant."""
    a, b = _np(x).reshape(-1), _np(y).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"pearson_correlation: x and y must have the same size, got {a.size} and {b.size}.")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 2:
        return float("nan")
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    return float((da * db).sum() / denom) if denom > 0 else float("nan")


def isolation_analysis(truth, targeted_errors, k: int = 5) -> dict[str, object]:
    """Degree of isolation against the attack's targeted error, per landmark and per moved instance.

    Args:
        truth: ``(B, N, D)`` ground truth (mm).
        targeted_errors: ``(B, N)`` errors of the moved landmarks against their goals (NaN: not moved), e.g. the
            ``targeted`` of :func:`attack_errors` at the last checkpoint.
        k: neighbours of :func:`isolation_degree`.

    Returns:
        ``k``; per landmark (lists of N): ``isolation`` (mean over images of the degree, mm), ``attack_error`` (mean
        finite targeted error over the images where it was moved, NaN if never) and ``num_moved``; ``pearson_r``
        over the landmarks with both values and ``num_landmarks`` of them; ``pearson_r_instances`` over every moved
        (image, landmark) pair with its own image's degree, and ``num_instances``.
    """
    degree = isolation_degree(truth, k)
    errors = _np(targeted_errors)
    errors = errors[None] if errors.ndim == 1 else errors
    if errors.shape != degree.shape:
        raise ValueError(f"isolation_analysis: targeted_errors {errors.shape} do not match truth {degree.shape}.")
    finite = np.isfinite(errors)
    with np.errstate(invalid="ignore"):
        iso = np.array([np.nanmean(c) if np.isfinite(c).any() else np.nan for c in degree.T])
        err = np.array([c[np.isfinite(c)].mean() if np.isfinite(c).any() else np.nan for c in errors.T])
    both = np.isfinite(iso) & np.isfinite(err)
    inst = finite & np.isfinite(degree)

    def _list(v: np.ndarray) -> list[float | None]:
        return [float(x) if np.isfinite(x) else None for x in v]

    return {
        "k": int(k),
        "isolation": _list(iso),
        "attack_error": _list(err),
        "num_moved": [int(c) for c in finite.sum(axis=0)],
        "pearson_r": pearson_correlation(iso, err),
        "num_landmarks": int(both.sum()),
        "pearson_r_instances": pearson_correlation(degree[inst], errors[inst]),
        "num_instances": int(inst.sum()),
    }
