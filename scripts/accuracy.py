"""Accuracy of the CPU-sized SCN bundles on the phantoms' held-out test splits, against the Localization U-Net.

For the spine phantom it trains ``scn_spine_ct`` (``cpu.yaml`` + ``demo.yaml`` + ``demo_z4.yaml``: 8 mm x/y, 4 mm
along z) and the Localization U-Net (the same + ``unet.yaml``) with the same iteration budget, seed and data,
evaluates both on the test split and checks the bars of the SCN issue: SCN identification rate >= 90% and better
than the U-Net's. For the cephalogram phantom it trains ``scn_ceph`` (``cpu.yaml``) and reports MRE and SDR at 2,
2.5, 3 and 4 mm. Every step is a ``python -m monai.bundle run`` command (printed); re-running resumes the trainings
from their checkpoints.

Writes to ``--out`` (default ``runs/accuracy``): one folder per run (models/, train/, eval/ with metrics.json,
overlays and cumulative IPE plot), ``spine_cumulative_ipe.png`` (both spine models on one plot) and
``accuracy.json`` (the table below, with the commands). Prints a Markdown table.

Usage::

    python scripts/accuracy.py [--spine-iterations 4000] [--ceph-iterations 600] [--skip-ceph] [--out runs/accuracy]
                               [--spine-configs demo.yaml demo_z4.yaml]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlm.bundle.launch import ensure_phantom, read_metrics, run_bundle_step  # noqa: E402
from mlm.reports import read_point_errors, write_metrics_json  # noqa: E402
from mlm.visualize import plot_cumulative_ipe  # noqa: E402

ID_RATE_BAR = 0.90


def train_and_evaluate(
    bundle: str,
    extra_configs: list[str],
    data: Path,
    out: Path,
    iterations: int,
    val_interval: int,
    seed: int,
    overrides: list[str] = (),
) -> tuple[dict, list[str]]:
    """Train ``bundle`` with ``cpu.yaml`` + ``extra_configs`` (e.g. ``demo.yaml``, ``unet.yaml``), evaluate on the
    test split with the same configs; returns the metrics and the commands run."""
    out.mkdir(parents=True, exist_ok=True)
    common = ["--dataset_dir", str(data), "--seed", str(seed), *overrides]
    train = common + ["--ckpt_dir", str(out / "models"), "--output_dir", str(out / "train")]
    train += ["--num_iterations", str(iterations), "--val_interval", str(val_interval)]
    cmds = [run_bundle_step(bundle, ["train.yaml", "cpu.yaml", *extra_configs], train, out / "train.log")]
    evaluate = common + ["--ckpt_path", str(out / "models" / "model.pt"), "--output_dir", str(out / "eval")]
    configs = ["inference.yaml", "evaluate.yaml", "cpu.yaml", *extra_configs]
    cmds.append(run_bundle_step(bundle, configs, evaluate, out / "evaluate.log"))
    return read_metrics(out / "eval"), cmds


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except RuntimeError as e:
        raise SystemExit(f"accuracy: {e}") from None


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spine-iterations", type=int, default=4000)
    p.add_argument("--ceph-iterations", type=int, default=600)
    p.add_argument("--val-interval", type=int, default=500)
    p.add_argument("--spine-images", type=int, default=120, help="spine phantom scans (80/20/20 split by default)")
    p.add_argument(
        "--spine-configs",
        nargs="+",
        default=["demo.yaml", "demo_z4.yaml"],
        help="scn_spine_ct overrides applied after cpu.yaml, for both networks (default: demo.yaml demo_z4.yaml, "
        "8 mm x/y and 4 mm z; demo.yaml alone is the demo's 8 mm grid at half the cost)",
    )
    p.add_argument("--skip-ceph", action="store_true", help="spine comparison only")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "accuracy")
    p.add_argument("--data-root", type=Path, default=REPO / "data" / "phantoms")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out, data_root = args.out.resolve(), args.data_root.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    rows, commands = [], []

    spine = data_root / "spine_ct"
    ensure_phantom("spine_ct", spine, args.spine_images, args.seed)
    spine_errors = {}
    # demo.yaml's 24-voxel windows (96 along z with demo_z4.yaml) fit the U-Net's pooling with 4 levels (8x), the
    # depth of the SCN's local part
    models = (
        ("SCN", "spine_scn", args.spine_configs, []),
        ("Localization U-Net", "spine_unet", [*args.spine_configs, "unet.yaml"], ["--network_def#num_levels", "4"]),
    )
    for label, folder, extra, overrides in models:
        m, cmds = train_and_evaluate(
            "scn_spine_ct", extra, spine, out / folder, args.spine_iterations, args.val_interval, args.seed, overrides
        )
        run = out / folder
        commands += cmds
        spine_errors[label] = read_point_errors(run / "eval" / "errors_per_image.csv")
        rows.append(
            {
                "dataset": "spine phantom (test)",
                "model": label,
                "iterations": args.spine_iterations,
                "images": m["num_images"],
                "id_rate": m["identification_rate"],
                "mre_mm": m["pe_mean"],
                "sd_mm": m["pe_std"],
                "median_mm": m["pe_median"],
                "sdr": m["sdr"],
            }
        )
    plot_cumulative_ipe(spine_errors, out / "spine_cumulative_ipe.png", radii=(2.0, 4.0, 10.0, 20.0))

    if not args.skip_ceph:
        ceph = data_root / "ceph"
        ensure_phantom("ceph", ceph, 60, args.seed)
        m, cmds = train_and_evaluate("scn_ceph", [], ceph, out / "ceph_scn", args.ceph_iterations, 100, args.seed)
        commands += cmds
        rows.append(
            {
                "dataset": "cephalogram phantom (test)",
                "model": "SCN",
                "iterations": args.ceph_iterations,
                "images": m["num_images"],
                "id_rate": None,
                "mre_mm": m["pe_mean"],
                "sd_mm": m["pe_std"],
                "median_mm": m["pe_median"],
                "sdr": m["sdr"],
            }
        )

    scn, unet = rows[0]["id_rate"], rows[1]["id_rate"]
    bars = {
        f"SCN ID rate >= {100 * ID_RATE_BAR:.0f}%": bool(scn >= ID_RATE_BAR),
        "SCN ID rate > U-Net ID rate": bool(scn > unet),
    }
    minutes = (time.perf_counter() - t_start) / 60
    write_metrics_json(out / "accuracy.json", {"rows": rows, "bars": bars, "commands": commands, "minutes": minutes})

    print(
        "\n| dataset | model | iterations | images | ID rate | MRE +- SD (mm) | median (mm) | SDR 2 / 2.5 / 3 / 4 mm |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        idr = "-" if r["id_rate"] is None else f"{100 * r['id_rate']:.1f}%"
        sdr = " / ".join(f"{100 * v:.1f}%" for k, v in r["sdr"].items() if float(k) <= 4.0)
        print(
            f"| {r['dataset']} | {r['model']} | {r['iterations']} | {r['images']} | {idr} | "
            f"{r['mre_mm']:.2f} +- {r['sd_mm']:.2f} | {r['median_mm']:.2f} | {sdr} |"
        )
    for bar, ok in bars.items():
        print(f"{'PASS' if ok else 'FAIL'}: {bar}")
    print(f"{minutes:.1f} min; written to {out}")
    return 0 if all(bars.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
