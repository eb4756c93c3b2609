"""Dictionary form of the heatmap transform: landmarks + reference image -> heatmap MetaTensor."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from transforms.heatmap.array import LandmarksToHeatmap

__all__ = ["LandmarksToHeatmapd"]


class LandmarksToHeatmapd(MapTransform):
    """Dictionary form of :class:`LandmarksToHeatmap`: heatmaps on the grid of the image under ``ref_key``.

    The landmarks under each key (``(N, D)`` voxel coordinates of the reference image) become a heatmap
    ``(N, *S)`` stored under the matching ``heatmap_key``, where ``S`` is the spatial shape of the
    channel-first reference image ``(C, *S)``. The heatmap is a ``MetaTensor`` that carries a copy of the
    reference image's meta data (affine included), so it can travel through the same post-processing.

    Args:
        keys: landmark keys, default ``"landmarks"``.
        ref_key: key of the channel-first reference image.
        heatmap_key: output key(s), one per landmark key; default ``"heatmap"``.
        sigma: standard deviation in voxels (float or N floats).
        gamma: None for peak-1 maps, else the normalised Gaussian's scale (Payer: 100 2D, 1000 3D).
        truncate: window half-width in sigmas.
        dtype: output dtype.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = LandmarksToHeatmap.backend

    def __init__(
        self,
        keys: KeysCollection = "landmarks",
        ref_key: str = "image",
        heatmap_key: str | Sequence[str] = "heatmap",
        sigma: float | Sequence[float] = 2.0,
        gamma: float | None = None,
        truncate: float = 4.0,
        dtype: torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.heatmap_keys = ensure_tuple_rep(heatmap_key, len(self.keys))
        self.converter = LandmarksToHeatmap(sigma=sigma, gamma=gamma, truncate=truncate, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.heatmap_keys):
            if self.ref_key not in d:
                raise KeyError(
                    f"LandmarksToHeatmapd: reference image key {self.ref_key!r} not in the data (keys {list(d)})."
                )
            image = d[self.ref_key]
            maps = self.converter(d[key], tuple(image.shape[1:]))
            if isinstance(image, MetaTensor):
                meta = dict(image.meta)
                meta["affine"] = image.affine.clone()
                maps = MetaTensor(maps, meta=meta)
            d[out_key] = maps
        return d
