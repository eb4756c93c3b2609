"""Run the attack protocol of "Miss the Point" (Yao et al., MICCAI 2020) on bundles' models: TI vs ATI, eps sweep.

For every model (a bundle and a checkpoint), every eps (grey levels of the 0-255 scale) and every method, this runs
the bundle's ``attack`` overlay (``configs/inference.yaml + evaluate.yaml + cpu.yaml + attack.yaml``, built in this
process as ``python -m monai.bundle run`` builds it) on a prepared dataset split, then writes to ``--out``:

- ``<model>/eps<e>/<method>/``: each run's report (``attack_metrics.json``, ``attack_convergence.png``,
  ``attack_isolation.png``, ``attack_errors.csv``, the adversarial predictions...);
- ``attack_table.md`` / ``attack_table.csv``: TI vs ATI at the checkpoints (targeted MRE, MedRE, SDR 4 mm of the
  moved landmarks against their goals; stationary MRE, SDR 4 mm against the ground truth; iteration 0 = clean);
- ``<model>_eps<e>_convergence.png`` (TI and ATI together) and ``<model>_eps_sweep.png`` (with several eps);
- ``attack_bars.json``, and prints PASS / FAIL for the issue's bars: ATI beats TI at equal iterations on targeted
  MRE and targeted SDR 4 mm; the stationary landmarks keep >= 90% of their clean SDR 4 mm.

The full protocol is 300 iterations on every test image (the defaults: ``--iterations 300``, all images of the split);
on a CPU that is hours per model (one iteration costs about one forward + backward pass: ~1 s for the CPU-sized
256x256 SCN on 2 cores), so ``--max-images`` and ``--iterations`` size a CPU run (the checkpoints are the paper's
1, 20, 50, 99, 150, 200, 250, 299 that are <= the iterations). The random goals depend only on ``--seed`` and the
image id: TI, ATI and every eps attack the same landmarks towards the same goals.

Example (ISBI 2015 Test1 prepared by scripts/prepare_dataset.py; a CPU-sized run of 5 images, 50 iterations)::

    python scripts/attack_protocol.py --dataset-dir data/isbi2015 --split test1 --out eval/attack_protocol \\
        --model scn_ceph bundles/scn_ceph/models/model.pt --model mtunet_ceph bundles/mtunet_ceph/models/model.pt \\
        --max-images 5 --iterations 50 [--eps 2 4 8 16] [--strict]

Each ``--model BUNDLE CKPT [KEY=VALUE ...]`` may carry its own config overrides (e.g. ``num_filters=32``); ``--set
KEY=VALUE`` applies to every model. ``--no-cpu`` leaves out ``cpu.yaml`` (a paper-sized model). ``--reuse`` keeps
every finished run whose report has the same method, iterations, eps, seed, checkpoint and image count: an interrupted
protocol resumes, and TI and ATI can run in two processes (``--methods ti`` / ``--methods ati``, one core each) before
one ``--reuse`` call writes the tables and bars.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

__all__ = ["main", "run_attack"]


def _model(values: list[str]) -> tuple[str, str, dict]:
    if len(values) < 2:
        raise argparse.ArgumentTypeError("--model needs BUNDLE CKPT [KEY=VALUE ...]")
    overrides = {}
    for text in values[2:]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--model override must be KEY=VALUE, got {text!r}")
        overrides[key] = yaml.safe_load(value)
    return values[0], values[1], overrides


def build_parser() -> argparse.ArgumentParser:
    from mlm.bundle.configs import add_overrides_argument

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        nargs="+",
        action="append",
        required=True,
        metavar="BUNDLE CKPT [KEY=VALUE]",
        help="a bundle and its checkpoint (repeat for several models), optional overrides",
    )
    p.add_argument("--dataset-dir", required=True, help="prepared dataset (datalist.json)")
    p.add_argument("--split", default="test", help="datalist split to attack (ISBI 2015: test1)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--methods", nargs="+", default=["ti", "ati"], choices=["ti", "ati", "pgd"])
    p.add_argument("--eps", nargs="+", type=float, default=[8.0], help="eps in grey levels of 0-255 (a sweep)")
    p.add_argument("--iterations", type=int, default=300, help="attack iterations (the protocol: 300)")
    p.add_argument("--max-images", type=int, default=None, help="attack only the first N images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random goals (per image id)")
    p.add_argument("--stationary-fraction", type=float, default=0.9, help="bar: share of the clean stationary SDR")
    p.add_argument("--no-cpu", action="store_true", help="leave out configs/cpu.yaml")
    p.add_argument("--strict", action="store_true", help="exit with 1 when a bar fails")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep a run's existing report when its settings match (an interrupted protocol resumes; TI and ATI may "
        "run in two processes with --methods, then one --reuse call writes the tables)",
    )
    add_overrides_argument(p, help="a config override of every model's run (repeat as needed)")
    return p


def run_attack(bundle: str, configs: list[str], overrides: dict, output_dir: Path) -> dict:
    """One run of a bundle's attack overlay in this process; returns its ``attack_metrics.json``."""
    from mlm.bundle import bundle_config_parser
    from mlm.bundle.launch import BUNDLES_DIR

    parser = bundle_config_parser(BUNDLES_DIR / bundle, configs, {**overrides, "output_dir": str(output_dir)})
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("run")
    return json.loads((output_dir / "attack_metrics.json").read_text(encoding="utf-8"))


