"""Report files of a protocol's result: tables, summary, per-landmark and per-image errors, the cumulative plot."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mlm.protocols.tables import format_markdown, protocol_table
from mlm.reports import atomic_write_text, write_metrics_csv, write_metrics_json

__all__ = ["write_protocol_report"]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "group"


def write_protocol_report(result: dict, output_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
    """Write a result of :func:`evaluate_protocol` to ``output_dir`` (created), every file atomically.

    Files: ``table.md`` (:func:`format_markdown`), ``table.csv`` (numbers of the main table), ``summary.json``
    (settings, summaries per group, CSI regions), ``per_landmark_<group>.csv``, ``errors_per_image.csv`` (one row
    per image and group, empty = no ground truth, ``inf`` = no prediction) and ``cumulative_ipe.png`` (one curve
    per group).

    Returns:
        ``{kind: path}`` of the files written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["table.md"] = atomic_write_text(out / "table.md", format_markdown(result))
    written["table.csv"] = write_metrics_csv(out / "table.csv", protocol_table(result)[2])
    summary = {k: v for k, v in result.items() if k != "groups"}
    summary["groups"] = [{k: v for k, v in g.items() if k not in ("errors", "per_landmark")} for g in result["groups"]]
    written["summary.json"] = write_metrics_json(out / "summary.json", summary)
    rows = []
    for g in result["groups"]:
        written[f"per_landmark_{_slug(g['name'])}.csv"] = write_metrics_csv(
            out / f"per_landmark_{_slug(g['name'])}.csv",
            g["per_landmark"],
        )
        if "(all)" in g["name"]:
            continue
        for i, err in zip(g["summary"]["ids"], g["errors"]):
            rows.append(
                {
                    "group": g["name"],
                    "id": i,
                    **{n: ("" if np.isnan(e) else float(e)) for n, e in zip(result["names"], err)},
                }
            )
    written["errors_per_image.csv"] = write_metrics_csv(out / "errors_per_image.csv", rows)
    if plot:
        from mlm.visualize import plot_cumulative_ipe

        unit = result["units"].split(" ")[0]
        curves = {f"{result['method']}, {g['name']}": g["errors"] for g in result["groups"]}
        written["cumulative_ipe.png"] = plot_cumulative_ipe(
            curves,
            out / "cumulative_ipe.png",
            radii=result["settings"]["radii"],
            unit=unit,
            title=f"{result['protocol']}: cumulative image mean error",
        )
    return written
