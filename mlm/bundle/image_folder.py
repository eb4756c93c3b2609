"""The images of a user's folder, as :func:`mlm.bundle.predict.predict_folder` predicts them: which files (and DICOM
series) are images, and the output name of each.

- :func:`find_images`: PNG, JPEG, BMP, TIFF (pixel-only: no pixel size in the file), NIfTI, MetaImage, NRRD and
  DICOM; hidden files skipped, other files reported as skipped; non-recursive unless asked. DICOM: a 2D bundle
  reads every ``.dcm`` file as one image (radiographs), a 3D bundle every folder holding ``.dcm`` files as one
  series.
- :func:`image_ids`: names made from the file names, safe as file names (:func:`mlm.data.check_safe_id`) and unique
  (ignoring case).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlm.data.datalist import check_safe_id
from transforms.io.images import PIXEL_ONLY_SUFFIXES

__all__ = ["DICOM_SUFFIX", "IMAGE_SUFFIXES", "FolderImage", "find_images", "image_ids", "image_suffix", "is_inside"]

#: the DICOM file suffix; see :func:`find_images` for how files and series are told apart
DICOM_SUFFIX = ".dcm"
#: the image files :func:`find_images` picks up (lower case; longest match first)
IMAGE_SUFFIXES = (
    ".nii.gz",
    ".nii",
    ".mha",
    ".mhd",
    ".nrrd",
    ".nhdr",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    DICOM_SUFFIX,
)
#: longest id made from a file name, in UTF-8 bytes (outputs add up to 12 characters)
_MAX_ID_BYTES = 120


@dataclass
class FolderImage:
    """One image of the folder: its output name, its path (a file, or a folder for a DICOM series), its kind."""

    id: str
    path: Path
    pixel_only: bool


def image_suffix(path: str | os.PathLike) -> str | None:
    """The image suffix of ``path`` among :data:`IMAGE_SUFFIXES` (lower case), or None."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def _stem(path: Path) -> str:
    """The file name without its image suffix (``a.nii.gz`` -> ``a``); a folder's (DICOM series) name as it is."""
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix and not path.is_dir() else path.name


def _safe_name(text: str) -> str:
    """``text`` as a safe file name: letters, digits, ``.``, ``-`` and ``_`` kept, runs of anything else as ``_``."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[^\w.\-]+", "_", text)
    text = re.sub(r"\.{2,}", ".", text).strip("._ ") or "image"
    while len(text.encode("utf-8")) > _MAX_ID_BYTES:
        text = text[:-1]
    return text


def image_ids(paths: Sequence[str | os.PathLike], root: str | os.PathLike, reserved: Sequence[str] = ()) -> list[str]:
    """Output names of the images ``paths`` (files or DICOM series folders) found under ``root``.

    The name is the file name without its image suffix (``case 01.nii.gz`` -> ``case_01``: characters other than
    letters, digits, ``.``, ``-``, ``_`` become ``_``; :func:`mlm.data.check_safe_id` holds). Names are unique,
    ignoring case (file systems that ignore it): a clash takes the path relative to ``root`` with its suffix
    (``a.png`` and ``a.jpg`` -> ``a_png``, ``a_jpg``; ``x/a.png`` -> ``x_a_png``), then a number. The names
    ``reserved`` (e.g. the stem of a summary file written beside the outputs) are taken.
    """
    root = Path(root)
    paths = [Path(p) for p in paths]
    first = [_safe_name(_stem(p)) for p in paths]
    counts: dict[str, int] = {}
    for name in first:
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    taken = {str(r).casefold() for r in reserved}
    ids = []
    for path, name in zip(paths, first):
        if counts[name.casefold()] > 1 or name.casefold() in taken:
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                rel = path.name
            name = _safe_name(rel.replace("/", "_").replace(".", "_"))
        base, n = name, 1
        while name.casefold() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.casefold())
        ids.append(check_safe_id(name, f"image {path}"))
    return ids


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symbolic links resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def find_images(
    folder: str | os.PathLike,
    spatial_dims: int | None = None,
    recursive: bool = False,
    exclude: Sequence[str | os.PathLike] = (),
    reserved: Sequence[str] = (),
) -> tuple[list[FolderImage], list[Path]]:
    """The images of ``folder``, in path order, with their output names (:func:`image_ids`).

    Files whose names end in one of :data:`IMAGE_SUFFIXES` are images; hidden files and folders (``.name``) are
    skipped. DICOM (``.dcm``): with ``spatial_dims=3`` a folder holding ``.dcm`` files is one image (a series),
    ``folder`` itself included, and ``folder``'s sub-folders are looked into even without ``recursive``; otherwise
    every ``.dcm`` file is one image.

    Args:
        folder: the images folder.
        spatial_dims: the bundle's dimensionality (2, 3 or None: DICOM files as single images).
        recursive: also look in sub-folders (at any depth).
        exclude: folders to leave out (the output folder, when it lies inside ``folder``).
        reserved: names no image may take (:func:`image_ids`).

    Returns:
        the images, and the files that were skipped because they are not images.

    Raises:
        FileNotFoundError: ``folder`` does not exist. NotADirectoryError: it is a file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: images folder not found.")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder; --images takes the folder holding the images.")
    excluded = [Path(e) for e in exclude]
    series = spatial_dims == 3
    found: list[tuple[Path, bool]] = []
    ignored: list[Path] = []

    def visit(current: Path, depth: int) -> None:
        entries = sorted(current.iterdir(), key=lambda p: p.name)
        files = [p for p in entries if p.is_file() and not p.name.startswith(".")]
        dicom = [p for p in files if image_suffix(p) == DICOM_SUFFIX]
        if series and dicom:
            found.append((current, False))
        for p in files:
            suffix = image_suffix(p)
            if suffix == DICOM_SUFFIX and series:
                continue
            if suffix is None:
                ignored.append(p)
            else:
                found.append((p, suffix in PIXEL_ONLY_SUFFIXES))
        for sub in entries:
            if not sub.is_dir() or sub.name.startswith(".") or any(is_inside(sub, e) for e in excluded):
                continue
            if recursive:
                visit(sub, depth + 1)
            elif (
                series
                and depth == 0
                and any(
                    p.is_file() and image_suffix(p) == DICOM_SUFFIX and not p.name.startswith(".")
                    for p in sub.iterdir()
                )
            ):
                found.append((sub, False))

    visit(folder, 0)
    found.sort(key=lambda item: item[0].relative_to(folder).as_posix() if item[0] != folder else "")
    ids = image_ids([p for p, _ in found], folder, reserved)
    return [FolderImage(i, p, pixel_only) for i, (p, pixel_only) in zip(ids, found)], ignored
