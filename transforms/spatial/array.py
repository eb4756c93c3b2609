"""Spatial transforms of the landmark pipelines (array form): landmark-aware random elastic deformation, the
aspect-preserving fit of an image into a fixed grid, and the squeeze of 2D images stored with a singleton axis."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import RandomizableTransform, Resize, SpatialPad, SqueezeDim, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type

from transforms.spatial.functional import dense_displacement, invert_displacement_at, warp_image

__all__ = ["RandLandmarkElastic", "ResizeToFit", "EnsureSpatialDims"]


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


def _image_name(img: torch.Tensor) -> str:
    if isinstance(img, MetaTensor) and img.meta.get("filename_or_obj"):
        return str(img.meta["filename_or_obj"])
    return "<image without filename>"


class EnsureSpatialDims(Transform):
    """Drop trailing singleton spatial axes until a channel-first image has ``spatial_dims`` spatial axes.

    A 2D image stored as a 3D volume with one slice (MetaImage ``W x H x 1`` such as the Digital Hand Atlas
    ``.mha`` files, or a one-slice NIfTI) loads as ``(C, W, H, 1)``; this gives ``(C, W, H)`` with the affine of
    the remaining axes, kept as the 4x4 matrix MONAI uses for 2D images (rows/columns ``[0, 1, 3]`` hold the
    in-plane part and the origin, like ``monai.data.utils.to_affine_nd``). An image that already has
    ``spatial_dims`` spatial axes is returned unchanged.

    Args:
        spatial_dims: the wanted number of spatial axes (2 or 3).

    Raises:
        ValueError: the image has fewer spatial axes, or a trailing axis to drop is longer than 1; the message
            names the image file.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, spatial_dims: int = 2) -> None:
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        self.spatial_dims = int(spatial_dims)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        extra = img.ndim - 1 - self.spatial_dims
        if extra == 0:
            return img
        if extra < 0 or any(int(s) != 1 for s in img.shape[1 + self.spatial_dims :]):
            raise ValueError(
                f"image {_image_name(img)}: expected a {self.spatial_dims}D channel-first image, got array shape "
                f"{tuple(img.shape)} (only trailing axes of length 1 can be dropped)."
            )
        out = img
        for _ in range(extra):
            out = SqueezeDim(dim=-1, update_meta=True)(out)
        if isinstance(out, MetaTensor):
            if self.spatial_dims == 2 and out.affine.shape[-1] == 3:  # MONAI's 2D images carry a 4x4 affine
                idx = torch.tensor([0, 1, 3])
                full = torch.eye(4, dtype=torch.float64)
                full[idx[:, None], idx] = out.affine.detach().cpu().to(torch.float64)
                out.affine = full
            if "spatial_shape" in out.meta:
                out.meta["spatial_shape"] = np.asarray(out.shape[1:])
        return out


class ResizeToFit(Transform):
    """Aspect-preserving fit of a channel-first image into a fixed grid (Payer's ``FitFixedAr``, MICCAI 2016).

    The whole image is resampled to an isotropic voxel size ``s = max_i(extent_i / spatial_size_i)`` (its
    physical extent ``shape_i * spacing_i`` fits ``spatial_size`` along the tightest axis), i.e. resized to
    ``round(extent_i / s)`` voxels with MONAI ``Resize`` (which updates the affine, so ``TrackLandmarks`` follows),
    then centre padded to ``spatial_size``. The output voxel size therefore varies with the image's extent: an
    image twice as large gets voxels twice as large.

    Args:
        spatial_size: the output grid ``(S_1, ..., S_D)``.
        mode: interpolation, ``"linear"`` (bilinear in 2D, trilinear in 3D) or any MONAI ``Resize`` mode.
        anti_aliasing: Gaussian smoothing before downsampling (MONAI ``Resize(anti_aliasing=True)``).
        pad_mode: padding mode of the centred pad (``"constant"``, ``"edge"``, ...).
        pad_value: value of ``"constant"`` padding, in the image's current intensity units.

    Call with ``img`` ``(C, *S_in)`` (a ``MetaTensor``; a plain tensor is taken as unit spacing); returns
    ``(C, *spatial_size)``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        spatial_size: Sequence[int],
        mode: str = "linear",
        anti_aliasing: bool = True,
        pad_mode: str = "constant",
        pad_value: float = 0.0,
    ) -> None:
        size = tuple(int(s) for s in spatial_size)
        if not size or any(s < 1 for s in size):
            raise ValueError(f"spatial_size must be positive integers, got {spatial_size}.")
        self.spatial_size = size
        self.mode = mode
        self.anti_aliasing = anti_aliasing
        self.pad_mode = pad_mode
        self.pad_value = float(pad_value)

    def fitted_size(self, img: torch.Tensor) -> tuple[int, ...]:
        """The grid ``(S_1', ..., S_D')`` the image is resized to before the centred pad."""
        d = img.ndim - 1
        if d != len(self.spatial_size):
            raise ValueError(
                f"image {_image_name(img)}: {d} spatial axes but spatial_size {self.spatial_size} has "
                f"{len(self.spatial_size)}."
            )
        extent = np.asarray(img.shape[1:], dtype=np.float64) * _voxel_spacing(img, d)
        voxel = float(np.max(extent / np.asarray(self.spatial_size, dtype=np.float64)))
        fitted = np.clip(np.rint(extent / voxel), 1, self.spatial_size).astype(int)
        return tuple(int(s) for s in fitted)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        fitted = self.fitted_size(img)
        d = img.ndim - 1
        mode = {2: "bilinear", 3: "trilinear"}.get(d, "linear") if self.mode == "linear" else self.mode
        shrink = any(f < s for f, s in zip(fitted, img.shape[1:]))
        out = img
        if fitted != tuple(img.shape[1:]):
            out = Resize(fitted, mode=mode, anti_aliasing=self.anti_aliasing and shrink)(img)
        pad_kwargs = {"value": self.pad_value} if self.pad_mode == "constant" else {}
        return SpatialPad(self.spatial_size, method="symmetric", mode=self.pad_mode, **pad_kwargs)(out)
