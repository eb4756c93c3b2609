"""Landmark-aware spatial transforms (elastic deformation that moves the landmarks, SCN random affine,
aspect-preserving fit into a fixed grid, squeeze of 2D images stored with a singleton axis)."""

from .affine import RandIsotropicScaleAffineGrid, RandScaledAffined
from .array import EnsureSpatialDims, RandLandmarkElastic, ResizeToFit
from .dictionary import EnsureSpatialDimsd, FitPixelOnlyd, RandLandmarkElasticd, ResizeToFitd
from .functional import bspline_weights, dense_displacement, displacement_at, invert_displacement_at, warp_image

__all__ = [
    "EnsureSpatialDims",
    "EnsureSpatialDimsd",
    "FitPixelOnlyd",
    "RandIsotropicScaleAffineGrid",
    "RandLandmarkElastic",
    "RandLandmarkElasticd",
    "RandScaledAffined",
    "ResizeToFit",
    "ResizeToFitd",
    "bspline_weights",
    "dense_displacement",
    "displacement_at",
    "invert_displacement_at",
    "warp_image",
]
