"""Tests of the one atomic writer (text, bytes, callback), its permissions under the umask, and output_path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from transforms.io.atomic import atomic_write, atomic_write_text, output_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    text = atomic_write(tmp_path / "a.json", "{}\n")
    data = atomic_write(tmp_path / "b.bin", b"\x00\x01")
    called = atomic_write(tmp_path / "c.nii.gz", lambda tmp: Path(tmp).write_bytes(b"x"))
    legacy = atomic_write_text(tmp_path / "d.txt", "d")
    assert [_mode(p) for p in (text, data, called, legacy)] == [expected] * 4
    # replacing an existing file gives the umask's mode too (not the old file's, not mkstemp's 0600)
    os.chmod(text, 0o600)
    assert _mode(atomic_write(text, "[]\n")) == expected


def test_text_bytes_and_callback_content(tmp_path):
    assert atomic_write(tmp_path / "t.csv", "a,b\r\nü\n").read_bytes() == "a,b\r\nü\n".encode()  # newlines kept
    assert atomic_write(tmp_path / "l1.txt", "é", encoding="latin-1").read_bytes() == b"\xe9"
    assert atomic_write(tmp_path / "b.bin", bytearray(b"\x00\xff")).read_bytes() == b"\x00\xff"
    seen = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.is_file() and tmp.parent == tmp_path / "sub"  # an existing empty file in the destination folder
        tmp.write_text("payload", encoding="utf-8")

    out = atomic_write(tmp_path / "sub" / "heat.nii.gz", writer)  # missing folders are created
    assert out.read_text(encoding="utf-8") == "payload"
    assert seen[0].name.endswith(".nii.gz") and seen[0].name.startswith(".heat.nii.gz.")  # format by extension
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["heat.nii.gz"]


def test_failures_keep_the_old_content_and_leave_no_temporary_file(tmp_path):
    path = atomic_write(tmp_path / "a.txt", "old")

    def failing(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, failing)
    with pytest.raises(FileNotFoundError, match="did not leave a file"):
        atomic_write(path, lambda tmp: tmp.unlink())
    with pytest.raises(TypeError, match="str, bytes or a callable"):
        atomic_write(path, 123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str"):
        atomic_write_text(path, b"bytes")  # type: ignore[arg-type]
    with pytest.raises(FileExistsError, match="a.txt"):
        atomic_write(path, "new", overwrite=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write(tmp_path / "missing" / "x.txt", "x", make_parents=False)
    assert path.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_output_path_keeps_ids_inside_the_output_folder(tmp_path):
    out = tmp_path / "predictions"
    assert output_path(out, "s001_landmarks.json", "s001") == out / "s001_landmarks.json"
    assert output_path(out, "train/s001.png", "train/s001") == out / "train" / "s001.png"  # sub-folders inside: fine
    for bad in ("../s001_landmarks.json", "../../etc/x.json", "/tmp/x.json", "a/../../x.json"):
        with pytest.raises(ValueError, match="outside the output folder") as err:
            output_path(out, bad, bad)
        assert repr(bad) in str(err.value) and str(out) in str(err.value)
    for bad in ("", ".", "a\x00b"):
        with pytest.raises(ValueError, match="not a valid file name"):
            output_path(out, bad)
    # a symbolic link inside the folder that points elsewhere is outside too
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="id 'link/x'"):
        output_path(out, "link/x.json", "link/x")
