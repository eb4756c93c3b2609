"""Plots for landmark detection results (matplotlib, Agg backend): cumulative error curves and overlays.

Every function saves its figure atomically (:func:`transforms.io.atomic_write`: temporary file in the same
folder, fsync, ``os.replace``; permissions follow the umask) and returns the path written. Coordinates are voxel
indices of the image array, ordered like its axes (``(i, j)`` for an ``(H, W)``-shaped array as given: axis 0 is
drawn vertically, axis 1 horizontally).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from transforms.io.atomic import atomic_write  # noqa: E402

__all__ = [
    "cumulative_plot_limit",
    "display_2d",
    "plot_attack_convergence",
    "plot_attack_eps_sweep",
    "plot_cumulative_ipe",
    "plot_isolation",
    "plot_overlay",
]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x, dtype=np.float64)


def save_figure(fig, path: str | os.PathLike, dpi: int, make_parents: bool = False) -> Path:
    """Save ``fig`` atomically to ``path`` (format from its extension, PNG without one) and close it.

    Raises:
        FileNotFoundError: ``path``'s folder does not exist and ``make_parents`` is False.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    try:
        if not make_parents and not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save the figure to {path}: folder {path.parent} does not exist.")
        return atomic_write(
            path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt), make_parents=make_parents
        )
    finally:
        plt.close(fig)


_save = save_figure


def cumulative_plot_limit(errors: Sequence[np.ndarray], radii: Sequence[float] = ()) -> float:
    """Default x-axis limit of a cumulative error plot: 1.05 x the nearest-rank 99th percentile of all finite errors
    (at least the largest radius). Nearest rank means that with fewer than 100 errors the largest is kept on the plot,
    so every curve reaches its top; with more, at most 1% of them run off the right edge.

    Args:
        errors: 1D error arrays (any unit; inf/NaN ignored).
        radii: the guide-line radii that must stay visible.
    """
    finite = np.concatenate([np.asarray(e, dtype=float).reshape(-1) for e in errors] + [np.zeros(0)])
    finite = finite[np.isfinite(finite)]
    p99 = float(np.percentile(finite, 99, method="inverted_cdf")) if finite.size else 0.0
    return max(p99, max(radii, default=1.0)) * 1.05


