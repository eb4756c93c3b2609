"""Array transforms that load landmarks and keep them in the voxel grid of the image they travel with.

Landmarks in memory are a ``MetaTensor`` of shape ``(N, D)`` (float32) in voxel coordinates of their
image (index ``i`` = centre of voxel ``i``), carrying in ``.affine`` the voxel-to-world (RAS mm) affine
of the grid they are expressed in. A missing landmark is a row of NaN.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import TransformBackends

from transforms.io.landmark_files import _check_coordinate_system, read_landmark_file

__all__ = [
    "LoadLandmarks",
    "TrackLandmarks",
    "SetSpacing",
    "spatial_affine",
    "image_name",
]

OUTSIDE_MODES = ("error", "missing", "keep")


def image_name(img: torch.Tensor) -> str:
    """The image's ``filename_or_obj`` meta entry, or ``"<image without filename>"``."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return "<image without filename>"


def spatial_affine(affine: torch.Tensor | np.ndarray, spatial_dims: int) -> np.ndarray:
    """The ``(D+1, D+1)`` float64 voxel-to-world affine of the first ``D`` spatial axes.

    MONAI keeps a 4x4 affine for 2D images; this takes its rows/columns ``[0, 1, 3]``
    (the in-plane part and the translation), like ``monai.data.utils.to_affine_nd``.

    Args:
        affine: ``(R+1, R+1)`` affine, ``R >= spatial_dims``.
        spatial_dims: ``D``, 2 or 3.
    """
    a = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    a = a.astype(np.float64)
    r = a.shape[-1] - 1
    if r < spatial_dims:
        raise ValueError(f"affine of shape {a.shape} cannot describe {spatial_dims}D points.")
    idx = [*range(spatial_dims), r]
    return a[..., idx, :][..., :, idx]


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``affine`` ``(D+1, D+1)`` applied to ``points`` ``(N, D)`` (NaN rows stay NaN)."""
    return points @ affine[:-1, :-1].T + affine[:-1, -1]


class LoadLandmarks:
    """Load landmarks from a file (or an inline list) into voxel coordinates of a reference image.

    Physical points are mapped with the inverse of the image's MetaTensor affine, which MONAI keeps
    in RAS; LPS points have their first two coordinates negated first.

    Args:
        num_landmarks: expected number of landmarks ``N`` (rows, missing ones included); None accepts any.
        coordinate_system: convention of files (and inline lists) that do not state one: ``"LPS"``,
            ``"RAS"`` or ``"voxel"``. Inline lists default to ``"voxel"``.
        outside: what to do with a landmark outside the image (beyond the outer voxel faces,
            ``[-0.5, size - 0.5]``): ``"error"`` raises, ``"missing"`` sets its row to NaN,
            ``"keep"`` keeps it.

    Call with ``(landmarks, image)``: ``landmarks`` a path or an ``(N, D)`` list/array, ``image`` a
    channel-first ``MetaTensor`` ``(C, *S)``. Returns a ``MetaTensor`` ``(N, D)`` float32 in voxel
    coordinates of ``image`` with the image's affine and meta ``filename_or_obj`` (the landmark file),
    ``image_filename``, ``coordinate_system`` (of the source), ``landmark_names``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, num_landmarks: int | None = None, coordinate_system: str | None = None, outside: str = "error"
    ) -> None:
        if outside not in OUTSIDE_MODES:
            raise ValueError(f"outside must be one of {OUTSIDE_MODES}, got {outside!r}.")
        self.num_landmarks = num_landmarks
        self.coordinate_system = _check_coordinate_system(coordinate_system, "LoadLandmarks")
        self.outside = outside

    def __call__(self, landmarks: str | os.PathLike | Sequence | np.ndarray | torch.Tensor, image: torch.Tensor):
        if isinstance(landmarks, str | os.PathLike):
            lf = read_landmark_file(landmarks, self.coordinate_system)
            source, points, cs, names = str(landmarks), lf.points, lf.coordinate_system, lf.names
        else:
            source = "<inline landmarks>"
            rows = landmarks.tolist() if isinstance(landmarks, np.ndarray | torch.Tensor) else list(landmarks)
            dim = max((len(p) for p in rows if p is not None), default=0)
            rows = [[np.nan] * dim if p is None else [np.nan if c is None else float(c) for c in p] for p in rows]
            points = np.asarray(rows, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] not in (2, 3):
                raise ValueError(f"{source}: expected an (N, 2) or (N, 3) list of points, got shape {points.shape}.")
            cs, names = self.coordinate_system or "voxel", [str(k) for k in range(len(points))]
        img_name = image_name(image)
        spatial_dims = image.ndim - 1
        if spatial_dims not in (2, 3):
            raise ValueError(
                f"image {img_name}: expected a channel-first 2D or 3D image, got shape {tuple(image.shape)}."
            )
        n, d = points.shape
        if self.num_landmarks is not None and n != self.num_landmarks:
            raise ValueError(
                f"landmark file {source}: {n} landmarks, expected {self.num_landmarks} (image {img_name})."
            )
        if d != spatial_dims:
            raise ValueError(
                f"landmark file {source}: {d}D landmarks do not match the {spatial_dims}D image {img_name}."
            )
        affine_full = image.affine if isinstance(image, MetaTensor) else torch.eye(spatial_dims + 1)
        affine = spatial_affine(affine_full, spatial_dims)
        if cs == "voxel":
            voxels = points.copy()
        else:
            world = points.copy()
            if cs == "LPS":
                world[:, :2] *= -1.0
            voxels = _apply(np.linalg.inv(affine), world)
        size = np.asarray(image.shape[1:], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            outside = np.flatnonzero(((voxels < -0.5) | (voxels > size - 0.5)).any(axis=1))
        if outside.size and self.outside == "error":
            k = int(outside[0])
            raise ValueError(
                f"landmark file {source}: landmark {k} at {points[k].tolist()} ({cs}) lies outside the image "
                f"{img_name} (voxel {np.round(voxels[k], 3).tolist()}, image size {image.shape[1:]})."
            )
        if outside.size and self.outside == "missing":
            voxels[outside] = np.nan
        meta = {
            "filename_or_obj": source,
            "image_filename": img_name,
            "coordinate_system": cs,
            "landmark_names": list(names),
        }
        out = MetaTensor(torch.as_tensor(voxels, dtype=torch.float32), affine=affine_full.clone(), meta=meta)
        return out


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
        m = np.linalg.inv(a_img) @ a_lm
        pts = landmarks.detach().cpu().numpy().astype(np.float64)
        if m.ndim == 3:
            moved = np.einsum("bij,bnj->bni", m[:, :-1, :-1], pts) + m[:, None, :-1, -1]
        else:
            moved = _apply(m, pts)
        out = landmarks.clone()
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
        affine = img.affine.detach().cpu().numpy().astype(np.float64).copy()
        cols = affine[:spatial_dims, :spatial_dims]
        norms = np.linalg.norm(cols, axis=0)
        norms[norms == 0] = 1.0
        affine[:spatial_dims, :spatial_dims] = cols / norms * sp
        out = img.clone()
        out.affine = torch.as_tensor(affine, dtype=torch.float64)
        return out
