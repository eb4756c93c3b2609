"""Intensity normalisation and augmentation used by the landmark methods (array form)."""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import RandomizableTransform, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_tensor

__all__ = ["NormalizeCT", "NormalizeXRay", "RandIntensityShiftScale"]


def _float(img: NdarrayOrTensor) -> torch.Tensor:
    t = convert_to_tensor(img, track_meta=True)
    return t if t.is_floating_point() else t.float()


class NormalizeCT(Transform):
    """CT in Hounsfield units to [-1, 1]: ``clip(I / scale, -1, 1)`` (SCN spine: ``scale`` = 2048).

    Args:
        scale: HU that map to 1, default 2048.
        clip: clip to [-1, 1], default True.

    Shape ``(C, *S)`` in and out; float output (MetaTensor meta kept).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, scale: float = 2048.0, clip: bool = True) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}.")
        self.scale = scale
        self.clip = clip

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        out = _float(img) / self.scale
        return out.clamp(-1.0, 1.0) if self.clip else out


class NormalizeXRay(Transform):
    """Radiograph to [-1, 1].

    Args:
        mode: ``"8bit"`` (default): ``clip((I - 128) / 128, -1, 1)`` as in SCN cephalometry;
            ``"minmax"``: ``2 (I - min) / (max - min) - 1`` over the whole image (a constant image gives 0).

    Shape ``(C, *S)`` in and out; float output (MetaTensor meta kept).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, mode: str = "8bit") -> None:
        if mode not in ("8bit", "minmax"):
            raise ValueError(f"mode must be '8bit' or 'minmax', got {mode!r}.")
        self.mode = mode

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        t = _float(img)
        if self.mode == "8bit":
            return ((t - 128.0) / 128.0).clamp(-1.0, 1.0)
        lo, hi = t.min(), t.max()
        if float(hi - lo) == 0.0:
            return t * 0.0
        return 2.0 * (t - lo) / (hi - lo) - 1.0


class RandIntensityShiftScale(RandomizableTransform):
    """SCN intensity augmentation: ``I + s`` with ``s ~ U(-shift, shift)``, then ``* (1 + f)`` with
    ``f ~ U(-scale, scale)``, then optional clamp.

    Args:
        shift: half-range of the additive shift (default 0.25, SCN cephalometry; spine 0.15).
        scale: half-range of the relative scale (default 0.25; spine 0.15).
        clip: ``(min, max)`` to clamp to after scaling, default ``(-1, 1)``; None for no clamp.
        prob: probability of applying.

    Shape ``(C, *S)`` in and out.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        shift: float = 0.25,
        scale: float = 0.25,
        clip: tuple[float, float] | None = (-1.0, 1.0),
        prob: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.shift = shift
        self.scale = scale
        self.clip = clip
        self._shift = 0.0
        self._factor = 1.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        self._shift = float(self.R.uniform(-self.shift, self.shift))
        self._factor = 1.0 + float(self.R.uniform(-self.scale, self.scale))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        out = (_float(img) + self._shift) * self._factor
        return out.clamp(*self.clip) if self.clip is not None else out
