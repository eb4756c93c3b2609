"""Runtime layering of the two packages: no import cycles, every module importable alone, imports only downwards.

The layers (docs/architecture.md, "Layering"), each importing only from its own layer and the ones below:

    transforms  <-  mlm core  <-  mlm.data  <-  mlm.bundle  <-  mlm.handlers, mlm.protocols

Neither package imports the repository's ``scripts/`` (command-line wrappers over them), not even lazily.

The static checks read every module's module-level imports from its source (imports inside functions are not
edges: they run later, when every module is loaded); the runtime check imports each module first, with no other
module of the project loaded, in one subprocess.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("transforms", "mlm")

#: layer of a module: the longest matching prefix decides; any other ``mlm`` module is "mlm core".
LAYERS = {
    "transforms": 0,
    "mlm": 1,
    "mlm.data": 2,
    "mlm.bundle": 3,
    "mlm.handlers": 4,
    "mlm.protocols": 4,
}
LAYER_NAMES = {0: "transforms", 1: "mlm core", 2: "mlm.data", 3: "mlm.bundle", 4: "mlm.handlers / mlm.protocols"}


def project_modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is_package)}`` of every module of ``packages`` (default ``transforms`` and ``mlm``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = (path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]):
    """Import statements that run when the module is imported (also in top-level ``if``/``try``, not under
    ``if TYPE_CHECKING``), with their line numbers."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_imports(block)


def import_graph(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, int]]:
    """``{module: {imported project module: line}}`` from module-level imports.

    ``import a.b.c`` and ``from a.b import c`` (c a module) are edges to ``a.b.c``; ``from a.b import name`` (a name
    defined in ``a/b/__init__.py``) is an edge to ``a.b``. The implicit import of a module's parent packages is not
    an edge: a package's ``__init__`` importing its own submodules is the normal layout, not a cycle.
    """
    modules = project_modules(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in modules.items():
        edges: dict[str, int] = {}
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search, modules in sorted order)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layer(module: str) -> int:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in neither package")


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    modules = project_modules()
    return (
        " -> ".join(f"{a} ({modules[a][0].relative_to(REPO)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
        + f" -> {cycle[-1]}"
    )


def test_find_cycle_reports_the_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) is None


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert "mlm.bundle.checkpoints" in graph["mlm.handlers.checkpoint_saver"]  # the parser sees edges
    assert "transforms.io.atomic" in graph["transforms.io"]  # relative imports resolved
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle (module-level imports, file:line of each import): {_describe(cycle, graph)}"


def test_modules_import_only_from_their_layer_and_below():
    graph = import_graph()
    upward = [
        f"{m} ({LAYER_NAMES[layer(m)]}) imports {t} ({LAYER_NAMES[layer(t)]}) at "
        f"{project_modules()[m][0].relative_to(REPO)}:{line}"
        for m, edges in sorted(graph.items())
        for t, line in sorted(edges.items())
        if layer(t) > layer(m)
    ]
    assert not upward, "imports against the layering of docs/architecture.md:\n" + "\n".join(upward)


def test_transforms_never_imports_mlm_not_even_inside_a_function():
    """``transforms`` depends on MONAI only (DESIGN.md); a lazy import of ``mlm`` would hide the dependency."""
    found = []
    for path, _ in project_modules(packages=("transforms",)).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            found += [
                f"{path.relative_to(REPO)}:{node.lineno} imports {t}" for t in targets if t.split(".")[0] == "mlm"
            ]
    assert not found, "\n".join(found)


