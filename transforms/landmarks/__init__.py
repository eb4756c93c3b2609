"""Landmark loading and tracking: landmarks as ``(N, D)`` voxel coordinates that follow their image."""

from .array import (
    LoadLandmarks,
    SetSpacing,
    TrackLandmarks,
    dropped_landmark_counts,
    image_name,
    outside_image,
    points_to_voxels,
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
    "dropped_landmark_counts",
    "image_name",
    "outside_image",
    "points_to_voxels",
    "spatial_affine",
]
