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
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True)
    p.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dataset_dir", default=None)
    p.add_argument("--infer_split", default=None)
    p.add_argument("--levels", default=None, help="comma-separated radii (default: the overlay's 0..3)")
    p.add_argument("--iterations", type=int, default=None, help="PGD steps (default: the overlay's 100)")
    p.add_argument("--max_items", type=int, default=None, help="test images (default: all)")
    p.add_argument("--no_cpu", action="store_true", help="without cpu.yaml")
    p.add_argument("--extra", default="", help="further overrides for every run, e.g. '--num_filters 16'")
    p.add_argument("--threads", default="2", help="OMP_NUM_THREADS of the runs")
    p.add_argument(
        "--reuse", action="store_true", help="keep a model's existing <out>/<NAME> report (delete it to re-run)"
    )
    a = p.parse_args(argv)

    from mlm.bundle.launch import run_bundle
    from mlm.reports import write_metrics_csv
    from mlm.robustness import markdown_table, plot_robustness_curves
    from transforms.io.atomic import atomic_write_text

    models = {}
    for spec in a.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            p.error(f"--model {spec!r}: expected NAME=CHECKPOINT with an existing checkpoint file.")
        models[name] = Path(path).resolve()
    configs = ["inference.yaml", "evaluate.yaml"] + ([] if a.no_cpu else ["cpu.yaml"]) + ["robustness.yaml"]
    common = shlex.split(a.extra)
    if a.dataset_dir:
        common += ["--dataset_dir", str(Path(a.dataset_dir).resolve())]
    if a.infer_split:
        common += ["--infer_split", a.infer_split]
    if a.levels:
        common += ["--robustness_levels", "[" + a.levels + "]"]
    if a.iterations is not None:
        common += ["--robustness_iterations", str(a.iterations)]
    if a.max_items is not None:
        common += ["--max_items", str(a.max_items)]
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    curves, table, radius = {}, [], None
    for name, ckpt in models.items():
        run_dir = out / name
        args = common + ["--ckpt_path", str(ckpt), "--output_dir", str(run_dir)]
        print(f"[{name}] python -m monai.bundle run --config_file {configs} {shlex.join(args)}", flush=True)
        done = run_dir / "robustness" / "robustness.json"
        if a.reuse and done.is_file():
            print(f"[{name}] reusing {done}", flush=True)
            result = None
        else:
            result = run_bundle(a.bundle, configs, args, env={"OMP_NUM_THREADS": a.threads})
        if result is not None and result.returncode != 0:
            print(result.stdout[-2000:] + result.stderr[-4000:], file=sys.stderr)
            print(f"error: the robustness run of {name} failed (exit {result.returncode}).", file=sys.stderr)
            return 1
        report = json.loads((run_dir / "robustness" / "robustness.json").read_text(encoding="utf-8"))
        rows = report["rows"]
        curves[name] = rows
        sdr_keys = [k for k in rows[0] if k.startswith("sdr_")]
        radius = radius if radius is not None else (float(sdr_keys[0][4:]) if sdr_keys else None)
        mean_mre = sum(r["mre"] for r in rows) / len(rows)
        table += [{"model": name, **r, "mean_mre_over_levels": mean_mre} for r in rows]
        print(f"[{name}] MRE per level: {[round(r['mre'], 3) for r in rows]} (mean {mean_mre:.3f})", flush=True)
    write_metrics_csv(out / "robustness_comparison.csv", table)
    atomic_write_text(out / "robustness_comparison.md", markdown_table(table, f"{a.bundle}: robustness under L2 PGD"))
    plot_robustness_curves(curves, out / "robustness_comparison.png", radius=radius)
    print(f"wrote {out / 'robustness_comparison.md'} and {out / 'robustness_comparison.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
