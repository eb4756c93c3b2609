"""Report writers for metric summaries and tables: JSON and CSV, written atomically."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from transforms.io.atomic import atomic_write_text

__all__ = ["write_metrics_json", "write_metrics_csv", "read_point_errors", "atomic_write_text"]


def _jsonable(x):
    """numpy/torch scalars and arrays -> Python; non-finite floats -> None (strict JSON has no NaN/inf)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _jsonable(x.tolist())
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_metrics_json(path: str | os.PathLike, summary: Mapping) -> Path:
    """Write a metric summary (e.g. :func:`mlm.metrics.summarize_errors`) as indented JSON; NaN/inf become null.

    Returns the path written.
    """
    return atomic_write_text(path, json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n", make_parents=False)


def write_metrics_csv(path: str | os.PathLike, table: Sequence[Mapping]) -> Path:
    """Write rows (e.g. :func:`mlm.metrics.per_landmark_table`) as CSV with a header from the union of their keys
    (first-seen order). Floats are written with ``repr`` precision; NaN as ``nan``. Returns the path written."""
    rows = list(table)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    lines: list[str] = []

    class _Sink:
        def write(self, s: str) -> None:
            lines.append(s)

    writer = csv.DictWriter(_Sink(), fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
    return atomic_write_text(path, "".join(lines), make_parents=False)


def read_point_errors(path: str | os.PathLike) -> np.ndarray:
    """An ``errors_per_image.csv`` report (one row per image, one column per landmark, empty = no ground truth)
    -> ``(B, N)`` errors (NaN where empty)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(v) if v not in ("", None) else np.nan for k, v in r.items() if k != "id"] for r in rows])
