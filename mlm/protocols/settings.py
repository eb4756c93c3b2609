"""The evaluation protocols' settings: radii, grouping, normalisation and identification of each named protocol."""

from __future__ import annotations

from dataclasses import dataclass

from mlm.data.hand_xray import WRIST_WIDTH_MM, WRIST_WIDTH_PAIR
from mlm.metrics import DEFAULT_RADII

__all__ = ["PROTOCOLS", "CSI_REGIONS", "ProtocolSettings", "protocol_defaults"]

PROTOCOLS = ("isbi2015", "hand", "csi2014", "generic")
#: CSI 2014 regions (slot ranges of ``mlm.data.csi2014.VERTEBRA_NAMES``).
CSI_REGIONS = {"Cervical": range(0, 7), "Thoracic": range(7, 19), "Lumbar": range(19, 24), "Sacral": range(24, 26)}


@dataclass
class ProtocolSettings:
    """What a protocol computes.

    Attributes:
        radii: SDR / outlier radii (mm, or normalised mm).
        groups: ``"splits"`` (one group per datalist split, predictions of all folders pooled: ISBI test sets)
            or ``"folds"`` (one group per prediction folder, plus their union when there are several).
        splits: default splits for ``groups="splits"``.
        normalize_pair: zero-based landmark pair whose distance is normalised to ``normalize_distance`` (hand).
        normalize_distance: mm spanned by ``normalize_pair``.
        identification: compute the identification rate (CSI 2014).
        max_dist: identification radius, mm (``<=``).
    """

    radii: tuple[float, ...] = DEFAULT_RADII
    groups: str = "folds"
    splits: tuple[str, ...] = ()
    normalize_pair: tuple[int, int] | None = None
    normalize_distance: float = 50.0
    identification: bool = False
    max_dist: float = 20.0


def protocol_defaults(protocol: str) -> ProtocolSettings:
    """The settings of a named protocol (see the module docstring)."""
    if protocol == "isbi2015":
        return ProtocolSettings(radii=(2.0, 2.5, 3.0, 4.0), groups="splits", splits=("test1", "test2"))
    if protocol == "hand":
        return ProtocolSettings(
            radii=(2.0, 4.0, 10.0), normalize_pair=tuple(WRIST_WIDTH_PAIR), normalize_distance=float(WRIST_WIDTH_MM)
        )
    if protocol == "csi2014":
        return ProtocolSettings(radii=(20.0,), identification=True, max_dist=20.0)
    if protocol == "generic":
        return ProtocolSettings(radii=DEFAULT_RADII)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
