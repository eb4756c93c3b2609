"""Image headers without loading the pixels: the spatial shape and voxel-to-world affine MONAI will give an image.

``read_image_header`` answers, for one image file, what ``LoadImage(ensure_channel_first=True)`` would
produce (the spatial shape, channel axis excluded, and the RAS affine of the ``MetaTensor``) from the
header alone, with the reader MONAI picks by default for the suffix:

- ``.nii``, ``.nii.gz``, ``.hdr``/``.img``: nibabel (``NibabelReader``), shape = the header's first three axes;
- ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``: PIL (``PILReader``), shape ``(W, H)``, identity affine;
- ``.npy``: NumPy (``NumpyReader``), every axis spatial, identity affine;
- anything else (``.mha``, ``.mhd``, ``.nrrd``, ``.tif``, ...): ITK, through SimpleITK's
  ``ImageFileReader.ReadImageInformation``; shape = ITK size ``(x, y(, z))``, LPS affine flipped to RAS.

With ``verify_data`` the file is also checked to hold all its pixel data (a truncated download, a
text file under an image name): uncompressed NIfTI and MetaImage by their file size, gzipped NIfTI by
decompressing it as a stream (no array is built), PIL images by decoding them (2D, small), other ITK
formats by reading the image.

:func:`header_image` turns a header into a geometry-only ``MetaTensor`` (shape and affine, no pixels) that the
landmark transforms accept in place of the loaded image (``transforms.LoadLandmarks``, ``transforms.post``).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from transforms.geometry import affine_with_spacing, flip_affine_lps_ras, spatial_affine

__all__ = ["ImageHeader", "read_image_header", "header_image", "PIL_SUFFIXES", "NIBABEL_SUFFIXES"]

#: suffixes MONAI's LoadImage reads with PIL and nibabel by default (everything else but .npy goes to ITK).
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img")


@dataclass
class ImageHeader:
    """Geometry of one image as MONAI loads it.

    Attributes:
        path: the image file.
        spatial_shape: voxels per spatial axis (channel axis excluded), in the array's axis order.
        affine: ``(R+1, R+1)`` float64 voxel-to-world RAS (mm) affine, ``R = len(spatial_shape)``.
        reader: ``"nibabel"``, ``"pil"``, ``"numpy"`` or ``"itk"``.
        volumes: values per voxel beyond the spatial axes (a 4D NIfTI's time points or channels; 1 for a plain
            image; colour bands of 2D files are not counted: those load as grey).
    """

    path: str
    spatial_shape: tuple[int, ...]
    affine: np.ndarray
    reader: str
    volumes: int = 1

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along each array axis (mm): the norms of the affine's columns."""
        return np.linalg.norm(self.affine[:-1, :-1], axis=0)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _not_an_image(path: Path, why: object) -> ValueError:
    return ValueError(f"{path}: not a readable image ({why}).")


def _gzip_length(path: Path) -> int:
    """Decompressed size of a gzip file, streaming (raises ValueError on a truncated or corrupt stream)."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: truncated or corrupt gzip data ({e}).") from None
    return total


def _check_length(path: Path, available: int, needed: int) -> None:
    if available < needed:
        raise ValueError(f"{path}: truncated image file ({available} bytes of data, the header needs {needed}).")


def _nibabel_header(path: Path, verify_data: bool) -> ImageHeader:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises ImageFileError, OSError, gzip errors, ValueError, ...
        raise _not_an_image(path, e) from None
    shape = tuple(int(s) for s in img.shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"{path}: the header gives the empty image shape {shape}.")
    affine = np.asarray(img.affine, dtype=np.float64)
    rank = min(len(shape), 3)
    idx = [*range(rank), 3]
    affine = affine[np.ix_(idx, idx)]
    if verify_data:
        proxy = img.dataobj
        offset = int(getattr(proxy, "offset", 0))
        needed = offset + int(np.prod(shape)) * np.dtype(img.get_data_dtype()).itemsize
        data_file = Path(img.file_map["image"].filename)
        if _suffix(data_file) == ".nii.gz" or data_file.suffix.lower() == ".gz":
            _check_length(path, _gzip_length(data_file), needed)
        else:
            _check_length(path, data_file.stat().st_size, needed)
    return ImageHeader(str(path), shape[:rank], affine, "nibabel", int(np.prod(shape[rank:], dtype=np.int64)))


def _pil_header(path: Path, verify_data: bool) -> ImageHeader:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            size = tuple(int(s) for s in im.size)  # (W, H): MONAI's PILReader transposes to (W, H)
            if verify_data:
                im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _not_an_image(path, e) from None
    return ImageHeader(str(path), size, np.eye(3), "pil")


def _numpy_header(path: Path, verify_data: bool) -> ImageHeader:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        shape = tuple(int(s) for s in arr.shape)
        if verify_data and arr.size:
            np.asarray(arr[(-1,) * arr.ndim])  # the last element: a truncated file fails to map or read
    except (OSError, ValueError, IndexError) as e:
        raise _not_an_image(path, e) from None
    return ImageHeader(str(path), shape, np.eye(len(shape) + 1), "numpy")


def _metaimage_data_check(path: Path, size: tuple[int, ...], components: int, itemsize: int) -> bool:
    """Check a local-data MetaImage (``.mha``) holds all its bytes; False when it cannot say (other layouts)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    m = re.search(rb"ElementDataFile\s*=\s*LOCAL[^\n]*\n", head)
    if m is None:
        return False
    fields = dict(re.findall(rb"^\s*(\w+)\s*=\s*([^\r\n]*)", head[: m.start()], flags=re.M))
    available = path.stat().st_size - m.end()
    compressed = fields.get(b"CompressedData", b"False").strip().lower() == b"true"
    if compressed:
        declared = fields.get(b"CompressedDataSize")
        if declared is None:
            return False
        _check_length(path, available, int(declared))
    else:
        _check_length(path, available, int(np.prod(size)) * components * itemsize)
    return True


