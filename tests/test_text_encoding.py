"""Every text read or write names its encoding.

Reading a DICOM series through ITK (GDCM) switches the process to the C locale, after which Python's default text
encoding is ASCII: a later ``Path.read_text()`` of a UTF-8 landmark file or report (names with accents, a "±" in a
table) raises ``UnicodeDecodeError``. The project therefore always passes ``encoding="utf-8"``; this test finds the
calls that do not (``open`` in text mode, ``Path.read_text``/``write_text``, ``subprocess`` with ``text=True``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlm", "transforms", "scripts", "tests")


def _text_mode(call: ast.Call) -> bool:
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None:
        return True
    return not (isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "b" in mode.value)


def unencoded_text_io(source: str) -> list[int]:
    """Line numbers of text I/O calls without an ``encoding`` argument in ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("read_text", "write_text") and isinstance(func, ast.Attribute):
            lines.append(node.lineno)
        elif name == "open" and isinstance(func, ast.Name) and _text_mode(node):
            lines.append(node.lineno)
        elif name in ("run", "Popen", "check_output", "check_call") and any(
            k.arg in ("text", "universal_newlines") and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        ):
            lines.append(node.lineno)
    return lines


def test_the_check_finds_unencoded_calls():
    source = 'open(p)\nopen(p, "rb")\nPath(p).read_text()\nsubprocess.run(c, text=True)\nopen(p, encoding="utf-8")\n'
    assert unencoded_text_io(source) == [1, 3, 4]


@pytest.mark.parametrize("package", PACKAGES)
def test_text_io_names_its_encoding(package):
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in unencoded_text_io(path.read_text(encoding="utf-8"))
    ]
    assert not found, f"text I/O without encoding='utf-8' (fails under the C locale): {found}"
