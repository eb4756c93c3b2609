"""Shared fixtures of the bundle tests: tiny phantoms and tiny bundle runs, generated once per session."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from _bundle_runs import (
    CEPH_TINY,
    FARNET_TINY,
    GU2NET_TINY,
    HAND_MRI_TINY,
    HAND_XRAY_TINY,
    MTUNET_TINY,
    SPINE_TINY,
    check,
    clean_env,
    gu2net_domains,
    run_bundle,
    train_tiny,
)


@pytest.fixture(scope="session")
def spine_data(tmp_path_factory) -> Path:
    from mlm.data.phantoms.spine_ct import write_spine_ct_dataset

    root = tmp_path_factory.mktemp("spine_ct")
    write_spine_ct_dataset(root, num_images=6, seed=0, spacing=8.0, size_xy=16, overwrite=True, show_progress=False)
    return root


@pytest.fixture(scope="session")
def ceph_data(tmp_path_factory) -> Path:
    from mlm.data.phantoms.cephalogram import write_cephalogram_dataset

    root = tmp_path_factory.mktemp("ceph")
    write_cephalogram_dataset(root, num_images=6, seed=0, pixel_size=4.0, overwrite=True, show_progress=False)
    return root


@pytest.fixture(scope="session")
def hand_xray_data(tmp_path_factory) -> Path:
    from mlm.data.phantoms.hand_xray import write_hand_xray_dataset

    root = tmp_path_factory.mktemp("hand_xray")
    write_hand_xray_dataset(root, num_images=6, seed=0, pixel_size=4.0, overwrite=True, show_progress=False)
    return root


@pytest.fixture(scope="session")
def chest_data(tmp_path_factory) -> Path:
    from mlm.data.phantoms.chest import write_chest_phantom

    root = tmp_path_factory.mktemp("chest")
    write_chest_phantom(root, num_images=6, seed=0, size=(64, 64), overwrite=True, show_progress=False)
    return root


@pytest.fixture(scope="session")
def hand_mri_data(tmp_path_factory) -> Path:
    from mlm.data.phantoms.hand_mri import write_hand_mri_dataset

    root = tmp_path_factory.mktemp("hand_mri")
    write_hand_mri_dataset(root, num_images=6, seed=0, spacing=8.0, overwrite=True, show_progress=False)
    return root


@pytest.fixture(scope="session")
def spine_trained(spine_data, tmp_path_factory) -> Path:
    """Two training iterations of scn_spine_ct (cpu.yaml + tiny overrides); returns the run folder."""
    return train_tiny("scn_spine_ct", spine_data, tmp_path_factory.mktemp("spine_run"), SPINE_TINY, ["--sigma", "1.0"])


@pytest.fixture(scope="session")
def ceph_trained(ceph_data, tmp_path_factory) -> Path:
    return train_tiny("scn_ceph", ceph_data, tmp_path_factory.mktemp("ceph_run"), CEPH_TINY)


@pytest.fixture(scope="session")
def hand_xray_trained(hand_xray_data, tmp_path_factory) -> Path:
    return train_tiny("scn_hand_xray", hand_xray_data, tmp_path_factory.mktemp("hand_xray_run"), HAND_XRAY_TINY)


@pytest.fixture(scope="session")
def hand_mri_trained(hand_mri_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hand_mri_run")
    return train_tiny("scn_hand_mri", hand_mri_data, out, HAND_MRI_TINY, ["--sigma", "1.0"])


@pytest.fixture(scope="session")
def mtunet_trained(ceph_data, tmp_path_factory) -> Path:
    """Two training iterations of mtunet_ceph (cpu.yaml + tiny overrides); returns the run folder."""
    return train_tiny("mtunet_ceph", ceph_data, tmp_path_factory.mktemp("mtunet_run"), MTUNET_TINY)


@pytest.fixture(scope="session")
def farnet_trained(ceph_data, tmp_path_factory) -> Path:
    """Two training iterations of farnet_ceph (cpu.yaml + tiny overrides); returns the run folder."""
    return train_tiny("farnet_ceph", ceph_data, tmp_path_factory.mktemp("farnet_run"), FARNET_TINY)


@pytest.fixture(scope="session")
def gu2net_head_trained(ceph_data, tmp_path_factory) -> Path:
    """Two training iterations of a single-domain GU2Net (gu2net_universal: cpu.yaml + domain.yaml, the head domain
    on the cephalogram phantom in 32x32); returns the run folder."""
    out = tmp_path_factory.mktemp("gu2net_head_run")
    tiny = ["--domain", "head", "--patch_size", "[32,32]", *GU2NET_TINY]
    return train_tiny("gu2net_universal", ceph_data, out, tiny, configs=("train.yaml", "cpu.yaml", "domain.yaml"))


@pytest.fixture(scope="session")
def gu2net_universal_trained(ceph_data, hand_xray_data, chest_data, tmp_path_factory) -> Path:
    """Four iterations of gu2net_universal's universal model (cpu.yaml + universal.yaml) on the head, hand and chest
    phantoms (32x32 each), validated every two; returns the run folder (its log in train.log)."""
    out = tmp_path_factory.mktemp("gu2net_universal_run")
    args = gu2net_domains(head=ceph_data, hand=hand_xray_data, chest=chest_data) + GU2NET_TINY
    args += ["--num_iterations", "4", "--val_interval", "2", "--ckpt_dir", str(out / "models")]
    args += ["--output_dir", str(out / "eval")]
    result = check(run_bundle("gu2net_universal", ["train.yaml", "cpu.yaml", "universal.yaml"], args))
    (out / "train.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def fresh_python(tmp_path_factory) -> Path:
    """A new virtual environment that sees this environment's packages (MONAI, torch, ...) but not this project.

    Its site-packages holds one ``.pth`` line naming a folder of links to this environment's site-packages
    entries, the project's own (``mlm``, ``transforms``, its dist-info and editable-install hooks) left out; a
    ``.pth`` line adds a folder to ``sys.path`` without running the ``.pth`` files inside it.
    """
    root = tmp_path_factory.mktemp("fresh_venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True, encoding="utf-8"
        ).strip()
    )
    packages = root / "packages"
    packages.mkdir()
    hidden = re.compile(r"^(mlm|transforms|__editable__.*|monai_landmarks.*|.*\.pth)$")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not hidden.match(entry.name):
            (packages / entry.name).symlink_to(entry)
    (site / "environment.pth").write_text(f"{packages}\n", encoding="utf-8")
    probe = "import importlib.util as u; print([u.find_spec(m) is not None for m in ('mlm', 'transforms', 'monai')])"
    seen = subprocess.check_output([python, "-c", probe], text=True, cwd=root, env=clean_env(), encoding="utf-8")
    assert seen.strip() == "[False, False, True]"
    return python