def script_imports(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``file:line imports NAME`` for every import of the repository's ``scripts/`` by a module of ``packages``,
    anywhere in the module (also inside a function): ``import compare_robustness`` / ``from scripts import ...``, or
    ``importlib.import_module("compare_robustness")`` / ``__import__(...)`` with the name as a string literal (the
    form that needs ``scripts/`` on ``sys.path``)."""
    names = {"scripts"} | {path.stem for path in (root / "scripts").glob("*.py")}
    found = []
    for path, _ in project_modules(root, packages).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if func in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                    targets = [node.args[0].value]
            found += [
                f"{path.relative_to(root)}:{node.lineno} imports {t}" for t in targets if t.split(".")[0] in names
            ]
    return found


def test_the_library_never_imports_a_script():
    """Layering: ``scripts/`` are command-line wrappers over ``mlm`` and ``transforms``, never the other way round
    (a script's logic the library needs belongs in the library, e.g. ``mlm.bundle.robustness_comparison``)."""
    found = script_imports()
    assert not found, "\n".join(found)


def test_the_script_import_check_finds_lazy_imports(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "tool.py").write_text("", encoding="utf-8")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("import json\n", encoding="utf-8")
    (tmp_path / "lib" / "a.py").write_text(
        "from importlib import import_module\n\n\ndef f():\n    import tool\n    return import_module('tool')\n",
        encoding="utf-8",
    )
    (tmp_path / "lib" / "b.py").write_text("from scripts.tool import main\n", encoding="utf-8")
    assert script_imports(tmp_path, ("lib",)) == [
        "lib/a.py:5 imports tool",
        "lib/a.py:6 imports tool",
        "lib/b.py:1 imports scripts.tool",
    ]


_IMPORT_EACH = r"""
import importlib, json, sys, traceback, warnings
warnings.simplefilter("ignore")
packages, preload, names = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3:]
# third-party packages stay loaded (importing MONAI costs seconds); the project's modules are dropped before each import
for name in filter(None, preload):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
failures = {}
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps({"imported": len(names), "failures": failures}))
"""


#: third-party packages imported once, before the project's modules
THIRD_PARTY = ("numpy", "torch", "monai", "ignite", "nibabel", "scipy", "PIL", "yaml", "matplotlib")


def import_each_alone(
    root: Path = REPO, packages: tuple[str, ...] = PACKAGES, preload: tuple[str, ...] = THIRD_PARTY
) -> tuple[int, dict[str, str]]:
    """Import every module of ``packages`` first, with no other module of them loaded (one subprocess; the
    ``preload`` packages stay loaded). Returns the number of modules imported and ``{module: traceback}`` of the
    failures."""
    names = sorted(project_modules(root, packages))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, ",".join(packages), ",".join(preload), *names],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        encoding="utf-8",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return result["imported"], result["failures"]


def test_the_checks_find_a_cycle_in_a_package(tmp_path):
    """A two-module cycle: the static graph reports it, and importing either module first fails."""
    (tmp_path / "cyclic").mkdir()
    (tmp_path / "cyclic" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "cyclic" / "a.py").write_text("from cyclic.b import B\n\nA = 1\n", encoding="utf-8")
    (tmp_path / "cyclic" / "b.py").write_text(
        "from .a import A\n\nB = 2\n\n\ndef later():\n    import cyclic\n", encoding="utf-8"
    )
    graph = import_graph(tmp_path, ("cyclic",))
    assert graph == {"cyclic": {}, "cyclic.a": {"cyclic.b": 1}, "cyclic.b": {"cyclic.a": 1}}
    assert find_cycle(graph) == ["cyclic.a", "cyclic.b", "cyclic.a"]
    imported, failures = import_each_alone(tmp_path, ("cyclic",), preload=())
    assert imported == 3 and sorted(failures) == ["cyclic.a", "cyclic.b"]
    assert "partially initialized module" in failures["cyclic.a"]


def test_every_module_imports_alone():
    """Each module of ``transforms`` and ``mlm`` imported first, with nothing else of the project loaded: an
    order-dependent cycle (``ImportError: cannot import name ... partially initialized module``) fails here."""
    imported, failures = import_each_alone()
    assert imported == len(project_modules()) > 100
    assert not failures, "\n".join(f"{name}:\n{tb}" for name, tb in failures.items())
