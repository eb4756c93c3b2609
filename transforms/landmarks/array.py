"""Array transforms that load landmarks and keep them in the voxel grid of the image they travel with.

Landmarks in memory are a ``MetaTensor`` of shape ``(N, D)`` (float64: a 1000-voxel coordinate in float32 is off
by up to 3e-5 voxel, which the evaluation in mm would see) in voxel coordinates of their
image (index ``i`` = centre of voxel ``i``), carrying in ``.affine`` the voxel-to-world (RAS mm) affine
of the grid they are expressed in. A missing landmark is a row of NaN.

Landmarks that :class:`LoadLandmarks` drops as outside their image (``outside="missing"``) are logged
(logger ``transforms.landmarks``, one warning each, naming the file, the landmark and its position),
and counted in the landmarks' meta (``num_landmarks_outside``, ``landmarks_outside``), which survives
caching, DataLoader workers and collation; :func:`dropped_landmark_counts` reads it back for a run summary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import TransformBackends

from transforms.geometry import affine_with_spacing, spatial_affine, to_ras, voxel_to_world, world_to_voxel
from transforms.io.landmark_files import (
    _check_coordinate_system,
    check_landmark_names,
    parse_point_list,
    read_landmark_file,
)

__all__ = [
    "LoadLandmarks",
    "TrackLandmarks",
    "SetSpacing",
    "spatial_affine",
    "image_name",
    "points_to_voxels",
    "outside_image",
    "dropped_landmark_counts",
]

OUTSIDE_MODES = ("error", "missing", "keep")

logger = logging.getLogger("transforms.landmarks")


def dropped_landmark_counts(landmarks: object) -> list[int]:
    """Landmarks :class:`LoadLandmarks` set to missing as outside their image, per item of ``landmarks``.

    Args:
        landmarks: the landmarks of one item (``MetaTensor`` ``(N, D)``) or of a collated batch
            (``(B, N, D)``, whose meta holds one count per item); anything without the meta counts as 0.

    Returns:
        one count per item (a list of length 1 for a single item, B for a batch).
    """
    meta = getattr(landmarks, "meta", None) or {}
    count = meta.get("num_landmarks_outside", 0)
    batch = int(landmarks.shape[0]) if isinstance(landmarks, torch.Tensor) and landmarks.ndim == 3 else 1
    if isinstance(count, torch.Tensor | np.ndarray | list | tuple):
        values = [int(c) for c in np.asarray(count).reshape(-1)]
        return values if len(values) == batch else [sum(values)] + [0] * (batch - 1)
    return [int(count)] + [0] * (batch - 1)


def points_to_voxels(points: np.ndarray, coordinate_system: str, affine: np.ndarray) -> np.ndarray:
    """Points of a landmark file as voxel coordinates of an image.

    Args:
        points: ``(N, D)`` coordinates (NaN rows stay NaN).
        coordinate_system: ``"LPS"`` or ``"RAS"`` (mm, :func:`transforms.geometry.to_ras`) or ``"voxel"`` (returned
            as is).
        affine: ``(D+1, D+1)`` voxel-to-world RAS affine of the image (:func:`transforms.geometry.spatial_affine`).

    Returns:
        ``(N, D)`` float64 voxel coordinates (index ``i`` = centre of voxel ``i``).
    """
    points = np.asarray(points, dtype=np.float64)
    if coordinate_system == "voxel":
        return points.copy()
    return world_to_voxel(to_ras(points, coordinate_system), np.asarray(affine, dtype=np.float64))


def outside_image(voxels: np.ndarray, spatial_shape: Sequence[int]) -> np.ndarray:
    """Indices of the rows of ``voxels`` ``(N, D)`` beyond the image's outer voxel faces ``[-0.5, size - 0.5]``.

    NaN rows (missing landmarks) are never outside.
    """
    size = np.asarray(spatial_shape, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(((voxels < -0.5) | (voxels > size - 0.5)).any(axis=1))


def image_name(img: torch.Tensor) -> str:
    """The image's ``filename_or_obj`` meta entry, or ``"<image without filename>"``."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return "<image without filename>"


def _label(k: int, names: Sequence[str], named: bool) -> str:
    """``"landmark 3"`` or, when the file names its landmarks, ``"landmark 3 (porion)"``."""
    return f"landmark {k} ({names[k]})" if named and names[k] else f"landmark {k}"


