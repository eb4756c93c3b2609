"""Helpers of the bundle tests: tiny-geometry overrides and a ``python -m monai.bundle run`` launcher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"

#: tiny geometry for the spine bundle: 8 mm voxels, 16x16x32 windows, 4 filters, 4x spatial downsampling
SPINE_TINY = [
    "--pixdim",
    "8.0",
    "--patch_size",
    "[16,16,32]",
    "--sliding_window_step",
    "[16,16,16]",
    "--num_filters",
    "4",
    "--network_def#spatial_downsample",
    "4",
    "--network_def#spatial_kernel_size",
    "3",
    "--num_workers",
    "0",
]
#: tiny geometry for the ceph bundle: 4 mm pixels, 32x32 input, 4 filters
CEPH_TINY = [
    "--pixdim",
    "4.0",
    "--patch_size",
    "[32,32]",
    "--num_filters",
    "4",
    "--network_def#spatial_downsample",
    "4",
    "--network_def#spatial_kernel_size",
    "3",
    "--num_workers",
    "0",
]


#: tiny geometry for the hand X-ray bundle: the phantom (4 mm pixels) fitted into 32x32, 4 filters
HAND_XRAY_TINY = [
    "--patch_size",
    "[32,32]",
    "--num_filters",
    "4",
    "--network_def#spatial_downsample",
    "4",
    "--network_def#spatial_kernel_size",
    "3",
    "--num_workers",
    "0",
]
#: tiny geometry for the hand MRI bundle: 8 mm voxels, 32x16x40 input, 4 filters, 4x spatial downsampling
HAND_MRI_TINY = [
    "--pixdim",
    "8.0",
    "--patch_size",
    "[32,16,40]",
    "--num_filters",
    "4",
    "--network_def#spatial_downsample",
    "4",
    "--network_def#spatial_kernel_size",
    "3",
    "--num_workers",
    "0",
]


def run_bundle(bundle: str, configs: list[str], args: list[str], torchrun: int = 0, timeout: float = 240):
    """Run ``python -m monai.bundle run`` (or torchrun with ``torchrun`` processes) in the bundle folder."""
    config = "[" + ",".join(f"'configs/{c}'" for c in configs) + "]"
    launcher = [sys.executable, "-m"]
    if torchrun:
        launcher += ["torch.distributed.run", f"--nproc_per_node={torchrun}", "--master_port=29517", "-m"]
    cmd = launcher + ["monai.bundle", "run", "--config_file", config, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, cwd=BUNDLES / bundle, env=env, capture_output=True, text=True, timeout=timeout)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"bundle run failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result
