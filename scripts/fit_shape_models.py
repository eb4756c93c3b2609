"""Re-fit the phantoms' point distribution models from the real annotations in ``../shared/data``.

The package ships only the fitted numbers (``mlm/data/phantoms/*_shape_model.json``); this script is how
they were made::

    python scripts/fit_shape_models.py                      # all three, from ../shared/data
    python scripts/fit_shape_models.py spine --data-root /path/to/shared/data --out-dir /tmp/models

Models:
    spine: CSI 2014 vertebra centroids (302 scans x 26 slots, LPS mm, NaN = absent), translation-aligned on
        the vertebrae each scan shares with the mean, PCA fitted by iterative imputation of the missing slots.
    ceph: ISBI 2015 senior annotations (400 x 19, stored in mm at 0.1 mm/px), image coordinates (no alignment:
        the position of the skull in the field of view is part of the variation).
    hand_xray: Digital Hand Atlas annotations (910 x 37, px at varying spacing), similarity-aligned (Procrustes)
        and scaled so that the mean wrist width (zero-based landmarks 1 and 5) is 50 mm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mlm.data.phantoms.common import CSI2014_VERTEBRAE, HAND_XRAY_LANDMARKS, ISBI2015_LANDMARKS
from mlm.data.phantoms.shape_model import PointDistributionModel, fit_point_distribution_model

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "mlm" / "data" / "phantoms"


def _read_rows(path: Path, num_landmarks: int, dims: int) -> tuple[list[str], np.ndarray]:
    """``id,x1,y1(,z1),...`` rows -> ids and ``(S, N, D)`` float array (NaN kept)."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    ids, rows = [], []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        cells = line.strip().split(",")
        if len(cells) != 1 + num_landmarks * dims:
            raise ValueError(f"{path}:{line_no}: expected {1 + num_landmarks * dims} columns, got {len(cells)}")
        ids.append(cells[0])
        rows.append([float(c) for c in cells[1:]])
    return ids, np.asarray(rows).reshape(len(rows), num_landmarks, dims)


def fit_spine(data_root: Path, num_modes: int = 6) -> PointDistributionModel:
    path = data_root / "csi2014_spine_centroids_payer" / "points_world_coordinates.csv"
    _, pts = _read_rows(path, 26, 3)
    model = fit_point_distribution_model(
        pts,
        CSI2014_VERTEBRAE,
        num_modes=num_modes,
        alignment="translation",
        units="mm",
        coordinate_system="LPS",
        info={"source": "csi2014_spine_centroids_payer/points_world_coordinates.csv"},
    )
    model.mean -= model.mean.mean(0)  # centre the mean configuration on the origin
    observed = ~np.isnan(pts).any(-1)
    model.info["slot_observed_fraction"] = np.round(observed.mean(0), 3).tolist()
    model.info["visible_count_quartiles"] = np.percentile(observed.sum(1), [5, 25, 50, 75, 95]).tolist()
    return model


def fit_ceph(data_root: Path, num_modes: int = 8) -> PointDistributionModel:
    path = data_root / "isbi2015_annotations_payer" / "all_senior.csv"
    _, pts = _read_rows(path, 19, 2)
    model = fit_point_distribution_model(
        pts,
        ISBI2015_LANDMARKS,
        num_modes=num_modes,
        alignment="none",
        units="mm",
        coordinate_system="image",
        info={"source": "isbi2015_annotations_payer/all_senior.csv", "image_size_mm": [193.5, 240.0]},
    )
    _, junior = _read_rows(data_root / "isbi2015_annotations_payer" / "all_junior.csv", 19, 2)
    diff = junior - pts
    model.info["senior_junior_offset_mean_mm"] = np.round(diff.mean(0), 3).tolist()
    model.info["senior_junior_offset_std_mm"] = np.round(diff.std(0), 3).tolist()
    return model


def fit_hand_xray(data_root: Path, num_modes: int = 8) -> PointDistributionModel:
    path = data_root / "payer_hand_xray" / "setup" / "all.csv"
    _, pts = _read_rows(path, 37, 2)
    model = fit_point_distribution_model(
        pts,
        HAND_XRAY_LANDMARKS,
        num_modes=num_modes,
        alignment="similarity",
        units="mm",
        coordinate_system="image",
        info={"source": "payer_hand_xray/setup/all.csv", "normalisation": "mean wrist width |p1 - p5| = 50 mm"},
    )
    scale = 50.0 / np.linalg.norm(model.mean[1] - model.mean[5])
    model.mean = (model.mean - model.mean.mean(0)) * scale
    model.std = model.std * scale
    model.info["rms_residual"] = round(model.info["rms_residual"] * scale, 4)
    model.info["explained_std_total"] = round(model.info["explained_std_total"] * scale, 4)
    return model


FITTERS = {"spine": fit_spine, "ceph": fit_ceph, "hand_xray": fit_hand_xray}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=[], help=f"models to fit, of {list(FITTERS)} (default: all)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="where the JSON models go")
    args = parser.parse_args(argv)
    if not args.data_root.is_dir():
        parser.error(f"data root not found: {args.data_root}")
    unknown = [m for m in args.models if m not in FITTERS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}: choose from {list(FITTERS)}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.models or list(FITTERS):
        model = FITTERS[name](args.data_root)
        out = args.out_dir / f"{name}_shape_model.json"
        model.save(out)
        print(
            f"{name}: {model.num_landmarks} landmarks, {model.num_modes} modes, std {np.round(model.std, 2)}, "
            f"rms residual {model.info['rms_residual']} {model.units} -> {out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
