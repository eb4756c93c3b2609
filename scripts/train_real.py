"""Train and evaluate a 2D bundle on a real dataset with the coarse-to-fine CPU recipe (``mlm.bundle.recipes``).

One command per dataset; re-running the same command resumes where the last run stopped (a finished step is
skipped, an unfinished training resumes from its checkpoint), so the recipe can be run in legs::

    python scripts/train_real.py isbi2015 ../shared/data/isbi2015 --out ~/runs/real/isbi2015_scn
    python scripts/train_real.py hand_xray ../shared/data/dha_hand_xray_half --out ~/runs/real/hand_scn
    python scripts/train_real.py isbi2015 ../shared/data/isbi2015 --model unet --out ~/runs/real/isbi2015_unet
    python scripts/train_real.py datalist my_data/datalist.json --bundle scn_ceph --out ~/runs/my_ceph

The GU2Net universal model (head, hand and chest in one network, ``mlm.bundle.universal_recipe``) against three
single-domain GU2Nets trained on as many batches of their domain, with ``universal`` (the chest domain is the chest
PHANTOM unless ``--chest`` names a prepared datalist: no chest images are available here)::

    python scripts/train_real.py universal --out ~/runs/real/gu2net_universal --threads 2

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
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlm.bundle.recipes import RECIPES, recipe_table, run_recipe  # noqa: E402


def universal_main(argv: list[str]) -> int:
    """``train_real.py universal ...``: the GU2Net universal recipe (``mlm.bundle.universal_recipe``)."""
    from mlm.bundle import universal_recipe as ur

    p = argparse.ArgumentParser(
        prog="train_real.py universal",
        description="GU2Net universal model (head, hand, chest) vs single-domain GU2Nets at the same budget",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (re-use it to resume)")
    p.add_argument("--isbi", type=Path, default=None, help=f"ISBI 2015 root (default {ur.DEFAULT_ISBI})")
    p.add_argument("--hand", type=Path, default=None, help=f"Digital Hand Atlas root (default {ur.DEFAULT_HAND})")
    p.add_argument(
        "--chest",
        type=Path,
        default=None,
        help="prepared chest datalist folder (default: the chest PHANTOM, generated; no chest images are available)",
    )
    p.add_argument("--head-prepared", type=Path, default=None, help="prepared head datalist folder instead of --isbi")
    p.add_argument("--hand-prepared", type=Path, default=None, help="prepared hand datalist folder instead of --hand")
    p.add_argument("--iterations", type=int, default=3000, help="universal training iterations (default 3000)")
    p.add_argument("--val-interval", type=int, default=250, help="universal validation interval (default 250)")
    p.add_argument("--batch-size", type=int, default=4, help="images per batch, every model (default 4)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: all cores)")
    p.add_argument("--variant", choices=ur.VARIANTS, default="gu2net", help="network variant of every model")
    p.add_argument("--no-single-domain", action="store_true", help="only the universal model")
    p.add_argument("--stop-after", choices=("universal",), default=None, help="stop after the universal training")
    p.add_argument("--extra", default="", help='bundle overrides added to every run, e.g. --extra="--num_filters 4"')
    p.add_argument(
        "--domain-overrides", default=None, help="python-literal {domain: {key: value}} merged into every run's"
    )
    args = p.parse_args(argv)
    try:
        sources = ur.default_sources(args.isbi, args.hand, args.chest, args.head_prepared, args.hand_prepared)
        summary = ur.run_universal_recipe(
            args.out.expanduser().resolve(),
            sources,
            iterations=args.iterations,
            val_interval=args.val_interval,
            batch_size=args.batch_size,
            variant=args.variant,
            threads=args.threads,
            single_domain=not args.no_single_domain,
            stop_after=args.stop_after,
            extra=shlex.split(args.extra),
            domain_overrides=ur.parse_domain_overrides(args.domain_overrides),
        )
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"train_real: {e}") from None
    if summary:
        print("\n" + ur.universal_table(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["universal"]:
        return universal_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=sorted(RECIPES) + ["universal"])
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
    if args.dataset == "universal":
        p.error("the universal recipe takes no root: python scripts/train_real.py universal --out OUT [options]")
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
