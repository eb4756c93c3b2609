"""Dictionary forms of the landmark transforms: load, give pixel spacing, track through affine transforms."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from transforms.landmarks.array import LoadLandmarks, SetSpacing, TrackLandmarks

__all__ = ["LoadLandmarksd", "TrackLandmarksd", "SetSpacingd"]


class LoadLandmarksd(MapTransform):
    """Dictionary form of :class:`LoadLandmarks`.

    The data dict holds a landmark file path (or an inline ``(N, D)`` list) under each key of ``keys``
    and an already loaded channel-first ``MetaTensor`` image ``(C, *S)`` under ``ref_key``. Each key is
    replaced by a ``MetaTensor`` ``(N, D)`` float64 in voxel coordinates of that image.

    Args:
        keys: keys of the landmark entries, default ``"landmarks"``.
        ref_key: key of the reference image, default ``"image"``.
        num_landmarks: expected ``N``; None accepts any.
        coordinate_system: convention of files that do not state one (``"LPS"``, ``"RAS"``, ``"voxel"``).
        outside: ``"error"``, ``"missing"`` (NaN row, logged and counted) or ``"keep"`` for landmarks outside
            the image.
        landmark_names: names the files must carry, in this order, when they name their landmarks; None: not checked.
        coordinate_system_key: data-dict key of the item's own coordinate system (a datalist item's
            ``"coordinate_system"``): when present it applies to the item's landmarks and must agree with the
            one the file states (a conflict raises, naming the file). None ignores it.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = LoadLandmarks.backend

    def __init__(
        self,
        keys: KeysCollection = "landmarks",
        ref_key: str = "image",
        num_landmarks: int | None = None,
        coordinate_system: str | None = None,
        outside: str = "error",
        allow_missing_keys: bool = False,
        landmark_names: Sequence[str] | None = None,
        coordinate_system_key: str | None = "coordinate_system",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.coordinate_system_key = coordinate_system_key
        self.loader = LoadLandmarks(
            num_landmarks=num_landmarks,
            coordinate_system=coordinate_system,
            outside=outside,
            landmark_names=landmark_names,
        )

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        item_cs = d.get(self.coordinate_system_key) if self.coordinate_system_key is not None else None
        for key in self.key_iterator(d):
            if self.ref_key not in d:
                raise KeyError(
                    f"LoadLandmarksd: reference image key {self.ref_key!r} not in the data (keys {list(d)})."
                )
            d[key] = self.loader(d[key], d[self.ref_key], item_cs)
        return d


class TrackLandmarksd(MapTransform):
    """Dictionary form of :class:`TrackLandmarks`: put the landmarks under ``keys`` in the current grid of
    the image under ``ref_key``. Idempotent; place it after any chain of affine-type MONAI spatial transforms.

    Args:
        keys: landmark keys, default ``"landmarks"``.
        ref_key: image key, default ``"image"``.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = TrackLandmarks.backend

    def __init__(self, keys: KeysCollection = "landmarks", ref_key: str = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.tracker = TrackLandmarks()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.tracker(d[key], d[self.ref_key])
        return d


class SetSpacingd(MapTransform):
    """Dictionary form of :class:`SetSpacing`: the spacing (mm, one per spatial axis) comes from the
    data dict's ``spacing_key`` entry (a datalist item's ``"spacing"``).

    Args:
        keys: image keys, default ``"image"``.
        spacing_key: key of the spacing list, default ``"spacing"``.
        allow_missing_keys: don't raise when a key (or the spacing entry) is absent; without a
            spacing entry the image is left unchanged.
    """

    backend = SetSpacing.backend

    def __init__(self, keys: KeysCollection = "image", spacing_key: str = "spacing", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.spacing_key = spacing_key
        self.setter = SetSpacing()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.spacing_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"SetSpacingd: no {self.spacing_key!r} entry in the data (keys {list(d)}).")
        for key in self.key_iterator(d):
            d[key] = self.setter(d[key], d[self.spacing_key])
        return d
