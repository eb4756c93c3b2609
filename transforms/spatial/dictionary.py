"""Spatial transforms of the landmark pipelines (dictionary form): landmark-aware random elastic deformation,
aspect-preserving fit into a fixed grid, squeeze of 2D images stored with a singleton axis."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform, ResizeWithPadOrCropd, Spacingd
from monai.utils import ensure_tuple, ensure_tuple_rep

from transforms.spatial.array import EnsureSpatialDims, RandLandmarkElastic, ResizeToFit

__all__ = ["RandLandmarkElasticd", "ResizeToFitd", "EnsureSpatialDimsd"]


class RandLandmarkElasticd(RandomizableTransform, MapTransform):
    """Dictionary form of :class:`RandLandmarkElastic`: one field is drawn per data dict and applied to
    every image key; the landmark keys (``(N, D)`` voxel coordinates of the first image key) move with it.

    Args:
        keys: image keys, default ``("image",)``; all must share the spatial shape.
        landmark_keys: landmark keys, default ``("landmarks",)``.
        prob: probability of deforming.
        num_control_points: coefficients per axis (>= 4), default 5.
        magnitude: maximum coefficient displacement; ``magnitude_units`` ``"voxel"`` (default) or ``"mm"``.
        mode: interpolation per image key (``"bilinear"``, ``"nearest"``; use ``"nearest"`` for labels).
        padding_mode: padding per image key (``"zeros"``, ``"border"``, ``"reflection"``).
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = RandLandmarkElastic.backend

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        landmark_keys: KeysCollection = ("landmarks",),
        prob: float = 1.0,
        num_control_points: int | Sequence[int] = 5,
        magnitude: float | Sequence[float] = 5.0,
        magnitude_units: str = "voxel",
        mode: str | Sequence[str] = "bilinear",
        padding_mode: str | Sequence[str] = "zeros",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.landmark_keys = ensure_tuple(landmark_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.padding_mode = ensure_tuple_rep(padding_mode, len(self.keys))
        self.elastic = RandLandmarkElastic(
            prob=1.0, num_control_points=num_control_points, magnitude=magnitude, magnitude_units=magnitude_units
        )

    def set_random_state(self, seed: int | None = None, state=None) -> RandLandmarkElasticd:
        super().set_random_state(seed, state)
        self.elastic.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        first = self.first_key(d)
        if first == []:
            return d
        ref = d[first]
        self.elastic.randomize(ref)
        for key in self.landmark_keys:
            if key in d:
                d[key] = self.elastic.move_landmarks(d[key], ref)
            elif not self.allow_missing_keys:
                raise KeyError(f"RandLandmarkElasticd: landmark key {key!r} not in the data (keys {list(d)}).")
        for key, mode, padding_mode in self.key_iterator(d, self.mode, self.padding_mode):
            if d[key].shape[1:] != ref.shape[1:]:
                raise ValueError(
                    f"RandLandmarkElasticd: {key!r} has spatial shape {tuple(d[key].shape[1:])}, "
                    f"{first!r} has {tuple(ref.shape[1:])}; one field needs one grid."
                )
            self.elastic.mode, self.elastic.padding_mode = mode, padding_mode
            d[key] = self.elastic(d[key], randomize=False)
        return d


class EnsureSpatialDimsd(MapTransform):
    """Dictionary form of :class:`EnsureSpatialDims`: drop trailing singleton spatial axes of the images under
    ``keys`` (a 2D ``W x H x 1`` MetaImage loads as ``(C, W, H, 1)``) until they have ``spatial_dims`` axes.

    Args:
        keys: image keys, default ``"image"``.
        spatial_dims: the wanted number of spatial axes.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = EnsureSpatialDims.backend

    def __init__(self, keys: KeysCollection = "image", spatial_dims: int = 2, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.squeeze = EnsureSpatialDims(spatial_dims)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.squeeze(d[key])
        return d


class ResizeToFitd(MapTransform):
    """Dictionary form of :class:`ResizeToFit`: aspect-preserving fit of the images under ``keys`` into
    ``spatial_size`` (resize to one isotropic voxel size, then centre pad). Follow it with
    ``TrackLandmarksd`` to carry landmarks into the new grid.

    Args:
        keys: image keys, default ``"image"``.
        spatial_size: output grid.
        mode: interpolation (``"linear"``: bilinear/trilinear), one or one per key.
        anti_aliasing: smooth before downsampling.
        pad_mode: padding mode of the centred pad.
        pad_value: value of constant padding.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = ResizeToFit.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        spatial_size: Sequence[int] = (256, 256),
        mode: str | Sequence[str] = "linear",
        anti_aliasing: bool = True,
        pad_mode: str = "constant",
        pad_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.fit = ResizeToFit(spatial_size, anti_aliasing=anti_aliasing, pad_mode=pad_mode, pad_value=pad_value)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            self.fit.mode = mode
            d[key] = self.fit(d[key])
        return d


class FitPixelOnlyd(MapTransform):
    """Bring each image to the network's grid by the kind of its pixel size: an image with a physical pixel size
    (its file's, or a datalist ``spacing``) is resampled to ``spacing`` mm and centre padded/cropped to
    ``spatial_size`` (the SCN input); a pixel-only image (meta ``spatial_units`` ``"px"``: PNG, JPEG, BMP without a
    datalist spacing) is fitted whole into ``spatial_size`` keeping its aspect ratio (:class:`ResizeToFitd`), since a
    spacing in mm means nothing for it and a crop at 1 px = 1 mm would keep only a corner of a radiograph.
    Follow it with ``TrackLandmarksd``.

    Args:
        keys: image keys.
        spacing: output spacing (mm, float or per axis) of images with a physical pixel size; <= 0 keeps theirs.
        spatial_size: output grid (``-1`` keeps an axis for pad/crop).
        pad_value: value of the fit's padding (before intensity normalisation).
        allow_missing_keys: don't raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spacing: float | Sequence[float],
        spatial_size: Sequence[int],
        pad_value: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        steps: list = []
        if any(s > 0 for s in ensure_tuple(spacing)):
            steps.append(Spacingd(keys=keys, pixdim=spacing, mode="bilinear", padding_mode="zeros"))
        steps.append(ResizeWithPadOrCropd(keys=keys, spatial_size=spatial_size))
        self.physical = steps
        self.fit = ResizeToFitd(keys=keys, spatial_size=spatial_size, anti_aliasing=True, pad_value=pad_value)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            item = {key: d[key]}
            if (getattr(d[key], "meta", None) or {}).get("spatial_units") == "px":
                item = self.fit(item)
            else:
                for step in self.physical:
                    item = step(item)
            d[key] = item[key]
        return d
