"""One domain of a universal model's bundle as a model-zoo bundle (``gu2net_universal``'s ``configs/domain.yaml``).

``gu2net_universal`` takes a run's data, landmarks, geometry and evaluation from ``configs/domains.yaml`` through
``configs/domain.yaml`` (``--domain hand``): those items are expressions of ``domain_facts``, which
:func:`mlm.bundle.domain_settings` computes from every entry of ``domains.yaml`` (whose default data are folders of
this repository), and with ``--universal true`` the network is the universal model's, run for that domain. A
model-zoo bundle's metadata describes one network input and output, so the export fixes the domain:

- :func:`domain_selection` tells which domain a merged config predicts, and whether with a universal model;
- :func:`freeze_domain` writes every config item that depends on the selection alone (:data:`DOMAIN_ITEMS` and
  plain values) as its value (``pixdim: -1.0``, ``radii: [2.0, ...]``, ``network_def#domain: 0``): the configs of
  a single-domain model of that domain, without ``domains.yaml`` and the selection;
- :func:`domain_state_dict` gives a universal model's weights of one domain as that single-domain network holds
  them (the shared layers and the domain's own);
- :func:`domain_metadata` gives the metadata the domain's output channels and landmark names.

A config of the universal model's training (``configs/universal.yaml``: every domain at once) has no one domain to
export: :func:`domain_selection` refuses it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from monai.bundle import ConfigParser
from torch import nn

from mlm.bundle.zoo_configs import set_id
from mlm.networks.gu2net import DomainModuleList

__all__ = [
    "DOMAIN_ITEMS",
    "DomainExportError",
    "DomainSelection",
    "domain_metadata",
    "domain_selection",
    "domain_state_dict",
    "freeze_domain",
]

#: the items of ``configs/domain.yaml`` that select the domain and give its settings; none is left in an export
DOMAIN_ITEMS = frozenset(
    {"domain", "universal", "domains", "domain_overrides", "domain_facts", "domain_names", "domain_index"}
)
#: an item of ``configs/universal.yaml`` (the universal model's training on every domain)
_UNIVERSAL_TRAINING_ITEM = "universal_domains"
_REFERENCE = re.compile(r"[@%]([A-Za-z_]\w*)")
_SEPARATOR = re.compile(r"::|#")


class DomainExportError(ValueError):
    """A config or checkpoint of a bundle of several domains cannot be exported as one domain's bundle."""


@dataclass
class DomainSelection:
    """The domain a merged config of ``configs/domain.yaml`` predicts.

    Attributes:
        name: the domain (``"hand"``).
        index: its index in the universal model (``domain_index``; 0 for a single-domain model).
        universal: whether the network is the universal model (``--universal true``).
        facts: its :func:`mlm.bundle.domain_settings` entry (``dataset_name``, ``landmark_names``, ``pixdim``, ...).
    """

    name: str
    index: int
    universal: bool
    facts: dict[str, Any] = field(default_factory=dict)


def _references(value: str) -> set[str]:
    """Top-level items a config string refers to (``$@domain_facts['pixdim']`` -> ``{"domain_facts"}``)."""
    return set(_REFERENCE.findall(value)) if value[:1] in "@$%" else set()


