"""Helpers of the bundle tests: tiny-geometry overrides, a ``python -m monai.bundle run`` launcher, and bundle
trainers built in this process (no launch cost)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import yaml

from mlm.bundle.launch import BUNDLES_DIR as BUNDLES
from mlm.bundle.launch import run_bundle as _run_bundle

__all__ = [
    "BUNDLES",
    "CEPH_TINY",
    "FARNET_TINY",
    "GU2NET_TINY",
    "HAND_MRI_TINY",
    "HAND_XRAY_TINY",
    "MTUNET_TINY",
    "SPINE_TINY",
    "assert_identical",
    "bundle_parser",
    "check",
    "clean_env",
    "gu2net_domains",
    "run_bundle",
    "train_tiny",
]


def tiny_geometry(patch_size: str, pixdim: float | None = None, step: str | None = None) -> list[str]:
    """Overrides for a tiny network: 4 filters, 4x spatial downsampling with 3^D kernels, no loader workers."""
    args = ["--patch_size", patch_size] + (["--pixdim", str(pixdim)] if pixdim else [])
    args += ["--sliding_window_step", step] if step else []
    args += ["--num_filters", "4", "--network_def#spatial_downsample", "4", "--network_def#spatial_kernel_size", "3"]
    return args + ["--num_workers", "0"]


#: spine: 8 mm voxels, 16x16x32 windows every 16 voxels
SPINE_TINY = tiny_geometry("[16,16,32]", 8.0, "[16,16,16]")
#: cephalograms: 8 mm pixels, 32x32 input (256 mm: the whole 192 x 240 mm phantom in the network's field of view)
CEPH_TINY = tiny_geometry("[32,32]", 8.0)
#: hand X-rays: the phantom (4 mm pixels) fitted into 32x32
HAND_XRAY_TINY = tiny_geometry("[32,32]")
#: hand MRI: 8 mm voxels, 32x16x40 input
HAND_MRI_TINY = tiny_geometry("[32,16,40]", 8.0)
#: mtunet_ceph: 4 mm cephalogram phantom pixels in a 64x64 input, a 4-filter encoder, R = 3 px (no SCN arguments)
MTUNET_TINY = [
    "--patch_size",
    "[64,64]",
    "--pixdim",
    "4.0",
    "--num_filters",
    "4",
    "--sigma",
    "3.0",
    "--num_workers",
    "0",
]

#: farnet_ceph: 4 mm cephalogram phantom pixels in a 64x64 input (a multiple of 32), sigma 3 px (DenseNet-121 widths)
FARNET_TINY = ["--patch_size", "[64,64]", "--pixdim", "4.0", "--sigma", "3.0", "--num_workers", "0"]

#: gu2net_universal: 4 base filters, 2 images per batch (of one domain each in the universal model); the input size
#: of each domain is gu2net_domains' (or --patch_size for a single-domain run)
GU2NET_TINY = ["--num_filters", "4", "--num_workers", "0", "--batch_size", "2"]


def gu2net_domains(**dataset_dirs: Path) -> list[str]:
    """``--domain_overrides`` of gu2net_universal: every domain (head, hand, chest) fitted into 32x32, the data of
    those named (``hand=hand_xray_data``) in the given folders."""
    overrides = {name: {"cpu": {"patch_size": [32, 32]}} for name in ("head", "hand", "chest")}
    for name, folder in dataset_dirs.items():
        overrides[name]["dataset_dir"] = str(folder)
    return ["--domain_overrides", repr(overrides)]


def run_bundle(bundle: str, configs: list[str], args: list[str], torchrun: int = 0, timeout: float = 240):
    """``python -m monai.bundle run`` (or torchrun with ``torchrun`` processes) in the bundle folder, one thread."""
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return _run_bundle(bundle, configs, args, torchrun=torchrun, timeout=timeout, env=threads)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"bundle run failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def train_tiny(
    bundle: str,
    data: Path,
    out: Path,
    tiny: list[str],
    extra: list[str] = (),
    configs: Sequence[str] = ("train.yaml", "cpu.yaml"),
) -> Path:
    """Two training iterations of ``bundle`` (``configs`` + ``tiny``) into ``out``; returns ``out``."""
    args = ["--dataset_dir", str(data), "--ckpt_dir", str(out / "models"), "--output_dir", str(out / "eval")]
    args += [*tiny, *extra, "--num_iterations", "2", "--val_interval", "1"]
    result = check(run_bundle(bundle, list(configs), args))
    (out / "train.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    return out


def bundle_parser(bundle: str, configs: Sequence[str], args: Sequence[str]):
    """A ``monai.bundle.ConfigParser`` of ``bundles/<bundle>/configs/<configs>`` with ``--key value`` overrides
    ``args`` (values read as YAML, like the command line does), as ``python -m monai.bundle run`` builds it in the
    bundle's folder (:func:`mlm.bundle.bundle_config_parser`), after its ``initialize`` step (``set_determinism``). ``parser.get_parsed_content("train#trainer")`` is the trainer."""
    from mlm.bundle import bundle_config_parser

    if len(args) % 2:
        raise ValueError(f"overrides must be --key value pairs, got {list(args)}")
    overrides = {key.removeprefix("--"): yaml.safe_load(value) for key, value in zip(args[::2], args[1::2])}
    parser = bundle_config_parser(BUNDLES / bundle, configs, overrides, metadata=False)
    parser.get_parsed_content("initialize")
    return parser


def assert_identical(a, b, where: str = "checkpoint") -> None:
    """Every tensor equal (max abs difference 0) and every other value equal, recursively."""
    if isinstance(a, Mapping):
        assert set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, where
        diff = (a.double() - b.double()).abs().max().item() if a.numel() and a.is_floating_point() else 0.0
        assert diff == 0.0 and torch.equal(a, b), f"{where}: max abs difference {diff}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def clean_env() -> dict:
    """This environment without the Python path variables, one thread, warnings off (a fresh interpreter's)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
