"""Dictionary post-transforms of landmark detection, run as an engine's ``postprocessing`` on decollated items.

- :class:`HeatmapsToLandmarksd` decodes ``pred`` heatmaps ``(N, *S)`` into world coordinates ``(N, D)`` (RAS mm)
  with the affine of the preprocessed image they were computed on; landmarks decoded outside the ORIGINAL image
  (in the padding of the preprocessed grid or of the sliding windows) are marked missing and logged.
- :class:`LandmarksToWorldd` maps ground-truth landmarks ``(N, D)`` in voxel coordinates of the same image to world
  mm, so that predictions and ground truth are compared in the original physical space.
- :class:`SaveLandmarksd` writes one prediction file per image, atomically (world mm in LPS, voxel coordinates of
  the original grid, optionally the heatmaps as NIfTI).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from transforms.landmarks.array import image_name
from transforms.post.array import HeatmapsToLandmarks, LandmarksToWorld, SaveLandmarks

__all__ = ["HeatmapsToLandmarksd", "LandmarksToWorldd", "SaveLandmarksd", "item_spacing"]


def item_spacing(spacing: Any) -> list[float] | None:
    """A datalist item's ``spacing`` after collate/decollate (a list of numbers or of 1-element tensors), or None."""
    if spacing is None:
        return None
    return [float(torch.as_tensor(v).reshape(-1)[0]) for v in spacing]


