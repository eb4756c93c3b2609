"""The train_sat / train_amat / robustness overlays on tiny phantoms: in-process trainers (thresholds, exact resume
of the margins) and ``python -m monai.bundle run`` runs (one process and two gloo DDP processes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _bundle_runs import CEPH_TINY, MTUNET_TINY, assert_identical, bundle_parser, check, run_bundle
from ignite.engine import Events

from mlm.adversarial_training import clean_thresholds
from mlm.handlers import AdaptiveMarginTrainingHandler, ResumeFromCheckpoint, TrainingCheckpointSaver

torch.set_num_threads(1)

TINY = {"scn_ceph": CEPH_TINY, "mtunet_ceph": MTUNET_TINY}
#: 3 PGD steps instead of 20: the tests check the wiring, not the attack's strength
FAST = ["--adversarial_iterations", "3"]


def _args(bundle: str, data: Path, run: Path, extra: list[str] = ()) -> list[str]:
    paths = ["--dataset_dir", str(data), "--ckpt_dir", str(run / "models"), "--output_dir", str(run / "eval")]
    return paths + TINY[bundle] + FAST + list(extra)


def _parser(bundle: str, overlay: str, data: Path, run: Path, extra: list[str] = ()):
    return bundle_parser(bundle, ["train.yaml", "cpu.yaml", overlay], _args(bundle, data, run, extra))


def test_amat_overlay_saves_and_resumes_the_handler_state(ceph_data, tmp_path):
    parser = _parser("scn_ceph", "train_amat.yaml", ceph_data, tmp_path)
    handlers = parser.get_parsed_content("train#handlers")
    amat = parser.get_parsed_content("amat")
    assert isinstance(handlers[0], ResumeFromCheckpoint) and handlers[0].load_dict["amat"] is amat
    assert isinstance(handlers[6], TrainingCheckpointSaver) and handlers[6].save_dict["amat"] is amat
    assert isinstance(amat, AdaptiveMarginTrainingHandler) and handlers[-1] is amat


@pytest.mark.parametrize("bundle", ["scn_ceph", "mtunet_ceph"])
def test_amat_thresholds_come_from_a_clean_pass_over_the_training_images(bundle, ceph_data, tmp_path):
    parser = _parser(bundle, "train_amat.yaml", ceph_data, tmp_path, ["--amat_threshold_method", "mean_sd"])
    trainer = parser.get_parsed_content("train#trainer")
    amat = parser.get_parsed_content("amat")
    amat.wrap_loss(trainer)
    trainer.state.epoch = 1
    xi = amat.update_thresholds(trainer)
    # the same clean losses computed by hand: the training images, deterministic preprocessing, eval mode
    dataset, net, objective = parser.get_parsed_content("amat_threshold_data"), trainer.network, amat.objective
    rows = []
    net.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            out = net(item["image"][None].as_tensor())
            goals = torch.as_tensor(item["landmarks"], dtype=torch.float32)[None]
            rows.append(objective.per_landmark_losses(out, objective.targets(out, goals))[0].double())
    losses = torch.stack(rows)
    assert xi.shape == (losses.shape[1],) and amat.threshold_epoch == 1
    torch.testing.assert_close(xi, clean_thresholds(losses, "mean_sd"), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(xi, losses.mean(0) + 2 * losses.std(0, unbiased=False), rtol=1e-5, atol=1e-9)


def _train(parser_args, stop_at: int | None = None) -> dict:
    parser = _parser(*parser_args)
    trainer = parser.get_parsed_content("train#trainer")
    if stop_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
    trainer.run()
    return torch.load(parser_args[3] / "models" / "model.pt", weights_only=False)


def test_amat_interrupted_and_resumed_restores_margins_and_thresholds_exactly(ceph_data, tmp_path):
    extra = ["--num_iterations", "4", "--val_interval", "2", "--max_train_items", "3", "--max_val_items", "1"]
    one = _train(("scn_ceph", "train_amat.yaml", ceph_data, tmp_path / "one", extra))
    _train(("scn_ceph", "train_amat.yaml", ceph_data, tmp_path / "two", extra), stop_at=3)
    mid = torch.load(tmp_path / "two" / "models" / "model.pt", weights_only=False)
    assert mid["trainer"]["iteration"] == 3 and mid["amat"]["margins"]["margins"]
    resumed = _train(("scn_ceph", "train_amat.yaml", ceph_data, tmp_path / "two", extra))
    assert resumed["trainer"]["iteration"] == 4
    assert_identical(one["amat"], resumed["amat"], "amat")
    assert_identical(one["model"], resumed["model"], "model")
    assert len(one["amat"]["margins"]["margins"]) == 3 and one["amat"]["threshold_epoch"] == 2
    assert (tmp_path / "one" / "eval" / "amat_margins" / "margins_epoch_0002.png").is_file()


def test_sat_fine_tunes_a_trained_model_then_robustness_overlay_run_as_bundles_on_mtunet_ceph(ceph_data, tmp_path):
    # the "trained" model: the bundle's network with other random weights, saved as a plain state dict
    torch.manual_seed(123)
    trained = _parser("mtunet_ceph", "train_sat.yaml", ceph_data, tmp_path).get_parsed_content("network_def")
    torch.save(trained.state_dict(), tmp_path / "trained.pt")
    # SAT fine-tuned from it with a zero learning rate: the adversarial run starts from those weights and keeps them
    extra = ["--num_iterations", "2", "--val_interval", "1", "--init_ckpt", str(tmp_path / "trained.pt"), "--lr", "0"]
    result = check(
        run_bundle(
            "mtunet_ceph",
            ["train.yaml", "cpu.yaml", "train_sat.yaml"],
            _args("mtunet_ceph", ceph_data, tmp_path, extra),
        )
    )
    assert "training starts from the weights of" in result.stdout + result.stderr
    ckpt = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2
    for key, value in trained.named_parameters():  # (BatchNorm running statistics follow the training batches)
        assert torch.equal(ckpt["model"][key].contiguous(), value.detach().contiguous()), key
    infer = ["--dataset_dir", str(ceph_data), "--ckpt_path", str(tmp_path / "models" / "model.pt")]
    infer += ["--output_dir", str(tmp_path / "eval_rob"), *MTUNET_TINY, "--max_items", "2"]
    infer += ["--robustness_levels", "[0,0.5]", "--robustness_iterations", "2"]
    configs = ["inference.yaml", "evaluate.yaml", "cpu.yaml", "robustness.yaml"]
    check(run_bundle("mtunet_ceph", configs, infer))
    out = tmp_path / "eval_rob" / "robustness"
    rows = list(csv.DictReader((out / "robustness.csv").open(encoding="utf-8")))
    assert [float(r["eps"]) for r in rows] == [0.0, 0.5] and all(np.isfinite(float(r["mre"])) for r in rows)
    assert {"sdr_2", "sdr_4"} <= set(rows[0]) and (out / "robustness.png").is_file()
    # the clean row is the evaluation's own MRE
    metrics = json.loads((tmp_path / "eval_rob" / "metrics.json").read_text(encoding="utf-8"))
    assert float(rows[0]["mre"]) == pytest.approx(metrics["pe_mean"], rel=1e-6)


def test_amat_under_two_process_gloo_ddp_shares_the_margins(ceph_data, tmp_path):
    args = _args("scn_ceph", ceph_data, tmp_path, ["--num_iterations", "2", "--val_interval", "1"])
    configs = ["train.yaml", "cpu.yaml", "train_amat.yaml", "multi_gpu_train.yaml"]
    check(run_bundle("scn_ceph", configs, args, torchrun=2))
    ckpt = torch.load(tmp_path / "models" / "model.pt", weights_only=False)
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["data"]["num_replicas"] == 2
    # 2 iterations x 2 ranks x batch 1: rank 0's checkpoint holds the margins of the samples both ranks saw
    seen = ckpt["amat"]["margins"]["margins"]
    assert 2 <= len(seen) <= 4 and ckpt["amat"]["thresholds"] is not None


@pytest.mark.parametrize("bundle, overlay", [("scn_ceph", "train_sat.yaml"), ("mtunet_ceph", "train_amat.yaml")])
def test_the_other_overlay_of_each_bundle_trains_two_iterations(bundle, overlay, ceph_data, tmp_path):
    ckpt = _train((bundle, overlay, ceph_data, tmp_path, ["--num_iterations", "2", "--val_interval", "1"]))
    assert ckpt["trainer"]["iteration"] == 2 and ("amat" in ckpt) == (overlay == "train_amat.yaml")
