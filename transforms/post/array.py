"""Array post-transforms of landmark detection: heatmaps -> landmarks (world mm), voxels -> world mm, saving.

They invert what the preprocessing did, without an inverse chain: the affine of the preprocessed image maps its
voxels to world mm directly (every MONAI spatial transform updates it), so world mm are the same in the original
image. Landmarks are ``(N, D)`` float64 tensors, NaN rows missing; world coordinates are RAS mm (MONAI's
convention) in memory and LPS mm in the files (:mod:`transforms.io.prediction_files`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Transform
from monai.utils import TransformBackends

from transforms.geometry import (
    image_affine,
    original_affine,
    original_spatial_shape,
    voxel_to_world,
    world_to_voxel,
)
from transforms.heatmap.decoding import DECODING_METHODS, decode_heatmaps
from transforms.heatmap.voting import vote_landmarks
from transforms.io.atomic import atomic_write, output_path
from transforms.io.prediction_files import PREDICTION_SUFFIX, landmark_record
from transforms.landmarks.array import image_name

__all__ = [
    "VOTING_METHODS",
    "heatmaps_to_voxels",
    "outside_original_image",
    "HeatmapsToLandmarks",
    "LandmarksToWorld",
    "SaveLandmarks",
]

logger = logging.getLogger("transforms.post")

OUTSIDE_MODES = ("missing", "keep")
#: decoders of heatmap + offset outputs ``(N * (1 + D), *S)`` (:func:`transforms.heatmap.voting.vote_landmarks`):
#: the winning voxel (the paper) or the sub-pixel mean of the votes around it
VOTING_METHODS = ("voting", "voting_subpixel")


def _plain(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``x`` as a plain (not Meta) tensor, detached."""
    t = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return t.detach()


