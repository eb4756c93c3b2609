"""Random affine with an isotropic scale factor on top of MONAI's per-axis one (SCN augmentation)."""

from __future__ import annotations

from collections.abc import Sequence

from monai.config import KeysCollection
from monai.transforms import RandAffined, RandAffineGrid

__all__ = ["RandIsotropicScaleAffineGrid", "RandScaledAffined"]


class RandIsotropicScaleAffineGrid(RandAffineGrid):
    """``RandAffineGrid`` whose per-axis scale factors ``1 + U(-s_a, s_a)`` are all multiplied by one
    isotropic factor ``1 + U(-isotropic_scale, isotropic_scale)`` (SCN: uniform scale, then per-axis scale).

    Args:
        isotropic_scale: half-range of the isotropic factor.
        kwargs: ``RandAffineGrid`` arguments; ``scale_range`` must name every axis.
    """

    def __init__(self, isotropic_scale: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.isotropic_scale = float(isotropic_scale)

    def randomize(self, data=None) -> None:
        super().randomize(data)
        factor = 1.0 + float(self.R.uniform(-self.isotropic_scale, self.isotropic_scale))
        self.scale_params = [p * factor for p in self.scale_params]


class RandScaledAffined(RandAffined):
    """MONAI ``RandAffined`` plus an isotropic scale factor drawn once per call (one resampling only).

    The image's MetaTensor affine is updated by MONAI as for ``RandAffined``, so ``TrackLandmarksd``
    moves landmarks with it.

    Args:
        keys: image keys.
        isotropic_scale: half-range ``s`` of the isotropic factor ``1 + U(-s, s)``.
        spatial_dims: 2 or 3 (to expand ``scale_range`` to every axis).
        scale_range: per-axis half-ranges (float or one per axis), default 0.
        other arguments: as ``monai.transforms.RandAffined`` (translations in voxels, rotations in rad).
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int,
        isotropic_scale: float = 0.0,
        scale_range: float | Sequence[float] = 0.0,
        rotate_range: float | Sequence[float] | None = None,
        translate_range: float | Sequence[float] | None = None,
        shear_range: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        per_axis = tuple(scale_range) if isinstance(scale_range, Sequence) else (float(scale_range),) * spatial_dims
        if len(per_axis) != spatial_dims:
            raise ValueError(f"scale_range {scale_range} does not match {spatial_dims} spatial dims.")
        super().__init__(
            keys,
            scale_range=per_axis,
            rotate_range=rotate_range,
            translate_range=translate_range,
            shear_range=shear_range,
            **kwargs,
        )
        old = self.rand_affine.rand_affine_grid
        self.rand_affine.rand_affine_grid = RandIsotropicScaleAffineGrid(
            isotropic_scale=isotropic_scale,
            rotate_range=old.rotate_range,
            shear_range=old.shear_range,
            translate_range=old.translate_range,
            scale_range=old.scale_range,
            device=old.device,
            lazy=old.lazy,
        )
