"""Atomic text output: a file is either its old content or its complete new content, never half written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text"]


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True, make_parents: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    Args:
        path: destination file.
        text: the content.
        overwrite: when False and ``path`` exists, raise ``FileExistsError`` and leave it untouched.
        make_parents: create missing parent folders; when False a missing folder raises ``FileNotFoundError``.

    Returns:
        the destination path.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it.")
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
