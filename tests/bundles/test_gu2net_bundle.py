"""gu2net_universal through ``python -m monai.bundle run``: the universal model trained on three tiny phantoms (head,
hand, chest: batches of one domain each) and evaluated on one domain; a single-domain GU2Net; refusals of a
checkpoint used as the other kind of model."""

from __future__ import annotations

import json

import pytest
import torch
from _bundle_runs import GU2NET_TINY as TINY
from _bundle_runs import bundle_parser, check, gu2net_domains, run_bundle


def _domains(ceph, hand, chest) -> list[str]:
    """Every domain on its tiny phantom, fitted into 32x32."""
    return gu2net_domains(head=ceph, hand=hand, chest=chest)


@pytest.fixture(scope="module")
def universal_run(gu2net_universal_trained):
    """The universal model trained for four iterations on the three phantoms (conftest.py) and its training log."""
    return gu2net_universal_trained, (gu2net_universal_trained / "train.log").read_text(encoding="utf-8")


def test_universal_model_trains_on_three_domains(universal_run):
    out, log = universal_run
    ckpt = torch.load(out / "models" / "model.pt", weights_only=False)
    assert list(ckpt["geometry"]["domains"]) == ["head", "hand", "chest"]
    assert ckpt["geometry"]["domains"]["hand"]["preprocessed_size"] == [32, 32]
    # one output layer per domain, with its landmark count
    heads = {
        k: v.shape[0] for k, v in ckpt["model"].items() if k.startswith("local_net.out_conv.") and k.endswith("weight")
    }
    assert sorted(heads.values()) == [6, 19, 37], heads
    # the stream of one-domain blocks: 4 iterations x batch 2 samples of the 4 + 4 + 4 training images
    assert ckpt["data"]["sizes"] == [4, 4, 4] and ckpt["data"]["batch_size"] == 2 and ckpt["data"]["samples"] == 8
    assert "val_mre" in log


def test_universal_model_predicts_one_domain(universal_run, ceph_data, hand_xray_data, chest_data, tmp_path):
    out, _ = universal_run
    args = _domains(ceph_data, hand_xray_data, chest_data) + TINY
    args += ["--domain", "hand", "--universal", "true", "--ckpt_path", str(out / "models" / "model.pt")]
    args += ["--output_dir", str(tmp_path / "hand")]
    configs = ["inference.yaml", "evaluate.yaml", "cpu.yaml", "domain.yaml"]
    check(run_bundle("gu2net_universal", configs, args))
    metrics = json.loads((tmp_path / "hand" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["num_images"] == 1 and "normalized" in metrics
    assert (tmp_path / "hand" / "errors_per_image_normalized.csv").is_file()  # wrist-normalised hand errors
    predictions = sorted((tmp_path / "hand" / "predictions").glob("*_landmarks.json"))
    assert len(json.loads(predictions[0].read_text(encoding="utf-8"))["points"]) == 37


def test_checkpoint_kind_is_checked(universal_run, ceph_data, hand_xray_data, chest_data, tmp_path):
    """A universal checkpoint read as a single-domain model is refused, naming its domains and the fix."""
    out, _ = universal_run
    args = _domains(ceph_data, hand_xray_data, chest_data) + TINY
    args += ["--domain", "chest", "--ckpt_path", str(out / "models" / "model.pt"), "--output_dir", str(tmp_path)]
    parser = bundle_parser("gu2net_universal", ["inference.yaml", "cpu.yaml", "domain.yaml"], args)
    with pytest.raises(
        ValueError, match=r"universal model of the domains \['head', 'hand', 'chest'\].*--universal true"
    ):
        parser.get_parsed_content("evaluator").run()


def test_single_domain_gu2net_on_chest(chest_data, tmp_path):
    """domain.yaml alone: a GU2Net of one domain (the chest phantom, pixel units), trained and evaluated."""
    overrides = [
        "--domain_overrides",
        repr({"chest": {"dataset_dir": str(chest_data), "cpu": {"patch_size": [32, 32]}}}),
    ]
    args = ["--domain", "chest", *overrides, *TINY, "--num_iterations", "2", "--val_interval", "1"]
    args += ["--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval")]
    check(run_bundle("gu2net_universal", ["train.yaml", "cpu.yaml", "domain.yaml"], args))
    ckpt = torch.load(tmp_path / "models" / "model.pt", weights_only=False)
    assert "domains" not in ckpt["geometry"] and ckpt["geometry"]["preprocessed_size"] == [32, 32]
    eval_args = ["--domain", "chest", *overrides, *TINY, "--ckpt_path", str(tmp_path / "models" / "model.pt")]
    eval_args += ["--output_dir", str(tmp_path / "test")]
    check(run_bundle("gu2net_universal", ["inference.yaml", "evaluate.yaml", "cpu.yaml", "domain.yaml"], eval_args))
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] == "px" and metrics["num_images"] == 1
    predictions = sorted((tmp_path / "test" / "predictions").glob("*_landmarks.json"))
    assert len(json.loads(predictions[0].read_text(encoding="utf-8"))["points"]) == 6
