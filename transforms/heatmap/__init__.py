"""Heatmap targets: sub-pixel Gaussian heatmaps from landmarks (functional, array and dictionary forms)."""

from transforms.heatmap.array import LandmarksToHeatmap
from transforms.heatmap.dictionary import LandmarksToHeatmapd
from transforms.heatmap.functional import gaussian_heatmaps, heatmap_window_radius

__all__ = ["LandmarksToHeatmap", "LandmarksToHeatmapd", "gaussian_heatmaps", "heatmap_window_radius"]
