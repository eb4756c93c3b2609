"""Adversarial attacks on landmark detectors (pure torch): targeted I-FGSM, ATI-FGSM and PGD on per-landmark objectives.

- :mod:`mlm.attacks.objectives`: per-landmark losses ``L (B, N)`` of heatmap-only and heatmap + offset models.
- :mod:`mlm.attacks.iterative`: the attacks (:class:`TargetedIFGSM`, :class:`AdaptiveTargetedIFGSM`, :class:`PGD`).
- :mod:`mlm.attacks.protocol`: the random goals of the paper's protocol.
- :mod:`mlm.attacks.metrics`: targeted / stationary metrics at the paper's checkpoints, the isolation analysis.
- :mod:`mlm.attacks.factory`: eps in a bundle's intensity units, the attack by name, the output decoder.
- :mod:`mlm.attacks.letters`: user target points (CSV/JSON) and generated letter shapes.

The Ignite handler that runs an attack inside a MONAI evaluator is :class:`mlm.handlers.LandmarkAttackHandler`.
"""

from mlm.attacks.factory import (
    ATTACK_METHODS,
    LandmarkOutputDecoder,
    intensity_eps,
    intensity_value_range,
    paper_target_box,
    protocol_attack,
    to_grey_levels,
)
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
from mlm.attacks.letters import (
    letter_points,
    network_to_original_pixels,
    original_pixels_to_network,
    read_target_points,
    write_target_points,
)
from mlm.attacks.metrics import (
    PAPER_CHECKPOINTS,
    attack_checkpoints,
    attack_errors,
    attack_metrics,
    attack_summary,
    isolation_analysis,
    isolation_degree,
    pearson_correlation,
)
from mlm.attacks.objectives import (
    HeatmapAttackObjective,
    HeatmapOffsetAttackObjective,
    LandmarkAttackObjective,
    moved_landmarks,
)
from mlm.attacks.protocol import PAPER_TARGET_BOX_FRACTION, random_attack_goals, target_box_from_fraction

__all__ = [
    "ATTACK_METHODS",
    "PAPER_CHECKPOINTS",
    "PAPER_TARGET_BOX_FRACTION",
    "PGD",
    "AdaptiveTargetedIFGSM",
    "AttackResult",
    "AttackStep",
    "HeatmapAttackObjective",
    "HeatmapOffsetAttackObjective",
    "LandmarkAttack",
    "LandmarkAttackObjective",
    "LandmarkOutputDecoder",
    "TargetedIFGSM",
    "adaptive_landmark_weights",
    "attack_checkpoints",
    "attack_errors",
    "attack_metrics",
    "attack_summary",
    "intensity_eps",
    "intensity_value_range",
    "isolation_analysis",
    "isolation_degree",
    "letter_points",
    "network_to_original_pixels",
    "original_pixels_to_network",
    "paper_target_box",
    "pearson_correlation",
    "protocol_attack",
    "read_target_points",
    "to_grey_levels",
    "write_target_points",
    "iterative_landmark_attack",
    "moved_landmarks",
    "preserved_model_state",
    "random_attack_goals",
    "target_box_from_fraction",
]
