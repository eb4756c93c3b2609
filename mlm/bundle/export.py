"""Export one of the repository's bundles and a trained checkpoint as a self-contained MONAI model-zoo bundle.

``python scripts/export_bundle.py scn_ceph --checkpoint runs/ceph/models/model.pt --out models/scn_ceph
--configs cpu.yaml --eval-report runs/ceph/eval/metrics.json --url https://.../model.pt`` writes::

    configs/train.yaml, inference.yaml          the bundle's configs merged with the chosen overlays, its facts and the
                                                shared base resolved into them (no macros: self-contained)
    configs/evaluate.yaml                       overlay of inference.yaml (the evaluation report)
    configs/multi_gpu_train.yaml                overlay of train.yaml (DDP)
    configs/refine.yaml                         overlay of train.yaml: training of the refinement stage
    configs/refine_inference.yaml               overlay of inference.yaml: two-stage inference (with --refine-checkpoint)
    configs/attack.yaml, robustness.yaml        overlays of inference.yaml + evaluate.yaml: attack protocol, robustness
    configs/train_sat.yaml, train_amat.yaml     overlays of train.yaml: adversarial training (SAT, AMAT)
    configs/metadata.json, logging.conf         metadata valid under the official model-zoo schema
    models/model.pt                             the network's plain state dict (the checkpoint's "model" entry)
    models/model.ts                             TorchScript (torch.jit.script), checked equal to the eager network
    models/refine.pt                            the refinement network's plain state dict (with --refine-checkpoint)
    scripts/                                    the project code the configs use (mlm/, transforms/), imports relative
    large_files.yml, LICENSE, docs/README.md, docs/data_license.txt

The overlays of the source bundle (:data:`STAGE_OVERLAYS`) are not merged into the other configs as ``configs`` are:
each is written as the difference between the exported config it overlays and that config merged with it as the
repository runs it (``['configs/train.yaml', <configs>, 'configs/refine.yaml']``), so that the exported files merge
the same way (``['configs/train.yaml','configs/refine.yaml']``). The refinement stage is trained with its own
command line: ``refine_overrides`` replace ``overrides`` for ``refine.yaml``, and ``refine_inference.yaml`` takes the
refinement's network and patch geometry from it.

A bundle of several domains (``gu2net_universal`` with ``configs/domain.yaml`` among ``configs``) is exported for the
domain its configs select, as a single-domain model of it (:mod:`mlm.bundle.zoo_domains`): the domain's values in
the configs, its output channels and landmark names in the metadata, and for a universal model (``universal=true``)
the weights of that domain as a single-domain network's.

Every ``_target_`` and ``$`` expression naming project code names the copy in ``scripts/`` instead, so the bundle
runs where MONAI and the packages of its metadata are installed but this project is not. The configs follow the
zoo's property conventions (:func:`mlm.bundle.zoo_configs.conform_properties`); the source changes that would make
the repository's own configs conform are reported by :attr:`ExportResult.conformance_changes`.
"""

from __future__ import annotations

import copy
import json
import os
import re
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
    ConfigConformanceError,
    conform_properties,
    merge_configs,
    overlay_difference,
    prune_unreferenced,
    unvalidated_tail,
)
from mlm.bundle.zoo_docs import data_license_text, large_files_yaml, zoo_readme
from mlm.bundle.zoo_domains import (
    DOMAIN_ITEMS,
    DomainExportError,
    DomainSelection,
    domain_metadata,
    domain_selection,
    domain_state_dict,
    freeze_domain,
)
from mlm.bundle.zoo_metadata import eval_metrics_from_report, required_packages, validate_metadata

__all__ = [
    "DEFAULT_DATASET_DIR",
    "REFINE_CKPT_PATH",
    "STAGE_OVERLAYS",
    "ExportError",
    "ExportResult",
    "export_bundle",
    "network_state_dict",
]

