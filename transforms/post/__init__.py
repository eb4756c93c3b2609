"""Post-transforms of landmark detection (array and dictionary forms): heatmaps -> landmarks in world mm, voxel
landmarks -> world mm, prediction files on disk."""

from .array import HeatmapsToLandmarks, LandmarksToWorld, SaveLandmarks, heatmaps_to_voxels, outside_original_image
from .dictionary import HeatmapsToLandmarksd, LandmarksToWorldd, SaveLandmarksd, item_spacing

__all__ = [
    "HeatmapsToLandmarks",
    "HeatmapsToLandmarksd",
    "LandmarksToWorld",
    "LandmarksToWorldd",
    "SaveLandmarks",
    "SaveLandmarksd",
    "heatmaps_to_voxels",
    "item_spacing",
    "outside_original_image",
]