def _strings(value: Any, id: str = "") -> Iterator[tuple[str, str]]:
    """``(id, string)`` of every string inside a config value (ids as ``a#b#0``)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{id}#{k}" if id else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{id}#{i}")
    elif isinstance(value, str):
        yield id, value


def _is_plain(value: Any) -> bool:
    """A value that means itself in a config: scalars, strings that are no reference, expression or macro, and
    lists and dicts of them (no component)."""
    if isinstance(value, Mapping):
        return "_target_" not in value and all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, str):
        return value[:1] not in ("@", "$", "%")
    return value is None or isinstance(value, (bool, int, float))


def _parser(config: Mapping[str, Any]) -> ConfigParser:
    """A parser of ``config`` with its ``imports`` run (the expressions name the modules they import)."""
    parser = ConfigParser(copy.deepcopy(dict(config)))
    if "imports" in config:
        parser.get_parsed_content("imports")
    return parser


def domain_selection(config: Mapping[str, Any]) -> DomainSelection | None:
    """The domain a merged config predicts (``configs/domain.yaml`` among its overlays), None for a config of one
    domain only (every other bundle).

    Raises:
        DomainExportError: the config trains the universal model on every domain (``configs/universal.yaml``), or
            its selection cannot be evaluated (an unknown domain, a domain_overrides entry of none).
    """
    if _UNIVERSAL_TRAINING_ITEM in config:
        raise DomainExportError(
            "configs/universal.yaml trains one model on every domain, while a model-zoo bundle predicts one: export "
            "a domain of the universal model with the overlays configs/cpu.yaml (if trained with it) and "
            "configs/domain.yaml and the overrides domain=NAME universal=true (--configs cpu.yaml domain.yaml --set "
            "domain=hand --set universal=true), with the universal training's domain_overrides."
        )
    if "domain_facts" not in config:
        return None
    parser = _parser(config)
    try:
        facts = parser.get_parsed_content("domain_facts")
        universal = bool(parser.get_parsed_content("universal"))
        index = int(parser.get_parsed_content("domain_index"))
    except Exception as e:  # noqa: BLE001 - MONAI wraps the config's own error in a RuntimeError
        cause = e.__cause__ or e
        raise DomainExportError(f"the domain to export cannot be read from the configs: {cause}") from None
    return DomainSelection(str(facts["name"]), index, universal, dict(facts))


def freeze_domain(config: Mapping[str, Any]) -> dict:
    """``config`` (merged with ``configs/domain.yaml``) as the config of a single-domain model of its domain.

    ``universal`` is set to false (the exported network is a single-domain one: :func:`domain_state_dict`), then
    every string outside the :data:`DOMAIN_ITEMS` that refers to them and otherwise only to plain items
    (``$@domain_facts['pixdim']``, ``'@domain_index'``, ``$@domain if @universal else None``) is replaced by its
    value. The :data:`DOMAIN_ITEMS` are then referred to by nothing: pruning drops them (and ``domains.yaml``'s
    entries, which name this repository's data folders).

    Raises:
        DomainExportError: a value that is not plain (a component, a string read as a reference or an expression),
            or an item that still refers to the domain items through one that is not plain.
    """
    config = copy.deepcopy(dict(config))
    config["universal"] = False
    known = set(DOMAIN_ITEMS) | {k for k, v in config.items() if _is_plain(v)}
    parser = _parser(config)
    values = {}
    for id, text in _strings({k: v for k, v in config.items() if k not in DOMAIN_ITEMS}):
        refs = _references(text)
        if not refs & DOMAIN_ITEMS or not refs <= known:
            continue
        value = parser.get_parsed_content(id, instantiate=False)
        if not _is_plain(value):
            raise DomainExportError(f"{id}: {text!r} is {value!r}, which a config cannot hold as a plain value.")
        values[id] = value
    for id, value in values.items():
        set_id(config, id, copy.deepcopy(value))
    left = sorted(
        id
        for id, text in _strings({k: v for k, v in config.items() if k not in DOMAIN_ITEMS})
        if _references(text) & DOMAIN_ITEMS
    )
    if left:
        raise DomainExportError(
            f"{', '.join(left)} refer to the domain selection through items that are not plain values: the export "
            "cannot write them as one domain's."
        )
    return config


def domain_state_dict(network: nn.Module, domain: int) -> dict[str, torch.Tensor]:
    """The weights of domain ``domain`` of a universal GU2Net as those of a single-domain GU2Net of that domain.

    The per-domain layers (:class:`mlm.networks.gu2net.DomainModuleList` s, parameters and buffers named
    ``<list>.<k>.<name>``) keep domain ``domain``'s as ``<list>.0.<name>``; the shared layers are kept as they are.
    The single-domain network loaded with them computes what ``network(x, domain=domain)`` does.

    Raises:
        DomainExportError: the network has no per-domain layers, or no domain ``domain``.
    """
    lists = [name for name, m in network.named_modules() if isinstance(m, DomainModuleList)]
    num_domains = getattr(network, "num_domains", None)
    if not lists or not isinstance(num_domains, int):
        raise DomainExportError(f"{type(network).__name__} is no universal model (it has no per-domain layers).")
    if not 0 <= int(domain) < num_domains:
        raise DomainExportError(f"the universal model has {num_domains} domains, domain {domain} was asked for.")
    state = {}
    for key, value in network.state_dict().items():
        owner = min((p for p in lists if key.startswith(f"{p}.")), key=len, default=None)
        if owner is None:
            state[key] = value.detach().clone()
            continue
        index, rest = key[len(owner) + 1 :].split(".", 1)
        if int(index) == int(domain):
            state[f"{owner}.0.{rest}"] = value.detach().clone()
    return state


def domain_metadata(
    metadata: Mapping[str, Any], selection: DomainSelection, num_channels: int, names: Sequence[str] | None = None
) -> dict:
    """The metadata of a bundle that predicts ``selection``'s domain: the output's ``num_channels`` and
    ``channel_def`` (``"<landmark> heatmap"``, ``names`` or else the domain's ``landmark_names`` when they are as many
    as the channels, else ``landmark_<i>``), and the domain named in ``task`` and ``description``."""
    meta = copy.deepcopy(dict(metadata))
    names = list(names if names is not None else selection.facts.get("landmark_names") or [])
    if len(names) != num_channels:
        names = [f"landmark_{i}" for i in range(num_channels)]
    output = next(iter(meta["network_data_format"]["outputs"].values()))
    output["num_channels"] = int(num_channels)
    output["channel_def"] = {str(i): f"{n} heatmap" for i, n in enumerate(names)}
    dataset = selection.facts.get("dataset_name", selection.name)
    meta["task"] = (
        f"{meta.get('task', '').rstrip('.')}; this bundle: the {selection.name} domain ({num_channels} landmarks)"
    )
    origin = (
        f"the universal model's shared layers and its {selection.name} domain's own (domain {selection.index})"
        if selection.universal
        else "a model trained on this domain alone"
    )
    meta["description"] = (
        f"{meta.get('description', '').rstrip()} This bundle predicts one domain, {selection.name} ({dataset} data, "
        f"{num_channels} landmarks): models/model.pt is a single-domain network, {origin}."
    )
    return meta
