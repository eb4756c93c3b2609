"""Copy the project code that a bundle's configs use into the bundle's own ``scripts`` package (model-zoo layout).

A model-zoo bundle carries its Python code in ``<bundle>/scripts/`` and its configs name it as ``scripts.<...>``.
:func:`config_references` finds the project objects a config names (``_target_`` values and names inside ``$``
expressions), :func:`module_closure` follows the imports of the modules that hold them (``import`` statements
anywhere in a module, including those inside functions, and the package ``__init__`` files every import runs), and
:func:`vendor_modules` writes exactly those modules under ``scripts/`` with their imports of each other made relative,
so the copy imports nothing from this project. :func:`rewrite_config_references` rewrites a config to name the copy.

The project's packages are found where Python imports them from (:func:`project_package_dirs`), so an installed
project and a source checkout export the same code.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PROJECT_PACKAGES",
    "VendoredCode",
    "VendoringError",
    "config_references",
    "module_closure",
    "project_package_dirs",
    "rewrite_config_references",
    "vendor_modules",
]

#: the import packages of this project that bundle configs name
PROJECT_PACKAGES: tuple[str, ...] = ("mlm", "transforms")


class VendoringError(ValueError):
    """The project code cannot be copied as it is written (an import form the copy cannot reproduce)."""


@dataclass
class VendoredCode:
    """What :func:`vendor_modules` wrote.

    Attributes:
        modules: dotted names (project namespace, e.g. ``"mlm.networks.scn"``) of the modules copied.
        files: paths of the files written, relative to the destination folder (``scripts/``).
        third_party: top-level names of the non-standard-library modules the copied code imports, each with the
            modules that import it (``{"nibabel": ["transforms.post.array", ...]}``), including ``optional_import`` names.
        lines: source lines copied.
    """

    modules: list[str]
    files: list[str]
    third_party: dict[str, list[str]] = field(default_factory=dict)
    lines: int = 0


def project_package_dirs(packages: Sequence[str] = PROJECT_PACKAGES) -> dict[str, Path]:
    """The folder each of ``packages`` is imported from (``{"mlm": Path(".../mlm"), ...}``).

    Raises:
        VendoringError: a package cannot be found or is not a regular package.
    """
    dirs = {}
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith("__init__.py"):
            raise VendoringError(f"project package {name!r} is not importable as a regular package here.")
        dirs[name] = Path(spec.origin).parent
    return dirs


# a project name in a `$` expression: not part of a longer name, an attribute or a config reference (`@a#transforms`),
# nor a keyword argument (`Compose(transforms=...)`)
_EXPR_NAME = re.compile(r"(?<![\w.#@%])(?P<name>(?:{pkgs})(?:\.\w+)*)\b(?!\s*=(?!=))")


def _expr_pattern(packages: Sequence[str]) -> re.Pattern:
    return re.compile(_EXPR_NAME.pattern.replace("{pkgs}", "|".join(map(re.escape, packages))))


def _walk_strings(config: Any, key: str | None = None) -> Iterable[tuple[str | None, str]]:
    """``(key, value)`` of every string value in a nested config (``key``: the dict key it is the value of)."""
    if isinstance(config, Mapping):
        for k, v in config.items():
            yield from _walk_strings(v, str(k))
    elif isinstance(config, (list, tuple)):
        for v in config:
            yield from _walk_strings(v, key)
    elif isinstance(config, str):
        yield key, config


def config_references(config: Any, packages: Sequence[str] = PROJECT_PACKAGES) -> set[str]:
    """Dotted names of project objects that ``config`` names: ``_target_`` values and names in ``$`` expressions.

    Args:
        config: a parsed bundle config (nested dicts and lists).
        packages: the project's top-level packages.

    Returns:
        e.g. ``{"mlm.networks.SpatialConfigurationNet", "mlm.bundle", "mlm.bundle.parameter_groups"}``.
    """
    pattern, found = _expr_pattern(packages), set()
    for key, value in _walk_strings(config):
        if key == "_target_" and value.split(".")[0] in packages:
            found.add(value)
        elif value.startswith("$"):
            found.update(m.group("name") for m in pattern.finditer(value))
    return found


def rewrite_config_references(config: Any, package: str = "scripts", packages: Sequence[str] = PROJECT_PACKAGES) -> Any:
    """A copy of ``config`` whose ``_target_`` values and ``$`` expressions name the vendored copy of the project.

    ``mlm.networks.X`` becomes ``scripts.mlm.networks.X``; ``$import mlm.bundle`` becomes
    ``$import scripts.mlm.bundle`` (which binds ``scripts``, the name the rewritten expressions start with).
    """
    pattern = _expr_pattern(packages)

    def rewrite(value: Any, key: str | None = None) -> Any:
        if isinstance(value, Mapping):
            return {k: rewrite(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v, key) for v in value]
        if isinstance(value, str):
            if key == "_target_" and value.split(".")[0] in packages:
                return f"{package}.{value}"
            if value.startswith("$"):
                return pattern.sub(lambda m: f"{package}.{m.group('name')}", value)
        return value

    out = rewrite(config)
    imports = out.get("imports") if isinstance(out, dict) else None
    if isinstance(imports, list):
        # MONAI binds `$import a.b` to the name "a.b": the expressions' first name needs its own `$import scripts`
        first = next((i for i, v in enumerate(imports) if str(v).startswith(f"$import {package}.")), None)
        if first is not None and f"$import {package}" not in imports:
            out["imports"] = imports[:first] + [f"$import {package}"] + imports[first:]
    return out


class _Modules:
    """Module files of the project packages, by dotted name."""

    def __init__(self, package_dirs: Mapping[str, Path]) -> None:
        self.dirs = dict(package_dirs)

    def file(self, name: str) -> Path | None:
        top, *rest = name.split(".")
        if top not in self.dirs:
            return None
        path = self.dirs[top].joinpath(*rest)
        if (path / "__init__.py").is_file():
            return path / "__init__.py"
        return path.with_suffix(".py") if rest and path.with_suffix(".py").is_file() else None

    def is_package(self, name: str) -> bool:
        f = self.file(name)
        return f is not None and f.name == "__init__.py"

    def module_of(self, dotted: str) -> str | None:
        """The longest prefix of ``dotted`` that is a project module (``mlm.bundle.load_split`` -> ``mlm.bundle``)."""
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            if self.file(".".join(parts[:i])) is not None:
                return ".".join(parts[:i])
        return None

    def package_of(self, module: str) -> str:
        """The package a module's relative imports start from (itself for an ``__init__``)."""
        return module if self.is_package(module) else module.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The absolute module name of a ``from ... import`` in a module of ``package``."""
    if node.level == 0:
        return node.module or ""
    base = package.split(".")
    if node.level - 1 > len(base) - 1:
        raise VendoringError(f"relative import beyond the top package in {package}")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: _Modules, name: str, tree: ast.Module) -> tuple[set[str], set[str]]:
    """Project modules and third-party top-level names imported anywhere in module ``name``."""
    own, other = set(), set()
    package = modules.package_of(name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (own if alias.name.split(".")[0] in modules.dirs else other).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, package)
            if target.split(".")[0] in modules.dirs:
                own.add(target)
                own.update(f"{target}.{a.name}" for a in node.names if modules.file(f"{target}.{a.name}"))
            elif node.level == 0:
                other.add(target)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "optional_import"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            other.add(node.args[0].value)
    return own, {o.split(".")[0] for o in other if o}


def module_closure(
    references: Iterable[str], package_dirs: Mapping[str, Path] | None = None
) -> tuple[list[str], dict[str, list[str]]]:
    """The project modules needed to import ``references``, and the third-party modules they import.

    Importing ``a.b.c`` runs ``a/__init__.py``, ``a/b/__init__.py`` and ``a/b/c.py``, and each of them runs its own
    imports: all of these are followed (imports inside functions too, as they run when the function does).

    Args:
        references: dotted names of modules or of objects in them (from :func:`config_references`).
        package_dirs: the project packages' folders (default :func:`project_package_dirs`).

    Returns:
        ``(modules, third_party)``: sorted dotted module names; ``{top-level name: [importing modules]}`` for
        modules outside the project and the standard library.

    Raises:
        VendoringError: a reference names no project module.
    """
    modules = _Modules(package_dirs if package_dirs is not None else project_package_dirs())
    todo = []
    for ref in references:
        module = modules.module_of(ref)
        if module is None:
            raise VendoringError(f"the configs name {ref!r}, which is in no module of {sorted(modules.dirs)}.")
        todo.append(module)
    seen: set[str] = set()
    third: dict[str, set[str]] = {}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in seen or modules.file(name) is None:
                continue
            seen.add(name)
            own, other = _imports(modules, name, ast.parse(modules.file(name).read_text(encoding="utf-8")))
            todo.extend(own)
            for top in other - stdlib:
                third.setdefault(top, set()).add(name)
    return sorted(seen), {k: sorted(v) for k, v in sorted(third.items())}


def _relative(from_package: str, target: str) -> str:
    """The relative module path (``"..bundle.checkpoints"``) of ``target`` seen from a module of ``from_package``,
    both inside one common top folder (the vendored ``scripts`` package)."""
    src, dst = from_package.split("."), target.split(".")
    common = 0
    while common < min(len(src), len(dst)) and src[common] == dst[common]:
        common += 1
    return "." * (len(src) - common + 1) + ".".join(dst[common:])


class _Positions:
    """Character offsets in a source text of ``ast`` positions (line numbers and UTF-8 byte columns)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="ignore"))

    def span(self, node: ast.stmt) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)


