"""Adversarial training of landmark detectors: standard (SAT) and adaptive-margin (AMAT) adversarial training.

- :mod:`mlm.adversarial_training.objectives`: the attack objective that matches a bundle's model and loss
  (heatmap-only or heatmap + offset, 2D and 3D).
- :mod:`mlm.adversarial_training.loss`: :class:`AdversarialTrainingLoss`, the trainer's loss with an adversarial
  term: ``(1 - w) * clean + w * adversarial``.
- :mod:`mlm.adversarial_training.margins`: AMAT's per-sample margins (:class:`AdaptiveMargins`) and the loss
  thresholds from a clean pass (:func:`clean_thresholds`, :func:`huber_location_scale`).

The Ignite handlers that use them are :class:`mlm.handlers.AdversarialTrainingHandler` (SAT) and
:class:`mlm.handlers.AdaptiveMarginTrainingHandler` (AMAT); the robustness curve is
:class:`mlm.handlers.RobustnessCurveHandler` with the writers of :mod:`mlm.robustness`.
"""

from mlm.adversarial_training.loss import AdversarialTrainingLoss
from mlm.adversarial_training.margins import (
    THRESHOLD_METHODS,
    AdaptiveMargins,
    clean_thresholds,
    huber_location_scale,
)
from mlm.adversarial_training.objectives import (
    LossFollowingHeatmapObjective,
    is_heatmap_offset_network,
    landmark_objective,
    training_objective,
    unwrap_network,
)

__all__ = [
    "THRESHOLD_METHODS",
    "AdaptiveMargins",
    "AdversarialTrainingLoss",
    "LossFollowingHeatmapObjective",
    "clean_thresholds",
    "huber_location_scale",
    "is_heatmap_offset_network",
    "landmark_objective",
    "training_objective",
    "unwrap_network",
]
