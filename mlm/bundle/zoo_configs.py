"""Bundle configs in the model zoo's shape: overlays merged, overlay differences, the zoo's property ID conventions.

The repository's bundles are run as a base config plus overlays (``['configs/train.yaml','configs/cpu.yaml']``);
a model-zoo bundle ships one ``train``/``inference`` config and overlays of them (``evaluate``, ``multi_gpu_train``).
:func:`merge_configs` merges as ``python -m monai.bundle run`` does, :func:`prune_unreferenced` drops the keys an
overlay added that nothing uses (the training keys of ``cpu.yaml`` in an inference config),
:func:`overlay_difference` writes the smallest overlay that turns one merged config into another, and
:func:`conform_properties` rewrites a config so that MONAI's property check (``ConfigWorkflow.check_properties``
with ``monai.bundle.properties``, which the zoo's CI runs) accepts it.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from monai.bundle import ConfigParser
from monai.bundle.properties import InferProperties, TrainProperties
from monai.bundle.utils import merge_kv
from monai.utils import BundleProperty, BundlePropertyConfig

from mlm.bundle.configs import resolve_file_macros

__all__ = [
    "ConfigConformanceError",
    "conform_properties",
    "get_id",
    "merge_configs",
    "overlay_difference",
    "prune_unreferenced",
    "set_id",
    "unvalidated_tail",
]

#: keys a config's runner uses by name, never through a reference
_ENTRY_KEYS = ("imports", "initialize", "run", "finalize", "_meta_")
# a reference to a config item (``@id``, ``%id``); the group is the item's top-level key
_REFERENCE = re.compile(r"[@%](?P<top>[A-Za-z_]\w*)")
_SEPARATOR = re.compile(r"::|#")


class ConfigConformanceError(ValueError):
    """A config cannot be made to pass the model zoo's property check without changing what it does."""


def merge_configs(
    files: Sequence[str | os.PathLike | Mapping],
    overrides: Mapping[str, Any] | None = None,
    root: str | os.PathLike | None = None,
) -> dict:
    """Merge config files (or dicts) in order, as ``python -m monai.bundle run --config_file [...]`` does.

    Args:
        files: config files or already loaded dicts; later ones replace (``+key``: extend) the earlier ones' keys.
        overrides: ``{id: value}`` applied after the files, like ``--id value`` on the command line. A nested id
            (``"network_def#num_filters"``) whose top-level key the merged config lacks is skipped: it belongs to
            another config of the bundle (a training key given to an inference config).
        root: the bundle's folder: the macros naming files (``'%configs/facts.yaml#pixdim'``, the repository's
            bundles read their facts so) are then replaced by what they name, relative to it, as MONAI does when it
            runs in that folder (:func:`mlm.bundle.configs.resolve_file_macros`); None leaves them.
    """
    parser = ConfigParser(config={})
    for f in files:
        content = copy.deepcopy(dict(f)) if isinstance(f, Mapping) else ConfigParser.load_config_file(str(f))
        for key, value in content.items():
            merge_kv(parser, key, value)
    for key, value in (overrides or {}).items():
        parts = _SEPARATOR.split(key)
        if len(parts) == 1 or parts[0] in parser.config:
            parser[key] = copy.deepcopy(value)
    merged = copy.deepcopy(parser.get())
    return merged if root is None else resolve_file_macros(merged, root)


