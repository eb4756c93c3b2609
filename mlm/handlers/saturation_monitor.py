"""Watch the SpatialConfiguration-Net's spatial-configuration tanh during training and warn when it saturates."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from mlm.bundle.distributed import unwrap_ddp

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["SpatialSaturationMonitor"]


class SpatialSaturationMonitor:
    """Measure how much of the spatial-configuration component's tanh input is saturated, and warn when most is.

    A forward hook on ``network.spatial_configuration.heatmaps`` (the conv before the tanh of
    :class:`mlm.networks.SpatialConfigurationNet`) records, for every training iteration, the fraction of values
    with ``|x| > threshold`` (``tanh'(3) ~ 0.01``). Every epoch (``val_interval`` iterations in the bundles) the
    mean fraction is logged and stored in ``engine.state.metrics["spatial_saturation"]``; above ``warn_fraction``
    a warning says that the spatial heatmaps have become constant +-1 and no longer learn: the SCN has reduced to
    its local-appearance part (seen with Adam at 1e-3 on the spine; the fix is a lower learning rate for that
    component, ``module_lr_factors`` of :func:`mlm.bundle.parameter_groups`). Networks without the component
    (e.g. the Localization U-Net) are left alone.

    Args:
        network: the trained network (a ``DistributedDataParallel`` wrapper works too).
        threshold: ``|pre-tanh|`` above which a value counts as saturated.
        warn_fraction: warn when the epoch's mean saturated fraction exceeds this.
        name: logger name.
    """

    def __init__(
        self, network: nn.Module, threshold: float = 3.0, warn_fraction: float = 0.9, name: str = "SpatialSaturation"
    ) -> None:
        if threshold <= 0 or not 0.0 <= warn_fraction <= 1.0:
            raise ValueError(f"threshold must be > 0 and warn_fraction in [0, 1], got {threshold}, {warn_fraction}.")
        spatial = getattr(unwrap_ddp(network), "spatial_configuration", None)
        self.target: nn.Module | None = getattr(spatial, "heatmaps", None)
        self.threshold = float(threshold)
        self.warn_fraction = float(warn_fraction)
        self.logger = logging.getLogger(name)
        self._sum: torch.Tensor | float = 0.0
        self._count = 0
        self.history: list[tuple[int, float]] = []

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        if module.training:
            # stays a tensor on the network's device: no host sync per iteration
            self._sum = self._sum + (output.detach().abs() > self.threshold).float().mean()
            self._count += 1

    def attach(self, engine: Engine) -> None:
        if self.target is None:
            self.logger.debug("no spatial-configuration component: nothing to monitor")
            return
        self.target.register_forward_hook(self._hook)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.report)

    def report(self, engine: Engine) -> None:
        if self._count == 0:
            return
        fraction = float(self._sum) / self._count
        self._sum, self._count = 0.0, 0
        iteration = int(engine.state.iteration)
        self.history.append((iteration, fraction))
        engine.state.metrics["spatial_saturation"] = fraction
        msg = f"iteration {iteration}: {100 * fraction:.1f}% of the spatial-configuration tanh inputs saturated"
        if fraction > self.warn_fraction:
            self.logger.warning(
                f"{msg}: the spatial heatmaps are a constant +-1 and no longer learn, so the SCN works as its "
                "local-appearance part alone. Lower that component's learning rate (module_lr_factors: "
                "{spatial_configuration: 0.1}) or the overall lr."
            )
        else:
            self.logger.info(msg)