#: ``dataset_dir`` of an exported bundle: a folder inside the bundle, never a path into this repository
DEFAULT_DATASET_DIR = "$@bundle_root + '/data'"
#: ``refine_ckpt_path`` of an exported ``refine_inference.yaml``: the refinement's weights inside the bundle
REFINE_CKPT_PATH = "$@bundle_root + '/models/refine.pt'"
#: the source bundle's overlays exported as overlay files, each with the exported config it overlays ("evaluate":
#: inference.yaml + evaluate.yaml), in the order they are merged; refine_inference.yaml only with the refinement's
#: weights (``refine_checkpoint``)
STAGE_OVERLAYS: dict[str, str] = {
    "refine": "train",
    "refine_inference": "inference",
    "train_sat": "train",
    "train_amat": "train",
    "attack": "evaluate",
    "robustness": "evaluate",
}
# refine_inference.yaml's items that must be those the refinement was trained with: its item <- refine.yaml's
_REFINE_FROM_TRAINING = {
    "refine_network_def": "network_def",
    "refine_patch_size": "refine_patch_size",
    "refine_spacing": "refine_spacing",
}
_REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
_HEADERS = {
    "train": "training",
    "inference": "inference: writes <output_dir>/predictions/<id>_landmarks.json",
    "evaluate": "evaluation, an overlay of inference.yaml: metrics.json, per-landmark CSV, plots in <output_dir>",
    "multi_gpu_train": "multi-process (DDP) training, an overlay of train.yaml; launch with torchrun",
    "refine": "training of the refinement stage (coarse-to-fine), an overlay of train.yaml: a Localization U-Net on\n"
    "# high-resolution patches around the landmarks; checkpoints in models/refine/",
    "refine_inference": "two-stage (coarse-to-fine) inference, an overlay of inference.yaml (and evaluate.yaml): the\n"
    "# global stage's landmarks (models/model.pt) refined in patches by models/refine.pt; with evaluate.yaml both\n"
    "# stages' reports (the refined one in <output_dir>, the global one in <output_dir>/global)",
    "train_sat": "standard adversarial training (SAT: (clean + PGD-adversarial loss) / 2), an overlay of train.yaml:\n"
    "# checkpoints in models/sat/",
    "train_amat": "adaptive-margin adversarial training (AMAT: one L2 margin per training image), an overlay of\n"
    "# train.yaml: checkpoints in models/amat/",
    "attack": "adversarial attack protocol (Yao et al., MICCAI 2020: TI/ATI/PGD towards random goals), an overlay of\n"
    "# inference.yaml + evaluate.yaml: attack_metrics.json/.csv and plots in <output_dir> (eval/attack_<method>)",
    "robustness": "robustness curve (untargeted L2 PGD at each level of robustness_levels), an overlay of\n"
    "# inference.yaml + evaluate.yaml: <output_dir>/robustness/",
}


def _command(*names: str, launcher: str = "python") -> str:
    files = [f"configs/{n}.yaml" for n in names]
    arg = files[0] if len(files) == 1 else '"[' + ",".join(f"'{f}'" for f in files) + ']"'
    return f"{launcher} -m monai.bundle run --config_file {arg}"