#: the settings a reused report must share with the run asked for (attack_metrics.json "settings" keys)
_REUSE_KEYS = {"attack_method": "method", "attack_iterations": "num_iterations", "attack_eps_255": "eps_255",
               "attack_seed": "seed", "ckpt_path": "ckpt_path"}  # fmt: skip


def _reusable_report(run_dir: Path, overrides: dict) -> dict | None:
    """The report in ``run_dir`` if a finished run with the same method, iterations, eps, seed, checkpoint and
    number of images left it there, else None (the run is repeated). Its ``seconds`` are the original run's."""
    path = run_dir / "attack_metrics.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    settings = report.get("settings", {})
    same = all(str(settings.get(key)) == str(overrides[name]) for name, key in _REUSE_KEYS.items())
    max_items = overrides.get("max_items")
    same &= max_items is None or len(report.get("ids", [])) == int(max_items)
    timing = run_dir / "seconds.json"
    if same and timing.is_file():
        report["seconds"] = json.loads(timing.read_text(encoding="utf-8"))["seconds"]
    return report if same else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlm.protocols.attack import attack_bars, attack_markdown, attack_rows
    from mlm.reports import atomic_write_text, write_metrics_csv, write_metrics_json
    from mlm.visualize import plot_attack_convergence, plot_attack_eps_sweep

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = ["inference.yaml", "evaluate.yaml", *([] if args.no_cpu else ["cpu.yaml"]), "attack.yaml"]
    models = [_model(m) for m in args.model]
    results: dict[tuple[str, float], dict[str, dict]] = {}
    timing = []
    for index, (bundle, ckpt, model_overrides) in enumerate(models):
        label = bundle if [m[0] for m in models].count(bundle) == 1 else f"{bundle}_{index}"
        for eps in args.eps:
            for method in args.methods:
                overrides = {
                    "dataset_dir": str(Path(args.dataset_dir).resolve()),
                    "infer_split": args.split,
                    "ckpt_path": str(Path(ckpt).resolve()),
                    "max_items": args.max_images,
                    "num_overlays": 0,
                    "attack_method": method,
                    "attack_iterations": args.iterations,
                    "attack_eps_255": float(eps),
                    "attack_seed": args.seed,
                    **dict(args.overrides),
                    **model_overrides,
                }
                run_dir = out / label / f"eps{eps:g}" / method
                print(
                    f"== {label}: {method.upper()} eps {eps:g}/255, {args.iterations} iterations -> {run_dir}",
                    flush=True,
                )
                start = time.perf_counter()
                report = _reusable_report(run_dir, overrides) if args.reuse else None
                if report is None:
                    report = run_attack(bundle, configs, overrides, run_dir)
                else:
                    print(f"   reusing {run_dir / 'attack_metrics.json'}", flush=True)
                seconds = report.pop("seconds", None)
                if seconds is None:
                    seconds = time.perf_counter() - start
                    atomic_write_text(run_dir / "seconds.json", json.dumps({"seconds": seconds}))
                results.setdefault((label, float(eps)), {})[method] = report
                n = len(report["ids"])
                timing.append(
                    {
                        "model": label,
                        "eps_255": eps,
                        "method": method,
                        "images": n,
                        "seconds": seconds,
                        "seconds_per_iteration": seconds / max(n * args.iterations, 1),
                    }
                )
    bars = {key: attack_bars(reports, args.stationary_fraction) for key, reports in results.items()}
    rows = attack_rows(results)
    write_metrics_csv(out / "attack_table.csv", rows)
    text = attack_markdown(results, bars)
    atomic_write_text(out / "attack_table.md", text)
    write_metrics_json(
        out / "attack_bars.json",
        {"bars": [{"model": m, "eps_255": e, **b} for (m, e), bs in bars.items() for b in bs], "timing": timing},
    )
    for (label, eps), reports in results.items():
        any_report = next(iter(reports.values()))
        plot_attack_convergence(
            {m.upper(): r["iterations"] for m, r in reports.items()},
            out / f"{label}_eps{eps:g}_convergence.png",
            radius=any_report["radius"],
            unit=any_report["units"],
            title=f"{label}, eps {eps:g}/255, {len(any_report['ids'])} images",
        )
    for label in dict.fromkeys(m for m, _ in results):
        sweep = [(e, reports) for (m, e), reports in results.items() if m == label]
        if len(sweep) < 2:
            continue
        curves: dict[str, list[dict]] = {}
        for eps, reports in sweep:
            for method, report in reports.items():
                curves.setdefault(method.upper(), []).append({"eps_255": eps, **report["iterations"][-1]})
        plot_attack_eps_sweep(curves, out / f"{label}_eps_sweep.png", title=f"{label}: eps sweep")
    print(text)
    failed = False
    for (label, eps), bs in bars.items():
        for bar in bs:
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[bar["passed"]]
            failed |= bar["passed"] is False
            print(f"{verdict} {label} eps {eps:g}: {bar['bar']}: {bar['detail']}")
    for t in timing:
        print(
            f"{t['model']} {t['method']} eps {t['eps_255']:g}: {t['seconds']:.1f} s for {t['images']} images "
            f"({t['seconds_per_iteration']:.3f} s per image and iteration, bundle set-up included)"
        )
    print(f"tables and plots written to {out}")
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
