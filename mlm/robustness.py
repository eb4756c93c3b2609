"""Robustness reports: landmark errors under attacks of increasing strength, as a table and a curve.

One row per noise level (perturbation radius ``eps`` in the image's intensity units; the AMAT evaluation's L2
levels 0, 0.5, ..., 3 on a ``[-1, 1]`` image): MRE (mean point error, mm or px), its SD and the success detection
rates at the radii (``error <= r``, DESIGN.md). :func:`robustness_row` builds a row from the ``(B, N)`` point
errors of :func:`mlm.metrics.point_errors`; :func:`write_robustness_report` writes ``robustness.csv``,
``robustness.md``, ``robustness.json`` and ``robustness.png``; :func:`plot_robustness_curves` draws several models
(``scripts/compare_robustness.py``). :func:`plot_margin_histogram` draws AMAT's margins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mlm.metrics import summarize_errors  # noqa: E402
from mlm.reports import write_metrics_csv, write_metrics_json  # noqa: E402
from mlm.visualize import save_figure  # noqa: E402
from transforms.io.atomic import atomic_write_text  # noqa: E402

__all__ = [
    "markdown_table",
    "plot_margin_histogram",
    "plot_robustness_curves",
    "robustness_row",
    "write_robustness_report",
]


def robustness_row(level: float, errors: np.ndarray, radii: Sequence[float]) -> dict:
    """One table row: ``eps``, ``mre``, ``mre_std``, ``median``, ``sdr_<r>`` (fractions), ``num_images``.

    Args:
        level: the attack's radius (intensity units; 0: clean).
        errors: ``(B, N)`` point errors (NaN: no ground truth, inf: no prediction).
        radii: SDR radii (mm, or px for pixel-only data).
    """
    summary = summarize_errors(np.asarray(errors, dtype=np.float64), radii)
    row = {
        "eps": float(level),
        "mre": summary["pe_mean"],
        "mre_std": summary["pe_std"],
        "median": summary["pe_median"],
    }
    row.update({f"sdr_{k}": v for k, v in summary["sdr"].items()})
    row["num_images"] = summary["num_images"]
    return row


def markdown_table(rows: Sequence[Mapping], title: str | None = None, digits: int = 3) -> str:
    """A Markdown table of ``rows`` (columns: the union of their keys, first-seen order)."""
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)

    def cell(v) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float | np.floating) else str(v)

    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(cell(row.get(k, "")) for k in fields) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_robustness_curves(
    curves: Mapping[str, Sequence[Mapping]],
    path: str | os.PathLike,
    radius: float | None = None,
    units: str = "mm",
    xlabel: str = "L2 perturbation radius eps (image intensity units)",
    dpi: int = 120,
) -> Path:
    """MRE (and the SDR at ``radius``, if given) against eps, one line per model; saved atomically to ``path``."""
    panels = 2 if radius is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    key = f"sdr_{float(radius):g}" if radius is not None else None
    for name, rows in curves.items():
        eps = [r["eps"] for r in rows]
        axes[0, 0].plot(eps, [r["mre"] for r in rows], marker="o", label=name)
        if key is not None:
            axes[0, 1].plot(eps, [100.0 * r.get(key, np.nan) for r in rows], marker="o", label=name)
    axes[0, 0].set(xlabel=xlabel, ylabel=f"MRE ({units})", title="mean radial error under L2 PGD")
    if key is not None:
        axes[0, 1].set(xlabel=xlabel, ylabel=f"SDR {float(radius):g} {units} (%)", title="success detection rate")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi, make_parents=True)


def write_robustness_report(
    output_dir: str | os.PathLike,
    rows: Sequence[Mapping],
    settings: Mapping,
    name: str = "model",
    radius: float | None = None,
    units: str = "mm",
) -> dict[str, Path]:
    """Write ``robustness.csv``, ``robustness.md``, ``robustness.json`` (rows + attack settings) and
    ``robustness.png`` (the curve) into ``output_dir``; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": write_metrics_csv(out / "robustness.csv", rows),
        "md": atomic_write_text(out / "robustness.md", markdown_table(rows, f"{name}: {dict(settings)}")),
        "json": write_metrics_json(out / "robustness.json", {"name": name, "settings": settings, "rows": rows}),
        "png": plot_robustness_curves({name: rows}, out / "robustness.png", radius=radius, units=units),
    }
    return paths


def plot_margin_histogram(
    margins: np.ndarray, path: str | os.PathLike, max_margin: float, title: str = "", dpi: int = 100
) -> Path:
    """Histogram of AMAT's per-sample margins (``(K,)``, intensity units) on ``[0, max_margin]``, saved atomically."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    values = np.asarray(margins, dtype=np.float64)
    ax.hist(values, bins=20, range=(0.0, float(max_margin)), color="tab:blue", alpha=0.8)
    if values.size:
        ax.axvline(float(values.mean()), color="tab:red", label=f"mean {values.mean():.3g}")
        ax.legend(fontsize=8)
    ax.set(xlabel="margin (L2 radius, image intensity units)", ylabel="training samples", title=title)
    fig.tight_layout()
    return save_figure(fig, path, dpi, make_parents=True)
