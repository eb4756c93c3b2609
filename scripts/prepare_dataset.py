"""Convert a public landmark dataset in its original layout into the project's datalist format.

Usage (one subcommand per dataset; see docs/datasets.md)::

    python scripts/prepare_dataset.py isbi2015 ROOT OUT [--annotation average|senior|junior] [--annotation-csv CSV] [--cv-dir DIR]
    python scripts/prepare_dataset.py hand_xray ROOT OUT [--all-csv CSV] [--cv-dir DIR] [--allow-missing-images]
    python scripts/prepare_dataset.py csi2014 IMAGE_DIR OUT [--points-csv CSV] [--setup-dir DIR]
    python scripts/prepare_dataset.py verse ROOT OUT
    python scripts/prepare_dataset.py afids IMAGE FCSV OUT
    python scripts/prepare_dataset.py chest ROOT OUT
    python scripts/prepare_dataset.py generic-check DATALIST

Every converter refuses to replace an existing datalist unless ``--overwrite`` is given.
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
    add("generic-check", "datalist")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dataset == "generic-check":
            from mlm.data.datalist import validate_datalist

            counts = validate_datalist(args.datalist)
            print(f"{args.datalist}: OK ({', '.join(f'{k}: {v}' for k, v in counts.items())})")
            return 0
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
        else:
            from mlm.data.chest import convert_chest

            out = convert_chest(args.root, args.output_dir, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from mlm.data.datalist import validate_datalist

    for path in out:
        counts = validate_datalist(path)
        print(f"wrote {path} ({', '.join(f'{k}: {v}' for k, v in counts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