def plot_cumulative_ipe(
    errors_by_method: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    radii: Sequence[float] = (2.0, 2.5, 3.0, 4.0, 10.0),
    unit: str = "mm",
    per_image: bool = True,
    max_error: float | None = None,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Cumulative distribution of errors, one curve per method: fraction of images (or points) with error <= e.

    Args:
        errors_by_method: method name -> errors: ``(B, N)`` point errors (NaN = missing GT, inf = missing
            prediction) or a 1D array of per-image errors.
        path: output image file (``.png``, ``.pdf``, ``.svg``).
        radii: vertical guide lines at these errors (SDR radii).
        unit: unit label of the errors (``"mm"`` or ``"px"``).
        per_image: with ``(B, N)`` inputs, plot the per-image mean error (IPE, finite errors only) if True,
            else every point error (inf counted as never reached).
        max_error: x-axis limit; default :func:`cumulative_plot_limit` (the nearest-rank 99th percentile).
        title: figure title.
        dpi: resolution.
    """
    if not errors_by_method:
        raise ValueError("plot_cumulative_ipe: errors_by_method is empty.")
    curves = {}
    for name, errors in errors_by_method.items():
        e = _numpy(errors)
        if e.ndim == 2 and per_image:
            finite = np.isfinite(e)
            n = finite.sum(axis=1)
            e = np.where(n > 0, np.where(finite, e, 0).sum(axis=1) / np.maximum(n, 1), np.inf)
        e = e.reshape(-1)
        e = e[~np.isnan(e)]
        curves[name] = np.sort(e)
    xmax = max_error if max_error is not None else cumulative_plot_limit(list(curves.values()), radii)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, e in curves.items():
        if e.size == 0:
            continue
        frac = np.arange(1, e.size + 1) / e.size
        x = np.concatenate([[0.0], np.minimum(e, xmax * 10)])
        y = np.concatenate([[0.0], frac])
        ax.step(x, y, where="post", label=f"{name} (n={e.size})")
    for r in radii:
        ax.axvline(r, color="0.7", lw=0.8, ls="--")
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.01)
    what = "image mean error (IPE)" if per_image else "point error"
    ax.set_xlabel(f"{what} [{unit}]")
    ax.set_ylabel("cumulative fraction")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


def _draw_points(ax, pred2: np.ndarray, true2: np.ndarray | None, names: Sequence[str] | None) -> None:
    """pred2/true2 ``(N, 2)`` in (row, column) order; lines from ground truth to prediction. Without ground truth
    (``true2`` None) only the predictions are drawn, with their names."""
    if true2 is None:
        for k in range(pred2.shape[0]):
            if names is not None and np.isfinite(pred2[k]).all():
                xy = (pred2[k, 1], pred2[k, 0])
                ax.annotate(str(names[k]), xy, color="yellow", fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.scatter(pred2[:, 1], pred2[:, 0], s=18, c="red", marker="x", label="prediction", linewidths=1.0)
        return
    for k in range(true2.shape[0]):
        t, p = true2[k], pred2[k]
        if np.isfinite(t).all() and np.isfinite(p).all():
            ax.plot([t[1], p[1]], [t[0], p[0]], color="yellow", lw=0.8)
        if names is not None and np.isfinite(t).all():
            ax.annotate(
                str(names[k]), (t[1], t[0]), color="white", fontsize=6, xytext=(3, 3), textcoords="offset points"
            )
    ax.scatter(
        true2[:, 1], true2[:, 0], s=14, c="lime", marker="o", label="ground truth", edgecolors="k", linewidths=0.3
    )
    ax.scatter(pred2[:, 1], pred2[:, 0], s=18, c="red", marker="x", label="prediction", linewidths=1.0)


def display_2d(image: np.ndarray, *points: np.ndarray) -> tuple[np.ndarray, ...]:
    """A MONAI 2D array and its voxel coordinates as an upright picture: ``(view, *points_rc)``.

    MONAI loads a 2D file as ``(W, H)`` (axis 0 = x, axis 1 = y), so the picture's rows are axis 1: ``view =
    image.T`` (``(H, W)``), and each ``(N, 2)`` point array ``(x, y)`` becomes ``(row, column) = (y, x)``.
    """
    return (np.asarray(image).T, *(np.asarray(p)[:, ::-1] for p in points))


def plot_overlay(
    image,
    pred,
    true,
    path: str | os.PathLike,
    names: Sequence[str] | None = None,
    mode: str = "mip",
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Overlay of predicted (red x) and ground-truth (green o) landmarks on the image, joined by yellow lines.

    Args:
        image: ``(W, H)`` 2D array as MONAI loads a 2D file (axis 0 = image x, left to right; axis 1 = image y, top
            to bottom: drawn upright, see :func:`display_2d`) or ``(D0, D1, D2)`` 3D array (no channel axis; a
            leading channel of size 1 is dropped).
        pred: ``(N, 2|3)`` predicted voxel coordinates (NaN rows not drawn).
        true: ``(N, 2|3)`` ground-truth voxel coordinates, or None (predictions only, e.g. on a user's own images).
        path: output image file.
        names: optional landmark names, written next to the ground truth (next to the predictions without it).
        mode: 3D only: ``"mip"`` (maximum-intensity projections along axis 0 and axis 1, e.g. sagittal and
            coronal for RAS-ordered arrays) or ``"slices"`` (the slices through the mean ground-truth position, or
            the mean prediction without ground truth).
        title: figure title.
        dpi: resolution.
    """
    img = _numpy(image)
    if img.ndim in (3, 4) and img.shape[0] == 1:
        img = img[0]
    p = _numpy(pred)
    t = None if true is None else _numpy(true)
    if img.ndim not in (2, 3):
        raise ValueError(f"plot_overlay: image must be (H, W) or (D0, D1, D2), got shape {img.shape}.")
    dims = img.ndim
    if (t is not None and p.shape != t.shape) or p.ndim != 2 or p.shape[1] != dims:
        raise ValueError(
            f"plot_overlay: pred and true must be (N, {dims}) for a {dims}D image, got {p.shape} and "
            f"{None if t is None else t.shape}."
        )
    if names is not None and len(names) != p.shape[0]:
        raise ValueError(f"plot_overlay: {len(names)} names for {p.shape[0]} landmarks.")
    if dims == 2:
        view, p_rc, *t_rc = display_2d(img, p, *([] if t is None else [t]))
        t_rc = t_rc[0] if t_rc else None
        fig, ax = plt.subplots(figsize=(6, 6 * view.shape[0] / max(view.shape[1], 1)))
        ax.imshow(view, cmap="gray")
        _draw_points(ax, p_rc, t_rc, names)
        ax.set_axis_off()
        ax.legend(loc="upper right", fontsize=7)
    else:
        if mode not in ("mip", "slices"):
            raise ValueError(f"plot_overlay: mode must be 'mip' or 'slices', got {mode!r}.")
        ref = p if t is None else t
        centre = np.nanmean(ref, axis=0) if np.isfinite(ref).any() else np.array(img.shape) / 2
        centre = np.clip(np.nan_to_num(np.round(centre)).astype(int), 0, np.array(img.shape) - 1)
        fig, axes = plt.subplots(1, 2, figsize=(10, 6))
        for ax, drop in zip(axes, (0, 1)):
            keep = [a for a in range(3) if a != drop]
            view = img.max(axis=drop) if mode == "mip" else np.take(img, centre[drop], axis=drop)
            # draw the longer axis (typically z) vertically
            transpose = view.shape[1] > view.shape[0]
            if transpose:
                view, keep = view.T, keep[::-1]
            ax.imshow(view, cmap="gray", aspect="equal", origin="lower" if transpose else "upper")
            _draw_points(ax, p[:, keep], None if t is None else t[:, keep], names)
            label = "MIP" if mode == "mip" else f"slice {centre[drop]}"
            ax.set_title(
                f"{label} along axis {drop} (vertical: axis {keep[0]}, horizontal: axis {keep[1]})", fontsize=8
            )
            ax.set_axis_off()
        axes[0].legend(loc="upper right", fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def plot_attack_convergence(
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | os.PathLike,
    radius: float = 4.0,
    unit: str = "mm",
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Convergence of targeted landmark attacks: error and SDR of the moved (against their goals) and the stationary
    (against the ground truth) landmarks over the attack's iterations, one pair of curves per attack.

    Args:
        curves: attack name (e.g. ``"TI"``, ``"ATI"``) -> rows with ``iteration``, ``targeted_mre``,
            ``stationary_mre``, ``targeted_sdr``, ``stationary_sdr`` (the ``iterations`` of
            :func:`mlm.attacks.attack_metrics`; iteration 0 = the clean prediction).
        path: output image file.
        radius: the SDR radius, for the axis label.
        unit: unit of the errors (``"mm"`` or ``"px"``).
        title: figure title.
        dpi: resolution.
    """
    if not curves:
        raise ValueError("plot_attack_convergence: no curves.")
    fig, (ax_e, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, rows) in enumerate(curves.items()):
        rows = sorted(rows, key=lambda r: r["iteration"])
        k = [r["iteration"] for r in rows]
        color = f"C{i}"
        for key, style, what in (("targeted", "-", "moved vs goal"), ("stationary", "--", "stationary vs truth")):
            mre = [np.nan if r[f"{key}_mre"] is None else r[f"{key}_mre"] for r in rows]
            sdr = [np.nan if r[f"{key}_sdr"] is None else 100 * r[f"{key}_sdr"] for r in rows]
            ax_e.plot(k, mre, style, marker="o", ms=3, color=color, label=f"{name}: {what}")
            ax_s.plot(k, sdr, style, marker="o", ms=3, color=color, label=f"{name}: {what}")
    _finish_error_sdr_axes(ax_e, ax_s, f"MRE [{unit}]", f"SDR {radius:g} {unit} [%]", "attack iteration", (ax_e,))
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def _finish_error_sdr_axes(ax_e, ax_s, error_label: str, sdr_label: str, xlabel: str, legend_axes) -> None:
    """Labels, the SDR axis's 0-100% range, grids and legends of an (error, SDR) pair of axes."""
    ax_e.set_ylabel(error_label)
    ax_s.set_ylabel(sdr_label)
    ax_s.set_ylim(-2, 102)
    for ax in (ax_e, ax_s):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    for ax in legend_axes:
        ax.legend(fontsize=7)


def plot_isolation(
    isolation,
    attack_error,
    path: str | os.PathLike,
    names: Sequence[str] | None = None,
    pearson_r: float | None = None,
    unit: str = "mm",
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Scatter plot of the degree of isolation (mean distance to the nearest landmarks) against the targeted error,
    one point per landmark (:func:`mlm.attacks.isolation_analysis`); NaN / None values are left out.

    Args:
        isolation: ``(N,)`` degrees of isolation.
        attack_error: ``(N,)`` targeted errors (against the goals).
        path: output image file.
        names: N landmark names written next to the points.
        pearson_r: correlation written in the title.
        unit: unit of both axes.
        title: figure title (default: the correlation).
        dpi: resolution.
    """
    x = np.array([np.nan if v is None else v for v in np.asarray(isolation, dtype=object).reshape(-1)], dtype=float)
    y = np.array([np.nan if v is None else v for v in np.asarray(attack_error, dtype=object).reshape(-1)], dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"plot_isolation: {x.size} isolation values for {y.size} errors.")
    ok = np.isfinite(x) & np.isfinite(y)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(x[ok], y[ok], s=18)
    if names is not None:
        for i in np.flatnonzero(ok):
            ax.annotate(str(names[i]), (x[i], y[i]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        slope, intercept = np.polyfit(x[ok], y[ok], 1)
        xs = np.linspace(x[ok].min(), x[ok].max(), 2)
        ax.plot(xs, slope * xs + intercept, color="C1", lw=1)
    ax.set_xlabel(f"degree of isolation: mean distance to the nearest landmarks [{unit}]")
    ax.set_ylabel(f"targeted error (moved landmark to its goal) [{unit}]")
    ax.grid(alpha=0.3)
    r_text = "n/a" if pearson_r is None or not np.isfinite(pearson_r) else f"{pearson_r:.3f}"
    ax.set_title(title or f"isolation vs attack error: Pearson r = {r_text} ({int(ok.sum())} landmarks)", fontsize=9)
    return _save(fig, path, dpi)


def plot_attack_eps_sweep(
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | os.PathLike,
    radius: float = 4.0,
    unit: str = "mm",
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Targeted attacks against their eps: targeted MRE and the targeted and stationary SDR at the last checkpoint.

    Args:
        curves: attack name -> rows with ``eps_255`` (grey levels), ``targeted_mre``, ``targeted_sdr`` and
            ``stationary_sdr`` (None / NaN: not drawn).
        path: output image file.
        radius: the SDR radius, for the axis label.
        unit: unit of the errors.
        title: figure title.
        dpi: resolution.
    """
    if not curves:
        raise ValueError("plot_attack_eps_sweep: no curves.")

    def values(rows: Sequence[Mapping[str, float]], key: str, scale: float = 1.0) -> list[float]:
        return [np.nan if r.get(key) is None else scale * r[key] for r in rows]

    fig, (ax_e, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, rows) in enumerate(curves.items()):
        rows = sorted(rows, key=lambda r: r["eps_255"])
        eps = [r["eps_255"] for r in rows]
        ax_e.plot(eps, values(rows, "targeted_mre"), "-o", ms=3, color=f"C{i}", label=f"{name}: moved vs goal")
        ax_s.plot(eps, values(rows, "targeted_sdr", 100), "-o", ms=3, color=f"C{i}", label=f"{name}: moved vs goal")
        ax_s.plot(eps, values(rows, "stationary_sdr", 100), "--o", ms=3, color=f"C{i}", label=f"{name}: stationary")
    _finish_error_sdr_axes(
        ax_e, ax_s, f"targeted MRE [{unit}]", f"SDR {radius:g} {unit} [%]", "eps [grey levels of 0-255]", (ax_e, ax_s)
    )
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)
