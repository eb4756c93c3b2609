"""Adversarial attacks on landmark detectors (pure torch): targeted I-FGSM, ATI-FGSM and PGD on per-landmark objectives.

- :mod:`mlm.attacks.objectives`: per-landmark losses ``L (B, N)`` of heatmap-only and heatmap + offset models.
- :mod:`mlm.attacks.iterative`: the attacks (:class:`TargetedIFGSM`, :class:`AdaptiveTargetedIFGSM`, :class:`PGD`).
- :mod:`mlm.attacks.protocol`: the random goals of the paper's protocol.

The Ignite handler that runs an attack inside a MONAI evaluator is :class:`mlm.handlers.LandmarkAttackHandler`.
"""

from mlm.attacks.iterative import (
    PGD,
    AdaptiveTargetedIFGSM,
    AttackResult,
    AttackStep,
    LandmarkAttack,
    TargetedIFGSM,
    adaptive_landmark_weights,
    iterative_landmark_attack,
    preserved_model_state,
)
from mlm.attacks.objectives import (
    HeatmapAttackObjective,
    HeatmapOffsetAttackObjective,
    LandmarkAttackObjective,
    moved_landmarks,
)
from mlm.attacks.protocol import PAPER_TARGET_BOX_FRACTION, random_attack_goals, target_box_from_fraction

__all__ = [
    "PAPER_TARGET_BOX_FRACTION",
    "PGD",
    "AdaptiveTargetedIFGSM",
    "AttackResult",
    "AttackStep",
    "HeatmapAttackObjective",
    "HeatmapOffsetAttackObjective",
    "LandmarkAttack",
    "LandmarkAttackObjective",
    "TargetedIFGSM",
    "adaptive_landmark_weights",
    "iterative_landmark_attack",
    "moved_landmarks",
    "preserved_model_state",
    "random_attack_goals",
    "target_box_from_fraction",
]
