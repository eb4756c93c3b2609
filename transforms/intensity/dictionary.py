"""Intensity normalisation and augmentation used by the landmark methods (dictionary form)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform

from transforms.intensity.array import NormalizeCT, NormalizeXRay, RandIntensityShiftScale

__all__ = ["NormalizeCTd", "NormalizeXRayd", "RandIntensityShiftScaled"]


class NormalizeCTd(MapTransform):
    """Dictionary form of :class:`NormalizeCT` (``clip(HU / scale, -1, 1)``, default ``scale`` 2048)."""

    backend = NormalizeCT.backend

    def __init__(
        self, keys: KeysCollection = "image", scale: float = 2048.0, clip: bool = True, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeCT(scale=scale, clip=clip)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


class NormalizeXRayd(MapTransform):
    """Dictionary form of :class:`NormalizeXRay` (``mode`` ``"8bit"`` or ``"minmax"``)."""

    backend = NormalizeXRay.backend

    def __init__(self, keys: KeysCollection = "image", mode: str = "8bit", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeXRay(mode=mode)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


class RandIntensityShiftScaled(RandomizableTransform, MapTransform):
    """Dictionary form of :class:`RandIntensityShiftScale`: one draw per data dict, applied to every key."""

    backend = RandIntensityShiftScale.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        shift: float = 0.25,
        scale: float = 0.25,
        clip: tuple[float, float] | None = (-1.0, 1.0),
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.shifter = RandIntensityShiftScale(shift=shift, scale=scale, clip=clip, prob=1.0)

    def set_random_state(self, seed: int | None = None, state=None) -> RandIntensityShiftScaled:
        super().set_random_state(seed, state)
        self.shifter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.shifter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.shifter(d[key], randomize=False)
        return d
