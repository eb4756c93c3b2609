"""Heatmaps: Gaussian targets, sub-pixel decoding and coordinate mappings, re-exported from ``transforms``.

The code lives beside the transforms that use it: targets in :mod:`transforms.heatmap.functional`, decoding in
:mod:`transforms.heatmap.decoding` (see its docstring for the decoders and their fallbacks), voxel/world mapping in
:mod:`transforms.geometry`. This module keeps the names the project has always used (``mlm.heatmaps.X``).
"""

from __future__ import annotations

from transforms.geometry import voxel_to_world, world_to_voxel
from transforms.heatmap.decoding import DECODING_METHODS, decode_heatmaps, rescale_coordinates
from transforms.heatmap.functional import gaussian_heatmaps, heatmap_window_radius

__all__ = [
    "gaussian_heatmaps",
    "heatmap_window_radius",
    "decode_heatmaps",
    "DECODING_METHODS",
    "voxel_to_world",
    "world_to_voxel",
    "rescale_coordinates",
]
