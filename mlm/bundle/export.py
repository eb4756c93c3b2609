"""Export one of the repository's bundles and a trained checkpoint as a self-contained MONAI model-zoo bundle.

``python scripts/export_bundle.py scn_ceph --checkpoint runs/ceph/models/model.pt --out models/scn_ceph
--configs cpu.yaml --eval-report runs/ceph/eval/metrics.json --url https://.../model.pt`` writes::

    configs/train.yaml, inference.yaml          the bundle's configs merged with the chosen overlays, its facts and the
                                                shared base resolved into them (no macros: self-contained)
    configs/evaluate.yaml                       overlay of inference.yaml (the evaluation report)
    configs/multi_gpu_train.yaml                overlay of train.yaml (DDP)
    configs/metadata.json, logging.conf         metadata valid under the official model-zoo schema
    models/model.pt                             the network's plain state dict (the checkpoint's "model" entry)
    models/model.ts                             TorchScript (torch.jit.script), checked equal to the eager network
    scripts/                                    the project code the configs use (mlm/, transforms/), imports relative
    large_files.yml, LICENSE, docs/README.md, docs/data_license.txt

Every ``_target_`` and ``$`` expression naming project code names the copy in ``scripts/`` instead, so the bundle
runs where MONAI and the packages of its metadata are installed but this project is not. The configs follow the
zoo's property conventions (:func:`mlm.bundle.zoo_configs.conform_properties`); the source changes that would make
the repository's own configs conform are reported by :attr:`ExportResult.conformance_changes`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from monai.bundle import ConfigParser
from torch import nn

from mlm.bundle.vendor import VendoredCode, config_references, module_closure, rewrite_config_references, vendor_modules
from mlm.bundle.zoo_configs import (
    conform_properties,
    merge_configs,
    overlay_difference,
    prune_unreferenced,
    unvalidated_tail,
)
from mlm.bundle.zoo_docs import data_license_text, large_files_yaml, zoo_readme
from mlm.bundle.zoo_metadata import eval_metrics_from_report, required_packages, validate_metadata

__all__ = ["DEFAULT_DATASET_DIR", "ExportError", "ExportResult", "export_bundle", "network_state_dict"]

#: ``dataset_dir`` of an exported bundle: a folder inside the bundle, never a path into this repository
DEFAULT_DATASET_DIR = "$@bundle_root + '/data'"
_REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
_HEADERS = {
    "train": "training",
    "inference": "inference: writes <output_dir>/predictions/<id>_landmarks.json",
    "evaluate": "evaluation, an overlay of inference.yaml: metrics.json, per-landmark CSV, plots in <output_dir>",
    "multi_gpu_train": "multi-process (DDP) training, an overlay of train.yaml; launch with torchrun",
}
_COMMANDS = {
    "train": "python -m monai.bundle run --config_file configs/train.yaml",
    "inference": "python -m monai.bundle run --config_file configs/inference.yaml",
    "evaluate": "python -m monai.bundle run --config_file \"['configs/inference.yaml','configs/evaluate.yaml']\"",
    "multi_gpu_train": "torchrun --nproc_per_node=2 -m monai.bundle run --config_file "
    "\"['configs/train.yaml','configs/multi_gpu_train.yaml']\"",
}


class ExportError(ValueError):
    """The bundle cannot be exported as asked (missing file, checkpoint that does not fit, existing output)."""


@dataclass
class ExportResult:
    """What :func:`export_bundle` wrote.

    Attributes:
        path: the exported bundle's folder.
        code: the vendored modules (:class:`mlm.bundle.vendor.VendoredCode`).
        torchscript_max_abs_diff: largest difference between the TorchScript and the eager network's output on a
            random input of the metadata's shape.
        conformance_changes: config items the export changed to pass the zoo's property check (id -> new value):
            what the source configs would need to pass it themselves.
        warnings: what the exported bundle does differently from the source, or lacks (no URL, no evaluation).
    """

    path: Path
    code: VendoredCode
    torchscript_max_abs_diff: float
    conformance_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _bundle_dir(bundle: str | os.PathLike) -> Path:
    path = Path(bundle)
    if not (path / "configs").is_dir():
        path = _REPO_BUNDLES / str(bundle)
    if not (path / "configs" / "metadata.json").is_file():
        raise ExportError(
            f"no bundle {bundle!r}: expected a folder with configs/metadata.json (or a name in {_REPO_BUNDLES})."
        )
    return path


def _overlay_paths(bundle_dir: Path, configs: Sequence[str | os.PathLike]) -> list[Path]:
    paths = []
    for c in configs:
        path = bundle_dir / "configs" / str(c)
        path = path if path.is_file() else Path(c)
        if not path.is_file():
            raise ExportError(f"overlay {c!r} is neither in {bundle_dir / 'configs'} nor a file.")
        paths.append(path)
    return paths


def network_state_dict(checkpoint: Mapping[str, Any], key: str = "model") -> dict[str, torch.Tensor]:
    """The network weights of a checkpoint: its ``key`` entry (a training checkpoint of ``train.yaml``: ``model``,
    ``optimizer``, ``loss``, ``lr_scheduler``, ``trainer``...) or the checkpoint itself when it is a plain state dict.

    ``module.`` prefixes of a ``DistributedDataParallel`` state dict are removed.

    Raises:
        ExportError: neither form.
    """
    if isinstance(checkpoint.get(key), Mapping):
        state = dict(checkpoint[key])
    elif checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = dict(checkpoint)
    else:
        raise ExportError(
            f"the checkpoint has no {key!r} entry and is not a state dict (it holds {sorted(checkpoint)})."
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _example_shape(spatial_shape: Sequence[Any], n: int = 2) -> list[int]:
    """A spatial shape from the metadata's expressions (``"16*n"``) with ``n`` (and ``p`` = 1, ``*`` = 1)."""
    shape = []
    for s in spatial_shape:
        if isinstance(s, int):
            shape.append(s)
        elif str(s).strip() == "*":
            shape.append(1)
        else:
            shape.append(int(eval(str(s), {"__builtins__": {}}, {"n": n, "p": 1})))  # noqa: S307 - "16*n" only
    return shape


