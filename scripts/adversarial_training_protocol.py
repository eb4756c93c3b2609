"""Harden a trained model: standard, SAT at several eps and AMAT fine-tuned alike, compared under L2 PGD (issue 15).

From one trained checkpoint, fine-tunes (same iterations, same starting weights, same PGD steps) a clean
continuation (``standard``), SAT at each ``--sat-eps`` and AMAT, runs the bundle's robustness overlay on every model
(``scripts/compare_robustness.py``: untargeted L2 PGD at each noise level on the test split), and prints the table and
PASS / FAIL for the issue's bars: AMAT's mean MRE over the noise levels <= the best SAT's, and AMAT's clean MRE
within 5% of standard training's (``mlm.bundle.hardening``). Re-running the command skips what is done and resumes an
interrupted fine-tuning. Example (the ISBI-trained CPU-sized multi-task U-Net; 5 PGD steps, 10 Test1 images)::

    python scripts/adversarial_training_protocol.py mtunet_ceph ~/runs/real/isbi2015_mtunet/global/models/model.pt \\
        ~/runs/real/isbi2015_mtunet/data --out ~/runs/hardening/mtunet --iterations 300 --pgd-iterations 5 \\
        --max-items 10 --levels 0 1 2 3 --robustness-iterations 20

Writes ``OUT/hardening.json`` and ``OUT/robustness/robustness_comparison.{md,csv,png}``; exit status 0 when the
protocol ran (``--strict``: 1 when a bar fails).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle under bundles/, e.g. mtunet_ceph")
    p.add_argument("checkpoint", type=Path, help="the trained model every fine-tuning starts from")
    p.add_argument("dataset_dir", type=Path, help="prepared dataset (training, validation and the test split)")
    p.add_argument("--out", type=Path, required=True, help="run folder (re-use it to resume)")
    p.add_argument("--split", default="test1", help="test split of the comparison (default test1)")
    p.add_argument("--iterations", type=int, default=300, help="fine-tuning iterations of every model (default 300)")
    p.add_argument("--val-interval", type=int, default=100)
    p.add_argument("--pgd-iterations", type=int, default=20, help="PGD steps of SAT and AMAT (default 20)")
    p.add_argument("--sat-eps", type=float, nargs="+", default=[1.0, 2.0], help="L2 radii of the SAT models")
    p.add_argument("--max-margin", type=float, default=3.0, help="AMAT's eps_max (default 3, the top noise level)")
    p.add_argument("--levels", type=float, nargs="+", default=None, help="noise levels (default the overlay's 0..3)")
    p.add_argument("--robustness-iterations", type=int, default=None, help="PGD steps of the comparison (100)")
    p.add_argument("--max-items", type=int, default=None, help="test images of the comparison (default all)")
    p.add_argument("--no-cpu", action="store_true", help="without cpu.yaml (a paper-sized model)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs")
    p.add_argument("--extra", default="", help='overrides of every run, e.g. --extra="--lr 0.00005"')
    p.add_argument("--strict", action="store_true", help="exit 1 when a bar fails")
    a = p.parse_args(argv)
    from mlm.bundle.hardening import run_hardening

    try:
        summary = run_hardening(
            a.bundle,
            a.checkpoint,
            a.dataset_dir,
            a.out,
            test_split=a.split,
            iterations=a.iterations,
            val_interval=a.val_interval,
            pgd_iterations=a.pgd_iterations,
            sat_eps=a.sat_eps,
            max_margin=a.max_margin,
            levels=a.levels,
            robustness_iterations=a.robustness_iterations,
            max_items=a.max_items,
            cpu=not a.no_cpu,
            threads=a.threads,
            extra=shlex.split(a.extra),
        )
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = a.out.expanduser().resolve()
    print((out / "robustness" / "robustness_comparison.md").read_text(encoding="utf-8"))
    print("fine-tuning minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["fine_tuning_minutes"].items()))
    print("mean MRE over the levels: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["mean_mre_over_levels"].items()))
    for bar in summary["bars"]:
        print(f"{'PASS' if bar['passed'] else 'FAIL'}: {bar['bar']}: {bar['measured']}")
    print(f"wrote {out / 'hardening.json'}")
    return 1 if a.strict and not all(b["passed"] for b in summary["bars"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
