"""Export a bundle and a trained checkpoint as a self-contained MONAI model-zoo bundle (``mlm.bundle.export``).

Examples::

    python scripts/export_bundle.py scn_ceph --checkpoint runs/ceph/models/model.pt --out zoo/scn_ceph \\
        --configs cpu.yaml --eval-report runs/ceph/eval/metrics.json --url https://example.org/scn_ceph/model.pt
    python scripts/export_bundle.py scn_spine_ct --checkpoint runs/demo/models/model.pt --out zoo/scn_spine_ct \\
        --configs cpu.yaml demo.yaml --version 0.2.0 --changelog "demo-sized weights"
    python scripts/export_bundle.py scn_ceph --checkpoint runs/isbi2015_scn/weights/global.pt --out zoo/scn_ceph \\
        --configs cpu.yaml --refine-checkpoint runs/isbi2015_scn/weights/refine.pt --url https://.../model.pt \\
        --refine-url https://.../refine.pt
    python scripts/export_bundle.py gu2net_universal --checkpoint runs/gu2net/models/model.pt --out zoo/gu2net_hand \\
        --configs cpu.yaml domain.yaml --set domain=hand --set universal=true

``--configs`` are the overlays the model was trained with (names in the bundle's ``configs/`` or paths) and
``--set KEY=VALUE`` the command-line overrides (``--set num_filters=32``; VALUE is read as YAML). The exported
bundle runs with ``python -m monai.bundle run --config_file configs/inference.yaml`` where MONAI and the packages of
its ``configs/metadata.json`` are installed, without this project.

``--refine-checkpoint`` makes it two-stage (coarse-to-fine): the refinement stage's weights (a training checkpoint of
``refine.yaml`` or a plain state dict) become ``models/refine.pt`` and ``configs/refine_inference.yaml`` runs both
stages (``--config_file "['configs/inference.yaml','configs/refine_inference.yaml']"``); ``--refine-set KEY=VALUE``
are the overrides of the refinement's training (``--refine-set refine_spacing=0.5``). The bundle's ``refine.yaml``,
``attack.yaml``, ``robustness.yaml``, ``train_sat.yaml`` and ``train_amat.yaml`` are exported as overlays either way.

``gu2net_universal`` is exported one domain per bundle (``mlm.bundle.zoo_domains``): ``--configs cpu.yaml
domain.yaml --set domain=hand`` for a single-domain GU2Net, plus ``--set universal=true`` for that domain of the
universal model (``models/model.pt`` is then the single-domain network of its shared layers and the domain's own).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from mlm.bundle.configs import add_overrides_argument
from mlm.bundle.export import DEFAULT_DATASET_DIR, export_bundle


def _key_value(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE read as YAML)``, as ``--set`` reads it."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle name under bundles/ (scn_ceph, scn_spine_ct, ...) or a bundle folder")
    p.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (models/model.pt of train.yaml)")
    p.add_argument("--out", type=Path, required=True, help="folder of the exported bundle")
    p.add_argument("--configs", nargs="*", default=[], help="overlays the model was trained with, in order")
    add_overrides_argument(p, help="a command-line override of the training run (repeat as needed)")
    p.add_argument("--eval-report", type=Path, help="metrics.json of evaluate.yaml for this checkpoint")
    p.add_argument("--url", help="download URL of models/model.pt (large_files.yml)")
    p.add_argument("--ts-url", help="download URL of models/model.ts (large_files.yml)")
    p.add_argument("--version", help="version of the exported bundle (default: the source metadata's)")
    p.add_argument("--changelog", help="changelog entry of --version")
    p.add_argument("--dataset-dir", default=DEFAULT_DATASET_DIR, help="default dataset_dir of the exported configs")
    p.add_argument("--data-license", type=Path, help="file copied to docs/data_license.txt")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an exported bundle")
    p.add_argument(
        "--refine-checkpoint",
        type=Path,
        help="the refinement stage's checkpoint (models/refine/model.pt of refine.yaml, or weights/refine.pt): a "
        "two-stage bundle with models/refine.pt and configs/refine_inference.yaml",
    )
    p.add_argument(
        "--refine-set",
        dest="refine_overrides",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a command-line override of the refinement's training (refine_spacing=0.5, network_def#num_filters=16)",
    )
    p.add_argument("--refine-url", help="download URL of models/refine.pt (large_files.yml)")
    args = p.parse_args(argv)
    result = export_bundle(
        args.bundle,
        args.checkpoint,
        args.out,
        configs=args.configs,
        overrides=dict(args.overrides),
        eval_report=args.eval_report,
        url=args.url,
        ts_url=args.ts_url,
        version=args.version,
        changelog=args.changelog,
        dataset_dir=args.dataset_dir,
        data_license=args.data_license,
        overwrite=args.overwrite,
        refine_checkpoint=args.refine_checkpoint,
        refine_overrides=dict(args.refine_overrides),
        refine_url=args.refine_url,
    )
    print(f"exported {args.bundle} to {result.path}")
    print(f"  configs: {', '.join(result.configs)}")
    if result.domain is not None:
        kind = "the universal model's" if result.domain.universal else "a single-domain model"
        print(f"  domain: {result.domain.name} ({kind})")
    if args.refine_checkpoint is not None:
        print("  two-stage: models/refine.pt, configs/refine_inference.yaml")
    print(f"  code: {len(result.code.modules)} modules ({result.code.lines} lines) in scripts/")
    print(f"  models/model.ts: TorchScript, max |scripted - eager| = {result.torchscript_max_abs_diff:.3g}")
    for config, changed in result.conformance_changes.items():
        print(f"  {config}: changed for the model zoo's property check: {sorted(changed)}")
    for warning in result.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
