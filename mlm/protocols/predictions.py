"""Prediction folders: the ``<id>_landmarks.json`` files a bundle's inference writes, read as RAS mm."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transforms.io.prediction_files import PREDICTION_SUFFIX, read_prediction_file

__all__ = ["read_prediction_file", "read_predictions"]


def _prediction_folder(folder: Path) -> Path:
    """``folder`` itself, or its ``predictions/`` subfolder when given a bundle's ``output_dir``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder {folder} does not exist.")
    if not any(folder.glob(f"*{PREDICTION_SUFFIX}")) and (folder / "predictions").is_dir():
        return folder / "predictions"
    return folder


def read_predictions(folder: str | os.PathLike) -> dict[str, tuple[np.ndarray, Path]]:
    """All ``<id>_landmarks.json`` of a prediction folder (or of ``<folder>/predictions``).

    Returns:
        ``{id: (points (N, D) RAS mm, file)}`` sorted by id.

    Raises:
        FileNotFoundError: no folder or no prediction file in it.
    """
    folder = _prediction_folder(Path(folder))
    files = sorted(folder.glob(f"*{PREDICTION_SUFFIX}"))
    if not files:
        raise FileNotFoundError(
            f"{folder}: no <id>_landmarks.json prediction files (run the bundle's configs/inference.yaml; it writes "
            "them to <output_dir>/predictions)."
        )
    out: dict[str, tuple[np.ndarray, Path]] = {}
    for f in files:
        if f.name.startswith("."):
            continue  # temporary file of an interrupted write
        out[f.name[: -len(PREDICTION_SUFFIX)]] = (read_prediction_file(f)[0], f)
    return out