def _top_references(value: Any) -> set[str]:
    """Top-level keys that ``value`` refers to (``@id#...`` and ``%id`` anywhere in its strings)."""
    if isinstance(value, Mapping):
        return set().union(*(_top_references(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_top_references(v) for v in value)) if value else set()
    if isinstance(value, str) and value[:1] in "@%$":
        return {m.group("top") for m in _REFERENCE.finditer(value)}
    return set()


def prune_unreferenced(config: Mapping, keep: Sequence[str]) -> dict:
    """``config`` without the top-level keys that are neither in ``keep`` nor referred to from what is kept.

    Args:
        config: a merged config.
        keep: keys kept whatever refers to them (the base config's keys); ``imports``, ``initialize``, ``run`` and
            ``finalize`` are always kept.
    """
    kept = {k for k in config if k in set(keep) or k in _ENTRY_KEYS}
    todo = list(kept)
    while todo:
        for ref in _top_references(config[todo.pop()]):
            if ref in config and ref not in kept:
                kept.add(ref)
                todo.append(ref)
    return {k: copy.deepcopy(v) for k, v in config.items() if k in kept}


def overlay_difference(base: Mapping, full: Mapping, prefix: str = "") -> dict:
    """The smallest overlay that, merged after ``base``, gives ``full``.

    Changed values inside dicts become ``a#b`` keys (as ``multi_gpu_train.yaml`` writes ``train#sampler``); a list
    that ``full`` extends (``base``'s items first, unchanged) becomes ``+a#b`` with the new items, as the overlays
    write ``+handlers`` (MONAI appends them); a dict that lost keys, another list or a value of another type is
    replaced whole.

    Raises:
        ConfigConformanceError: ``full`` lacks a top-level key of ``base`` (an overlay cannot delete keys).
    """
    missing = [k for k in base if k not in full]
    if missing and not prefix:
        raise ConfigConformanceError(f"an overlay cannot remove the keys {missing} of its base config.")
    out: dict = {}
    for key, value in full.items():
        name = f"{prefix}{key}"
        if key not in base:
            out[name] = copy.deepcopy(value)
        elif base[key] != value:
            old = base[key]
            if isinstance(value, Mapping) and isinstance(old, Mapping) and set(old) <= set(value) and value:
                out.update(overlay_difference(old, value, f"{name}#"))
            elif isinstance(value, list) and isinstance(old, list) and old and value[: len(old)] == old:
                out[f"+{name}"] = copy.deepcopy(value[len(old) :])
            else:
                out[name] = copy.deepcopy(value)
    return out


def _parts(id: str) -> list[str]:
    return [p for p in _SEPARATOR.split(id) if p != ""]


def get_id(config: Any, id: str, default: Any = None) -> Any:
    """The item at ``id`` (``"a#b#0"`` or ``"a::b::0"``) of a nested config, or ``default``."""
    node = config
    for part in _parts(id):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def set_id(config: dict, id: str, value: Any) -> None:
    """Set the item at ``id`` of a nested config (its parent must exist)."""
    *parents, last = _parts(id)
    node = get_id(config, "#".join(parents)) if parents else config
    if isinstance(node, list):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise KeyError(f"config has no item {'#'.join(parents)!r} to set {id!r} in.")


def _conform_validation_handler(config: dict) -> None:
    """The ``ValidationHandler`` of ``train#handlers`` must name ``@validate#evaluator`` and ``@val_interval``.

    MONAI's check reads these two arguments of the handler whose ``_target_`` is ``ValidationHandler`` and compares
    them, as strings, with the property IDs (it fails on a number). A handler that validates once per trainer epoch of
    ``val_interval`` iterations (``epoch_level: true, interval: 1`` with ``epoch_length: '@val_interval'``) becomes
    one that validates every ``val_interval`` iterations (``epoch_level: false, interval: '@val_interval'``), which
    the property check accepts. The two agree when ``val_interval`` divides ``num_iterations``; otherwise the epoch
    form also validates after the shorter last epoch (``mlm.handlers.IterationLimit``) and the iteration form does
    not (:func:`unvalidated_tail` tells how many iterations that leaves).
    """
    handlers = get_id(config, "train#handlers")
    if not isinstance(handlers, list) or "val_interval" not in config:
        return
    for i, handler in enumerate(handlers):
        if not isinstance(handler, Mapping) or handler.get("_target_") not in ("ValidationHandler",):
            continue
        validator = handler.get("validator")
        if isinstance(validator, str) and not validator.startswith("$") and validator != "@validate#evaluator":
            raise ConfigConformanceError(
                f"train#handlers#{i} (ValidationHandler) validates {validator!r}: the model zoo expects "
                "'@validate#evaluator'."
            )
        interval = handler.get("interval", 1)
        if isinstance(interval, str) and (interval.startswith("$") or interval == "@val_interval"):
            continue
        epoch_length = get_id(config, "train#trainer#epoch_length")
        if interval == 1 and handler.get("epoch_level", True) and epoch_length == "@val_interval":
            handler = dict(handler)
            handler.update(epoch_level=False, interval="@val_interval")
            handlers[i] = handler
            continue
        raise ConfigConformanceError(
            f"train#handlers#{i} (ValidationHandler) has interval {interval!r}: the model zoo's property check needs "
            "'@val_interval' (the validation interval as a config item)."
        )


def _inline_handler_references(config: dict) -> None:
    """Items of ``train#handlers`` that are references to a top-level component (``- '@amat'`` of an overlay that
    refers to the handler from elsewhere too) become the component itself, and the top-level item a reference to it
    (``amat: '@train#handlers#12'``): MONAI's check reads the ``_target_`` of every handler (it fails on a string).
    MONAI instantiates the handler once and every reference gets that object, as before."""
    handlers = get_id(config, "train#handlers")
    if not isinstance(handlers, list):
        return
    for i, handler in enumerate(handlers):
        name = handler[1:] if isinstance(handler, str) and handler.startswith("@") else None
        if name and name in config and isinstance(config[name], Mapping) and "_target_" in config[name]:
            handlers[i] = config[name]
            config[name] = f"@train#handlers#{i}"


def unvalidated_tail(config: Mapping) -> int:
    """Iterations after the last validation of a training config whose ``ValidationHandler`` runs every
    ``val_interval`` iterations (0 when ``val_interval`` divides ``num_iterations`` or either is not a number)."""
    total, interval = config.get("num_iterations"), config.get("val_interval")
    if not isinstance(total, int) or not isinstance(interval, int) or interval < 1:
        return 0
    handlers = get_id(config, "train#handlers") or []
    iteration_level = any(
        isinstance(h, Mapping) and h.get("_target_") == "ValidationHandler" and h.get("epoch_level") is False
        for h in handlers
    )
    return total % interval if iteration_level else 0


def _property_items(properties: Mapping) -> list[tuple[str, str, str]]:
    """``(name, id, ref_id)`` of the optional properties whose items are referred to from another item."""
    items = []
    for name, prop in properties.items():
        ref_id = prop.get(BundlePropertyConfig.REF_ID)
        if prop.get(BundleProperty.REQUIRED, False) or ref_id is None or name in ("evaluator", "val_interval"):
            continue
        items.append((name, prop[BundlePropertyConfig.ID], ref_id))
    return items


def _strings(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _wraps(value: Any, reference: str) -> bool:
    """Whether ``value`` is an inline component (a dict with ``_target_``) that refers to ``reference`` (``@a#b``)."""
    if not isinstance(value, Mapping) or "_target_" not in value:
        return False
    pattern = re.compile(re.escape(reference) + r"(?![\w])")
    return any(s[:1] in "@$" and pattern.search(s) for s in _strings(value))


def _qualified_target(target: str) -> str:
    """The dotted path an expression can call for a ``_target_`` (``Compose`` -> ``monai.transforms.Compose``)."""
    import importlib

    from monai.bundle.config_item import ComponentLocator

    if "." in target:
        return target
    module = ComponentLocator().get_component_module_name(target)
    if not isinstance(module, str):
        raise ConfigConformanceError(f"_target_ {target!r} names no single MONAI component ({module}).")
    parts = module.split(".")
    obj = getattr(importlib.import_module(module), target)
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if getattr(importlib.import_module(parent), target, None) is obj:
            return f"{parent}.{target}"
    return f"{module}.{target}"


def _plain(value: Any) -> bool:
    """A value that means itself in a config: scalars, strings that are no reference, expression or macro, and
    lists and dicts of them (no component)."""
    if isinstance(value, Mapping):
        return "_target_" not in value and all(_plain(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, str):
        return value[:1] not in ("@", "$", "%")
    return value is None or isinstance(value, (bool, int, float))


def _argument_expression(value: Any, where: str) -> str:
    """A config value as a Python expression of a ``$`` expression (``@id`` stays: MONAI substitutes it)."""
    if isinstance(value, str) and value.startswith("@"):
        return value
    if isinstance(value, str) and value.startswith("$"):
        return f"({value[1:]})"
    if isinstance(value, str) and value.startswith("%"):
        raise ConfigConformanceError(f"{where}: the macro {value!r} cannot be written inside an expression.")
    if _plain(value):
        return repr(value)
    raise ConfigConformanceError(f"{where}: {value!r} cannot be written inside an expression.")


def _component_expression(component: Mapping, name: str) -> str:
    """``{_target_: Compose, transforms: '$@a + [@b]'}`` as ``'$monai.transforms.Compose(transforms=(@a + [@b]))'``.

    The expression builds the object MONAI instantiates for the component (the target called with the arguments).

    Raises:
        ConfigConformanceError: a special key other than ``_target_`` and ``_desc_`` (``_requires_``,
            ``_disabled_``, ``_mode_``), a target given by reference, or an argument an expression cannot hold.
    """
    where = f"property {name}"
    target = component["_target_"]
    special = [
        k for k in component if str(k).startswith("_") and str(k).endswith("_") and k not in ("_target_", "_desc_")
    ]
    if special or not isinstance(target, str) or target[:1] in "@$%":
        raise ConfigConformanceError(f"{where}: the component {dict(component)} cannot be written as an expression.")
    args = ", ".join(
        f"{k}={_argument_expression(v, where)}" for k, v in component.items() if k not in ("_target_", "_desc_")
    )
    return f"${_qualified_target(target)}({args})"


def conform_properties(config: Mapping, workflow_type: str) -> dict:
    """A copy of ``config`` that MONAI's property check (``monai.bundle.properties``) accepts, doing the same.

    For an optional property (``validate#key_metric``, ``validate#inferer``, ...) the check wants the item that uses
    it (``validate#evaluator#key_val_metric``) to be the reference ``@validate#key_metric``: an inline definition or
    a reference to another item moves to the property's ID and is referred to from there (``validate#inferer:
    '@inferer'``, ``validate#evaluator#inferer: '@validate#inferer'``). For training, the ``ValidationHandler`` also
    names ``@val_interval`` (see :func:`_conform_validation_handler`). An inline definition that wraps the item at
    the property's ID (``dataset#transform: {_target_: Compose, transforms: '$@refine_preprocessing +
    [@preprocessing]'}`` of an overlay) is written as the ``$`` expression that builds the same object, which the
    check skips (:func:`_component_expression`): the property's item is still the one used, inside it. A handler
    given by reference in ``train#handlers`` moves into the list (:func:`_inline_handler_references`).

    Args:
        config: a merged config.
        workflow_type: ``"train"`` (``TrainProperties``) or ``"infer"``/``"eval"`` (``InferProperties``).

    Raises:
        ConfigConformanceError: the property's ID already holds something else than what the item uses.
    """
    config = copy.deepcopy(dict(config))
    train = workflow_type.lower().startswith("train")
    if train:
        _inline_handler_references(config)
        _conform_validation_handler(config)
    for name, id, ref_id in _property_items(TrainProperties if train else InferProperties):
        ref = get_id(config, ref_id)
        wanted = "@" + "#".join(_parts(id))
        if ref is None or (isinstance(ref, str) and (ref.startswith("$") or "#".join(_parts(ref)) == wanted)):
            continue
        existing = get_id(config, id)
        if existing is not None and existing != ref and _wraps(ref, wanted):
            set_id(config, ref_id, _component_expression(ref, name))
            continue
        if existing is not None and existing != ref:
            raise ConfigConformanceError(
                f"property {name}: {'#'.join(_parts(ref_id))} holds {ref!r} but {'#'.join(_parts(id))} holds "
                f"{existing!r}; the model zoo expects the first to be {wanted!r}."
            )
        parent = _parts(id)[:-1]
        if parent and not isinstance(get_id(config, "#".join(parent)), dict):
            raise ConfigConformanceError(f"property {name}: no section {'#'.join(parent)!r} to define it in.")
        set_id(config, id, ref)
        set_id(config, ref_id, wanted)
    return config
