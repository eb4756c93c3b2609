"""A bundle's configs read in this process exactly as ``python -m monai.bundle run`` reads them in the bundle's folder.

The repository's bundles share their configs (``bundles/base/configs``; a bundle's ``configs/train.yaml`` is a link
to the shared one) and read their own facts with MONAI config macros, ``'%configs/facts.yaml#pixdim'``. MONAI
resolves a macro's file path against the working directory, which is the bundle's folder when the README's commands
run there. Code that builds a bundle's config elsewhere (tests, the model-zoo export, scripts) resolves the paths
against the bundle's folder instead with :func:`resolve_file_macros`, or builds the whole parser with
:func:`bundle_config_parser`.
"""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["add_overrides_argument", "bundle_config_parser", "resolve_file_macros"]

_MACRO = "%"


def resolve_file_macros(config: Any, root: str | os.PathLike) -> Any:
    """A copy of ``config`` whose values ``'%<file>#<id>'`` are replaced by item ``<id>`` of ``<file>``.

    As MONAI's ``ConfigParser`` resolves them when it parses, with a relative ``<file>`` taken from ``root`` (the
    bundle's folder) instead of the working directory, and recursively like MONAI: a macro inside the content a
    macro brings (``facts.yaml``'s ``'%configs/domains.yaml#head#...'``) is resolved too. Macros without a file
    (``'%id'``, an item of the same config) are left to MONAI.

    Args:
        config: a config (dict, list or value), e.g. the merged content of a bundle's config files.
        root: the folder relative file paths are resolved against.

    Raises:
        FileNotFoundError: a macro names a file that does not exist.
        KeyError: the file has no item ``<id>``.
        ValueError: macros that bring each other in a cycle.
    """
    from monai.bundle import ConfigParser

    root = Path(root)
    loaded: dict[Path, ConfigParser] = {}

    def item(macro: str, seen: tuple[str, ...]) -> Any:
        if macro in seen:
            raise ValueError(f"config macros in a cycle: {' -> '.join((*seen, macro))}.")
        path, ids = ConfigParser.split_path_id(macro[len(_MACRO) :])
        if not path:
            return macro
        file = Path(path) if Path(path).is_absolute() else root / path
        if file not in loaded:
            if not file.is_file():
                raise FileNotFoundError(f"config macro {macro!r}: {file} not found.")
            loaded[file] = ConfigParser(config=ConfigParser.load_config_file(file))
        try:
            content = copy.deepcopy(loaded[file][ids])
        except KeyError as e:
            raise KeyError(f"config macro {macro!r}: {file} has no item {ids!r}.") from e
        return resolve(content, (*seen, macro))

    def resolve(value: Any, seen: tuple[str, ...] = ()) -> Any:
        if isinstance(value, Mapping):
            return {k: resolve(v, seen) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, seen) for v in value]
        if isinstance(value, str) and value.startswith(_MACRO):
            return item(value, seen)
        return value

    return resolve(config)


def bundle_config_parser(
    bundle_dir: str | os.PathLike,
    configs: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    metadata: bool = True,
):
    """A MONAI ``ConfigParser`` of a bundle as ``python -m monai.bundle run --config_file [...]`` builds it in the
    bundle's folder: the config files merged in order (``+key`` merges), the metadata (``_meta_``), ``bundle_root``
    set to the folder, the ``overrides`` (``--key value``; ``#`` or ``::`` in nested ids), then the macros naming
    files resolved against the folder (:func:`resolve_file_macros`), so that it parses from any working directory.

    Args:
        bundle_dir: the bundle's folder (holding ``configs/``).
        configs: config files in order: names in ``configs/`` (``"train.yaml"``) or paths.
        overrides: ``{id: value}`` applied after the files, as on the command line.
        metadata: read ``configs/metadata.json`` into ``_meta_`` when it exists.
    """
    from monai.bundle import ConfigParser

    folder = Path(bundle_dir)
    files = [folder / "configs" / c if (folder / "configs" / c).is_file() else Path(c) for c in configs]
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    meta = folder / "configs" / "metadata.json"
    if metadata and meta.is_file():
        parser.read_meta(str(meta))
    parser["bundle_root"] = str(folder)
    for key, value in (overrides or {}).items():
        parser[str(key).replace("#", "::")] = value
    parser.set(resolve_file_macros(parser.get(), folder))
    return parser


def _override(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE read as YAML)``, as ``python -m monai.bundle run --KEY VALUE`` reads it."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) on a script's command line: a list of ``(key, value)`` in ``overrides``."""
    parser.add_argument(
        "--set", dest="overrides", type=_override, action="append", default=[], metavar="KEY=VALUE", help=help
    )
