"""Helpers that the bundles' configs call: dataset checks, the landmark count and names from the datalist, pipelines,
the resumable sample stream, checkpoints, optimizer groups, DDP wiring; and a bundle's configs read in this process
as ``python -m monai.bundle run`` reads them in the bundle's folder (:func:`bundle_config_parser`).

Bundle configs stay declarative: every piece of logic they need is a function or class here (or in
``mlm.handlers``, ``mlm.engines``, ``transforms.post``), so that it can be tested without launching a bundle.
In a ``python -m monai.bundle`` process, importing this package installs :func:`install_error_hook`: a run that
fails ends with its traceback, one last line ``error: <file>: <problem>`` and exit status 1 (``mlm.bundle.errors``).
``metadata_schema.json`` is the JSON schema the bundles' ``configs/metadata.json`` is verified against
(``python -m monai.bundle verify_metadata --filepath``); see :func:`metadata_schema_path`.
"""

from mlm.bundle.checkpoints import (
    atomic_torch_save,
    check_checkpoint_compatible,
    checkpoint_candidates,
    checkpoint_landmark_count,
    latest_checkpoint,
    load_checkpoint,
)
from mlm.bundle.configs import bundle_config_parser, resolve_file_macros
from mlm.bundle.datasets import check_dataset_dir, load_split
from mlm.bundle.distributed import (
    distributed_device,
    finish_distributed,
    init_distributed,
    is_rank_zero,
    rank_zero_handlers,
    runs_on_every_rank,
    unwrap_ddp,
    wrap_ddp,
)
from mlm.bundle.domains import (
    DomainBlockSampler,
    DomainConcatDataset,
    UniversalGeometry,
    domain_datasets,
    domain_num_landmarks,
    domain_settings,
)
from mlm.bundle.errors import error_summary, install_error_hook, is_bundle_run, root_cause
from mlm.bundle.farnet import farnet, farnet_loss
from mlm.bundle.geometry import PreprocessingGeometry, checkpoint_geometry, geometry_overrides
from mlm.bundle.gu2net import gu2net, gu2net_loss
from mlm.bundle.landmarks import datalist_landmark_names, datalist_num_landmarks
from mlm.bundle.multitask import multitask_loss, multitask_unet
from mlm.bundle.optim import LR_SCHEDULES, iteration_lr_scheduler, parameter_groups
from mlm.bundle.pipelines import (
    PatchNormalization,
    full_resolution_preprocessing,
    landmark_preprocessing,
    random_window_crop,
)
from mlm.bundle.random_states import GlobalRandomStates
from mlm.bundle.resumable_dataset import ResumableCacheDataset
from mlm.bundle.sampling import DataPosition, ResumableSampler, SampleKey, sample_seed
from mlm.bundle.schema import metadata_schema_path
from mlm.bundle.training_length import num_epochs
from mlm.memory_format import with_memory_format

__all__ = [
    "LR_SCHEDULES",
    "DataPosition",
    "DomainBlockSampler",
    "DomainConcatDataset",
    "UniversalGeometry",
    "domain_datasets",
    "domain_num_landmarks",
    "domain_settings",
    "gu2net",
    "gu2net_loss",
    "PatchNormalization",
    "PreprocessingGeometry",
    "GlobalRandomStates",
    "ResumableCacheDataset",
    "ResumableSampler",
    "SampleKey",
    "atomic_torch_save",
    "bundle_config_parser",
    "check_checkpoint_compatible",
    "check_dataset_dir",
    "checkpoint_geometry",
    "geometry_overrides",
    "checkpoint_candidates",
    "checkpoint_landmark_count",
    "datalist_landmark_names",
    "datalist_num_landmarks",
    "distributed_device",
    "error_summary",
    "farnet",
    "farnet_loss",
    "full_resolution_preprocessing",
    "finish_distributed",
    "init_distributed",
    "install_error_hook",
    "is_bundle_run",
    "is_rank_zero",
    "iteration_lr_scheduler",
    "landmark_preprocessing",
    "latest_checkpoint",
    "load_checkpoint",
    "load_split",
    "metadata_schema_path",
    "multitask_loss",
    "multitask_unet",
    "num_epochs",
    "parameter_groups",
    "random_window_crop",
    "resolve_file_macros",
    "rank_zero_handlers",
    "runs_on_every_rank",
    "root_cause",
    "sample_seed",
    "unwrap_ddp",
    "with_memory_format",
    "wrap_ddp",
]

if is_bundle_run():
    install_error_hook()
