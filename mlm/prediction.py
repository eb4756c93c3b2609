"""Landmark post-processing: heatmaps -> sub-pixel voxel coordinates -> world mm -> files on disk.

These dictionary transforms run as an engine's ``postprocessing`` on decollated items (one image per dict):

- :class:`HeatmapsToLandmarksd` decodes ``pred`` heatmaps ``(N, *S)`` into world coordinates ``(N, D)``
  (RAS mm, MONAI's convention) using the affine of the preprocessed image the heatmaps were computed on.
  That affine maps preprocessed voxels to world coordinates directly (every MONAI spatial transform updates
  it), so no inverse chain of the preprocessing is needed: world mm are the same in the original image.
  A landmark decoded outside the ORIGINAL image (in the padding of the preprocessed grid or of the sliding
  windows, e.g. on a volume smaller than the network's input) is marked missing (NaN row) and logged.
- :class:`LandmarksToWorldd` maps ground-truth landmarks ``(N, D)`` in voxel coordinates of the same image to
  world mm, so that predictions and ground truth are compared in the original physical space.
- :class:`SaveLandmarksd` writes one JSON per image, atomically: world mm in LPS (ITK/DICOM; the project's
  landmark-file format, readable by ``transforms.io.read_landmark_file``) and the voxel coordinates in the
  ORIGINAL image grid (from the loaded image's ``original_affine``), plus the heatmaps on request (NIfTI).
  An item id that would put a file outside the output folder (``"../x"``, an absolute path) is refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from mlm.heatmaps import decode_heatmaps, voxel_to_world, world_to_voxel
from transforms.io.atomic import atomic_write, output_path

__all__ = [
    "heatmaps_to_voxels",
    "image_affine",
    "original_affine",
    "original_spatial_shape",
    "outside_original_image",
    "HeatmapsToLandmarksd",
    "LandmarksToWorldd",
    "SaveLandmarksd",
    "landmark_record",
]

logger = logging.getLogger(__name__)


def _spatial(affine: Any, spatial_dims: int) -> torch.Tensor:
    """The ``(D+1, D+1)`` float64 part of a MONAI affine (rows/columns ``[0..D-1, -1]``; 2D images keep a 4x4)."""
    a = torch.as_tensor(
        np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine), dtype=torch.float64
    )
    idx = [*range(spatial_dims), a.shape[-1] - 1]
    return a[idx][:, idx]


def image_affine(image: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Voxel-to-world (RAS mm) affine ``(D+1, D+1)`` of a channel-first ``MetaTensor`` image (identity otherwise)."""
    if isinstance(image, MetaTensor):
        return _spatial(image.affine, spatial_dims)
    return torch.eye(spatial_dims + 1, dtype=torch.float64)