def _import_edit(modules: _Modules, name: str, node: ast.stmt, text: str, start: int, end: int) -> str | None:
    """The relative form of an import statement of project modules (None: not one)."""
    package = modules.package_of(name)
    if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in modules.dirs:
        match = re.match(rf"from\s+{re.escape(node.module)}(?=\s)", text[start:end])
        if match is None:
            raise VendoringError(f"{modules.file(name)}:{node.lineno}: cannot rewrite `{text[start:end]}`")
        return f"from {_relative(package, node.module)}" + text[start + match.end() : end]
    if isinstance(node, ast.Import) and any(a.name.split(".")[0] in modules.dirs for a in node.names):
        alias = node.names[0]
        if len(node.names) != 1 or alias.asname is None or "." not in alias.name:
            raise VendoringError(
                f"{modules.file(name)}:{node.lineno}: `{text[start:end]}` binds the project's package name, which the "
                "vendored copy cannot; write `from <package> import <module>`."
            )
        parent, _, leaf = alias.name.rpartition(".")
        return f"from {_relative(package, parent)} import {leaf} as {alias.asname}"
    return None


def _rewritten_source(modules: _Modules, name: str, text: str) -> str:
    """``text`` (module ``name``) with its absolute imports of project modules made relative."""
    positions = _Positions(text)
    edits = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            start, end = positions.span(node)
            new = _import_edit(modules, name, node, text, start, end)
            if new is not None:
                edits.append((start, end, new))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _data_files(source: Path, tree: ast.Module) -> list[Path]:
    """Files beside ``source`` (not Python) whose names the module spells out as string constants."""
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return sorted(p for p in source.parent.iterdir() if p.is_file() and p.suffix != ".py" and p.name in names)


