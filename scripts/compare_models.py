"""Compare trained models (of one or several bundles) on the same prepared dataset: one table, one figure.

Trains nothing. For each ``--model NAME=BUNDLE:CHECKPOINT[:REFINE_CHECKPOINT]`` it counts the parameters and times
the forward pass on the CPU (in this process), then runs the bundle's inference and evaluation on the split
(``inference.yaml`` + ``evaluate.yaml`` + ``--configs`` [+ ``refine_inference.yaml`` with a refinement checkpoint],
printed) into ``OUT/NAME/``, with the preprocessing geometry the checkpoint records. A model whose report is newer
than its checkpoints and came from the same command is not run again. Writes ``OUT/comparison.md``,
``OUT/comparison.csv``, ``OUT/cumulative_error.png`` (fraction of landmarks with error <= r, one curve per model) and
``OUT/comparison.json``. Models evaluated in other units, on other images or against another ground truth are
refused. See mlm/bundle/comparison.py.

    OMP_NUM_THREADS=2 python scripts/compare_models.py --dataset-dir runs/real/isbi2015_scn/data --split test1 \\
        --model scn=scn_ceph:runs/real/isbi2015_scn/global/models/model.pt:runs/real/isbi2015_scn/refine/models/model.pt \\
        --model farnet=farnet_ceph:runs/farnet/models/model.pt \\
        --model mtunet=mtunet_ceph:runs/mtunet/models/model.pt --out runs/compare_isbi_test1

Per-model options name the model: ``--model-config scn:unet.yaml`` (an overlay after ``--configs``),
``--model-set scn:num_filters=32`` (an override as on the bundle's command line); ``--set KEY=VALUE`` applies to
every model.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.removeprefix("--"), value


def _named(text: str) -> tuple[str, str]:
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME:..., got {text!r}")
    return name, rest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset-dir", required=True, type=Path, help="the prepared dataset (holds datalist.json)")
    p.add_argument("--split", default="test", help="the datalist split every model is evaluated on (default: test)")
    p.add_argument(
        "--model", action="append", required=True, metavar="NAME=BUNDLE:CKPT[:REFINE_CKPT]", help="a model (repeat)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/compare_models"), help="output folder")
    p.add_argument(
        "--configs",
        nargs="*",
        default=["cpu.yaml"],
        help="overlays of every model (default: cpu.yaml; none: --configs)",
    )
    p.add_argument("--set", dest="overrides", type=_key_value, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--model-set", type=_named, action="append", default=[], metavar="NAME:KEY=VALUE")
    p.add_argument("--model-config", type=_named, action="append", default=[], metavar="NAME:CONFIG")
    p.add_argument(
        "--errors",
        choices=["auto", "plain", "normalized"],
        default="auto",
        help="normalised errors (hand X-rays) when every report has them (auto), or always plain / normalised",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads of the CPU timing (default 1)")
    p.add_argument("--timing-images", type=int, default=3, help="images timed per model (0: no timing; default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forward passes first (default 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    from mlm.bundle.comparison import ComparisonError, ModelSpec, compare_models

    try:
        specs = {}
        for text in a.model:
            spec = ModelSpec.parse(text)
            if spec.name in specs:
                p.error(f"two models named {spec.name!r}")
            specs[spec.name] = spec
        for option, pairs in (("--model-set", a.model_set), ("--model-config", a.model_config)):
            for name, _ in pairs:
                if name not in specs:
                    p.error(f"{option} {name}:...: no --model named {name!r} (models: {sorted(specs)})")
        for name, spec in specs.items():
            configs = tuple(c for n, c in a.model_config if n == name)
            overrides = tuple(_key_value(t) for n, t in a.model_set if n == name)
            specs[name] = replace(spec, configs=configs, overrides=overrides)
        result = compare_models(
            list(specs.values()),
            a.dataset_dir,
            a.split,
            a.out,
            configs=a.configs,
            overrides=a.overrides,
            errors=a.errors,
            threads=a.threads,
            timing_images=a.timing_images,
            warmup=a.warmup,
        )
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    except (ComparisonError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n" + result["files"]["md"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(path) for path in result["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