class HeatmapsToLandmarksd(MapTransform):
    """Dictionary form of :class:`HeatmapsToLandmarks`: replace heatmaps ``(N, *S)`` under ``keys`` by decoded
    world coordinates ``(N, D)`` (RAS mm, float64).

    Args:
        keys: heatmap keys (default ``"pred"``).
        ref_key: key of the (preprocessed) image the heatmaps were computed on; its affine maps their voxels to
            world mm. Heatmaps and image must have the same spatial shape.
        method: decoder of :func:`transforms.heatmap.decoding.decode_heatmaps` (``"dark"``, ``"quadratic"``, ...),
            or ``"voting"`` / ``"voting_subpixel"`` for heatmap + offset outputs (see :class:`HeatmapsToLandmarks`).
        radius: the offset radius R (voxels) of the voting methods; ignored by the heatmap decoders.
        voxel_key_postfix: the voxel coordinates of the preprocessed grid are stored under ``f"{key}_{postfix}"``.
        values_key_postfix: the heatmap peak values ``(N,)`` are stored under ``f"{key}_{postfix}"``.
        heatmaps_key_postfix: when given, the heatmaps are kept under ``f"{key}_{postfix}"`` (for saving).
        outside: landmarks decoded outside the original image: ``"missing"`` (NaN row, logged warning) or
            ``"keep"`` (unchanged).
        spacing_key: key of a per-item pixel spacing (datalist ``"spacing"``) for the original grid of pixel-only
            images (see :func:`transforms.geometry.original_affine`), or None.
        names: landmark names used in the warning (default: indices).
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = HeatmapsToLandmarks.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        ref_key: str = "image",
        method: str = "dark",
        voxel_key_postfix: str = "voxel",
        values_key_postfix: str = "values",
        heatmaps_key_postfix: str | None = None,
        outside: str = "missing",
        spacing_key: str | None = "spacing",
        names: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
        radius: float | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.decoder = HeatmapsToLandmarks(method=method, outside=outside, names=names, radius=radius)
        self.ref_key = ref_key
        self.voxel_key_postfix = voxel_key_postfix
        self.values_key_postfix = values_key_postfix
        self.heatmaps_key_postfix = heatmaps_key_postfix
        self.spacing_key = spacing_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.ref_key]
        spacing = item_spacing(d.get(self.spacing_key)) if self.spacing_key else None
        for key in self.key_iterator(d):
            heatmaps = d[key]
            world, voxels, values = self.decoder(heatmaps, image, spacing)
            if self.heatmaps_key_postfix:
                d[f"{key}_{self.heatmaps_key_postfix}"] = heatmaps
            d[f"{key}_{self.voxel_key_postfix}"] = voxels
            d[f"{key}_{self.values_key_postfix}"] = values
            d[key] = world
        return d


class LandmarksToWorldd(MapTransform):
    """Dictionary form of :class:`LandmarksToWorld`: replace landmarks ``(N, D)`` in voxel coordinates of the image
    under ``ref_key`` by world mm (RAS, float64). NaN rows stay NaN; a ``None`` entry (inference without ground
    truth) is left as it is.

    Args:
        keys: landmark keys (default ``"label"``, the engine output's ground truth).
        ref_key: key of the image the landmarks are expressed in.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = LandmarksToWorld.backend

    def __init__(self, keys: KeysCollection = "label", ref_key: str = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.to_world = LandmarksToWorld()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.ref_key]
        for key in self.key_iterator(d):
            if d[key] is not None:
                d[key] = self.to_world(d[key], image)
        return d


class SaveLandmarksd(MapTransform):
    """Dictionary form of :class:`SaveLandmarks`: write each image's predicted landmarks to
    ``output_dir/<id>_landmarks.json`` (``<id>_<key>_landmarks.json`` for keys other than ``"pred"``), atomically.

    Args:
        keys: keys of the world coordinates ``(N, D)`` RAS mm (the output of :class:`HeatmapsToLandmarksd`).
        ref_key: key of the preprocessed image (its meta gives the file name and ``original_affine``).
        output_dir: folder of the prediction files (created).
        names: landmark names written to the files.
        id_key: key of the item id (datalist ``"id"``); without it the image file's stem is used.
        spacing_key: key of a per-item pixel spacing (datalist ``"spacing"``), used for the original grid of
            pixel-only images (see :func:`transforms.geometry.original_affine`).
        values_key_postfix: peak values are read from ``f"{key}_{postfix}"`` when present.
        save_heatmaps: also write the heatmaps (read from ``f"{key}_{heatmaps_key_postfix}"``).
        heatmaps_key_postfix: see :class:`HeatmapsToLandmarksd`.
        allow_missing_keys: don't raise when a key is absent.
    """

    backend = SaveLandmarks.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        ref_key: str = "image",
        output_dir: str | os.PathLike = "./predictions",
        names: Sequence[str] | None = None,
        id_key: str = "id",
        spacing_key: str = "spacing",
        values_key_postfix: str = "values",
        save_heatmaps: bool = False,
        heatmaps_key_postfix: str = "heatmaps",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveLandmarks(output_dir=output_dir, names=names)
        self.ref_key = ref_key
        self.id_key = id_key
        self.spacing_key = spacing_key
        self.values_key_postfix = values_key_postfix
        self.save_heatmaps = save_heatmaps
        self.heatmaps_key_postfix = heatmaps_key_postfix

    @property
    def output_dir(self) -> Path:
        return self.saver.output_dir

    @property
    def names(self) -> list[str] | None:
        return self.saver.names

    def item_id(self, d: Mapping[Hashable, Any]) -> str:
        """The item's id, or its image file's name without extensions."""
        if d.get(self.id_key) is not None:
            return str(d[self.id_key])
        name = Path(image_name(d[self.ref_key])).name
        return name.split(".")[0] or "image"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.ref_key]
        item = self.item_id(d)
        for key in self.key_iterator(d):
            heatmaps = None
            if self.save_heatmaps:
                hkey = f"{key}_{self.heatmaps_key_postfix}"
                if hkey not in d:
                    raise KeyError(
                        f"SaveLandmarksd: save_heatmaps=True but no {hkey!r} entry; set heatmaps_key_postfix in "
                        "HeatmapsToLandmarksd."
                    )
                heatmaps = d[hkey]
            self.saver(
                d[key],
                image,
                item,
                values=d.get(f"{key}_{self.values_key_postfix}"),
                spacing=item_spacing(d.get(self.spacing_key)),
                heatmaps=heatmaps,
                postfix="" if key == "pred" else f"_{key}",
            )
        return d
