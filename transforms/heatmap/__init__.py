"""Heatmaps: sub-pixel Gaussian targets from landmarks (functional, array and dictionary forms) and their decoding
back to sub-pixel landmark coordinates."""

from transforms.heatmap.array import LandmarksToHeatmap
from transforms.heatmap.decoding import DECODING_METHODS, decode_heatmaps, rescale_coordinates
from transforms.heatmap.dictionary import LandmarksToHeatmapd
from transforms.heatmap.functional import gaussian_heatmaps, heatmap_window_radius
from transforms.heatmap.voting import default_num_votes, vote_landmarks

__all__ = [
    "DECODING_METHODS",
    "LandmarksToHeatmap",
    "LandmarksToHeatmapd",
    "decode_heatmaps",
    "default_num_votes",
    "gaussian_heatmaps",
    "heatmap_window_radius",
    "rescale_coordinates",
    "vote_landmarks",
]