def heatmaps_to_voxels(
    heatmaps: torch.Tensor, method: str = "dark", radius: float | None = None, spatial_dims: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one image's heatmaps ``(N, *S)`` into voxel coordinates ``(N, D)`` and peak values ``(N,)`` (float64).

    See :func:`transforms.heatmap.decoding.decode_heatmaps` for ``method``; with ``"voting"`` or
    ``"voting_subpixel"`` the input is a heatmap + offset output ``(N * (1 + D), *S)`` decoded by
    :func:`transforms.heatmap.voting.vote_landmarks` with the offset radius ``radius`` (voxels), and the values are
    the fractions of the votes on each winning voxel.
    """
    if method in VOTING_METHODS:
        if radius is None or spatial_dims is None:
            raise ValueError(f"heatmaps_to_voxels: method {method!r} needs the offset radius and spatial_dims.")
        coords, values = vote_landmarks(
            _plain(heatmaps)[None].float(), spatial_dims, radius, subpixel=method == "voting_subpixel"
        )
        return coords[0], values[0]
    coords, values = decode_heatmaps(_plain(heatmaps)[None].float(), method=method)
    return torch.as_tensor(coords)[0], torch.as_tensor(values)[0]


def outside_original_image(
    world: torch.Tensor, image: torch.Tensor, spacing: Sequence[float] | None = None
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Which landmarks ``(N, D)`` (world RAS mm) lie outside the original image of the preprocessed ``image``.

    A point is inside when its voxel coordinates in the original grid (:func:`transforms.geometry.original_affine`)
    are within the outer voxel faces ``[-0.5, size - 0.5]`` on every axis. Without the original shape
    (``meta["spatial_shape"]``) the preprocessed image's own grid is used. NaN rows are never outside.

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


class HeatmapsToLandmarks(Transform):
    """Decode one image's heatmaps ``(N, *S)`` into world coordinates ``(N, D)`` (RAS mm, float64).

    The heatmaps were computed on the (preprocessed) ``image``, whose affine maps their voxels to world mm. A
    landmark decoded outside the original image (its maximum lies in padding that the preprocessing, e.g. the
    centre pad to the network's input size, or the sliding windows added) is not a detection in the image: with
    ``outside="missing"`` its row (world and voxel coordinates) becomes NaN and a warning names the image and the
    landmarks; see :func:`outside_original_image`.

    Args:
        method: decoder of :func:`transforms.heatmap.decoding.decode_heatmaps` (``"dark"``, ``"quadratic"``
            (Payer), ...), or ``"voting"`` / ``"voting_subpixel"`` for heatmap + offset outputs
            ``(N * (1 + D), *S)`` (:func:`transforms.heatmap.voting.vote_landmarks`; values: vote fractions).
        radius: the offset radius R (voxels) of the voting methods; ignored by the heatmap decoders.
        outside: landmarks decoded outside the original image: ``"missing"`` (NaN row, logged warning) or
            ``"keep"`` (unchanged).
        names: landmark names used in the warning (default: indices).

    Call with ``(heatmaps (N, *S), image (C, *S)[, spacing])``: ``spacing`` is the item's pixel spacing (mm) of a
    pixel-only image, for its original grid (:func:`transforms.geometry.original_affine`). Returns ``(world (N, D),
    voxels (N, D) of the heatmap grid, values (N,))``, float64.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        method: str = "dark",
        outside: str = "missing",
        names: Sequence[str] | None = None,
        radius: float | None = None,
    ) -> None:
        if method not in DECODING_METHODS + VOTING_METHODS:
            raise ValueError(
                f"HeatmapsToLandmarks: method must be one of {DECODING_METHODS + VOTING_METHODS}, got {method!r}."
            )
        if method in VOTING_METHODS and not (radius is not None and radius > 0):
            raise ValueError(
                f"HeatmapsToLandmarks: method {method!r} needs the offset radius (voxels > 0), got {radius}."
            )
        self.radius = None if radius is None else float(radius)
        if outside not in OUTSIDE_MODES:
            raise ValueError(f"HeatmapsToLandmarks: outside must be 'missing' or 'keep', got {outside!r}.")
        self.method = method
        self.outside = outside
        self.names = None if names is None else [str(n) for n in names]

    def __call__(
        self, heatmaps: torch.Tensor, image: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if tuple(heatmaps.shape[1:]) != tuple(image.shape[1:]):
            raise ValueError(
                f"HeatmapsToLandmarks: heatmaps {tuple(heatmaps.shape)} and image {tuple(image.shape)} of "
                f"{image_name(image)} have different spatial shapes."
            )
        voxels, values = heatmaps_to_voxels(heatmaps, self.method, self.radius, image.dim() - 1)
        world = voxel_to_world(voxels, image_affine(image, voxels.shape[-1]))
        if self.outside == "missing":
            outside, shape = outside_original_image(world, image, spacing)
            if bool(outside.any()):
                idx = outside.nonzero().flatten().tolist()
                which = [self.names[k] if self.names and k < len(self.names) else str(k) for k in idx]
                logger.warning(
                    f"{image_name(image)}: {len(idx)} of {outside.numel()} predicted landmarks lie outside the "
                    f"image (shape {shape}) and are marked missing: {', '.join(which)}."
                )
                world, voxels = world.clone(), voxels.clone()
                world[outside] = float("nan")
                voxels[outside] = float("nan")
        return world, voxels, values


class LandmarksToWorld(Transform):
    """Landmarks ``(N, D)`` in voxel coordinates of ``image`` -> world mm (RAS, float64 tensor).

    The image's affine (:func:`transforms.geometry.image_affine`) maps its current grid to world mm, so landmarks
    tracked through the preprocessing land where they are in the original image. NaN rows stay NaN.

    Call with ``(landmarks (N, D), image (C, *S))``.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, landmarks: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        lm = _plain(landmarks).cpu().double()
        return voxel_to_world(lm, image_affine(image, lm.shape[-1]))


class SaveLandmarks(Transform):
    """Write one image's predicted landmarks to ``output_dir/<id><postfix>_landmarks.json`` (atomically).

    The file holds world mm in LPS and voxel coordinates of the original image grid
    (:func:`transforms.io.prediction_files.landmark_record`); with heatmaps also ``<id><postfix>_heatmaps.nii.gz``
    ``(S..., N)`` with the preprocessed image's affine. Files are written with
    :func:`transforms.io.atomic_write` (permissions follow the umask). An id whose file would resolve outside
    ``output_dir`` (``"../x"``, ``"/tmp/x"``) raises ``ValueError`` naming the id and the folder
    (:func:`transforms.io.output_path`); ids with sub-folders inside it are allowed.

    Args:
        output_dir: folder of the prediction files (created).
        names: landmark names written to the files.

    Call with ``(world (N, D) RAS mm, image (C, *S), item_id[, values (N,), spacing, heatmaps (N, *S), postfix])``:
    ``image`` is the preprocessed image (its meta gives the file name and ``original_affine``), ``spacing`` the
    item's pixel spacing of a pixel-only image. Returns the path of the landmark file.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, output_dir: str | os.PathLike = "./predictions", names: Sequence[str] | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.names = None if names is None else list(names)

    def __call__(
        self,
        world: torch.Tensor,
        image: torch.Tensor,
        item_id: str,
        values: torch.Tensor | None = None,
        spacing: Sequence[float] | None = None,
        heatmaps: torch.Tensor | None = None,
        postfix: str = "",
    ) -> Path:
        world = torch.as_tensor(world)
        dims = world.shape[-1]
        rec = landmark_record(world, self.names, original_affine(image, dims, spacing), values, image_name(image))
        path = output_path(self.output_dir, f"{item_id}{postfix}{PREDICTION_SUFFIX}", item_id)
        atomic_write(path, json.dumps(rec, indent=2) + "\n")
        if heatmaps is not None:
            self.save_heatmaps(
                heatmaps, image, output_path(self.output_dir, f"{item_id}{postfix}_heatmaps.nii.gz", item_id)
            )
        return path

    @staticmethod
    def save_heatmaps(heatmaps: torch.Tensor, image: torch.Tensor, path: Path) -> Path:
        """Write heatmaps ``(N, *S)`` as NIfTI ``(*S, N)`` (channels last) with ``image``'s affine, atomically."""
        import nibabel as nib

        arr = np.moveaxis(_plain(heatmaps).cpu().float().numpy(), 0, -1)  # (*S, N): NIfTI keeps channels last
        dims = arr.ndim - 1
        aff = np.eye(4)
        a = image_affine(image, dims).numpy()
        aff[:dims, :dims], aff[:dims, 3] = a[:dims, :dims], a[:dims, dims]
        if dims == 2:
            arr = arr[:, :, None, :]
        return atomic_write(path, lambda tmp: nib.save(nib.Nifti1Image(arr, aff), tmp))