#: the command of each exported config, as its header and docs/README.md give it
_COMMANDS = {
    "train": _command("train"),
    "inference": _command("inference"),
    "evaluate": _command("inference", "evaluate"),
    "multi_gpu_train": _command("train", "multi_gpu_train", launcher="torchrun --nproc_per_node=2"),
    "refine": _command("train", "refine"),
    "refine_inference": _command("inference", "refine_inference"),
    "train_sat": _command("train", "train_sat"),
    "train_amat": _command("train", "train_amat"),
    "attack": _command("inference", "evaluate", "attack"),
    "robustness": _command("inference", "evaluate", "robustness"),
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
        configs: the exported configs (``configs/<name>.yaml``), the four the zoo expects first, then the overlays.
        domain: the domain a bundle of several domains was exported for (``configs/domain.yaml``;
            :class:`mlm.bundle.zoo_domains.DomainSelection`), None for the other bundles.
    """

    path: Path
    code: VendoredCode
    torchscript_max_abs_diff: float
    conformance_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    domain: DomainSelection | None = None


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


def _load_network(
    config: Mapping,
    state: Mapping[str, torch.Tensor],
    checkpoint: Path,
    net_id: str = "network_def",
    what: str = "checkpoint",
    hint: str = "pass the overlays and --set values the model was trained with",
) -> nn.Module:
    """The network ``config[net_id]`` with the weights ``state`` (strict), on the CPU in eval mode.

    Raises:
        ExportError: the weights do not fit; the message names ``checkpoint``.
    """
    parser = ConfigParser(copy.deepcopy(dict(config)))
    net = parser.get_parsed_content(net_id, instantiate=True).cpu().eval()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ExportError(
            f"{what} {checkpoint} does not fit the exported {net_id} ({hint}): {str(e).splitlines()[0]}"
        ) from None
    return net


def _torchscript(net: nn.Module, metadata: Mapping, path: Path, inference: Mapping) -> float:
    """Script ``net``, check it against eager on a random input, save it as ``ckpt_export`` does; return max |diff|."""
    from monai.data import save_net_with_metadata

    x = _example_input(metadata)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        eager, ts = net(x), scripted(x)
    output = next(iter(metadata["network_data_format"]["outputs"].values()))
    if eager.shape[1] != int(output["num_channels"]):
        raise ExportError(
            f"the network predicts {eager.shape[1]} channels, configs/metadata.json's output has "
            f"{output['num_channels']}: the configs give another landmark count than the bundle's metadata describes."
        )
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


def _example_input(metadata: Mapping) -> torch.Tensor:
    """A random network input of the metadata's shape (``n`` = 2), the same at every call."""
    image = next(iter(metadata["network_data_format"]["inputs"].values()))
    return torch.rand(
        1,
        int(image["num_channels"]),
        *_example_shape(image["spatial_shape"]),
        generator=torch.Generator().manual_seed(0),
    )


def _output_channels(net: nn.Module, metadata: Mapping) -> int:
    """The channels of ``net``'s output on an input of the metadata's shape."""
    with torch.no_grad():
        return int(net(_example_input(metadata)).shape[1])


def _domain_network(
    raw: Mapping,
    inference: Mapping,
    selection: DomainSelection,
    checkpoint: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    path: Path,
    metadata: Mapping,
) -> nn.Module:
    """The single-domain network of the exported ``inference`` config (source form) with the weights of the domain
    ``selection`` predicts (:mod:`mlm.bundle.zoo_domains`).

    The checkpoint's geometry is checked as ``raw`` (the merged inference config as the repository runs it) checks
    it: a single-domain model's, or a universal model's (``universal=true``) geometry of the domain, against the
    domain's. A universal model's weights become those of the single-domain network (:func:`domain_state_dict`),
    checked to compute what the universal model computes for the domain on an input of the metadata's shape.

    Raises:
        ExportError: another kind of model than the configs select (universal or single-domain), another geometry,
            weights that do not fit, or a single-domain network that computes otherwise.
    """
    kind = "a universal model (universal=true)" if selection.universal else "a single-domain model"
    hint = (
        f"the configs export {kind} of the domain {selection.name!r}: pass the overlays (cpu.yaml, domain.yaml) and "
        "the --set values (domain, universal, domain_overrides, ...) it was trained or is run with"
    )
    _check_geometry(raw, "handlers", checkpoint, path, "checkpoint", hint)
    if not selection.universal:
        return _load_network(inference, state, path, hint=hint)
    universal = _load_network(raw, state, path, hint=hint)
    try:
        single = domain_state_dict(universal, selection.index)
    except DomainExportError as e:
        raise ExportError(f"checkpoint {path}: {e}") from None
    net = _load_network(inference, single, path, hint=hint)
    x = _example_input(metadata)
    with torch.no_grad():
        expected, got = universal(x, domain=selection.index), net(x)
    diff = float((expected - got).abs().max()) if expected.shape == got.shape else float("inf")
    if not diff <= 1e-6 * max(1.0, float(expected.abs().max())):
        raise ExportError(
            f"the single-domain network of the domain {selection.name!r} differs from the universal model's "
            f"prediction for it by {diff:g} on a random input."
        )
    return net


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
    """The merged configs of an export: ``source`` (naming this project, for loading the networks here) and
    ``exported`` (naming ``scripts``; ``evaluate``, ``multi_gpu_train`` and the stage overlays as overlays), with the
    conformance changes."""

    source: dict[str, dict]
    exported: dict[str, dict]
    changes: dict[str, dict]


def _top(key: str) -> str:
    """The top-level item a config key sets (``+train#handlers`` -> ``train``)."""
    return re.split(r"::|#", key.lstrip("+"))[0]


def _top_keys(path: Path) -> set[str]:
    return {_top(str(k)) for k in ConfigParser.load_config_file(str(path))}


def _stage_overlay(base: Mapping, full: Mapping, own: set[str]) -> dict:
    """The overlay that turns the exported ``base`` into ``full``, without the differences nothing in ``full`` uses
    (a training override of the global stage that a refinement config no longer refers to)."""
    used = set(prune_unreferenced(full, keep=sorted(own)))
    return {k: v for k, v in overlay_difference(base, full).items() if _top(k) in used}


def _refine_settings(training: Mapping, inference: Mapping) -> dict[str, Any]:
    """The items of ``refine_inference.yaml`` that must be those of the refinement's training (its network and patch
    geometry), taken from the merged training config ``training``.

    Raises:
        ExportError: an item refers to an item the inference config does not have.
    """
    settings = {}
    for name, source in _REFINE_FROM_TRAINING.items():
        if source not in training:
            raise ExportError(f"the refinement's training config (refine.yaml) has no {source!r}.")
        value = copy.deepcopy(training[source])
        missing = sorted(r for r in _referenced_items(value) if r not in inference)
        if missing:
            raise ExportError(
                f"refine.yaml's {source} refers to {missing}, which the inference config does not define: "
                f"refine_inference.yaml's {name} cannot be the trained one."
            )
        settings[name] = value
    return settings


def _referenced_items(value: Any) -> set[str]:
    """Top-level items ``value`` refers to (``@spatial_dims``, ``$@a + 1``, ``%b``)."""
    if isinstance(value, Mapping):
        return set().union(*(_referenced_items(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_referenced_items(v) for v in value)) if value else set()
    if isinstance(value, str) and value[:1] in "@%$":
        return {m.group(1) for m in re.finditer(r"[@%]([A-Za-z_]\w*)", value)}
    return set()


def _merged_configs(
    cfg: Path,
    overlays: Sequence[Path],
    overrides: Mapping[str, Any],
    dataset_dir: str,
    stages: Sequence[str] = (),
    refine_overrides: Mapping[str, Any] | None = None,
) -> _Configs:
    """The four configs the zoo expects and the stage overlays ``stages`` (:data:`STAGE_OVERLAYS`), each merged as
    the README's command merges it (the overlays after the bundle's own files, ``multi_gpu_train.yaml`` and the stage
    overlay last), made to pass the zoo's property check.

    ``refine.yaml`` is merged with ``refine_overrides`` instead of ``overrides`` (the refinement's own training
    command line; the domain selection of ``overrides`` too); ``refine_inference.yaml`` with ``overrides``, the
    refinement's network and patch geometry from the merged ``refine.yaml`` and ``refine_ckpt_path``
    :data:`REFINE_CKPT_PATH`. A config that selects one domain of a bundle of several (``configs/domain.yaml``) is
    written as a single-domain config of it (:func:`mlm.bundle.zoo_domains.freeze_domain`).

    Raises:
        mlm.bundle.zoo_domains.DomainExportError: a config of the universal model's training (``universal.yaml``),
            or a domain selection that cannot be written as one domain's.
    """

    def merged(
        base: Path,
        before: Sequence[Path] = (),
        after: Sequence[Path] = (),
        extra: Mapping[str, Any] = overrides,
        keep: Sequence[str] = (),
    ) -> dict:
        full = merge_configs([base, *before, *overlays, *after], extra, root=cfg.parent)
        if domain_selection(full) is not None:
            full = freeze_domain(full)
        kept = set(keep).union(*(_top_keys(f) for f in [base, *before, *after]))
        return {**prune_unreferenced(full, keep=sorted(kept)), "dataset_dir": dataset_dir}

    source = {
        "train": merged(cfg / "train.yaml"),
        "multi_gpu_train": merged(cfg / "train.yaml", after=[cfg / "multi_gpu_train.yaml"]),
        "inference": merged(cfg / "inference.yaml"),
        "evaluate": merged(cfg / "inference.yaml", before=[cfg / "evaluate.yaml"]),
    }
    own = {}
    for stage in stages:
        base, path = STAGE_OVERLAYS[stage], cfg / f"{stage}.yaml"
        own[stage] = _top_keys(path)
        extra = dict(overrides)
        if stage == "refine":  # the refinement's own command line, on the same domain (configs/domain.yaml)
            extra = {k: v for k, v in overrides.items() if _top(k) in DOMAIN_ITEMS} | dict(refine_overrides or {})
        elif stage == "refine_inference":
            if "refine_ckpt_path" not in own[stage]:
                raise ExportError(f"{path} has no refine_ckpt_path: the refinement's weights cannot be set.")
            if "refine" not in source:
                raise ExportError(f"refine_inference.yaml is exported with refine.yaml: {cfg / 'refine.yaml'} needed.")
            extra.update(_refine_settings(source["refine"], source["inference"]), refine_ckpt_path=REFINE_CKPT_PATH)
        first = cfg / ("train.yaml" if base == "train" else "inference.yaml")
        before = [cfg / "evaluate.yaml"] if base == "evaluate" else []
        source[stage] = merged(first, before, [path], extra, keep=sorted(source[base]))
    raw, changes = copy.deepcopy(source), {}
    for name, config in raw.items():
        base = STAGE_OVERLAYS.get(name, name)
        try:
            source[name] = conform_properties(config, "infer" if base in ("inference", "evaluate") else "train")
        except ConfigConformanceError as e:
            raise ConfigConformanceError(f"{name}.yaml: {e}") from None
        diff = overlay_difference(config, source[name])
        if name in STAGE_OVERLAYS:  # what the stage's own file would need: its overlay's changes, beyond its base's
            done = changes.get(f"{'inference' if base == 'evaluate' else base}.yaml", {})
            as_source = overlay_difference(raw[base], config)
            diff = overlay_difference(source[base], source[name])
            diff = {k: v for k, v in diff.items() if as_source.get(k) != v and k not in done}
        if name not in ("evaluate", "multi_gpu_train") and diff:
            changes[f"{name}.yaml"] = diff
    full = {name: rewrite_config_references(config) for name, config in source.items()}
    exported = {
        "train": full["train"],
        "inference": full["inference"],
        "evaluate": overlay_difference(full["inference"], full["evaluate"]),
        "multi_gpu_train": overlay_difference(full["train"], full["multi_gpu_train"]),
    }
    for stage in stages:
        exported[stage] = _stage_overlay(full[STAGE_OVERLAYS[stage]], full[stage], own[stage])
    return _Configs(source, exported, changes)


def _check_inputs(
    src: Path,
    out: Path,
    checkpoint: Path,
    eval_report: Path | None,
    overwrite: bool,
    refine_checkpoint: Path | None = None,
) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} exists and is not empty (pass overwrite=True / --overwrite to replace it).")
        if not (out / "configs" / "metadata.json").is_file():
            raise ExportError(f"{out} exists and is not a bundle folder: refusing to replace it.")
    inputs = ((checkpoint, "checkpoint"), (refine_checkpoint, "refine checkpoint"), (eval_report, "evaluation report"))
    for path, what in inputs:
        if path is not None and not path.is_file():
            raise ExportError(f"{what} {path} not found.")
    needed = ["train.yaml", "inference.yaml", "evaluate.yaml", "multi_gpu_train.yaml", "logging.conf"]
    needed += ["refine.yaml", "refine_inference.yaml"] if refine_checkpoint is not None else []
    for name in needed:
        if not (src / "configs" / name).is_file():
            raise ExportError(f"bundle {src} has no configs/{name}.")


def _checkpoint_weights(path: Path, what: str = "checkpoint") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A checkpoint file and its network weights (:func:`network_state_dict`), errors naming the file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise ExportError(f"{what} {path} cannot be read ({type(e).__name__}: {e}).") from None
    if not isinstance(ckpt, Mapping):
        raise ExportError(f"{what} {path} is not a state dict (got {type(ckpt).__name__}).")
    try:
        return dict(ckpt), network_state_dict(ckpt)
    except ExportError as e:
        raise ExportError(f"{what} {path}: {e}") from None


def _check_geometry(
    config: Mapping, handlers_id: str, checkpoint: Mapping[str, Any], path: Path, what: str, hint: str
) -> None:
    """The preprocessing geometry a training checkpoint records against that of the checkpoint loader of
    ``config[handlers_id]`` (a plain state dict records none: nothing to check).

    Raises:
        ExportError: the geometries differ; the message names the file.
    """
    from mlm.bundle.geometry import checkpoint_geometry

    recorded = checkpoint_geometry(checkpoint)
    handlers = config.get(handlers_id)
    if not recorded or not isinstance(handlers, list):
        return
    index = next((i for i, h in enumerate(handlers) if isinstance(h, Mapping) and "geometry" in h), None)
    if index is None:
        return
    parser = ConfigParser(copy.deepcopy(dict(config)))
    geometry = parser.get_parsed_content(f"{handlers_id}#{index}#geometry", instantiate=True)
    try:
        geometry.load_state_dict(recorded)
    except ValueError as e:
        raise ExportError(f"{what} {path} does not fit the exported configs: {e} ({hint})") from None


def _warnings(train: Mapping, large_files: Mapping[str, str | None], eval_report: Path | None) -> list[str]:
    warnings = []
    if tail := unvalidated_tail(train):
        warnings.append(
            f"configs/train.yaml validates every val_interval iterations: the last {tail} of num_iterations are not "
            "validated (the source's epoch-level validation also ran after them)."
        )
    for path, url in large_files.items():
        if not url:
            warnings.append(f"no URL for {path}: large_files.yml has an empty url to fill in.")
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
    refine_checkpoint: str | os.PathLike | None = None,
    refine_overrides: Mapping[str, Any] | None = None,
    refine_url: str | None = None,
) -> ExportResult:
    """Write a self-contained model-zoo bundle from a repository bundle and a trained checkpoint.

    The source bundle's stage overlays (:data:`STAGE_OVERLAYS`: ``refine.yaml``, ``train_sat.yaml``,
    ``train_amat.yaml``, ``attack.yaml``, ``robustness.yaml``) are exported as overlays of the exported configs;
    with ``refine_checkpoint`` the bundle is two-stage: ``models/refine.pt`` and ``configs/refine_inference.yaml``.

    Args:
        bundle: a bundle name under ``bundles/`` (``"scn_ceph"``) or a bundle folder.
        checkpoint: the training checkpoint (``<ckpt_dir>/model.pt`` of ``train.yaml``) or a plain state dict.
        out: the exported bundle's folder (created; see ``overwrite``). Written in a temporary folder beside it
            and renamed when complete.
        configs: overlays merged into every exported config, in order, as used for training (``["cpu.yaml"]``):
            names in the bundle's ``configs/`` or paths. ``gu2net_universal``: ``["cpu.yaml", "domain.yaml"]``, the
            bundle exported for one domain (``overrides`` ``domain``, and ``universal: true`` for that domain of a
            universal model, whose weights of the domain become a single-domain network).
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
        refine_checkpoint: the refinement stage's weights: a training checkpoint of ``train.yaml`` + ``configs`` +
            ``refine.yaml`` (``models/refine/model.pt``) or a plain state dict (``weights/refine.pt`` of
            ``scripts/train_real.py``); exported as ``models/refine.pt`` with ``configs/refine_inference.yaml``.
            None: a one-stage bundle (``refine.yaml`` is still exported, to train one).
        refine_overrides: ``{id: value}`` of the refinement's training command line (``{"refine_spacing": 0.5,
            "network_def#num_filters": 16}``), applied to ``refine.yaml`` instead of ``overrides``;
            ``refine_inference.yaml`` gets the network and patch geometry they give.
        refine_url: where ``models/refine.pt`` will be downloadable (``large_files.yml``).

    Raises:
        ExportError: missing inputs, a checkpoint (or refine checkpoint) that does not fit the configs, a network
            whose output channels are not the metadata's, ``out`` exists; for a bundle of several domains also the
            universal model's training configs (``universal.yaml``) and a checkpoint of the other kind (universal or
            single-domain) or of another geometry of the domain.
        mlm.bundle.zoo_metadata.MetadataError: the metadata misses a package the vendored code imports, or fails the
            official schema.
        mlm.bundle.zoo_configs.ConfigConformanceError: a config cannot follow the zoo's property conventions.
    """
    src, out, checkpoint = _bundle_dir(bundle), Path(out), Path(checkpoint)
    eval_report = Path(eval_report) if eval_report is not None else None
    refine_checkpoint = Path(refine_checkpoint) if refine_checkpoint is not None else None
    _check_inputs(src, out, checkpoint, eval_report, overwrite, refine_checkpoint)
    overlays, overrides = _overlay_paths(src, configs), dict(overrides or {})
    # a stage overlay the model was trained with (given in configs) is merged into every config, not exported again
    merged_in = {p.resolve() for p in overlays}
    stages = [
        s
        for s in STAGE_OVERLAYS
        if (src / "configs" / f"{s}.yaml").is_file()
        and (src / "configs" / f"{s}.yaml").resolve() not in merged_in
        and (s != "refine_inference" or refine_checkpoint is not None)
    ]
    source_meta = json.loads((src / "configs" / "metadata.json").read_text(encoding="utf-8"))
    try:
        merged = _merged_configs(src / "configs", overlays, overrides, dataset_dir, stages, refine_overrides)
        # the domain a bundle of several domains predicts (configs/domain.yaml), as the repository runs it
        raw = merge_configs([src / "configs" / "inference.yaml", *overlays], overrides, root=src)
        raw["bundle_root"] = str(src)
        selection = domain_selection(raw)
    except DomainExportError as e:
        raise ExportError(str(e)) from None
    # the weights first: a checkpoint that does not fit the configs stops the export before anything is written
    ckpt, state = _checkpoint_weights(checkpoint)
    if selection is None:
        net = _load_network(merged.source["inference"], state, checkpoint)
    else:
        net = _domain_network(raw, merged.source["inference"], selection, ckpt, state, checkpoint, source_meta)
        channels = _output_channels(net, source_meta)
        source_meta = domain_metadata(source_meta, selection, channels)
    refine_net = None
    if refine_checkpoint is not None:
        refine_ckpt, refine_state = _checkpoint_weights(refine_checkpoint, "refine checkpoint")
        hint = "pass the refine_overrides / --refine-set values the refinement stage was trained with"
        config = merged.source["refine_inference"]
        refine_net = _load_network(
            config, refine_state, refine_checkpoint, "refine_network_def", "refine checkpoint", hint
        )
        geometry_hint = (
            "the refinement's pixdim is refine_spacing and its preprocessed_size refine_patch_size: pass the "
            "refine_overrides / --refine-set values it was trained with"
        )
        _check_geometry(config, "refine_handlers", refine_ckpt, refine_checkpoint, "refine checkpoint", geometry_hint)
    modules, _ = module_closure(set().union(*(config_references(c) for c in merged.source.values())))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    large = {"models/model.pt": url, **({"models/refine.pt": refine_url} if refine_net is not None else {})}
    large.update({"models/model.ts": ts_url} if ts_url else {})
    refine = merged.source.get("refine_inference")
    try:
        for folder in ("configs", "models", "docs"):
            (tmp / folder).mkdir(parents=True)
        doc = f"Python code of this bundle: the parts of the monai-landmarks project its configs use ({src.name})."
        code = vendor_modules(modules, tmp / "scripts", package_doc=doc)
        metadata = _metadata(
            source_meta, code, eval_report, version, changelog, src.name, overlays, overrides, _refine_summary(refine)
        )
        for name, config in merged.exported.items():
            _write_config(tmp / "configs" / f"{name}.yaml", name, config, src.name)
        (tmp / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=4) + "\n", encoding="utf-8")
        shutil.copyfile(src / "configs" / "logging.conf", tmp / "configs" / "logging.conf")
        torch.save(net.state_dict(), tmp / "models" / "model.pt")
        if refine_net is not None:
            torch.save(refine_net.state_dict(), tmp / "models" / "refine.pt")
        diff = _torchscript(net, metadata, tmp / "models" / "model.ts", merged.exported["inference"])
        (tmp / "large_files.yml").write_text(large_files_yaml(tmp, large), encoding="utf-8")
        shutil.copyfile(src / "LICENSE", tmp / "LICENSE")
        license_text = Path(data_license).read_text(encoding="utf-8") if data_license else data_license_text(metadata)
        (tmp / "docs" / "data_license.txt").write_text(license_text, encoding="utf-8")
        n = metadata.get("eval_metrics", {}).get("num_images")
        evaluated_on = f"{n} test image{'s' if n != 1 else ''}" if n else None
        readme = zoo_readme(
            metadata,
            merged.exported["train"],
            src.name,
            [p.name for p in overlays],
            evaluated_on,
            commands={name: _COMMANDS[name] for name in merged.exported},
            refine=_refine_summary(refine),
        )
        (tmp / "docs" / "README.md").write_text(readme, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    warnings = _warnings(merged.exported["train"], large, eval_report)
    return ExportResult(out, code, diff, merged.changes, warnings, configs=list(merged.exported), domain=selection)


def _size(shape: Any) -> str:
    return "x".join(str(v) for v in shape) if isinstance(shape, (list, tuple)) else str(shape)


def _refine_summary(config: Mapping | None) -> dict[str, Any] | None:
    """The refinement stage of a merged ``refine_inference`` config as the docs describe it (None: one stage)."""
    if config is None:
        return None
    net = config.get("refine_network_def", {})
    net = net if isinstance(net, Mapping) else {}
    return {
        "network": str(net.get("_target_", "-")).rsplit(".", 1)[-1],
        "num_filters": net.get("num_filters"),
        "patch_size": config.get("refine_patch_size"),
        "spacing": config.get("refine_spacing"),
    }


def _metadata(
    source: Mapping[str, Any],
    code: VendoredCode,
    eval_report: Path | None,
    version: str | None,
    changelog: str | None,
    bundle: str,
    overlays: Sequence[Path],
    overrides: Mapping[str, Any],
    refine: Mapping[str, Any] | None = None,
) -> dict:
    """The exported metadata: version and changelog, what the configs were merged from, the stages (``refine``: the
    refinement stage's :func:`_refine_summary`), the required packages of the vendored code and the evaluation
    report's figures; validated against the official schema."""
    meta = copy.deepcopy(dict(source))
    meta["version"] = version or meta["version"]
    merged = ", ".join(p.name for p in overlays) or "no overlay"
    if meta["version"] not in meta.get("changelog", {}):
        weights = "the trained weights of both stages" if refine else "trained weights"
        entry = changelog or f"model-zoo export of the monai-landmarks bundle {bundle} ({merged}) with {weights}"
        meta["changelog"] = {meta["version"]: entry, **meta.get("changelog", {})}
    two_stage = (
        f" Two-stage (coarse-to-fine): models/refine.pt, a {refine['network']} on {_size(refine['patch_size'])} "
        f"patches at {refine['spacing']} mm, re-locates each landmark the global network (models/model.pt) "
        "predicts; configs/refine_inference.yaml runs both stages (on top of configs/inference.yaml)."
        if refine
        else ""
    )
    meta["description"] = (
        f"{meta.get('description', '').rstrip()}{two_stage} Exported configs: {bundle}'s merged with {merged}"
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
