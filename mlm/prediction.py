"""Landmark post-processing (heatmaps -> sub-pixel voxel coordinates -> world mm -> files), re-exported.

The post-transforms live in :mod:`transforms.post` (array and dictionary forms), the prediction file format in
:mod:`transforms.io.prediction_files` and the affine helpers in :mod:`transforms.geometry`. This module keeps the
names the bundle configs use (``mlm.prediction.HeatmapsToLandmarksd``, ...) until they name ``transforms.post``.
"""

from __future__ import annotations

from transforms.geometry import image_affine, original_affine, original_spatial_shape
from transforms.io.prediction_files import landmark_record
from transforms.post import (
    HeatmapsToLandmarksd,
    LandmarksToWorldd,
    SaveLandmarksd,
    heatmaps_to_voxels,
    outside_original_image,
)

__all__ = [
    "heatmaps_to_voxels",
    "image_affine",
    "original_affine",
    "original_spatial_shape",
    "outside_original_image",
    "HeatmapsToLandmarksd",
    "LandmarksToWorldd",
    "SaveLandmarksd",
    "landmark_record",
]