def vendor_modules(
    modules: Sequence[str],
    dest: str | Path,
    package_dirs: Mapping[str, Path] | None = None,
    package_doc: str = "Python code of this bundle.",
) -> VendoredCode:
    """Write ``modules`` under ``dest`` (the bundle's ``scripts`` folder) with their project imports made relative.

    ``dest/__init__.py`` is written with ``package_doc`` as its docstring; ``dest/mlm/networks/scn.py`` is module
    ``mlm.networks.scn``, and so on. Data files that a copied module names (e.g. a JSON file it loads from beside
    itself) are copied too.

    Args:
        modules: dotted module names, from :func:`module_closure` (every package of a module must be among them).
        dest: the destination folder; created if missing.
        package_dirs: the project packages' folders (default :func:`project_package_dirs`).
        package_doc: docstring of ``dest/__init__.py``.

    Raises:
        VendoringError: a module imports project code in a form the copy cannot reproduce (``import mlm.x``
            without ``as``); a module's package is missing from ``modules``.
    """
    resolver = _Modules(package_dirs if package_dirs is not None else project_package_dirs())
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "__init__.py").write_text(f'"""{package_doc}"""\n', encoding="utf-8")
    written, lines = ["__init__.py"], 0
    names = set(modules)
    _, third = module_closure(modules, resolver.dirs)
    for name in sorted(names):
        parent = name.rpartition(".")[0]
        if parent and parent not in names:
            raise VendoringError(f"module {name} is vendored without its package {parent}.")
        source = resolver.file(name)
        if source is None:
            raise VendoringError(f"no project module {name}.")
        relative = source.relative_to(resolver.dirs[name.split(".")[0]].parent)
        text = source.read_text(encoding="utf-8")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_rewritten_source(resolver, name, text), encoding="utf-8")
        written.append(relative.as_posix())
        lines += len(text.splitlines())
        for data in _data_files(source, ast.parse(text)):
            shutil.copyfile(data, target.parent / data.name)
            written.append((relative.parent / data.name).as_posix())
    return VendoredCode(modules=sorted(names), files=written, third_party=third, lines=lines)