class LoadLandmarks:
    """Load landmarks from a file (or an inline list) into voxel coordinates of a reference image.

    Physical points are mapped with the inverse of the image's MetaTensor affine, which MONAI keeps
    in RAS; LPS points have their first two coordinates negated first.

    Args:
        num_landmarks: expected number of landmarks ``N`` (rows, missing ones included); None accepts any.
        coordinate_system: convention of files (and inline lists) that do not state one: ``"LPS"``,
            ``"RAS"`` or ``"voxel"``. Inline lists default to ``"voxel"``. A per-call ``coordinate_system``
            (a datalist item's) takes precedence.
        outside: what to do with a landmark outside the image (beyond the outer voxel faces,
            ``[-0.5, size - 0.5]``): ``"error"`` raises, ``"missing"`` sets its row to NaN (logged as a
            warning and counted, see the module docstring), ``"keep"`` keeps it.
        landmark_names: the names the dataset declares (a datalist's ``landmark_names``); a file that
            names its landmarks otherwise, or in another order, raises. None: not checked.

    Call with ``(landmarks, image[, coordinate_system])``: ``landmarks`` a path or an ``(N, D)``
    list/array (``null``/NaN rows missing), ``image`` a channel-first ``MetaTensor`` ``(C, *S)``,
    ``coordinate_system`` the item's convention (must agree with the one the file states). Returns a
    ``MetaTensor`` ``(N, D)`` float64 in voxel coordinates of ``image`` with the image's affine and meta
    ``filename_or_obj`` (the landmark file), ``image_filename``, ``coordinate_system`` (of the source),
    ``landmark_names``, ``num_landmarks_outside`` (rows set to NaN as outside the image) and
    ``landmarks_outside`` (their indices, comma-separated, ``""`` if none).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        num_landmarks: int | None = None,
        coordinate_system: str | None = None,
        outside: str = "error",
        landmark_names: Sequence[str] | None = None,
    ) -> None:
        if outside not in OUTSIDE_MODES:
            raise ValueError(f"outside must be one of {OUTSIDE_MODES}, got {outside!r}.")
        if landmark_names is not None and num_landmarks is not None and len(landmark_names) != num_landmarks:
            raise ValueError(f"{len(landmark_names)} landmark_names for num_landmarks={num_landmarks}.")
        self.num_landmarks = num_landmarks
        self.coordinate_system = _check_coordinate_system(coordinate_system, "LoadLandmarks")
        self.outside = outside
        self.landmark_names = None if landmark_names is None else [str(n) for n in landmark_names]

    def __call__(
        self,
        landmarks: str | os.PathLike | Sequence | np.ndarray | torch.Tensor,
        image: torch.Tensor,
        coordinate_system: str | None = None,
    ) -> MetaTensor:
        img_name = image_name(image)
        item_cs = _check_coordinate_system(coordinate_system, f"image {img_name}: the item's coordinate_system")
        if isinstance(landmarks, str | os.PathLike):
            if item_cs is not None:
                lf = read_landmark_file(landmarks, item_cs, coordinate_system_source="the datalist item")
            else:
                lf = read_landmark_file(landmarks, self.coordinate_system, coordinate_system_source="the transform")
            source, points, cs, names, named = str(landmarks), lf.points, lf.coordinate_system, lf.names, lf.has_names
        else:
            source = f"<inline landmarks of {img_name}>"
            points = parse_point_list(landmarks, source)
            cs, names, named = item_cs or self.coordinate_system or "voxel", [str(k) for k in range(len(points))], False
        spatial_dims = image.ndim - 1
        if spatial_dims not in (2, 3):
            raise ValueError(
                f"image {img_name}: expected a channel-first 2D or 3D image, got shape {tuple(image.shape)}."
            )
        n, d = points.shape
        if self.num_landmarks is not None and n != self.num_landmarks:
            hint = " (a blank CSV row is a missing landmark)" if source.lower().endswith(".csv") else ""
            raise ValueError(
                f"landmark file {source}: {n} landmarks, expected {self.num_landmarks} (image {img_name}){hint}."
            )
        if d != spatial_dims:
            raise ValueError(
                f"landmark file {source}: {d}D landmarks do not match the {spatial_dims}D image {img_name}."
            )
        if named and self.landmark_names is not None:
            check_landmark_names(names, self.landmark_names, f"landmark file {source}")
        affine_full = image.affine if isinstance(image, MetaTensor) else torch.eye(spatial_dims + 1)
        voxels = points_to_voxels(points, cs, spatial_affine(affine_full, spatial_dims))
        outside = outside_image(voxels, image.shape[1:])
        if outside.size and self.outside == "error":
            k = int(outside[0])
            raise ValueError(
                f"landmark file {source}: {_label(k, names, named)} at {points[k].tolist()} ({cs}) lies outside the "
                f"image {img_name} (voxel {np.round(voxels[k], 3).tolist()}, image size {tuple(image.shape[1:])})."
            )
        dropped = outside.tolist() if self.outside == "missing" else []
        for k in dropped:
            logger.warning(
                "landmark file %s: %s at %s (%s) lies outside the image %s (voxel %s, image size %s); set to missing.",
                source,
                _label(k, names, named),
                points[k].tolist(),
                cs,
                img_name,
                np.round(voxels[k], 3).tolist(),
                tuple(image.shape[1:]),
            )
        if dropped:
            voxels[outside] = np.nan
        meta = {
            "filename_or_obj": source,
            "image_filename": img_name,
            "coordinate_system": cs,
            "landmark_names": list(names),
            "num_landmarks_outside": len(dropped),
            "landmarks_outside": ",".join(str(k) for k in dropped),
        }
        return MetaTensor(torch.as_tensor(voxels, dtype=torch.float64), affine=affine_full.clone(), meta=meta)


class TrackLandmarks:
    """Re-express landmarks in the current voxel grid of their image after affine-type spatial transforms.

    ``new = inv(A_image) @ A_landmarks @ old``, then the landmarks' affine becomes ``A_image``. Because
    the landmarks remember the grid they are expressed in, applying this twice changes nothing
    (no double application, unlike mixing ``ApplyTransformToPoints(invert_affine=...)`` calls).
    Valid for every MONAI transform that resamples the image on an affine grid and records it in the
    MetaTensor affine (Spacing, Orientation, Resize, Zoom, Rotate, Flip, crops, pads, RandAffine);
    not for elastic transforms (use ``RandLandmarkElastic``).

    Call with ``(landmarks, image)``: ``landmarks`` a ``MetaTensor`` ``(N, D)`` (or ``(B, N, D)`` with
    ``(B, 4, 4)`` affines), ``image`` a ``MetaTensor`` ``(C, *S)`` (or ``(B, C, *S)``). Returns
    landmarks of the same shape and dtype with the image's affine. NaN rows stay NaN.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, landmarks: torch.Tensor, image: torch.Tensor) -> MetaTensor:
        if not isinstance(landmarks, MetaTensor) or not isinstance(image, MetaTensor):
            raise TypeError(
                "TrackLandmarks needs MetaTensor landmarks and image (load them with LoadLandmarks and LoadImage); "
                f"got {type(landmarks).__name__} and {type(image).__name__} (image {image_name(image)})."
            )
        d = landmarks.shape[-1]
        a_img = spatial_affine(image.affine, d)
        a_lm = spatial_affine(landmarks.affine, d)
        if a_img.ndim != a_lm.ndim:
            raise ValueError(f"image {image_name(image)}: batched and unbatched affines cannot be mixed.")
        out = landmarks.clone()
        if not np.array_equal(a_img, a_lm):  # already in the image's grid: unchanged, bit for bit
            m = np.linalg.inv(a_img) @ a_lm
            moved = voxel_to_world(landmarks.detach().cpu().numpy().astype(np.float64), m)  # (B, N, D), (B, D+1, D+1)
            out.data = torch.as_tensor(moved, dtype=landmarks.dtype, device=landmarks.device)
        out.affine = image.affine.clone()
        return out


class SetSpacing:
    """Give an image without physical metadata (BMP, PNG, JPEG) its pixel spacing.

    Scales the affine's spatial columns so that the voxel spacing becomes ``spacing`` (mm) while
    keeping the axis directions and the origin. The pixel data is unchanged.

    Call with ``(image, spacing)``: ``image`` a ``MetaTensor`` ``(C, *S)``, ``spacing`` ``D`` floats (mm).
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, image: torch.Tensor, spacing: Sequence[float]) -> MetaTensor:
        spatial_dims = image.ndim - 1
        sp = np.asarray(spacing, dtype=np.float64).ravel()
        if sp.size != spatial_dims or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
            raise ValueError(
                f"image {image_name(image)}: spacing must be {spatial_dims} positive numbers (mm), got {list(spacing)}."
            )
        img = image if isinstance(image, MetaTensor) else MetaTensor(image)
        out = img.clone()
        out.affine = torch.as_tensor(affine_with_spacing(img.affine, sp), dtype=torch.float64)
        out.meta["spatial_units"] = "mm"  # a physical pixel size now, also for a PNG/JPEG/BMP file
        return out
