"""Ignite/MONAI handlers used by the landmark bundles (one handler per file)."""

from mlm.handlers.adaptive_margin_training import AdaptiveMarginTrainingHandler
from mlm.handlers.adversarial_training import AdversarialTrainingHandler
from mlm.handlers.attack import LandmarkAttackHandler, image_seed
from mlm.handlers.attack_report import LandmarkAttackReportHandler
from mlm.handlers.checkpoint_loader import LandmarkCheckpointLoader
from mlm.handlers.checkpoint_saver import AtomicCheckpointSaver, AtomicDiskSaver
from mlm.handlers.gradient_clipping import GradientNormClipping
from mlm.handlers.gradient_sync import AllReduceGradients
from mlm.handlers.iteration_limit import IterationLimit
from mlm.handlers.landmark_report import LandmarkReportHandler, stage_reports
from mlm.handlers.outside_summary import OutsideLandmarksSummary, count_dropped_landmarks, landmarks_outside_grid
from mlm.handlers.resume_from_checkpoint import ResumeFromCheckpoint
from mlm.handlers.robustness_curve import RobustnessCurveHandler
from mlm.handlers.saturation_monitor import SpatialSaturationMonitor
from mlm.handlers.sigma_logger import SigmaLogger
from mlm.handlers.stop_on_signal import StopOnSignal, TrainingStopped
from mlm.handlers.training_checkpoint_saver import TrainingCheckpointSaver

__all__ = [
    "AdaptiveMarginTrainingHandler",
    "AdversarialTrainingHandler",
    "AllReduceGradients",
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "GradientNormClipping",
    "IterationLimit",
    "LandmarkAttackHandler",
    "LandmarkAttackReportHandler",
    "LandmarkCheckpointLoader",
    "LandmarkReportHandler",
    "OutsideLandmarksSummary",
    "landmarks_outside_grid",
    "ResumeFromCheckpoint",
    "RobustnessCurveHandler",
    "SigmaLogger",
    "SpatialSaturationMonitor",
    "StopOnSignal",
    "TrainingCheckpointSaver",
    "TrainingStopped",
    "count_dropped_landmarks",
    "image_seed",
    "stage_reports",
]
