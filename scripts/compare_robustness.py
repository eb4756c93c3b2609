"""Compare the robustness of several trained models of one bundle on the same test split: one table, one figure.

Trains nothing. For each ``--model NAME=CHECKPOINT`` (standard training, SAT at several eps, AMAT, ...) it runs the
bundle's robustness overlay (inference.yaml + evaluate.yaml [+ cpu.yaml] + robustness.yaml: untargeted L2 PGD at
every level) into ``<out>/<NAME>/``, then writes ``<out>/robustness_comparison.csv`` / ``.md`` (one row per model
and level: MRE, SD, median, SDR) and ``robustness_comparison.png`` (MRE and SDR against eps, one line per model),
plus ``mean_mre`` per model over the levels (the issue's bar compares it between AMAT and the best SAT).

    OMP_NUM_THREADS=2 python scripts/compare_robustness.py --bundle mtunet_ceph \\
        --dataset_dir shared/data/isbi2015 --infer_split test1 \\
        --model standard=bundles/mtunet_ceph/models/model.pt \\
        --model sat_eps1=bundles/mtunet_ceph/models/sat1/model.pt --model amat=bundles/mtunet_ceph/models/amat/model.pt \\
        --out eval/robustness_comparison [--max_items 10 --iterations 20 --levels 0,1,2,3]

Options for a CPU: ``--max_items`` (test images), ``--iterations`` (PGD steps), ``--levels``; ``--no_cpu`` drops
cpu.yaml (models trained with the paper-sized configs); ``--extra`` passes further overrides to every run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _levels(text: str) -> list[float] | None:
    """``--levels``: comma-separated radii (empty: the overlay's)."""
    try:
        return [float(v) for v in text.split(",")] if text.strip() else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 0,1,2,3") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True)
    p.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dataset_dir", default=None)
    p.add_argument("--infer_split", default=None)
    p.add_argument("--levels", type=_levels, default=None, help="comma-separated radii (default: the overlay's 0..3)")
    p.add_argument("--iterations", type=int, default=None, help="PGD steps (default: the overlay's 100)")
    p.add_argument("--max_items", type=int, default=None, help="test images (default: all)")
    p.add_argument("--no_cpu", action="store_true", help="without cpu.yaml")
    p.add_argument("--extra", default="", help="further overrides for every run, e.g. '--num_filters 16'")
    p.add_argument("--threads", default="2", help="OMP_NUM_THREADS of the runs")
    p.add_argument(
        "--reuse", action="store_true", help="keep a model's existing <out>/<NAME> report (delete it to re-run)"
    )
    a = p.parse_args(argv)

    from mlm.bundle.robustness_comparison import compare_robustness

    models = {}
    for spec in a.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            p.error(f"--model {spec!r}: expected NAME=CHECKPOINT with an existing checkpoint file.")
        models[name] = Path(path).resolve()
    try:
        compare_robustness(
            a.bundle,
            models,
            a.out,
            dataset_dir=a.dataset_dir,
            infer_split=a.infer_split,
            levels=a.levels,
            iterations=a.iterations,
            max_items=a.max_items,
            cpu=not a.no_cpu,
            extra=shlex.split(a.extra),
            threads=a.threads,
            reuse=a.reuse,
        )
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