def _load_network(config: Mapping, state: Mapping[str, torch.Tensor], checkpoint: Path) -> nn.Module:
    parser = ConfigParser(copy.deepcopy(dict(config)))
    net = parser.get_parsed_content("network_def", instantiate=True).cpu().eval()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ExportError(
            f"checkpoint {checkpoint} does not fit the exported network_def (pass the overlays and --set values the "
            f"model was trained with): {str(e).splitlines()[0]}"
        ) from None
    return net


def _torchscript(net: nn.Module, metadata: Mapping, path: Path, inference: Mapping) -> float:
    """Script ``net``, check it against eager on a random input, save it as ``ckpt_export`` does; return max |diff|."""
    from monai.data import save_net_with_metadata

    image = next(iter(metadata["network_data_format"]["inputs"].values()))
    x = torch.rand(
        1,
        int(image["num_channels"]),
        *_example_shape(image["spatial_shape"]),
        generator=torch.Generator().manual_seed(0),
    )
    scripted = torch.jit.script(net)
    with torch.no_grad():
        eager, ts = net(x), scripted(x)
    diff = float((eager - ts).abs().max())
    if not diff <= 1e-5 * max(1.0, float(eager.abs().max())):
        raise ExportError(f"the TorchScript network differs from the eager one by {diff:g} on a random input.")
    save_net_with_metadata(
        scripted,
        str(path.with_suffix("")),
        meta_values=dict(metadata),
        more_extra_files={"inference.json": json.dumps(inference).encode()},
    )
    return diff