def _itk_itemsize(sitk, pixel_id: int) -> int | None:
    """Bytes per component of a SimpleITK pixel type (scalar or vector), None for other types."""
    sizes = {"UInt8": 1, "Int8": 1, "UInt16": 2, "Int16": 2, "UInt32": 4, "Int32": 4, "UInt64": 8, "Int64": 8}
    sizes.update({"Float32": 4, "Float64": 8})
    for name, size in sizes.items():
        if pixel_id in (getattr(sitk, f"sitk{name}", None), getattr(sitk, f"sitkVector{name}", None)):
            return size
    return None


def _itk_header(path: Path, verify_data: bool) -> ImageHeader:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise _not_an_image(path, first) from None
    size = tuple(int(s) for s in reader.GetSize())
    dims = len(size)
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dims, dims)
    spacing = np.asarray(reader.GetSpacing(), dtype=np.float64)
    origin = np.asarray(reader.GetOrigin(), dtype=np.float64)
    affine = np.eye(dims + 1)
    affine[:dims, :dims] = direction * spacing
    affine[:dims, dims] = origin
    affine = flip_affine_lps_ras(affine)  # ITK's LPS to MONAI's RAS, like ITKReader (first two axes, also in 2D)
    if verify_data:
        checked = False
        itemsize = _itk_itemsize(sitk, reader.GetPixelID())
        if _suffix(path) == ".mha" and itemsize is not None:
            checked = _metaimage_data_check(path, size, reader.GetNumberOfComponents(), itemsize)
        if not checked:
            try:
                reader.Execute()
            except RuntimeError as e:
                first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                raise ValueError(f"{path}: cannot read the image data ({first}).") from None
    return ImageHeader(str(path), size, affine, "itk")


def read_image_header(path: str | os.PathLike, verify_data: bool = True) -> ImageHeader:
    """The spatial shape and RAS affine MONAI's ``LoadImage`` will give ``path``, from its header.

    Args:
        path: an image file.
        verify_data: also check that the file holds all its pixel data (see the module docstring).

    Returns:
        an :class:`ImageHeader`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an image (a text file under an image name), a truncated file, an empty shape;
            the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not an image file.")
    suffix = _suffix(path)
    if suffix in NIBABEL_SUFFIXES:
        return _nibabel_header(path, verify_data)
    if suffix in PIL_SUFFIXES:
        return _pil_header(path, verify_data)
    if suffix == ".npy":
        return _numpy_header(path, verify_data)
    return _itk_header(path, verify_data)


def header_image(
    header: ImageHeader, spatial_dims: int | None = None, spacing: Sequence[float] | None = None
) -> MetaTensor:
    """The geometry of the image the bundles load, as a channel-first ``MetaTensor`` ``(1, *S)`` without pixels.

    Its shape and affine are those of ``LoadImage(ensure_channel_first=True)`` followed by the bundles' squeeze of
    trailing singleton axes (``transforms.EnsureSpatialDims``: a ``W x H x 1`` MetaImage is 2D) and, for pixel-only
    images, the item's pixel ``spacing`` (:func:`transforms.geometry.affine_with_spacing`, as
    ``transforms.SetSpacingd`` applies it); the affine is 4x4 as MONAI keeps it (rows/columns ``[0, 1, 3]`` in 2D).
    The array is a zero-stride view of one byte: use it where only the geometry is read
    (``transforms.LoadLandmarks``, ``transforms.post.LandmarksToWorld``), never where pixels are (a copy of it
    would allocate the whole image).

    Args:
        header: from :func:`read_image_header`.
        spatial_dims: ``D``; default all of the header's axes. Axes beyond ``D`` must have length 1.
        spacing: voxel size (mm, ``D`` values) to give the image, or None.

    Raises:
        ValueError: the image has fewer than ``D`` axes, or a longer axis beyond ``D`` (names the file).
    """
    shape = tuple(int(s) for s in header.spatial_shape)
    dims = len(shape) if spatial_dims is None else int(spatial_dims)
    if len(shape) < dims or any(s != 1 for s in shape[dims:]) or dims > 3:
        raise ValueError(f"{header.path}: a {len(shape)}D image of size {shape} is not a {dims}D image.")
    affine = np.eye(4)
    idx = [*range(dims), 3]
    affine[np.ix_(idx, idx)] = spatial_affine(header.affine, dims)
    if spacing is not None:
        sp = [float(s) for s in spacing]
        if len(sp) != dims:
            raise ValueError(f"{header.path}: 'spacing' {sp} does not have {dims} values.")
        affine = affine_with_spacing(affine, sp)
    pixels = torch.zeros((), dtype=torch.uint8).expand(1, *shape[:dims])
    return MetaTensor(pixels, affine=torch.as_tensor(affine), meta={"filename_or_obj": header.path})
