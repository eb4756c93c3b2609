"""Atomic file output: a file is either its old content or its complete new content, never half written.

One writer for every kind of output (:func:`atomic_write`): text, bytes, or a callback that writes a temporary
path (``torch.save``, matplotlib ``savefig``, ``nibabel.save``, SimpleITK ``WriteImage``...). The temporary file
is created in the destination's folder with mode ``0o666`` filtered by the process umask, exactly like a plain
``open(path, "w")`` (``tempfile.mkstemp`` would give ``0o600`` whatever the umask), flushed to disk (``fsync``)
and moved onto the destination with ``os.replace``; the folder is fsynced too, so the rename survives a crash.

:func:`output_path` guards writers of per-item files: the file name built from an item id must stay inside its
output folder.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "output_path"]

_MAX_TRIES = 100


def _create_temp(path: Path, suffix: str) -> tuple[int, Path]:
    """Create a new, empty file next to ``path`` (mode ``0o666 & ~umask``); return its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_MAX_TRIES):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}: {_MAX_TRIES} names taken.")


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it is durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    content: str | bytes | bytearray | memoryview | Callable[[Path], Any],
    *,
    encoding: str = "utf-8",
    overwrite: bool = True,
    make_parents: bool = True,
) -> Path:
    """Write ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    The new file's permissions follow the umask like any ``open(path, "w")``: ``0o666 & ~umask`` (0644 under umask
    022, 0600 under 077), also when it replaces an existing file. On any error (including ``KeyboardInterrupt``) the
    temporary file is removed and ``path`` keeps its old content.

    Args:
        path: destination file.
        content: ``str`` (encoded with ``encoding``, newlines written as given), bytes-like, or a callable
            ``writer(tmp_path: Path)`` that writes the file at ``tmp_path`` (an existing empty file in the
            destination's folder whose name ends with the destination's suffixes, e.g. ``.nii.gz``, so that writers
            choosing the format by extension work), e.g. ``lambda p: torch.save(obj, p)``.
        encoding: text encoding of a ``str`` content.
        overwrite: when False and ``path`` exists, raise ``FileExistsError`` and leave it untouched.
        make_parents: create missing parent folders; when False a missing folder raises ``FileNotFoundError``.

    Returns:
        the destination path.

    Raises:
        TypeError: ``content`` is not text, bytes or a callable (nothing is created).
        FileExistsError: ``overwrite`` is False and ``path`` exists.
        FileNotFoundError: ``make_parents`` is False and the folder does not exist.
    """
    path = Path(path)
    if isinstance(content, str):
        data: bytes | None = content.encode(encoding)
    elif isinstance(content, bytes | bytearray | memoryview):
        data = bytes(content)
    elif callable(content):
        data = None
    else:
        raise TypeError(f"cannot write {path}: content must be str, bytes or a callable, got {type(content).__name__}.")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it.")
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist.")
    # keep the destination's extensions (at most two: ".nii.gz") for writers that pick the format from the name
    fd, tmp = _create_temp(path, "".join(path.suffixes[-2:]) if data is None else "")
    try:
        if data is not None:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            content(tmp)
            if not tmp.is_file():
                raise FileNotFoundError(f"cannot write {path}: the writer did not leave a file at {tmp}.")
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True, make_parents: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`); returns the path.

    Raises:
        TypeError: ``text`` is not a ``str`` (nothing is written).
    """
    if not isinstance(text, str):
        raise TypeError(f"cannot write {path}: text must be str, got {type(text).__name__}.")
    return atomic_write(path, text, overwrite=overwrite, make_parents=make_parents)


def output_path(output_dir: str | os.PathLike, name: str | os.PathLike, item: str | None = None) -> Path:
    """``output_dir / name``, refused when it would resolve outside ``output_dir``.

    Writers of per-item files (``<id>_landmarks.json``, ``overlays/<id>.png``) build file names from item ids that
    come from user data: an id such as ``"../../x"`` or ``"/etc/x"``, or a name reaching outside through a symbolic
    link, must not write elsewhere. Sub-folders inside ``output_dir`` (``"train/001"``) are allowed.

    Args:
        output_dir: the folder every output must stay in (need not exist yet).
        name: the file name, relative to ``output_dir``.
        item: the item id the name was built from (for the message); default ``name``.

    Returns:
        the path ``output_dir / name`` (not resolved).

    Raises:
        ValueError: the name is empty, holds a NUL character, or resolves outside ``output_dir``; the message names
            the id and the folder.
    """
    folder = Path(output_dir)
    text = os.fspath(name)
    what = f"id {item!r}" if item is not None else f"file name {text!r}"
    if not text or "\x00" in text or not Path(text).name:
        raise ValueError(f"{what} is not a valid file name (output folder {folder}).")
    path = folder / text
    root = folder.resolve()
    target = path.resolve()
    if target == root or root not in target.parents:
        raise ValueError(
            f"{what} would write {target}, outside the output folder {root}; ids must be file names inside it."
        )
    return path
