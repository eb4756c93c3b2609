"""Evaluate a bundle's predictions against a prepared dataset under a paper's protocol; print and write the tables.

Usage::

    python scripts/evaluate_protocol.py PROTOCOL --datalist DATALIST [DATALIST ...] --predictions DIR [DIR ...]
        --out OUT [--split S ...] [--method NAME] [--radii R ...] [--normalize-pair payer|gu2net|none|A,B]
        [--max-dist MM] [--id-rate] [--allow-missing] [--no-plot]

PROTOCOL is ``isbi2015`` (Test1/Test2 tables: MRE +- SD, SDR 2/2.5/3/4 mm), ``hand`` (3-fold CV: PE median,
mean +- SD, #O_r at 2/4/10 mm, 50 mm wrist-width normalisation; one --predictions folder per fold), ``csi2014``
(PE, #O_20mm, ID rate at 20 mm, per-region and per-vertebra tables) or ``generic`` (MRE, SDR at 2/2.5/3/4/10 mm).
DIR is a folder of ``<id>_landmarks.json`` files (a bundle's ``<output_dir>/predictions``, or the ``output_dir``
itself). OUT receives ``table.md``, ``table.csv``, ``summary.json``, ``per_landmark_<group>.csv``,
``errors_per_image.csv`` and ``cumulative_ipe.png`` (all written atomically). See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import sys


def _pair(text: str):
    named = {"payer": "default", "default": "default", "gu2net": (0, 4), "none": None}
    if text.lower() in named:
        return named[text.lower()]
    try:
        a, b = (int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected payer, gu2net, none or two indices 'A,B', got {text!r}") from None
    return (a, b)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("protocol", choices=["isbi2015", "hand", "csi2014", "generic"])
    p.add_argument("--datalist", nargs="+", required=True, help="prepared datalist(s): one, or one per fold")
    p.add_argument("--predictions", nargs="+", required=True, help="prediction folder(s); fold protocols: one per fold")
    p.add_argument("--out", required=True, help="report folder (created)")
    p.add_argument("--split", nargs="+", default=None, help="splits to evaluate (isbi2015 default: test1 test2)")
    p.add_argument("--method", default="prediction", help="method name in the tables and the plot")
    p.add_argument("--radii", nargs="+", type=float, default=None, help="override the protocol's radii")
    p.add_argument(
        "--normalize-pair",
        type=_pair,
        default="default",
        help="hand: wrist-width pair: payer (1,5; default), gu2net (0,4), none, or 'A,B'",
    )
    p.add_argument("--max-dist", type=float, default=None, help="identification radius in mm (default 20)")
    p.add_argument("--id-rate", action="store_true", help="also compute the identification rate (on for csi2014)")
    p.add_argument("--allow-missing", action="store_true", help="images without a prediction file count as failures")
    p.add_argument("--no-plot", action="store_true", help="do not draw cumulative_ipe.png")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlm.protocols import evaluate_protocol, format_markdown, write_protocol_report

    try:
        result = evaluate_protocol(
            args.protocol,
            args.predictions,
            args.datalist,
            splits=args.split,
            radii=args.radii,
            normalize_pair=args.normalize_pair,
            max_dist=args.max_dist,
            identification=True if args.id_rate else None,
            allow_missing=args.allow_missing,
            method=args.method,
        )
        written = write_protocol_report(result, args.out, plot=not args.no_plot)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_markdown(result))
    print(f"wrote {', '.join(sorted(written))} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
