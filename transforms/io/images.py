"""Image loading that fails with a clear message naming the file: unreadable, wrong dimensionality, NaN values.

MONAI's ``LoadImage`` lets a truncated ``.nii.gz`` raise a bare ``EOFError`` (or nibabel's "Cannot work out file
type"), and loads a 4D NIfTI or an RGB image as a multi-channel array that only fails later, inside the network's
first convolution. :class:`CheckedLoadImage` / :class:`CheckedLoadImaged` load with ``LoadImage`` (channel first,
``image_only``) and check the result before anything else runs.

Grey X-rays are often stored as RGB or RGBA PNG/JPEG (public challenge mirrors, clinic exports): with
``channels=1`` (the bundles' grey-value networks) a file whose channels are colour components (grey + alpha, RGB,
RGBA) is loaded as one grey channel (:func:`colour_to_grey`), exactly the grey values when R = G = B.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform

__all__ = [
    "PIXEL_ONLY_SUFFIXES",
    "CheckedLoadImage",
    "CheckedLoadImaged",
    "check_image",
    "colour_to_grey",
    "is_colour_image",
]

_MAX_MESSAGE = 400


def _one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """``text`` with whitespace runs (newlines included) collapsed, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stored_shape(img: torch.Tensor) -> str:
    """The shape the file stores, as far as the reader's metadata tells (``spatial_shape`` and channel axis)."""
    if not isinstance(img, MetaTensor) or img.meta.get("spatial_shape") is None:
        return ""
    spatial = [int(s) for s in np.asarray(img.meta["spatial_shape"]).reshape(-1)]
    channel_dim = img.meta.get("original_channel_dim")
    if isinstance(channel_dim, int | np.integer) and img.shape[0] > 1:
        pos = int(channel_dim) if int(channel_dim) >= 0 else len(spatial) + 1 + int(channel_dim)
        spatial.insert(pos, int(img.shape[0]))
    return f", stored as {tuple(spatial)}"


#: file formats without a physical pixel size (MONAI reads them with 1 "mm" per pixel): their coordinates are px
#: unless the datalist item gives a ``spacing`` (:class:`transforms.landmarks.SetSpacing` then marks them mm).
PIXEL_ONLY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: ITU-R BT.601 luma weights (what PIL's ``convert("L")`` uses).
_LUMA = (0.299, 0.587, 0.114)


def is_colour_image(img: torch.Tensor) -> bool:
    """Whether the channels of a loaded 2D image ``(C, W, H)`` are colour components of its file (grey + alpha, RGB,
    RGBA), as MONAI's readers mark them (``original_channel_dim`` set), rather than volumes of a 4D file."""
    meta = img.meta if isinstance(img, MetaTensor) else {}
    channel_dim = meta.get("original_channel_dim")
    has_channels = channel_dim is not None and not (isinstance(channel_dim, float) and np.isnan(channel_dim))
    return has_channels and img.ndim == 3 and int(img.shape[0]) in (2, 3, 4)


def colour_to_grey(img: torch.Tensor) -> torch.Tensor:
    """One grey channel ``(1, W, H)`` from a colour image ``(C, W, H)``, C in 2 (grey + alpha), 3 (RGB), 4 (RGBA).

    The alpha channel is dropped. RGB with R = G = B everywhere (a grey image saved in colour) gives R exactly;
    other RGB gives the BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (as PIL's ``convert("L")``, without rounding).
    The metadata (affine, file name) is kept.
    """
    channels = int(img.shape[0])
    if channels not in (2, 3, 4):
        raise ValueError(f"colour_to_grey: expected 2, 3 or 4 channels (grey+alpha, RGB, RGBA), got {channels}.")
    if channels == 2:
        return img[:1]
    rgb = img[:3]
    if bool((rgb[1] == rgb[0]).all()) and bool((rgb[2] == rgb[0]).all()):
        return img[:1]
    weights = torch.as_tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(3, *([1] * (rgb.ndim - 1)))
    return (rgb * weights).sum(dim=0, keepdim=True)


def check_image(
    img: torch.Tensor,
    name: str,
    spatial_dims: int | None = None,
    channels: int | None = 1,
    allow_non_finite: bool = False,
) -> None:
    """Check a channel-first image ``(C, *S)`` as loaded from file ``name``; raise ``ValueError`` naming it.

    Args:
        img: the loaded image, channel first.
        name: the file it came from (for the messages).
        spatial_dims: expected number of spatial axes (2 or 3), None for any. Extra trailing axes of length 1 are
            accepted (a 2D image stored as one slice, ``W x H x 1``: ``transforms.EnsureSpatialDimsd`` drops them).
        channels: expected number of channels ``C`` (1 for the bundles' grey-value networks), None for any.
        allow_non_finite: accept NaN and infinite values.

    Raises:
        ValueError: wrong number of spatial axes or channels, an empty axis, or NaN/infinite values; the message
            names the file, what was expected and what was found (the array shape, channel first).
    """
    shape = tuple(int(s) for s in img.shape)
    found = len(shape) - 1
    where = f"(array shape {shape} with the channel first{_stored_shape(img)})"
    if found < 1:
        raise ValueError(f"{name}: not an image {where}.")
    if spatial_dims is not None:
        extra = shape[1 + spatial_dims :]
        if found < spatial_dims or any(s != 1 for s in extra):
            raise ValueError(f"{name}: expected a {spatial_dims}D image, found {found} spatial dims {where}.")
    if channels is not None and shape[0] != channels:
        if channels == 1:
            raise ValueError(
                f"{name}: expected a single-channel image, found {shape[0]} channels {where}: a 4D image (e.g. a "
                "time series) or a colour image."
            )
        raise ValueError(f"{name}: expected {channels} channels, found {shape[0]} {where}.")
    if any(s == 0 for s in shape[1:]):
        raise ValueError(f"{name}: the image has an empty axis {where}.")
    if not allow_non_finite and img.is_floating_point():
        finite = torch.isfinite(img)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(img).sum())
            n_inf = int((~finite).sum()) - n_nan
            raise ValueError(
                f"{name}: the image holds {n_nan} NaN and {n_inf} infinite values (of {img.numel()} voxels); "
                "replace them before training or inference."
            )


