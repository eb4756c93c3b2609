"""Landmark patches (array form): fixed-size, fixed-spacing patches centred at world points, with the landmarks
re-expressed in each patch's voxel grid; a random form for training a refinement stage around landmarks.

See :mod:`transforms.patches.functional` for the geometry (patch affines) and the resampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Randomizable, Transform
from monai.utils import TransformBackends

from transforms.geometry import spatial_affine, voxel_to_world
from transforms.patches.functional import (
    PATCH_AXES,
    PATCH_INTERPOLATION_MODES,
    PATCH_PADDING_MODES,
    isotropic_offsets,
    patch_affines,
    points_to_patches,
    rotation_matrices,
    sample_patches,
)

__all__ = ["LandmarkPatches", "RandLandmarkPatches", "PATCH_SAMPLING"]

#: how :class:`RandLandmarkPatches` chooses the landmarks to centre patches on.
PATCH_SAMPLING = ("uniform", "all")


def _name(img: torch.Tensor) -> str:
    if isinstance(img, MetaTensor) and img.meta.get("filename_or_obj"):
        return str(img.meta["filename_or_obj"])
    return "<image without filename>"


def _full_affines(image: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """Patch affines ``(K, D+1, D+1)`` in the image's affine format (MONAI's 4x4 for 2D: rows/columns [0, 1, 3])."""
    num, dims = affines.shape[0], affines.shape[-1] - 1
    base = image.affine if isinstance(image, MetaTensor) else torch.eye(dims + 1)
    full = torch.as_tensor(
        np.asarray(base.detach().cpu() if isinstance(base, torch.Tensor) else base), dtype=torch.float64
    )
    r = full.shape[-1] - 1
    out = full.clone().repeat(num, 1, 1)
    idx = torch.as_tensor([*range(dims), r])
    out[:, idx[:, None], idx[None, :]] = affines
    return out


def _batch(data: torch.Tensor, affines: torch.Tensor, meta: dict) -> MetaTensor:
    """A batched ``MetaTensor`` ``(K, ...)`` of ``data``, one affine per item and ``meta`` batched as MONAI collates it
    (so that ``decollate_batch`` and indexing give each item its own affine and the shared meta)."""
    if data.shape[0] == 0:
        out = MetaTensor(data, affine=affines, meta=dict(meta))
        out.is_batch = True
        return out
    return list_data_collate([MetaTensor(data[k], affine=affines[k], meta=dict(meta)) for k in range(data.shape[0])])


class LandmarkPatches(Transform):
    """Patches of ``patch_size`` voxels at ``spacing`` mm centred at world points (inference form, no randomness).

    The patch axes are the image's axes (or the world axes, ``axes="world"``); patch voxel ``(P - 1) / 2`` lies at the
    centre. Optional per-patch rotations
    (about the centre) and isotropic scales are what :class:`RandLandmarkPatches` draws. Each patch carries its own
    affine, so patch voxel coordinates map to world mm exactly; see :mod:`transforms.patches.functional`.

    Args:
        patch_size: ``P``, voxels per axis (``D`` ints; e.g. ``(64, 64)``).
        spacing: patch voxel size, mm (float or ``D`` floats; e.g. 0.25 in 2D cephalograms).
        mode: ``"bilinear"`` (trilinear in 3D), ``"nearest"`` or ``"bicubic"`` (2D).
        padding_mode: outside the image: ``"border"`` (default), ``"zeros"`` or ``"constant"`` (``pad_value``).
        pad_value: value of ``"constant"`` padding, in the image's intensity units.
        anti_aliasing: smooth the image where the patch is coarser than it (Gaussian, sigma ``(r - 1) / 2`` voxels).
        axes: ``"image"``: the patch axes are the image's (default); ``"world"``: the RAS axes, so that 3D volumes
            stored in any orientation give the same patches (see :mod:`transforms.patches.functional`).

    Call with ``(img, centers, landmarks=None, rotations=None, scales=None)``:

    - ``img``: ``(C, *S)`` image (a ``MetaTensor`` with its voxel-to-world affine; a plain tensor has the identity);
      any real dtype (``uint8`` stays ``uint8`` outside the patches' windows).
    - ``centers``: ``(K, D)`` world mm (RAS, the affine's frame), finite.
    - ``landmarks``: ``(N, D)`` voxel coordinates of ``img`` (a ``MetaTensor`` uses its own affine), NaN rows missing.
    - ``rotations``: ``(K, D, D)`` rotation matrices; ``scales``: ``(K,)`` factors of the spacing.

    Returns the patches, a ``MetaTensor`` ``(K, C, *P)`` (float32) with ``is_batch=True`` and one affine per patch
    (``(K, 4, 4)`` for 2D images, like MONAI), ``decollate_batch`` gives one patch each; with ``landmarks`` also a
    ``MetaTensor`` ``(K, N, D)`` float32 of their voxel coordinates in each patch, with the same affines (a landmark
    beyond a patch's outer voxel faces is NaN there).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        patch_size: Sequence[int],
        spacing: float | Sequence[float],
        mode: str = "bilinear",
        padding_mode: str = "border",
        pad_value: float = 0.0,
        anti_aliasing: bool = True,
        axes: str = "image",
    ) -> None:
        size = tuple(int(p) for p in patch_size)
        if len(size) not in (2, 3) or any(p < 2 for p in size):
            raise ValueError(f"patch_size must be 2 or 3 ints >= 2, got {patch_size}.")
        sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
        if sp.size not in (1, len(size)) or np.any(sp <= 0) or not np.all(np.isfinite(sp)):
            raise ValueError(f"spacing must be a positive float or {len(size)} of them (mm), got {spacing}.")
        if mode not in PATCH_INTERPOLATION_MODES:
            raise ValueError(f"mode must be one of {PATCH_INTERPOLATION_MODES}, got {mode!r}.")
        if padding_mode not in PATCH_PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PATCH_PADDING_MODES}, got {padding_mode!r}.")
        self.patch_size = size
        self.spacing = tuple(float(s) for s in np.broadcast_to(sp, (len(size),)))
        self.mode = mode
        self.padding_mode = padding_mode
        self.pad_value = float(pad_value)
        self.anti_aliasing = bool(anti_aliasing)
        if axes not in PATCH_AXES:
            raise ValueError(f"axes must be one of {PATCH_AXES}, got {axes!r}.")
        self.axes = axes

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    def _check_image(self, img: torch.Tensor) -> None:
        if img.ndim != self.spatial_dims + 1:
            raise ValueError(
                f"image {_name(img)}: {self.spatial_dims}D patches need a channel-first {self.spatial_dims}D image "
                f"(C, *S), got shape {tuple(img.shape)}."
            )

    def affines(self, img: torch.Tensor, centers, rotations=None, scales=None) -> torch.Tensor:
        """The patches' voxel-to-world affines ``(K, D+1, D+1)`` float64 (see ``patch_affines``)."""
        self._check_image(img)
        affine = img.affine if isinstance(img, MetaTensor) else torch.eye(self.spatial_dims + 1)
        c = torch.as_tensor(np.asarray(centers.detach().cpu() if isinstance(centers, torch.Tensor) else centers))
        if c.ndim != 2 or c.shape[1] != self.spatial_dims:
            raise ValueError(
                f"image {_name(img)}: centers must be (K, {self.spatial_dims}) world mm, got {tuple(c.shape)}."
            )
        if not bool(torch.isfinite(c).all()):
            bad = (~torch.isfinite(c).all(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"image {_name(img)}: patch centres {bad} are not finite (drop missing landmarks first).")
        return patch_affines(c, self.patch_size, self.spacing, affine, rotations, scales, self.axes)

    def landmarks_world(self, landmarks: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` voxel landmarks of ``img`` in world mm (float64), through their own affine when they carry one."""
        ref = landmarks if isinstance(landmarks, MetaTensor) else img
        affine = ref.affine if isinstance(ref, MetaTensor) else torch.eye(self.spatial_dims + 1)
        pts = landmarks.as_subclass(torch.Tensor) if isinstance(landmarks, torch.Tensor) else torch.as_tensor(landmarks)
        if pts.ndim != 2 or pts.shape[1] != self.spatial_dims:
            raise ValueError(
                f"image {_name(img)}: landmarks must be (N, {self.spatial_dims}) voxel coordinates, got {tuple(pts.shape)}."
            )
        return voxel_to_world(
            pts.detach().cpu().to(torch.float64), torch.as_tensor(spatial_affine(affine, self.spatial_dims))
        )

    def __call__(
        self,
        img: torch.Tensor,
        centers,
        landmarks: torch.Tensor | None = None,
        rotations=None,
        scales=None,
    ) -> MetaTensor | tuple[MetaTensor, MetaTensor]:
        affines = self.affines(img, centers, rotations, scales)
        base = img.affine if isinstance(img, MetaTensor) else torch.eye(self.spatial_dims + 1)
        data = sample_patches(
            img, base, affines, self.patch_size, self.mode, self.padding_mode, self.pad_value, self.anti_aliasing
        )
        if data.dtype != torch.float64:
            data = data.to(torch.float32)
        full = _full_affines(img, affines)
        meta = {k: v for k, v in img.meta.items() if k != "affine"} if isinstance(img, MetaTensor) else {}
        patches = _batch(data, full, meta)
        if landmarks is None:
            return patches
        world = self.landmarks_world(landmarks, img)
        inside = points_to_patches(world, affines, self.patch_size).to(torch.float32)
        lm_meta = (
            {k: v for k, v in landmarks.meta.items() if k != "affine"} if isinstance(landmarks, MetaTensor) else {}
        )
        return patches, _batch(inside, full, lm_meta)


class RandLandmarkPatches(Randomizable, Transform):
    """Random patches around the landmarks, for training a refinement stage on a global stage's realistic errors.

    Each patch is centred at a present landmark ``k``'s true world position plus a random offset drawn from the
    global stage's error distribution (isotropic, per-axis scale ``offset_sigma`` mm; Student t with ``offset_df``
    degrees of freedom for a heavier tail; clipped to ``max_offset`` mm), rotated about its centre by
    ``U(-rotate_range, rotate_range)`` rad and scaled by ``1 + U(-scale_range, scale_range)``. Its label is EVERY
    landmark in patch voxel coordinates, NaN for those outside the patch (missing): with
    ``SCNHeatmapLoss(mask_missing=True)`` the network learns every landmark visible in the patch.

    For an isotropic error with per-axis standard deviation ``sigma``, the mean radial error is about ``1.25 sigma``
    in 2D and ``1.60 sigma`` in 3D: a global stage with MRE 2.5 mm in 2D suggests ``offset_sigma`` 2.0 mm.

    Args:
        patch_size, spacing, mode, padding_mode, pad_value, anti_aliasing, axes: as :class:`LandmarkPatches`.
        offset_sigma: per-axis scale of the centre offset, mm: a float, or N floats (one per landmark).
        offset_df: Student t degrees of freedom (e.g. 3 for a heavy tail), None for Gaussian.
        max_offset: largest offset length, mm (None: no clipping). Half the patch extent keeps the landmark inside.
        rotate_range: half-range of the rotation, rad (2D: a float; 3D: a float or 3, about each axis).
            0.26 rad is 15 degrees.
        scale_range: half-range of the isotropic scale of the patch spacing (0.1: +-10%).
        num_samples: patches per call with ``sampling="uniform"``.
        sampling: ``"uniform"`` (``num_samples`` landmarks drawn uniformly, with replacement, among the present
            ones) or ``"all"`` (one patch per present landmark, in landmark order; ``num_samples`` is ignored).

    Call with ``(img, landmarks, randomize=True)``: ``img`` ``(C, *S)``, ``landmarks`` ``(N, D)`` voxel coordinates
    of ``img`` (NaN rows missing). Returns ``(patches (K, C, *P), landmarks (K, N, D))`` as
    :class:`LandmarkPatches`; after the call ``landmark_indices`` ``(K,)`` holds the landmark each patch is centred
    on, ``offsets`` ``(K, D)`` the drawn offsets (mm). An image without any present landmark raises ``ValueError``.
    """

    backend = LandmarkPatches.backend

    def __init__(
        self,
        patch_size: Sequence[int],
        spacing: float | Sequence[float],
        offset_sigma: float | Sequence[float] = 2.0,
        offset_df: float | None = None,
        max_offset: float | None = None,
        rotate_range: float | Sequence[float] = 0.26,
        scale_range: float = 0.1,
        num_samples: int = 1,
        sampling: str = "uniform",
        mode: str = "bilinear",
        padding_mode: str = "border",
        pad_value: float = 0.0,
        anti_aliasing: bool = True,
        axes: str = "image",
    ) -> None:
        self.patcher = LandmarkPatches(patch_size, spacing, mode, padding_mode, pad_value, anti_aliasing, axes)
        dims = self.patcher.spatial_dims
        sig = np.atleast_1d(np.asarray(offset_sigma, dtype=np.float64))
        if np.any(sig < 0) or not np.all(np.isfinite(sig)):
            raise ValueError(f"offset_sigma must be >= 0 mm, got {offset_sigma}.")
        if offset_df is not None and offset_df <= 0:
            raise ValueError(f"offset_df must be positive (or None for Gaussian), got {offset_df}.")
        if max_offset is not None and max_offset < 0:
            raise ValueError(f"max_offset must be >= 0 mm, got {max_offset}.")
        rot = np.atleast_1d(np.asarray(rotate_range, dtype=np.float64))
        num_angles = 1 if dims == 2 else 3
        if rot.size not in (1, num_angles) or np.any(rot < 0):
            raise ValueError(f"rotate_range must be a float >= 0 or {num_angles} of them (rad), got {rotate_range}.")
        if not 0 <= scale_range < 1:
            raise ValueError(f"scale_range must be in [0, 1), got {scale_range}.")
        if sampling not in PATCH_SAMPLING:
            raise ValueError(f"sampling must be one of {PATCH_SAMPLING}, got {sampling!r}.")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        self.offset_sigma = sig
        self.offset_df = None if offset_df is None else float(offset_df)
        self.max_offset = None if max_offset is None else float(max_offset)
        self.rotate_range = np.broadcast_to(rot, (num_angles,)).copy()
        self.scale_range = float(scale_range)
        self.num_samples = int(num_samples)
        self.sampling = sampling
        self.landmark_indices = np.zeros(0, dtype=np.int64)
        self.offsets = np.zeros((0, dims))
        self.angles = np.zeros((0, num_angles))
        self.scales = np.ones(0)

    @property
    def spatial_dims(self) -> int:
        return self.patcher.spatial_dims

    def randomize(self, data: torch.Tensor | np.ndarray | None = None) -> None:
        """Draw the patches' landmarks, offsets, rotations and scales.

        Args:
            data: ``(N,)`` bool mask of the present landmarks, or the landmarks ``(N, D)`` (NaN rows missing).
        """
        if data is None:
            raise ValueError("RandLandmarkPatches.randomize needs the landmarks (or their present mask).")
        arr = np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data)
        present = arr.astype(bool) if arr.ndim == 1 else ~np.isnan(arr.astype(np.float64)).any(axis=1)
        candidates = np.flatnonzero(present)
        if candidates.size == 0:
            raise ValueError("RandLandmarkPatches: no present landmark to centre a patch on (all rows are NaN).")
        if self.sampling == "all":
            idx = candidates
        else:
            idx = candidates[self.R.randint(0, candidates.size, size=self.num_samples)]
        num, dims = idx.size, self.spatial_dims
        if self.offset_sigma.size not in (1, present.size):
            raise ValueError(f"offset_sigma has {self.offset_sigma.size} values for {present.size} landmarks.")
        sigma = self.offset_sigma if self.offset_sigma.size == 1 else self.offset_sigma[idx]
        self.landmark_indices = idx.astype(np.int64)
        self.offsets = isotropic_offsets(self.R, num, dims, sigma, self.offset_df, self.max_offset)
        self.angles = self.R.uniform(-1.0, 1.0, size=(num, self.rotate_range.size)) * self.rotate_range
        self.scales = 1.0 + self.R.uniform(-self.scale_range, self.scale_range, size=num)

    def __call__(
        self, img: torch.Tensor, landmarks: torch.Tensor, randomize: bool = True
    ) -> tuple[MetaTensor, MetaTensor]:
        world = self.patcher.landmarks_world(landmarks, img)
        if randomize:
            self.randomize(world)
        centers = world[torch.as_tensor(self.landmark_indices)] + torch.as_tensor(self.offsets)
        rotations = rotation_matrices(self.angles, self.spatial_dims)
        return self.patcher(img, centers, landmarks, rotations, torch.as_tensor(self.scales))
