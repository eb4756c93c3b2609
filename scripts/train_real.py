"""Train and evaluate a 2D bundle on a real dataset with the coarse-to-fine CPU recipe (``mlm.bundle.recipes``).

One command per dataset; re-running the same command resumes where the last run stopped (a finished step is
skipped, an unfinished training resumes from its checkpoint), so the recipe can be run in legs::

    python scripts/train_real.py isbi2015 ../shared/data/isbi2015 --out ~/runs/real/isbi2015_scn
    python scripts/train_real.py hand_xray ../shared/data/dha_hand_xray_half --out ~/runs/real/hand_scn
    python scripts/train_real.py isbi2015 ../shared/data/isbi2015 --model unet --out ~/runs/real/isbi2015_unet
    python scripts/train_real.py datalist my_data/datalist.json --bundle scn_ceph --out ~/runs/my_ceph

``datalist`` is a user's own data: a datalist JSON (README "Your own data") with a ``training`` split, evaluated on
its ``test`` split (``--eval-splits``); 10% of the training images (the last ones) are held out for validation.

Prints the table of the dataset's protocol (ISBI 2015: MRE +- SD and SDR at 2 / 2.5 / 3 / 4 mm on Test1 and Test2;
hands: PE median, mean +- SD and #outliers at 2 / 4 / 10 mm, wrist-normalised, on the 21 validation images) for the
global and the refined stage, next to the published figures, and PASS / FAIL for issue 13's accuracy bars (ISBI Test1
MRE <= 1.5 mm and SDR 2 mm >= 75%; hands median <= 0.8 mm, no error above 10 mm; also in figures.json; the exit
status stays 0: the recipe ran). The trained networks' state dicts and a JSON of the
figures and the data seen are in ``OUT/weights``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlm.bundle.recipes import RECIPES, recipe_table, run_recipe  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=sorted(RECIPES))
    p.add_argument(
        "root", type=Path, help="the dataset in its original layout (e.g. ../shared/data/isbi2015), or a datalist JSON"
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (re-use it to resume)")
    p.add_argument("--model", choices=("scn", "unet"), default="scn", help="global stage network (default scn)")
    p.add_argument("--global-iterations", type=int, default=None)
    p.add_argument("--refine-iterations", type=int, default=None)
    p.add_argument("--val-interval", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: all cores)")
    p.add_argument("--stop-after", choices=("global",), default=None, help="stop after the global training")
    p.add_argument("--bundle", default=None, help="bundle under bundles/ (default: the dataset's; datalist: scn_ceph)")
    p.add_argument("--eval-splits", nargs="+", default=None, help="splits to evaluate (default: the dataset's)")
    args = p.parse_args(argv)
    if args.dataset == "datalist" and not args.root.is_file():
        raise SystemExit(f"train_real: {args.root}: no such datalist file")
    if args.dataset != "datalist" and not args.root.is_dir():
        raise SystemExit(f"train_real: {args.root}: no such folder (the {args.dataset} dataset's root)")
    try:
        summary = run_recipe(
            args.dataset,
            args.root.resolve(),
            args.out.expanduser().resolve(),
            model=args.model,
            global_iterations=args.global_iterations,
            refine_iterations=args.refine_iterations,
            val_interval=args.val_interval,
            threads=args.threads,
            stop_after=args.stop_after,
            bundle=args.bundle,
            eval_splits=args.eval_splits,
        )
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"train_real: {e}") from None
    if summary:
        print("\n" + recipe_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
