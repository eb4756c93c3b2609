"""Landmark-aware spatial transforms (elastic deformation that moves the landmarks, SCN random affine)."""

from .affine import RandIsotropicScaleAffineGrid, RandScaledAffined
from .array import RandLandmarkElastic
from .dictionary import RandLandmarkElasticd
from .functional import bspline_weights, dense_displacement, displacement_at, invert_displacement_at, warp_image

__all__ = [
    "RandIsotropicScaleAffineGrid",
    "RandLandmarkElastic",
    "RandLandmarkElasticd",
    "RandScaledAffined",
    "bspline_weights",
    "dense_displacement",
    "displacement_at",
    "invert_displacement_at",
    "warp_image",
]
