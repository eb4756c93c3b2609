"""Cost of one training iteration: plain training vs SAT vs AMAT (same PGD settings), measured in one run.

``amat`` attacks only the samples correct on their clean image; ``amat_all`` attacks every sample (no clean check):
the same PGD work as SAT plus AMAT's bookkeeping (boundary bisection, margin updates).

Builds each bundle trainer in this process (train.yaml + cpu.yaml [+ train_sat.yaml / train_amat.yaml]) on a
phantom, runs ``--warmup`` + ``--iterations`` iterations of each and prints the seconds per iteration and the
ratios (DESIGN.md: an AMAT epoch <= 1.05x an SAT epoch with the same PGD steps). No validation is timed
(val_interval = the run length).

    OMP_NUM_THREADS=1 python scripts/benchmark_adversarial_training.py --bundle mtunet_ceph --tiny
    OMP_NUM_THREADS=2 python scripts/benchmark_adversarial_training.py --bundle mtunet_ceph   # CPU-sized (cpu.yaml)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "bundles"))


def seconds_per_iteration(bundle: str, overlay: str | None, data: Path, args: list[str], warmup: int, n: int) -> float:
    from _bundle_runs import bundle_parser
    from ignite.engine import Events

    configs = ["train.yaml", "cpu.yaml"] + ([overlay] if overlay else [])
    with tempfile.TemporaryDirectory() as tmp:
        run = ["--dataset_dir", str(data), "--ckpt_dir", f"{tmp}/models", "--output_dir", f"{tmp}/eval"]
        total = warmup + n
        run += ["--num_iterations", str(total), "--val_interval", str(total), "--resume", "false", *args]
        trainer = bundle_parser(bundle, configs, run).get_parsed_content("train#trainer")
        marks: dict[int, float] = {}
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e: marks.__setitem__(e.state.iteration, time.perf_counter())
        )
        trainer.run()
    return (marks[total] - marks[warmup]) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="mtunet_ceph", choices=["mtunet_ceph", "scn_ceph"])
    p.add_argument("--tiny", action="store_true", help="the tests' tiny geometry instead of cpu.yaml's")
    p.add_argument("--pgd_iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--data", type=Path, default=None, help="cephalogram phantom folder (default: a new one)")
    a = p.parse_args()
    from _bundle_runs import CEPH_TINY, MTUNET_TINY

    from mlm.data.phantoms.cephalogram import write_cephalogram_dataset

    data = a.data
    if data is None:
        data = Path(tempfile.mkdtemp()) / "ceph"
        write_cephalogram_dataset(data, num_images=6, seed=0, pixel_size=4.0 if a.tiny else 1.2, show_progress=False)
    args = (MTUNET_TINY if a.bundle == "mtunet_ceph" else CEPH_TINY) if a.tiny else []
    args = args + ["--adversarial_iterations", str(a.pgd_iterations)]
    plain_args = [x for x in args if x not in ("--adversarial_iterations", str(a.pgd_iterations))]
    times = {
        "plain": seconds_per_iteration(a.bundle, None, data, plain_args, a.warmup, a.iterations),
        "sat": seconds_per_iteration(a.bundle, "train_sat.yaml", data, args, a.warmup, a.iterations),
        "amat": seconds_per_iteration(a.bundle, "train_amat.yaml", data, args, a.warmup, a.iterations),
        # every sample attacked (no clean check): the same PGD work per iteration as SAT, plus AMAT's bookkeeping
        "amat_all": seconds_per_iteration(
            a.bundle, "train_amat.yaml", data, args + ["--amat_clean_check", "false"], a.warmup, a.iterations
        ),
    }
    size = "tiny" if a.tiny else "cpu.yaml"
    print(f"{a.bundle} ({size}), {a.pgd_iterations} PGD steps, {torch.get_num_threads()} threads, s/iteration:")
    for k, v in times.items():
        print(f"  {k:6s} {v:.4f}")
    print(
        f"  sat / plain {times['sat'] / times['plain']:.2f}x, amat / sat {times['amat'] / times['sat']:.3f}x, "
        f"amat_all / sat {times['amat_all'] / times['sat']:.3f}x (per iteration; with the default "
        "amat_threshold_update running, only the first epoch adds a clean pass over the training images)"
    )


if __name__ == "__main__":
    main()
