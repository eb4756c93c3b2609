"""Pixel-only images (no spacing in the file or the datalist) through scn_ceph's training: by default they are fitted
whole into the network's grid and the checkpoint records that geometry; a geometry that crops landmarks away is
refused before the first iteration, without writing a model; inference with another geometry is refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _bundle_runs import CEPH_TINY

from mlm.bundle.launch import run_bundle

pytestmark = pytest.mark.slow

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def pixel_only_ceph(ceph_data, tmp_path_factory):
    """The 4 mm cephalogram phantom (about 50 x 60 px) with the datalist's spacings removed: pixel-only BMPs."""
    data = tmp_path_factory.mktemp("pixel_only") / "ceph"
    shutil.copytree(ceph_data, data)
    datalist = json.loads((data / "datalist.json").read_text(encoding="utf-8"))
    for value in datalist.values():
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict):
                item.pop("spacing", None)
    (data / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    return data


def _train(data, out, *overrides):
    args = ["--dataset_dir", str(data), "--ckpt_dir", str(out / "models"), "--output_dir", str(out / "eval")]
    args += [*CEPH_TINY, "--num_iterations", "2", "--val_interval", "2", *overrides]
    return run_bundle("scn_ceph", ["train.yaml", "cpu.yaml"], args, env=THREADS, timeout=300)


def test_pixel_only_images_are_fitted_whole_and_a_cropping_geometry_is_refused(pixel_only_ceph, tmp_path):
    # 32 x 32 output pixels of 1 px each keep about half of each ~50 x 60 px image: refused, nothing written
    refused = _train(pixel_only_ceph, tmp_path / "crop", "--pixdim", "1.0", "--resize_mode", "pad_crop")
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    last = [line for line in (refused.stdout + refused.stderr).splitlines() if line.strip()][-1]
    assert "lie outside the network's field of view" in last and "--resize_mode fit" in last, last
    assert not list((tmp_path / "crop" / "models").glob("*.pt"))

    # the default (resize_mode auto): fitted whole, trained, the geometry recorded in model.pt
    trained = _train(pixel_only_ceph, tmp_path / "fit", "--pixdim", "1.0")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    model = tmp_path / "fit" / "models" / "model.pt"
    geometry = torch.load(model, weights_only=True)["geometry"]
    assert geometry == {
        "spatial_dims": 2,
        "pixdim": 1.0,
        "preprocessed_size": [32, 32],
        "resize_mode": "auto",
        "intensity_normalization": "xray",
    }

    # inference with another geometry is refused, naming the overrides that match the training
    args = ["--dataset_dir", str(pixel_only_ceph), "--ckpt_path", str(model), "--output_dir", str(tmp_path / "inf")]
    args += [*CEPH_TINY, "--pixdim", "1.0", "--resize_mode", "fit"]
    other = run_bundle("scn_ceph", ["inference.yaml", "evaluate.yaml", "cpu.yaml"], args, env=THREADS, timeout=300)
    assert other.returncode == 1
    last = [line for line in (other.stdout + other.stderr).splitlines() if line.strip()][-1]
    assert "resize_mode: trained with auto, this run uses fit" in last and "--resize_mode auto" in last, last
