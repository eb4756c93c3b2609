"""The main job on a fresh machine: spine phantom -> train ``scn_spine_ct`` (CPU-sized) -> evaluate -> ID rate and MRE.

Runs, in order, exactly the commands a user would type (each printed before it runs)::

    python scripts/generate_phantoms.py spine_ct --out data/phantoms/spine_ct            # if not there yet
    cd bundles/scn_spine_ct
    python -m monai.bundle run --config_file "['configs/train.yaml','configs/cpu.yaml','configs/demo.yaml']" ...
    python -m monai.bundle run --config_file "['configs/inference.yaml','configs/evaluate.yaml','configs/cpu.yaml','configs/demo.yaml']" ...

and prints the test split's identification rate (CSI 2014, 20 mm) and mean radial error. Everything it writes
goes under ``--out`` (default ``runs/demo``): ``models/`` (checkpoints; re-running resumes), ``train/``
(TensorBoard logs, learned sigmas), ``eval/`` (predictions, metrics.json, cumulative_ipe.png, overlays/).

Usage::

    python scripts/demo.py [--iterations 2000] [--out runs/demo] [--dataset-dir data/phantoms/spine_ct]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlm.bundle.launch import ensure_phantom, read_metrics, run_bundle_step  # noqa: E402

BUNDLE = "scn_spine_ct"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--iterations", type=int, default=2000, help="training iterations (default 2000, about 7 min on 2 cores)"
    )
    p.add_argument("--val-interval", type=int, default=500, help="validate and checkpoint every N iterations")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "demo", help="output folder (default runs/demo)")
    p.add_argument("--dataset-dir", type=Path, default=REPO / "data" / "phantoms" / "spine_ct")
    p.add_argument("--num-images", type=int, default=120, help="phantom scans to generate (default 120)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out, data = args.out.resolve(), args.dataset_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    ensure_phantom("spine_ct", data, args.num_images, args.seed)

    common = ["--dataset_dir", str(data), "--seed", str(args.seed)]
    train = common + ["--ckpt_dir", str(out / "models"), "--output_dir", str(out / "train")]
    train += ["--num_iterations", str(args.iterations), "--val_interval", str(args.val_interval)]
    try:
        run_bundle_step(BUNDLE, ["train.yaml", "cpu.yaml", "demo.yaml"], train, out / "train.log")

        evaluate = common + ["--ckpt_path", str(out / "models" / "model.pt"), "--output_dir", str(out / "eval")]
        run_bundle_step(
            BUNDLE, ["inference.yaml", "evaluate.yaml", "cpu.yaml", "demo.yaml"], evaluate, out / "evaluate.log"
        )
    except RuntimeError as e:
        raise SystemExit(f"demo: {e}") from None

    m = read_metrics(out / "eval")
    print(
        f"\nscn_spine_ct, CPU-sized ({args.iterations} iterations), spine phantom test split ({m['num_images']} scans):"
    )
    print(f"  identification rate (20 mm): {100 * m['identification_rate']:.1f}%")
    print(f"  MRE: {m['pe_mean']:.2f} +- {m['pe_std']:.2f} mm (median {m['pe_median']:.2f} mm)")
    print(f"  report: {out / 'eval'} (metrics.json, cumulative_ipe.png, overlays/)")
    print(f"  total time: {(time.perf_counter() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
