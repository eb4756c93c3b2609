"""Convert a public landmark dataset in its original layout into the project's datalist format.

Usage (one subcommand per dataset; see docs/datasets.md)::

    python scripts/prepare_dataset.py isbi2015 ROOT OUT [--annotation average|senior|junior] [--annotation-csv CSV] [--cv-dir DIR]
    python scripts/prepare_dataset.py hand_xray ROOT OUT [--all-csv CSV] [--cv-dir DIR] [--allow-missing-images]
    python scripts/prepare_dataset.py csi2014 IMAGE_DIR OUT [--points-csv CSV] [--setup-dir DIR]
    python scripts/prepare_dataset.py verse ROOT OUT
    python scripts/prepare_dataset.py afids IMAGE FCSV OUT
    python scripts/prepare_dataset.py chest ROOT OUT
    python scripts/prepare_dataset.py aasce ROOT OUT
    python scripts/prepare_dataset.py generic-check DATALIST [--splits training validation] [--headers-only]

Every converter refuses to replace an existing datalist unless ``--overwrite`` is given.
``generic-check`` prints one line per problem (each naming the file at fault) and exits 1 when there is
any, or prints a one-line OK summary and exits 0 (``mlm.data.datalist.check_datalist``).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="dataset", required=True)

    def add(name: str, *positionals: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name)
        for a in positionals:
            s.add_argument(a)
        if name != "generic-check":
            s.add_argument("--overwrite", action="store_true", help="replace existing datalists")
        return s

    s = add("isbi2015", "root", "output_dir")
    s.add_argument("--annotation", default="average", choices=["average", "senior", "junior"])
    s.add_argument("--annotation-csv", default=None, help="Payer's all_senior.csv-style table (mm)")
    s.add_argument("--cv-dir", default=None, help="folder with set1..set4/{train,val}.txt")
    s = add("hand_xray", "root", "output_dir")
    s.add_argument("--all-csv", default=None)
    s.add_argument("--cv-dir", default=None)
    s.add_argument("--allow-missing-images", action="store_true")
    s = add("csi2014", "image_dir", "output_dir")
    s.add_argument("--points-csv", default=None)
    s.add_argument("--setup-dir", default=None)
    add("verse", "root", "output_dir")
    add("afids", "image", "fcsv", "output_dir")
    add("chest", "root", "output_dir")
    add("aasce", "root", "output_dir")
    s = add("generic-check", "datalist")
    s.add_argument(
        "--splits", nargs="+", default=(), metavar="SPLIT", help="splits that must exist and hold items (a bundle's)"
    )
    s.add_argument(
        "--allow-outside",
        action="store_true",
        help="report landmarks outside their image as warnings (data loaded with landmarks_outside: missing)",
    )
    s.add_argument(
        "--headers-only",
        action="store_true",
        help="read image headers only, without checking that each file holds all its pixel data (faster)",
    )
    return p


def _print_report(report, prefix: str = "") -> int:
    """Print a ``DatalistCheck``: one ``error:``/``warning:`` line per finding, then its summary; 0 if OK, else 1."""
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{prefix}{report.summary()}", file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def generic_check(
    datalist: str, splits: list[str] | tuple = (), headers_only: bool = False, allow_outside: bool = False
) -> int:
    """Check a datalist (images, landmarks, ids), print one line per problem or an OK summary; 0 if OK, else 1."""
    from mlm.data.datalist import check_datalist

    report = check_datalist(datalist, verify_data=not headers_only, required_splits=splits, allow_outside=allow_outside)
    return _print_report(report)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dataset == "generic-check":
            return generic_check(args.datalist, args.splits, args.headers_only, args.allow_outside)
        if args.dataset == "isbi2015":
            from mlm.data.isbi2015 import convert_isbi2015

            out = convert_isbi2015(
                args.root, args.output_dir, args.annotation, args.annotation_csv, args.cv_dir, args.overwrite
            )
        elif args.dataset == "hand_xray":
            from mlm.data.hand_xray import convert_hand_xray

            out = convert_hand_xray(
                args.root, args.output_dir, args.all_csv, args.cv_dir, args.overwrite, args.allow_missing_images
            )
        elif args.dataset == "csi2014":
            from mlm.data.csi2014 import convert_csi2014

            out = convert_csi2014(args.image_dir, args.output_dir, args.points_csv, args.setup_dir, args.overwrite)
        elif args.dataset == "verse":
            from mlm.data.verse import convert_verse

            out = convert_verse(args.root, args.output_dir, args.overwrite)
        elif args.dataset == "afids":
            from mlm.data.afids import convert_afids

            out = convert_afids(args.image, args.fcsv, args.output_dir, overwrite=args.overwrite)
        elif args.dataset == "aasce":
            from mlm.data.aasce import convert_aasce

            out = convert_aasce(args.root, args.output_dir, args.overwrite)
        else:
            from mlm.data.chest import convert_chest

            out = convert_chest(args.root, args.output_dir, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from mlm.data.datalist import check_datalist

    status = 0
    for path in out:  # landmarks outside their image are a fact of the original data: warnings here
        status |= _print_report(check_datalist(path, verify_data=False, allow_outside=True), prefix="wrote ")
    return status


if __name__ == "__main__":
    sys.exit(main())