class _ConfigDumper(yaml.SafeDumper):
    """Block style as the repository's configs are written, short lists of scalars inline (``[32, 32]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    inline = all(not isinstance(v, (dict, list)) for v in data) and len(repr(data)) <= 100
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=inline)


_ConfigDumper.add_representer(list, _represent_list)


def _write_config(path: Path, name: str, config: Mapping, source: str) -> None:
    header = (
        f"# {source}: {_HEADERS[name]}.\n# {_COMMANDS[name]}\n"
        "# Exported from the monai-landmarks project (scripts/export_bundle.py); Python code in scripts/.\n"
    )
    text = yaml.dump(dict(config), Dumper=_ConfigDumper, sort_keys=False, width=120, default_flow_style=False)
    path.write_text(header + text, encoding="utf-8")


@dataclass
class _Configs:
    """The merged configs of an export: ``source`` (naming this project, for loading the network here) and
    ``exported`` (naming ``scripts``; ``evaluate`` and ``multi_gpu_train`` as overlays), with the conformance changes."""

    source: dict[str, dict]
    exported: dict[str, dict]
    changes: dict[str, dict]


def _merged_configs(cfg: Path, overlays: Sequence[Path], overrides: Mapping[str, Any], dataset_dir: str) -> _Configs:
    """The four configs the zoo expects, each merged as the README's command merges it (the overlays after the
    bundle's own files, ``multi_gpu_train.yaml`` last), made to pass the zoo's property check."""

    def merged(base: Path, before: Sequence[Path] = (), after: Sequence[Path] = ()) -> dict:
        full = merge_configs([base, *before, *overlays, *after], overrides, root=cfg.parent)
        keep = set().union(*(ConfigParser.load_config_file(str(f)).keys() for f in [base, *before, *after]))
        return {**prune_unreferenced(full, keep=sorted(keep)), "dataset_dir": dataset_dir}

    source = {
        "train": merged(cfg / "train.yaml"),
        "multi_gpu_train": merged(cfg / "train.yaml", after=[cfg / "multi_gpu_train.yaml"]),
        "inference": merged(cfg / "inference.yaml"),
        "evaluate": merged(cfg / "inference.yaml", before=[cfg / "evaluate.yaml"]),
    }
    changes = {}
    for name, config in source.items():
        conformed = conform_properties(config, "infer" if name in ("inference", "evaluate") else "train")
        if name in ("train", "inference") and (diff := overlay_difference(config, conformed)):
            changes[f"{name}.yaml"] = diff
        source[name] = conformed
    full = {name: rewrite_config_references(config) for name, config in source.items()}
    exported = {
        "train": full["train"],
        "inference": full["inference"],
        "evaluate": overlay_difference(full["inference"], full["evaluate"]),
        "multi_gpu_train": overlay_difference(full["train"], full["multi_gpu_train"]),
    }
    return _Configs(source, exported, changes)


def _check_inputs(src: Path, out: Path, checkpoint: Path, eval_report: Path | None, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} exists and is not empty (pass overwrite=True / --overwrite to replace it).")
        if not (out / "configs" / "metadata.json").is_file():
            raise ExportError(f"{out} exists and is not a bundle folder: refusing to replace it.")
    for path, what in ((checkpoint, "checkpoint"), (eval_report, "evaluation report")):
        if path is not None and not path.is_file():
            raise ExportError(f"{what} {path} not found.")
    for name in ("train.yaml", "inference.yaml", "evaluate.yaml", "multi_gpu_train.yaml", "logging.conf"):
        if not (src / "configs" / name).is_file():
            raise ExportError(f"bundle {src} has no configs/{name}.")


def _warnings(train: Mapping, url: str | None, eval_report: Path | None) -> list[str]:
    warnings = []
    if tail := unvalidated_tail(train):
        warnings.append(
            f"configs/train.yaml validates every val_interval iterations: the last {tail} of num_iterations are not "
            "validated (the source's epoch-level validation also ran after them)."
        )
    if not url:
        warnings.append("no URL for models/model.pt: large_files.yml has an empty url to fill in.")
    if eval_report is None:
        warnings.append("no evaluation report: the metadata has no eval_metrics.")
    return warnings


def export_bundle(
    bundle: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    configs: Sequence[str | os.PathLike] = (),
    overrides: Mapping[str, Any] | None = None,
    eval_report: str | os.PathLike | None = None,
    url: str | None = None,
    ts_url: str | None = None,
    version: str | None = None,
    changelog: str | None = None,
    dataset_dir: str = DEFAULT_DATASET_DIR,
    data_license: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write a self-contained model-zoo bundle from a repository bundle and a trained checkpoint.

    Args:
        bundle: a bundle name under ``bundles/`` (``"scn_ceph"``) or a bundle folder.
        checkpoint: the training checkpoint (``<ckpt_dir>/model.pt`` of ``train.yaml``) or a plain state dict.
        out: the exported bundle's folder (created; see ``overwrite``). Written in a temporary folder beside it
            and renamed when complete.
        configs: overlays merged into every exported config, in order, as used for training (``["cpu.yaml"]``):
            names in the bundle's ``configs/`` or paths.
        overrides: ``{id: value}`` applied last, as ``--id value`` was on the training command line.
        eval_report: ``metrics.json`` of an evaluation of this checkpoint (``evaluate.yaml``): numeric
            ``eval_metrics`` of the metadata. None leaves ``eval_metrics`` out.
        url: where ``models/model.pt`` will be downloadable (``large_files.yml``).
        ts_url: where ``models/model.ts`` will be downloadable (``large_files.yml``; None: not listed).
        version: the exported bundle's version (default: the source metadata's).
        changelog: changelog entry of ``version`` when the source metadata has none.
        dataset_dir: default ``dataset_dir`` of the exported configs.
        data_license: file copied to ``docs/data_license.txt`` (default: a text saying the default data is the
            synthetic phantom and real data keep their licenses).
        overwrite: replace ``out`` if it is an existing bundle folder.

    Raises:
        ExportError: missing inputs, a checkpoint that does not fit the configs, ``out`` exists.
        mlm.bundle.zoo_metadata.MetadataError: the metadata misses a package the vendored code imports, or fails the
            official schema.
        mlm.bundle.zoo_configs.ConfigConformanceError: a config cannot follow the zoo's property conventions.
    """
    src, out, checkpoint = _bundle_dir(bundle), Path(out), Path(checkpoint)
    eval_report = Path(eval_report) if eval_report is not None else None
    _check_inputs(src, out, checkpoint, eval_report, overwrite)
    overlays, overrides = _overlay_paths(src, configs), dict(overrides or {})
    merged = _merged_configs(src / "configs", overlays, overrides, dataset_dir)
    # the weights first: a checkpoint that does not fit the configs stops the export before anything is written
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, Mapping):
        raise ExportError(f"checkpoint {checkpoint} is not a state dict (got {type(ckpt).__name__}).")
    net = _load_network(merged.source["inference"], network_state_dict(ckpt), checkpoint)
    modules, _ = module_closure(set().union(*(config_references(c) for c in merged.source.values())))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for folder in ("configs", "models", "docs"):
            (tmp / folder).mkdir(parents=True)
        doc = f"Python code of this bundle: the parts of the monai-landmarks project its configs use ({src.name})."
        code = vendor_modules(modules, tmp / "scripts", package_doc=doc)
        source_meta = json.loads((src / "configs" / "metadata.json").read_text(encoding="utf-8"))
        metadata = _metadata(source_meta, code, eval_report, version, changelog, src.name, overlays, overrides)
        for name, config in merged.exported.items():
            _write_config(tmp / "configs" / f"{name}.yaml", name, config, src.name)
        (tmp / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=4) + "\n", encoding="utf-8")
        shutil.copyfile(src / "configs" / "logging.conf", tmp / "configs" / "logging.conf")
        torch.save(net.state_dict(), tmp / "models" / "model.pt")
        diff = _torchscript(net, metadata, tmp / "models" / "model.ts", merged.exported["inference"])
        large = {"models/model.pt": url, **({"models/model.ts": ts_url} if ts_url else {})}
        (tmp / "large_files.yml").write_text(large_files_yaml(tmp, large), encoding="utf-8")
        shutil.copyfile(src / "LICENSE", tmp / "LICENSE")
        license_text = Path(data_license).read_text(encoding="utf-8") if data_license else data_license_text(metadata)
        (tmp / "docs" / "data_license.txt").write_text(license_text, encoding="utf-8")
        n = metadata.get("eval_metrics", {}).get("num_images")
        evaluated_on = f"{n} test image{'s' if n != 1 else ''}" if n else None
        readme = zoo_readme(metadata, merged.exported["train"], src.name, [p.name for p in overlays], evaluated_on)
        (tmp / "docs" / "README.md").write_text(readme, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    warnings = _warnings(merged.exported["train"], url, eval_report)
    return ExportResult(out, code, diff, merged.changes, warnings)


def _metadata(
    source: Mapping[str, Any],
    code: VendoredCode,
    eval_report: Path | None,
    version: str | None,
    changelog: str | None,
    bundle: str,
    overlays: Sequence[Path],
    overrides: Mapping[str, Any],
) -> dict:
    """The exported metadata: version and changelog, what the configs were merged from, the required packages of
    the vendored code and the evaluation report's figures; validated against the official schema."""
    meta = copy.deepcopy(dict(source))
    meta["version"] = version or meta["version"]
    merged = ", ".join(p.name for p in overlays) or "no overlay"
    if meta["version"] not in meta.get("changelog", {}):
        entry = changelog or f"model-zoo export of the monai-landmarks bundle {bundle} ({merged}) with trained weights"
        meta["changelog"] = {meta["version"]: entry, **meta.get("changelog", {})}
    meta["description"] = (
        f"{meta.get('description', '').rstrip()} Exported configs: {bundle}'s merged with {merged}"
        + (f" and the overrides {', '.join(sorted(overrides))}" if overrides else "")
        + "; see docs/README.md for the resulting settings."
    )
    meta["required_packages_version"] = required_packages(meta.get("required_packages_version", {}), code.third_party)
    meta.pop("optional_packages_version", None)
    meta.pop("eval_metrics", None)
    if eval_report is not None:
        meta["eval_metrics"] = eval_metrics_from_report(json.loads(eval_report.read_text(encoding="utf-8")))
    validate_metadata(meta)
    return meta
