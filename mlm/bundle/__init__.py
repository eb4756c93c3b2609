"""Helpers that the bundles' configs call: dataset checks, pipelines, checkpoints, optimizer groups, DDP wiring.

Bundle configs stay declarative: every piece of logic they need is a function or class here (or in
``mlm.handlers``, ``mlm.engines``, ``mlm.prediction``), so that it can be tested without launching a bundle.
``metadata_schema.json`` is the JSON schema the bundles' ``configs/metadata.json`` is verified against
(``python -m monai.bundle verify_metadata --filepath``); see :func:`metadata_schema_path`.
"""

from mlm.bundle.checkpoints import (
    check_checkpoint_compatible,
    checkpoint_landmark_count,
    latest_checkpoint,
)
from mlm.bundle.datasets import check_dataset_dir, load_split
from mlm.bundle.distributed import (
    distributed_device,
    every_rank_handler_types,
    init_distributed,
    is_rank_zero,
    rank_zero_handlers,
    unwrap_ddp,
    wrap_ddp,
)
from mlm.bundle.optim import LR_SCHEDULES, iteration_lr_scheduler, parameter_groups
from mlm.bundle.pipelines import landmark_preprocessing, random_window_crop
from mlm.bundle.schema import metadata_schema_path

__all__ = [
    "LR_SCHEDULES",
    "check_checkpoint_compatible",
    "check_dataset_dir",
    "checkpoint_landmark_count",
    "distributed_device",
    "every_rank_handler_types",
    "init_distributed",
    "is_rank_zero",
    "iteration_lr_scheduler",
    "landmark_preprocessing",
    "latest_checkpoint",
    "load_split",
    "metadata_schema_path",
    "parameter_groups",
    "random_window_crop",
    "rank_zero_handlers",
    "unwrap_ddp",
    "wrap_ddp",
]
