"""Predict landmarks on a folder of your own images with a bundle and a trained model (``mlm.bundle.predict``).

Examples::

    python scripts/predict.py scn_ceph --model runs/ceph/models/model.pt --images my_xrays --out my_xrays_landmarks \\
        --configs cpu.yaml --spacing 0.1
    python scripts/predict.py scn_spine_ct --model runs/demo/models/model.pt --images my_cts --out cts_landmarks \\
        --configs cpu.yaml demo.yaml

``--configs`` and ``--set KEY=VALUE`` (VALUE read as YAML, repeat as needed) are the overlays and command-line
overrides the model was trained with. For every image (PNG, JPEG, BMP, TIFF, NIfTI, MHA/MHD, NRRD; DICOM: one
``.dcm`` file per image for a 2D bundle, one folder of ``.dcm`` files per series for a 3D bundle) ``--out`` gets
``<id>.json`` (LPS mm, names), ``<id>.csv`` (mm and px per landmark), ``<id>.mrk.json`` (3D Slicer markups) and
``<id>_overlay.png``, plus ``predictions.csv`` (one row per image). PNG, JPEG, BMP and TIFF files have no pixel size:
without ``--spacing`` (mm per pixel) their landmarks are in px and the files say so. Exit status 1 when an input is
wrong (the message names it) or when some image could not be read (the others are predicted; predictions.csv and the
last lines say which).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mlm.bundle.configs import add_overrides_argument


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle name under bundles/ (scn_ceph, scn_spine_ct, ...) or a bundle folder")
    p.add_argument("--model", type=Path, required=True, help="trained model (models/model.pt of train.yaml)")
    p.add_argument("--images", type=Path, required=True, help="folder of the images")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--configs", nargs="*", default=[], help="overlays of configs/inference.yaml the model needs")
    add_overrides_argument(p, help="a config override of the training run (repeat as needed)")
    p.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="S",
        help="mm per pixel of PNG/JPEG/BMP/TIFF images (one value, or one per axis); default: they stay in px",
    )
    p.add_argument("--recursive", action="store_true", help="also predict the images of sub-folders")
    p.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, error_hook: bool = False) -> int:
    """Run the command; returns the exit status. ``error_hook``: an unexpected failure prints its traceback, then
    ``error: <file>: <problem>``, and exits 1 (:func:`mlm.bundle.install_error_hook`; changes ``sys.excepthook``)."""
    args = parse_args(argv)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from mlm.bundle.errors import error_summary, install_error_hook
    from mlm.bundle.predict import PredictError, predict_folder

    if error_hook:
        install_error_hook()

    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        with logging_redirect_tqdm():
            summary = predict_folder(
                args.bundle,
                args.model,
                args.images,
                args.out,
                configs=args.configs,
                overrides=dict(args.overrides),
                spacing=args.spacing,
                recursive=args.recursive,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
    except (PredictError, ValueError, OSError) as e:
        print(error_summary(e), file=sys.stderr)  # "error: <file>: <problem>"
        return 1
    finally:
        logging.getLogger().removeHandler(handler)
    ok = len(summary.results) - len(summary.failed)
    print(f"predicted {ok} of {len(summary.results)} images into {summary.out}")
    print(f"  per image: <id>.json, <id>.csv, <id>.mrk.json, <id>_overlay.png; summary: {summary.summary_file}")
    for path in summary.ignored[:5]:
        print(f"  skipped (not an image): {path}")
    if len(summary.ignored) > 5:
        print(f"  skipped {len(summary.ignored) - 5} more files that are not images")
    for note in summary.notes:
        print(f"  note: {note}")
    for r in summary.failed:
        print(f"error: {r.error}", file=sys.stderr)
    if summary.failed:
        print(
            f"{len(summary.failed)} of {len(summary.results)} images could not be predicted (listed above and in "
            f"{summary.summary_file}): exit status 1.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(error_hook=True))