class CheckedLoadImage(Transform):
    """``monai.transforms.LoadImage`` (channel first, image only) whose failures name the file and the problem.

    File name -> ``MetaTensor`` ``(C, *S)``, the same as ``LoadImage(reader, ensure_channel_first=True,
    image_only=True, dtype=dtype)``, after :func:`check_image`. Its meta ``spatial_units`` says whether the file has a
    physical pixel size (``"mm"``: NIfTI, MetaImage, NRRD, DICOM...) or not (``"px"``: PNG, JPEG, BMP, TIFF).

    Args:
        reader: reader passed to ``LoadImage`` (name such as ``"ITKReader"``, class or instance), None for MONAI's
            choice by file extension.
        spatial_dims: expected spatial axes (2 or 3), None for any; see :func:`check_image`.
        channels: expected channels, None for any.
        allow_non_finite: accept NaN/infinite voxel values.
        dtype: output data type (``LoadImage``'s default: float32).
        grey: with ``channels=1``, load a colour file (grey + alpha, RGB, RGBA 2D image) as one grey channel
            (:func:`colour_to_grey`); False refuses it.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: the file cannot be read (truncated, corrupt, unknown format; the reader's error is chained and
            summarised in the message), or :func:`check_image` fails.
    """

    def __init__(
        self,
        reader: Any = None,
        spatial_dims: int | None = None,
        channels: int | None = 1,
        allow_non_finite: bool = False,
        dtype: Any = np.float32,
        grey: bool = True,
    ) -> None:
        if spatial_dims is not None and spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2, 3 or None, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.allow_non_finite = allow_non_finite
        self.grey = grey
        self.loader = LoadImage(reader=reader, image_only=True, ensure_channel_first=True, dtype=dtype)

    def __call__(self, filename: str | os.PathLike | Sequence[str | os.PathLike]) -> torch.Tensor:
        names = [filename] if isinstance(filename, str | os.PathLike) else list(filename)
        name = ", ".join(os.fspath(n) for n in names)
        missing = [os.fspath(n) for n in names if not os.path.exists(n)]
        if missing:
            raise FileNotFoundError(f"{missing[0]}: image file not found.")
        try:
            img = self.loader(filename)
        except Exception as e:
            raise ValueError(
                f"{name}: cannot read the image, the file is truncated, corrupt or of an unknown format "
                f"({type(e).__name__}: {_one_line(e)})."
            ) from e
        if self.grey and self.channels == 1 and is_colour_image(img):
            img = colour_to_grey(img)
        if isinstance(img, MetaTensor):
            pixel_only = all(os.fspath(n).lower().endswith(PIXEL_ONLY_SUFFIXES) for n in names)
            img.meta["spatial_units"] = "px" if pixel_only else "mm"
        check_image(img, name, self.spatial_dims, self.channels, self.allow_non_finite)
        return img


class CheckedLoadImaged(MapTransform):
    """Dictionary form of :class:`CheckedLoadImage`: replace the file names under ``keys`` by checked images.

    Args:
        keys: image keys, default ``"image"``.
        reader, spatial_dims, channels, allow_non_finite, dtype, grey: see :class:`CheckedLoadImage`.
        allow_missing_keys: don't raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        reader: Any = None,
        spatial_dims: int | None = None,
        channels: int | None = 1,
        allow_non_finite: bool = False,
        dtype: Any = np.float32,
        allow_missing_keys: bool = False,
        grey: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = CheckedLoadImage(reader, spatial_dims, channels, allow_non_finite, dtype, grey)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
