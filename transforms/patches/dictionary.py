"""Landmark patches (dictionary form): random patches around the landmarks for training a refinement stage (a list of
data dicts, one per patch), and patches centred at given world points (one batched dict)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import decollate_batch
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple_rep

from transforms.patches.array import LandmarkPatches, RandLandmarkPatches

__all__ = ["RandLandmarkPatchesd", "LandmarkPatchesd"]


class RandLandmarkPatchesd(Randomizable, MapTransform):
    """Dictionary form of :class:`RandLandmarkPatches`: one data dict in, a list of ``K`` patch dicts out.

    Each output dict is a shallow copy of the input in which every image key holds one patch ``(C, *P)`` (a
    ``MetaTensor`` with the patch's own affine), ``landmark_key`` the landmarks ``(N, D)`` in that patch's voxel
    coordinates (NaN outside the patch) and ``index_key`` the landmark the patch is centred on. MONAI's
    ``Compose`` applies later transforms to each dict and its ``DataLoader`` (``list_data_collate``) flattens the
    lists, so a batch holds ``batch_size * K`` patches. Place it after the cached deterministic preprocessing that
    loads the full-resolution image and its landmarks; intensity transforms can follow it (they then touch only
    the patches).

    Args:
        keys: image keys (all on one grid; one draw for all), default ``"image"``.
        landmark_key: key of the landmarks ``(N, D)`` in voxel coordinates of the first image key.
        index_key: output key of the patch's centre landmark (an int64 scalar tensor), None to leave it out.
        patch_size, spacing, offset_sigma, offset_df, max_offset, rotate_range, scale_range, num_samples,
            sampling, padding_mode, pad_value, anti_aliasing, axes: see :class:`RandLandmarkPatches`.
        mode: interpolation, one or one per image key (``"nearest"`` for label maps).
        allow_missing_keys: don't raise when an image key is absent.
    """

    backend = RandLandmarkPatches.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        patch_size: Sequence[int] = (64, 64),
        spacing: float | Sequence[float] = 0.25,
        landmark_key: str = "landmarks",
        index_key: str | None = "patch_landmark",
        offset_sigma: float | Sequence[float] = 2.0,
        offset_df: float | None = None,
        max_offset: float | None = None,
        rotate_range: float | Sequence[float] = 0.26,
        scale_range: float = 0.1,
        num_samples: int = 1,
        sampling: str = "uniform",
        mode: str | Sequence[str] = "bilinear",
        padding_mode: str = "border",
        pad_value: float = 0.0,
        anti_aliasing: bool = True,
        axes: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.landmark_key = landmark_key
        self.index_key = index_key
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.sampler = RandLandmarkPatches(
            patch_size=patch_size,
            spacing=spacing,
            offset_sigma=offset_sigma,
            offset_df=offset_df,
            max_offset=max_offset,
            rotate_range=rotate_range,
            scale_range=scale_range,
            num_samples=num_samples,
            sampling=sampling,
            padding_mode=padding_mode,
            pad_value=pad_value,
            anti_aliasing=anti_aliasing,
            axes=axes,
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.sampler.randomize(data)

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        if self.landmark_key not in d:
            raise KeyError(
                f"RandLandmarkPatchesd: landmark key {self.landmark_key!r} not in the data (keys {list(d)})."
            )
        first = self.first_key(d)
        if first == []:
            raise KeyError(f"RandLandmarkPatchesd: none of the image keys {self.keys} is in the data (keys {list(d)}).")
        ref = d[first]
        patcher = self.sampler.patcher
        self.randomize(patcher.landmarks_world(d[self.landmark_key], ref))
        patches, landmarks = {}, None
        for key, mode in self.key_iterator(d, self.mode):
            if tuple(d[key].shape[1:]) != tuple(ref.shape[1:]):
                raise ValueError(
                    f"RandLandmarkPatchesd: {key!r} has spatial shape {tuple(d[key].shape[1:])}, {first!r} has "
                    f"{tuple(ref.shape[1:])}; one draw needs one grid."
                )
            patcher.mode = mode
            if key == first:
                patches[key], landmarks = self.sampler(d[key], d[self.landmark_key], randomize=False)
            else:
                patches[key] = self.sampler(d[key], d[self.landmark_key], randomize=False)[0]
        patcher.mode = self.mode[0]
        patches = {key: decollate_batch(value) for key, value in patches.items()}
        landmarks = decollate_batch(landmarks)
        out = []
        for k, idx in enumerate(self.sampler.landmark_indices):
            item = dict(d)
            for key, value in patches.items():
                item[key] = value[k]
            item[self.landmark_key] = landmarks[k]
            if self.index_key is not None:
                item[self.index_key] = torch.as_tensor(int(idx), dtype=torch.int64)
            out.append(item)
        return out


class LandmarkPatchesd(MapTransform):
    """Dictionary form of :class:`LandmarkPatches`: patches centred at the world points under ``centers_key``.

    Every image key is replaced by its patches ``(K, C, *P)`` (a batched ``MetaTensor``, one affine per patch),
    one per finite row of the centres ``(N, D)`` (world mm, e.g. a global stage's predictions after
    ``HeatmapsToLandmarksd``); ``index_key`` gets the landmark indices ``(K,)`` of the patches (NaN centres are
    skipped) and, when ``landmark_key`` is given, the landmarks ``(N, D)`` (voxel coordinates of the first image
    key) are replaced by their patch voxel coordinates ``(K, N, D)``.

    Args:
        keys: image keys, default ``"image"``.
        centers_key: key of the centres ``(N, D)``, world mm (RAS).
        patch_size, spacing, padding_mode, pad_value, anti_aliasing, axes: see :class:`LandmarkPatches`.
        landmark_key: landmarks to re-express in the patches, None to leave them.
        index_key: output key of the patches' landmark indices.
        mode: interpolation, one or one per image key.
        allow_missing_keys: don't raise when an image key is absent.
    """

    backend = LandmarkPatches.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        centers_key: str = "pred",
        patch_size: Sequence[int] = (64, 64),
        spacing: float | Sequence[float] = 0.25,
        landmark_key: str | None = None,
        index_key: str = "patch_landmark",
        mode: str | Sequence[str] = "bilinear",
        padding_mode: str = "border",
        pad_value: float = 0.0,
        anti_aliasing: bool = True,
        axes: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.centers_key = centers_key
        self.landmark_key = landmark_key
        self.index_key = index_key
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.patcher = LandmarkPatches(
            patch_size, spacing, padding_mode=padding_mode, pad_value=pad_value, anti_aliasing=anti_aliasing, axes=axes
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        c = d[self.centers_key]
        c = torch.as_tensor(np.asarray(c.detach().cpu() if isinstance(c, torch.Tensor) else c, dtype=np.float64))
        index = torch.isfinite(c).all(dim=-1).nonzero().flatten()
        first = self.first_key(d)
        for key, mode in self.key_iterator(d, self.mode):
            self.patcher.mode = mode
            lm = d.get(self.landmark_key) if (self.landmark_key is not None and key == first) else None
            out = self.patcher(d[key], c[index], lm)
            if lm is not None:
                d[key], d[self.landmark_key] = out
            else:
                d[key] = out
        d[self.index_key] = index
        return d
