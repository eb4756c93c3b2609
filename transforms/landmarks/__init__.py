"""Landmark loading and tracking: landmarks as ``(N, D)`` voxel coordinates that follow their image."""

from .array import (
    LoadLandmarks,
    SetSpacing,
    TrackLandmarks,
    image_name,
    outside_image,
    outside_landmarks,
    points_to_voxels,
    reset_outside_landmarks,
    spatial_affine,
)
from .dictionary import LoadLandmarksd, SetSpacingd, TrackLandmarksd

__all__ = [
    "LoadLandmarks",
    "LoadLandmarksd",
    "SetSpacing",
    "SetSpacingd",
    "TrackLandmarks",
    "TrackLandmarksd",
    "image_name",
    "outside_image",
    "outside_landmarks",
    "points_to_voxels",
    "reset_outside_landmarks",
    "spatial_affine",
]