def original_affine(image: torch.Tensor, spatial_dims: int, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Voxel-to-world affine ``(D+1, D+1)`` of the image as it was read from disk.

    ``meta["original_affine"]`` when the reader recorded it (NIfTI, ITK); otherwise (pixel-only images read by
    PIL, identity affine) ``diag(spacing)`` with the origin at pixel 0, exactly what ``transforms.SetSpacingd`` gave
    the loaded image, or the identity without ``spacing``.
    """
    if isinstance(image, MetaTensor) and image.meta.get("original_affine") is not None:
        return _spatial(image.meta["original_affine"], spatial_dims)
    affine = torch.eye(spatial_dims + 1, dtype=torch.float64)
    if spacing is not None:
        affine[:spatial_dims, :spatial_dims] = torch.diag(
            torch.as_tensor([float(v) for v in spacing], dtype=torch.float64)
        )
    return affine


def original_spatial_shape(image: torch.Tensor, spatial_dims: int) -> tuple[int, ...] | None:
    """Spatial shape of the image as it was read from disk (``meta["spatial_shape"]``), or None when unknown.

    It is in the axis order of the file's array, the order of :func:`original_affine`'s voxel axes.
    """
    if not isinstance(image, MetaTensor) or image.meta.get("spatial_shape") is None:
        return None
    shape = [int(v) for v in np.asarray(torch.as_tensor(image.meta["spatial_shape"]).cpu()).reshape(-1)]
    return tuple(shape) if len(shape) == spatial_dims else None


def outside_original_image(
    world: torch.Tensor, image: torch.Tensor, spacing: Sequence[float] | None = None
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Which landmarks ``(N, D)`` (world RAS mm) lie outside the original image of the preprocessed ``image``.

    A point is inside when its voxel coordinates in the original grid (:func:`original_affine`) are within the
    outer voxel faces ``[-0.5, size - 0.5]`` on every axis. Without the original shape (``meta["spatial_shape"]``)
    the preprocessed image's own grid is used. NaN rows are never outside.

    Returns:
        ``(N,)`` bool mask and the shape the points were checked against.
    """
    dims = world.shape[-1]
    world = torch.as_tensor(world, dtype=torch.float64).detach().cpu()
    shape = original_spatial_shape(image, dims)
    if shape is None:
        shape = tuple(int(s) for s in image.shape[1 : 1 + dims])
        voxels = world_to_voxel(world, image_affine(image, dims))
    else:
        voxels = world_to_voxel(world, original_affine(image, dims, spacing))
    size = torch.as_tensor(shape, dtype=torch.float64)
    eps = 1e-6
    outside = ((voxels < -0.5 - eps) | (voxels > size - 0.5 + eps)).any(dim=-1)
    return outside, shape


def heatmaps_to_voxels(heatmaps: torch.Tensor, method: str = "dark") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one image's heatmaps ``(N, *S)`` into voxel coordinates ``(N, D)`` and peak values ``(N,)`` (float64)."""
    h = heatmaps.as_tensor() if isinstance(heatmaps, MetaTensor) else torch.as_tensor(heatmaps)
    coords, values = decode_heatmaps(h.detach()[None].float(), method=method)
    return torch.as_tensor(coords)[0], torch.as_tensor(values)[0]


def _item_spacing(spacing: Any) -> list[float] | None:
    """A datalist item's spacing after collate/decollate (a list of numbers or of 1-element tensors), or None."""
    if spacing is None:
        return None
    return [float(torch.as_tensor(v).reshape(-1)[0]) for v in spacing]


def _file_name(image: Any) -> str:
    if isinstance(image, MetaTensor):
        return str(image.meta.get("filename_or_obj", "<image without filename>"))
    return "<image without filename>"


class HeatmapsToLandmarksd(MapTransform):
    """Replace heatmaps ``(N, *S)`` under ``keys`` by decoded world coordinates ``(N, D)`` (RAS mm, float64).

    A landmark decoded outside the original image (its maximum lies in padding that the preprocessing, e.g. the
    centre pad to the network's input size, or the sliding windows added) is not a detection in the image: with
    ``outside="missing"`` its row (world and voxel coordinates) becomes NaN and a warning names the image and
    the landmarks; see :func:`outside_original_image`.

    Args:
        keys: heatmap keys (default ``"pred"``).
        ref_key: key of the (preprocessed) image the heatmaps were computed on; its affine maps their voxels to
            world mm. Heatmaps and image must have the same spatial shape.
        method: decoder of :func:`mlm.heatmaps.decode_heatmaps` (``"dark"``, ``"quadratic"`` (Payer), ...).
        voxel_key_postfix: the voxel coordinates of the preprocessed grid are stored under ``f"{key}_{postfix}"``.
        values_key_postfix: the heatmap peak values ``(N,)`` are stored under ``f"{key}_{postfix}"``.
        heatmaps_key_postfix: when given, the heatmaps are kept under ``f"{key}_{postfix}"`` (for saving).
        outside: landmarks decoded outside the original image: ``"missing"`` (NaN row, logged warning) or
            ``"keep"`` (unchanged).
        spacing_key: key of a per-item pixel spacing (datalist ``"spacing"``) for the original grid of pixel-only
            images (see :func:`original_affine`), or None.
        names: landmark names used in the warning (default: indices).
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        ref_key: str = "image",
        method: str = "dark",
        voxel_key_postfix: str = "voxel",
        values_key_postfix: str = "values",
        heatmaps_key_postfix: str | None = None,
        outside: str = "missing",
        spacing_key: str | None = "spacing",
        names: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if outside not in ("missing", "keep"):
            raise ValueError(f"HeatmapsToLandmarksd: outside must be 'missing' or 'keep', got {outside!r}.")
        self.ref_key = ref_key
        self.method = method
        self.voxel_key_postfix = voxel_key_postfix
        self.values_key_postfix = values_key_postfix
        self.heatmaps_key_postfix = heatmaps_key_postfix
        self.outside = outside
        self.spacing_key = spacing_key
        self.names = None if names is None else [str(n) for n in names]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.ref_key]
        for key in self.key_iterator(d):
            heatmaps = d[key]
            if tuple(heatmaps.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"HeatmapsToLandmarksd: heatmaps {tuple(heatmaps.shape)} and image {tuple(image.shape)} of "
                    f"{_file_name(image)} have different spatial shapes."
                )
            voxels, values = heatmaps_to_voxels(heatmaps, self.method)
            # the preprocessed image's affine maps its voxels to world mm: no inverse preprocessing chain is needed
            world = voxel_to_world(voxels, image_affine(image, voxels.shape[-1]))
            if self.outside == "missing":
                spacing = _item_spacing(d.get(self.spacing_key)) if self.spacing_key else None
                outside, shape = outside_original_image(world, image, spacing)
                if bool(outside.any()):
                    idx = outside.nonzero().flatten().tolist()
                    which = [self.names[k] if self.names and k < len(self.names) else str(k) for k in idx]
                    logger.warning(
                        f"{_file_name(image)}: {len(idx)} of {outside.numel()} predicted landmarks lie outside the "
                        f"image (shape {shape}) and are marked missing: {', '.join(which)}."
                    )
                    world, voxels = world.clone(), voxels.clone()
                    world[outside] = float("nan")
                    voxels[outside] = float("nan")
            if self.heatmaps_key_postfix:
                d[f"{key}_{self.heatmaps_key_postfix}"] = heatmaps
            d[f"{key}_{self.voxel_key_postfix}"] = voxels
            d[f"{key}_{self.values_key_postfix}"] = values
            d[key] = world
        return d


class LandmarksToWorldd(MapTransform):
    """Replace landmarks ``(N, D)`` in voxel coordinates of the image under ``ref_key`` by world mm (RAS, float64).

    NaN rows (missing landmarks) stay NaN.
    """

    def __init__(self, keys: KeysCollection = "label", ref_key: str = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.ref_key]
        for key in self.key_iterator(d):
            lm = d[key]
            if lm is None:  # inference without ground truth
                continue
            lm = lm.as_tensor() if isinstance(lm, MetaTensor) else torch.as_tensor(lm)
            d[key] = voxel_to_world(lm.detach().cpu().double(), image_affine(image, lm.shape[-1]))
        return d


def landmark_record(
    world_ras: torch.Tensor | np.ndarray,
    names: Sequence[str] | None = None,
    original_affine_ras: torch.Tensor | np.ndarray | None = None,
    values: torch.Tensor | np.ndarray | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """The JSON content of one prediction file.

    ``points`` are world mm in **LPS** (``coordinate_system: "LPS"``; RAS with x and y negated), so the file is a
    landmark file of the project's format; ``voxel_points`` are array indices of the ORIGINAL image grid
    (index ``i`` = centre of voxel ``i``, axes in the order of the image array). NaN coordinates become ``null``.

    Args:
        world_ras: ``(N, D)`` world coordinates, RAS mm.
        names: ``N`` landmark names (default ``"0"``, ``"1"``, ...).
        original_affine_ras: ``(D+1, D+1)`` voxel-to-RAS affine of the image as read from disk.
        values: ``(N,)`` heatmap peak values.
        image: the image file name.
    """
    w = np.asarray(torch.as_tensor(world_ras).detach().cpu(), dtype=np.float64)
    n, dims = w.shape
    lps = w.copy()
    lps[:, :2] *= -1.0
    names = [str(k) for k in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"landmark_record: {len(names)} names for {n} landmarks (image {image}).")

    def rows(a: np.ndarray) -> list:
        return [None if not np.all(np.isfinite(p)) else [float(c) for c in p] for p in a]

    rec: dict[str, Any] = {
        "image": image,
        "coordinate_system": "LPS",
        "units": "mm",
        "convention": "world mm, LPS (ITK/DICOM): x right-to-left, y anterior-to-posterior"
        + (", z inferior-to-superior" if dims == 3 else ""),
        "names": names,
        "points": rows(lps),
    }
    if original_affine_ras is not None:
        vox = world_to_voxel(torch.as_tensor(w), torch.as_tensor(np.asarray(original_affine_ras), dtype=torch.float64))
        rec["voxel_coordinate_system"] = "voxel indices of the original image (index i = centre of voxel i)"
        rec["voxel_points"] = rows(np.asarray(vox))
    if values is not None:
        rec["values"] = [float(v) for v in np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64)]
    return rec


class SaveLandmarksd(MapTransform):
    """Write each image's predicted landmarks to ``output_dir/<id>_landmarks.json`` (atomically).

    The file holds world mm in LPS (see :func:`landmark_record`) and voxel coordinates of the original image grid;
    with ``save_heatmaps`` also ``<id>_heatmaps.nii.gz`` ``(S..., N)`` with the preprocessed image's affine.
    Files are written with :func:`transforms.io.atomic_write` (permissions follow the umask). An id whose file
    would resolve outside ``output_dir`` (``"../x"``, ``"/tmp/x"``) raises ``ValueError`` naming the id and the
    folder (:func:`transforms.io.output_path`); ids with sub-folders inside it are allowed.

    Args:
        keys: keys of the world coordinates ``(N, D)`` RAS mm (the output of :class:`HeatmapsToLandmarksd`).
        ref_key: key of the preprocessed image (its meta gives the file name and ``original_affine``).
        output_dir: folder of the prediction files (created).
        names: landmark names written to the files.
        id_key: key of the item id (datalist ``"id"``); without it the image file's stem is used.
        spacing_key: key of a per-item pixel spacing (datalist ``"spacing"``), used for the original grid of
            pixel-only images (see :func:`original_affine`).
        values_key_postfix: peak values are read from ``f"{key}_{postfix}"`` when present.
        save_heatmaps: also write the heatmaps (read from ``f"{key}_{heatmaps_key_postfix}"``).
        heatmaps_key_postfix: see :class:`HeatmapsToLandmarksd`.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        ref_key: str = "image",
        output_dir: str | os.PathLike = "./predictions",
        names: Sequence[str] | None = None,
        id_key: str = "id",
        spacing_key: str = "spacing",
        values_key_postfix: str = "values",
        save_heatmaps: bool = False,
        heatmaps_key_postfix: str = "heatmaps",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.output_dir = Path(output_dir)
        self.names = None if names is None else list(names)
        self.id_key = id_key
        self.spacing_key = spacing_key
        self.values_key_postfix = values_key_postfix
        self.save_heatmaps = save_heatmaps
        self.heatmaps_key_postfix = heatmaps_key_postfix

    def item_id(self, d: Mapping[Hashable, Any]) -> str:
        """The item's id, or its image file's name without extensions."""
        if d.get(self.id_key) is not None:
            return str(d[self.id_key])
        name = Path(_file_name(d[self.ref_key])).name
        return name.split(".")[0] or "image"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.ref_key]
        item = self.item_id(d)
        for key in self.key_iterator(d):
            world = torch.as_tensor(d[key])
            dims = world.shape[-1]
            rec = landmark_record(
                world,
                self.names,
                original_affine(image, dims, _item_spacing(d.get(self.spacing_key))),
                d.get(f"{key}_{self.values_key_postfix}"),
                _file_name(image),
            )
            suffix = "" if key == "pred" else f"_{key}"
            path = output_path(self.output_dir, f"{item}{suffix}_landmarks.json", item)
            atomic_write(path, json.dumps(rec, indent=2) + "\n")
            if self.save_heatmaps:
                hkey = f"{key}_{self.heatmaps_key_postfix}"
                if hkey not in d:
                    raise KeyError(
                        f"SaveLandmarksd: save_heatmaps=True but no {hkey!r} entry; set heatmaps_key_postfix in "
                        "HeatmapsToLandmarksd."
                    )
                self._save_heatmaps(
                    d[hkey], image, output_path(self.output_dir, f"{item}{suffix}_heatmaps.nii.gz", item)
                )
        return d

    @staticmethod
    def _save_heatmaps(heatmaps: torch.Tensor, image: torch.Tensor, path: Path) -> None:
        import nibabel as nib

        h = heatmaps.as_tensor() if isinstance(heatmaps, MetaTensor) else torch.as_tensor(heatmaps)
        arr = np.moveaxis(h.detach().cpu().float().numpy(), 0, -1)  # (*S, N): NIfTI keeps channels last
        dims = arr.ndim - 1
        aff = np.eye(4)
        a = image_affine(image, dims).numpy()
        aff[:dims, :dims], aff[:dims, 3] = a[:dims, :dims], a[:dims, dims]
        if dims == 2:
            arr = arr[:, :, None, :]
        atomic_write(path, lambda tmp: nib.save(nib.Nifti1Image(arr, aff), tmp))
