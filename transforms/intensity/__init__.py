"""Intensity normalisation (CT, X-ray) and the SCN random intensity shift/scale."""

from .array import NormalizeCT, NormalizeXRay, RandIntensityShiftScale
from .dictionary import NormalizeCTd, NormalizeXRayd, RandIntensityShiftScaled

__all__ = [
    "NormalizeCT",
    "NormalizeCTd",
    "NormalizeXRay",
    "NormalizeXRayd",
    "RandIntensityShiftScale",
    "RandIntensityShiftScaled",
]
