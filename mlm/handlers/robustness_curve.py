"""Robustness curve of a landmark detector: MRE and SDR under untargeted L2 PGD at a list of noise levels."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from monai.engines import SupervisedEvaluator
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.adversarial_training import landmark_objective
from mlm.attacks import PGD, LandmarkAttackObjective
from mlm.handlers.attack import LandmarkAttackHandler
from mlm.metrics import point_errors
from mlm.robustness import robustness_row, write_robustness_report

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["AMAT_LEVELS", "RobustnessCurveHandler"]

#: the AMAT evaluation's L2 radii on a 3 x 200 x 160 image in [-1, 1] (``myEvaluateWithPGD_multi.py``)
AMAT_LEVELS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


class RobustnessCurveHandler:
    """When an evaluator completes, evaluate its data again under attacks of each strength and write the curve.

    For every level ``eps`` a ``SupervisedEvaluator`` with the evaluator's network, data loader, inferer and
    ``prepare_batch`` runs with ``postprocessing`` (decoding to world mm, as validation does; nothing is saved) and,
    for ``eps > 0``, a :class:`mlm.handlers.LandmarkAttackHandler` with untargeted :class:`mlm.attacks.PGD`:
    ``num_iterations`` steps of ``step_factor * eps / num_iterations`` (the AMAT evaluation: L2, 100 steps of
    ``5 eps / 100``), random start (seeded per image), away from the ground truth, on the network in eval mode.
    Unlike the authors' evaluation, whose ``[-1, 1]`` clamp is overwritten, ``value_range`` is kept. Each image's
    point errors (mm; px for pixel-only data) give MRE, SD, median and the SDR at ``radii``
    (:func:`mlm.robustness.robustness_row`); ``output_dir`` gets ``robustness.csv``, ``.md``, ``.json`` and
    ``.png`` (:func:`mlm.robustness.write_robustness_report`).

    Args:
        levels: perturbation radii, image intensity units (0: clean).
        postprocessing: decollated-item transform giving ``pred`` and ``label`` as ``(N, D)`` world coordinates.
        output_dir: folder of the report.
        objective: per-landmark attack losses; None: :func:`mlm.adversarial_training.landmark_objective` of the
            evaluator's network with ``sigma`` / ``gamma`` / ``objective_kind``.
        sigma, gamma, objective_kind: see :func:`mlm.adversarial_training.landmark_objective`.
        num_iterations, step_factor, norm: the attack (100, 5, ``"l2"``).
        value_range: ``(min, max)`` intensities kept (None: unbounded).
        radii: SDR radii (mm).
        seed: base seed of the random starts (:func:`mlm.handlers.image_seed` of each image's id).
        name: the model's name in the report.
        units: the errors' unit in the figure.
        logger_name: logger name (None: the engine's logger).
    """

    def __init__(
        self,
        levels: Sequence[float],
        postprocessing: Callable,
        output_dir: str | os.PathLike,
        objective: LandmarkAttackObjective | None = None,
        sigma: float | None = None,
        gamma: float | None = None,
        objective_kind: str = "auto",
        num_iterations: int = 100,
        step_factor: float = 5.0,
        norm: str = "l2",
        value_range: Sequence[float] | None = None,
        radii: Sequence[float] = (2.0, 2.5, 3.0, 4.0),
        seed: int = 0,
        name: str = "model",
        units: str = "mm",
        logger_name: str | None = None,
    ) -> None:
        levels = [float(v) for v in (levels if isinstance(levels, list | tuple) else [levels])]
        if not levels or any(not v >= 0 for v in levels):
            raise ValueError(f"RobustnessCurveHandler: levels must be radii >= 0, got {levels}.")
        if objective is None and sigma is None:
            raise ValueError("RobustnessCurveHandler: give an objective or the sigma of the default one.")
        self.levels = levels
        self.postprocessing = postprocessing
        self.output_dir = str(output_dir)
        self.objective = objective
        self.sigma, self.gamma, self.objective_kind = sigma, gamma, objective_kind
        self.num_iterations = int(num_iterations)
        self.step_factor = float(step_factor)
        self.norm = norm
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self.radii = [float(r) for r in radii]
        self.seed = int(seed)
        self.name = name
        self.units = units
        self._name = logger_name
        self.logger = logging.getLogger(logger_name)
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.COMPLETED, self)

    def settings(self) -> dict[str, Any]:
        """The attack's settings, as written to the report."""
        return {
            "attack": "untargeted PGD",
            "norm": self.norm,
            "num_iterations": self.num_iterations,
            "step": f"{self.step_factor:g} * eps / {self.num_iterations}",
            "random_start": True,
            "value_range": self.value_range,
            "objective": type(self.objective).__name__,
        }

    def attack_handler(self, eps: float) -> LandmarkAttackHandler:
        """The evaluator handler that attacks each batch at radius ``eps``."""
        attack = PGD(
            self.objective,
            eps=eps,
            step_size=self.step_factor * eps / max(self.num_iterations, 1),
            num_iterations=self.num_iterations,
            norm=self.norm,
            targeted=False,
            random_start=True,
            value_range=self.value_range,
        )
        return LandmarkAttackHandler(attack, seed=self.seed, id_key="id")

    def errors_at(self, engine: Engine, eps: float) -> np.ndarray:
        """``(B, N)`` point errors of the evaluator's data attacked at ``eps`` (clean at 0)."""
        errors: list[np.ndarray] = []

        def collect(inner: Engine) -> None:
            for item in inner.state.output:
                errors.append(point_errors(item["pred"], item["label"])[0])

        evaluator = SupervisedEvaluator(
            device=engine.state.device,
            val_data_loader=engine.data_loader,
            network=engine.network,
            inferer=engine.inferer,
            prepare_batch=engine.prepare_batch,
            postprocessing=self.postprocessing,
            val_handlers=[self.attack_handler(eps)] if eps > 0 else None,
        )
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, collect)
        evaluator.run()
        return np.stack(errors)

    def __call__(self, engine: Engine) -> None:
        if self.objective is None:
            self.objective = landmark_objective(engine.network, self.sigma, self.gamma, self.objective_kind)
        self.rows = []
        for eps in self.levels:
            row = robustness_row(eps, self.errors_at(engine, eps), self.radii)
            self.rows.append(row)
            sdr = ", ".join(f"{k}: {100 * v:.1f}%" for k, v in row.items() if k.startswith("sdr_"))
            self.logger.info(f"robustness eps {eps:g}: MRE {row['mre']:.3f} {self.units} ({sdr})")
        paths = write_robustness_report(
            self.output_dir, self.rows, self.settings(), self.name, self.radii[0] if self.radii else None, self.units
        )
        self.logger.info(f"robustness report: {paths['md']} and {paths['png']}")
