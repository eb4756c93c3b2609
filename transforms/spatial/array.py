"""Landmark-aware random elastic deformation (array form)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type

from transforms.spatial.functional import dense_displacement, invert_displacement_at, warp_image

__all__ = ["RandLandmarkElastic"]


def _voxel_spacing(img: torch.Tensor, spatial_dims: int) -> np.ndarray:
    if isinstance(img, MetaTensor):
        return np.asarray(img.pixdim[:spatial_dims], dtype=np.float64)
    return np.ones(spatial_dims)


class RandLandmarkElastic(RandomizableTransform):
    """Random smooth elastic deformation that moves the landmarks with the image, 2D and 3D.

    A cubic B-spline displacement field with ``num_control_points`` coefficients per axis (ITK / SCN
    convention: they span the image with ``num_control_points - 3`` cells) has each coefficient drawn
    from U(-magnitude, magnitude). The image is pulled, ``out(x) = img(x + u(x))``, and each landmark
    ``p`` moves to the solution of ``x + u(x) = p`` (Newton iterations on the exact spline, sub-voxel
    accurate). The affine is unchanged: the field lives in the image's own voxel grid.

    Args:
        prob: probability of deforming.
        num_control_points: coefficients per axis (int or one per axis), >= 4. Default 5 (SCN).
        magnitude: maximum coefficient displacement (int/float or one per axis); units below.
            The actual displacement is at most this (B-spline smoothing shrinks it).
        magnitude_units: ``"voxel"`` (default) or ``"mm"`` (converted with the image's ``pixdim``).
        mode: image interpolation, ``"bilinear"``, ``"nearest"`` or (2D) ``"bicubic"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Call with ``(img, landmarks=None, randomize=True)``: ``img`` ``(C, *S)``; ``landmarks`` ``(N, D)``
    voxel coordinates of ``img`` (NaN rows stay NaN). Returns the warped image, or
    ``(image, landmarks)`` when landmarks are given. Keep ``magnitude`` below about a third of the
    control spacing ``(S - 1) / (G - 3)`` voxels so that the field does not fold.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        prob: float = 1.0,
        num_control_points: int | Sequence[int] = 5,
        magnitude: float | Sequence[float] = 5.0,
        magnitude_units: str = "voxel",
        mode: str = "bilinear",
        padding_mode: str = "zeros",
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        cps = np.atleast_1d(np.asarray(num_control_points, dtype=int))
        if np.any(cps < 4):
            raise ValueError(f"num_control_points must be >= 4 per axis (cubic B-spline), got {num_control_points}.")
        if magnitude_units not in ("voxel", "mm"):
            raise ValueError(f"magnitude_units must be 'voxel' or 'mm', got {magnitude_units!r}.")
        mag = np.atleast_1d(np.asarray(magnitude, dtype=np.float64))
        if np.any(mag < 0):
            raise ValueError(f"magnitude must be >= 0, got {magnitude}.")
        self.num_control_points = cps
        self.magnitude = mag
        self.magnitude_units = magnitude_units
        self.mode = mode
        self.padding_mode = padding_mode
        self._unit_coeffs: np.ndarray | None = None
        self._spatial_dims: int | None = None

    def randomize(self, data: torch.Tensor | int | None = None) -> None:
        """Draw whether to deform and the unit control field ``(D, G_1, ..., G_D)`` in U(-1, 1).

        Args:
            data: the image ``(C, *S)`` or the number of spatial dims ``D``.
        """
        super().randomize(None)
        if not self._do_transform:
            return
        d = data if isinstance(data, int) else data.ndim - 1
        cps = (
            np.broadcast_to(self.num_control_points, (d,))
            if self.num_control_points.size == 1
            else self.num_control_points
        )
        if len(cps) != d:
            raise ValueError(f"num_control_points {self.num_control_points.tolist()} does not match {d} spatial dims.")
        self._spatial_dims = d
        self._unit_coeffs = self.R.uniform(-1.0, 1.0, size=(d, *cps.tolist()))

    def coefficients(self, img: torch.Tensor) -> torch.Tensor:
        """The current draw as control coefficients in voxels of ``img``: ``(D, G_1, ..., G_D)`` float64."""
        if self._unit_coeffs is None:
            raise RuntimeError("RandLandmarkElastic: call randomize() before applying the transform.")
        d = img.ndim - 1
        if self._unit_coeffs.shape[0] != d:
            raise ValueError(f"the drawn field is {self._unit_coeffs.shape[0]}D but the image is {d}D.")
        mag = np.broadcast_to(self.magnitude, (d,)) if self.magnitude.size == 1 else self.magnitude
        if mag.size != d:
            raise ValueError(f"magnitude {self.magnitude.tolist()} does not match {d} spatial dims.")
        if self.magnitude_units == "mm":
            mag = mag / _voxel_spacing(img, d)
        coeffs = self._unit_coeffs * mag.reshape(d, *([1] * d))
        return torch.as_tensor(coeffs, dtype=torch.float64)

    def move_landmarks(self, landmarks: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        """Move ``(N, D)`` voxel landmarks with the current draw (needs the image for its shape and spacing)."""
        if not self._do_transform:
            return landmarks
        coeffs = self.coefficients(img)
        src = landmarks.as_tensor() if isinstance(landmarks, MetaTensor) else torch.as_tensor(landmarks)
        if src.ndim != 2 or src.shape[1] != img.ndim - 1:
            raise ValueError(f"landmarks must be (N, {img.ndim - 1}) for this image, got {tuple(src.shape)}.")
        moved = invert_displacement_at(coeffs, img.shape[1:], src.detach().cpu())
        out, *_ = convert_to_dst_type(moved, landmarks, dtype=src.dtype)
        return out

    def __call__(self, img: torch.Tensor, landmarks: torch.Tensor | None = None, randomize: bool = True):
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img if landmarks is None else (img, landmarks)
        coeffs = self.coefficients(img)
        field = dense_displacement(coeffs, img.shape[1:]).to(torch.float32)
        warped = warp_image(img, field.to(img.device), mode=self.mode, padding_mode=self.padding_mode)
        out, *_ = convert_to_dst_type(warped, img)
        if landmarks is None:
            return out
        return out, self.move_landmarks(landmarks, img)
