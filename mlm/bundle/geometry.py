"""The preprocessing geometry a model was trained with, carried in its checkpoints.

A heatmap network only works on inputs prepared as in training: the same pixel size, grid, resize mode and intensity
normalisation. ``train.yaml`` saves a :class:`PreprocessingGeometry` as the checkpoints' ``geometry`` entry;
``inference.yaml`` and a resumed training load it into their own, which refuses a mismatch with a message naming the
overrides that reproduce the training's geometry (:meth:`PreprocessingGeometry.load_state_dict`).
:func:`checkpoint_geometry` reads it back so that a tool can reuse it (``scripts/predict.py`` does). A checkpoint
written before the geometry was saved has no entry: loading it only logs that nothing was checked.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GEOMETRY_KEY", "PreprocessingGeometry", "checkpoint_geometry", "geometry_overrides"]

#: the checkpoint entry holding the geometry
GEOMETRY_KEY = "geometry"

#: the config ids (and so command-line overrides) of the geometry's fields
GEOMETRY_FIELDS = ("spatial_dims", "pixdim", "preprocessed_size", "resize_mode", "intensity_normalization")


def _plain(value: Any) -> Any:
    """Config values as plain comparable Python: sequences -> lists of floats/ints, numbers as they are."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, Sequence) or hasattr(value, "tolist"):
        value = value.tolist() if hasattr(value, "tolist") else list(value)
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _override_text(value: Any) -> str:
    """A value as a ``python -m monai.bundle run --key VALUE`` argument."""
    if isinstance(value, list):
        return '"[' + ",".join(_override_text(v) for v in value) + ']"'
    return str(value)


class PreprocessingGeometry:
    """The global stage's input geometry, saved in checkpoints (``state_dict``) and checked on load.

    Args:
        spatial_dims: 2 or 3.
        pixdim: the preprocessing's output spacing (mm; <= 0: the image's own, with ``resize_mode`` ``"fit"``).
        preprocessed_size: the preprocessed grid (``-1`` keeps an axis).
        resize_mode: ``"pad_crop"``, ``"fit"`` or ``"resize"`` (:func:`mlm.bundle.landmark_preprocessing`).
        intensity_normalization: the intensity normalisation's name.
        name: logger name.
        domain: the domain of a universal model this run uses (:class:`mlm.bundle.domains.UniversalGeometry`
            checkpoints record one geometry per domain); None for a single-domain model.
    """

    def __init__(
        self,
        spatial_dims: int,
        pixdim: float | Sequence[float],
        preprocessed_size: Sequence[int],
        resize_mode: str,
        intensity_normalization: str | None,
        name: str | None = None,
        domain: str | None = None,
    ) -> None:
        self.domain = domain
        self.values = {
            "spatial_dims": _plain(spatial_dims),
            "pixdim": _plain(pixdim),
            "preprocessed_size": _plain(preprocessed_size),
            "resize_mode": resize_mode,
            "intensity_normalization": intensity_normalization,
        }
        self.logger = logging.getLogger(name)

    def state_dict(self) -> dict[str, Any]:
        """The geometry as a plain dict (what the checkpoint holds)."""
        return dict(self.values)

    def mismatches(self, state: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{field: (checkpoint's value, this run's value)}`` of the fields that differ."""
        return {
            k: (_plain(state[k]), v) for k, v in self.values.items() if k in state and not _same(_plain(state[k]), v)
        }

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Check a checkpoint's geometry against this run's.

        Raises:
            ValueError: a field differs; the message gives both values and the overrides that reproduce the
                training's geometry.
        """
        if not state:
            self.logger.info("the checkpoint records no preprocessing geometry: the geometry was not checked.")
            return
        state = self._domain_state(state)
        diff = self.mismatches(state)
        if diff:
            fields = "; ".join(f"{k}: trained with {a}, this run uses {b}" for k, (a, b) in diff.items())
            overrides = " ".join(f"--{k} {_override_text(a)}" for k, (a, _) in diff.items())
            raise ValueError(
                f"the model was trained on another preprocessing geometry ({fields}): run with the training's configs "
                f"or pass {overrides}."
            )
        self.logger.info(f"preprocessing geometry as in training: {self.values}.")

    def _domain_state(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """This run's domain's geometry of a universal model's checkpoint (``{"domains": {...}}``), else ``state``."""
        domains = state.get("domains")
        if not isinstance(domains, Mapping):
            if self.domain is not None:
                raise ValueError(
                    f"the checkpoint is a single-domain model, not a universal one (domain {self.domain!r} asked for): "
                    "run without --universal true."
                )
            return state
        if self.domain is None:
            raise ValueError(
                f"the checkpoint is a universal model of the domains {list(domains)}: predict one of them with "
                "configs/domain.yaml --domain NAME --universal true."
            )
        if self.domain not in domains:
            raise ValueError(f"the checkpoint's model has no domain {self.domain!r} (its domains: {sorted(domains)}).")
        return domains[self.domain]


def checkpoint_geometry(checkpoint: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any] | None:
    """The geometry a checkpoint (a loaded dict or its path) records, or None when it records none."""
    if not isinstance(checkpoint, Mapping):
        from mlm.bundle.checkpoints import load_checkpoint

        checkpoint = load_checkpoint(checkpoint)
    state = checkpoint.get(GEOMETRY_KEY)
    return dict(state) if isinstance(state, Mapping) else None


def geometry_overrides(geometry: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides (``{config id: value}``) that reproduce a recorded geometry."""
    return {k: geometry[k] for k in GEOMETRY_FIELDS if k in geometry}
