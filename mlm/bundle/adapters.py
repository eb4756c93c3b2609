"""Checks shared by the adapters that build a method's network and loss from the shared bundle configs' keys.

The shared ``train.yaml`` / ``inference.yaml`` give ``network_def`` and ``loss`` the SpatialConfiguration-Net's keys
with the method's ``_target_`` (:mod:`mlm.bundle.multitask`, :mod:`mlm.bundle.farnet`, :mod:`mlm.bundle.gu2net`).
A key that does not apply to the method must hold ``null`` in its recipe; a value that would change the method raises
here instead of being dropped silently.
"""

from __future__ import annotations

from typing import Any

__all__ = ["refuse_fixed_sigma_keys", "refuse_unused_keys"]


def refuse_unused_keys(where: str, method: str, why: str, **values: Any) -> None:
    """Raise ``ValueError`` for the first of ``values`` that is set (not None).

    Args:
        where: the adapter's name (the message's prefix).
        method: the method's name as the message says it (``"FARNet"``).
        why: why the keys do not apply (``"DenseNet-121 backbone; null"``).
        values: ``{key: value}`` of the keys that must be None.
    """
    for name, value in values.items():
        if value is not None:
            raise ValueError(f"{where}: {method} has no {name} to set ({why}), got {value!r}.")


def refuse_fixed_sigma_keys(where: str, targets: str, gamma: float | None, sigma_weight: float | None) -> None:
    """Raise ``ValueError`` when a loss with fixed peak-1 targets gets the SCN's ``gamma`` (target scale) or a
    ``sigma_weight`` (sigma regulariser); ``targets`` describes the method's targets for the message."""
    if gamma is not None:
        raise ValueError(f"{where}: the targets are {targets} (gamma null), got gamma={gamma}.")
    if sigma_weight:
        raise ValueError(f"{where}: there is no sigma regulariser (sigma_weight null), got {sigma_weight}.")
