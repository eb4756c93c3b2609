"""The coarse-to-fine overlays of the shared base (``configs/refine.yaml``, ``configs/refine_inference.yaml``) on the
tiny cephalogram phantom: the refinement network trained for two iterations in its own folder, then inference +
evaluation of the tiny global model (``ceph_trained``) refined by it, compared with the global stage run alone and
with :class:`mlm.refine.PatchRefiner` run in this process on the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _bundle_runs import CEPH_TINY, bundle_parser, check, run_bundle
from monai.transforms import Compose

from mlm.bundle import PatchNormalization, full_resolution_preprocessing, load_split
from mlm.networks import LocalizationUNet
from mlm.refine import PatchRefiner

#: the refinement geometry of the 4 mm phantom: 16x16 patches at 2 mm, a 4-filter U-Net
REFINE_TINY = ["--refine_patch_size", "[16,16]", "--refine_spacing", "2.0"]
TRAIN_TINY = [*REFINE_TINY, "--refine_offset_sigma", "3.0", "--refine_max_offset", "8.0"]
TRAIN_TINY += ["--network_def#num_filters", "4", "--num_workers", "0"]
REFINE_INFER_TINY = [*REFINE_TINY, "--refine_network_def#num_filters", "4"]
TRAIN = ["train.yaml", "cpu.yaml", "refine.yaml"]
EVALUATE = ["inference.yaml", "evaluate.yaml", "cpu.yaml"]


def _points(folder, name: str = "006") -> np.ndarray:
    """Predicted world points of an image, RAS mm (the files hold LPS: 2D x and y negated)."""
    data = json.loads((folder / "predictions" / f"{name}_landmarks.json").read_text(encoding="utf-8"))
    assert data["coordinate_system"] == "LPS"
    # a landmark the tiny global model put in the padding around the image is missing (null): NaN
    return -np.array([[np.nan] * 2 if p is None else p for p in data["points"]], dtype=np.float64)


def test_refine_training_batches_are_normalised_patches_of_19_images(ceph_data, tmp_path):
    args = ["--dataset_dir", str(ceph_data), "--bundle_root", str(tmp_path), *TRAIN_TINY]
    parser = bundle_parser("scn_ceph", TRAIN, args)
    assert str(parser.get_parsed_content("ckpt_dir")) == f"{tmp_path}/models/refine"
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, LocalizationUNet)
    assert not parser.get_parsed_content("loss").learn_sigma
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    image, landmarks = batch["image"], batch["landmarks"]
    assert image.shape == (19, 1, 16, 16) and landmarks.shape == (19, 19, 2)
    # after the patch step: (I - 128) / 128 of 8-bit pixels, each patch's own 2 mm affine
    assert image.min() >= -1.0 and image.max() <= 1.0 and image.std() > 0
    spacing = torch.linalg.norm(image.affine[:, :2, :2], dim=1)
    assert torch.allclose(spacing.double(), torch.full_like(spacing.double(), 2.0), rtol=0.11)  # scale +-10%
    # the patch's centre landmark lies within max_offset 8 mm of the patch centre: 4 voxels of 2 mm, 1.8 mm at -10%
    centre = landmarks[torch.arange(19), batch["patch_landmark"]]
    assert (torch.linalg.norm(centre - 7.5, dim=1) <= 8.0 / 1.8 + 1e-6).all()


def test_refine_overlays_train_in_their_own_folder_and_refine_the_global_predictions(ceph_data, ceph_trained, tmp_path):
    root = tmp_path / "bundle"
    base = ["--dataset_dir", str(ceph_data), "--bundle_root", str(root)]
    check(run_bundle("scn_ceph", TRAIN, [*base, *TRAIN_TINY, "--num_iterations", "2", "--val_interval", "1"]))
    # the refinement's checkpoints in models/refine/, none next to where the global model would be
    assert sorted(p.name for p in (root / "models").iterdir()) == ["refine"]
    saved = sorted(p.name for p in (root / "models" / "refine").iterdir())
    assert saved == ["checkpoint_iteration=2.pt", "model.pt", "model_best.pt"]
    assert (root / "eval" / "refine").is_dir() and not (root / "eval" / "metrics.json").exists()

    global_ckpt = ceph_trained / "models" / "model.pt"
    infer = [*base, "--ckpt_path", str(global_ckpt), *CEPH_TINY]
    check(run_bundle("scn_ceph", EVALUATE, [*infer, "--output_dir", str(tmp_path / "global")]))
    refine = [*infer, *REFINE_INFER_TINY, "--output_dir", str(tmp_path / "out")]
    result = check(run_bundle("scn_ceph", [*EVALUATE, "refine_inference.yaml"], refine))
    out = tmp_path / "out"
    assert "report written to" in result.stdout and f"{out}/global" in result.stdout

    # both stages reported: the global one exactly as the global stage alone reports it
    alone = json.loads((tmp_path / "global" / "metrics.json").read_text(encoding="utf-8"))
    stage = json.loads((out / "global" / "metrics.json").read_text(encoding="utf-8"))
    refined = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert stage["pe_mean"] == pytest.approx(alone["pe_mean"], abs=1e-9) and stage["count"] == alone["count"] == 19
    assert refined["count"] == 19 and refined["ids"] == stage["ids"] == ["006"]

    # the saved predictions are PatchRefiner's refinement of the global ones (recomputed here)
    global_points = _points(tmp_path / "global")
    refined_points = _points(out)
    item = load_split(ceph_data, "test", num_landmarks=19, spatial_dims=2, dataset="ceph")[0]
    image = Compose(full_resolution_preprocessing(2, with_landmarks=False))(item)["image"]
    network = LocalizationUNet(2, 1, 19, num_filters=4, num_levels=4, dropout=0.0)
    network.load_state_dict(torch.load(root / "models" / "refine" / "model.pt", weights_only=False)["model"])
    refiner = PatchRefiner((16, 16), 2.0, patch_transform=PatchNormalization("xray", 2))
    expected = refiner.refine(image, network, torch.as_tensor(global_points))
    np.testing.assert_allclose(refined_points, expected.points.numpy(), atol=1e-6)
    accepted = expected.accepted.numpy() > 0
    assert accepted.any()
    assert (np.linalg.norm(refined_points - global_points, axis=1)[accepted] > 1e-6).all()
    np.testing.assert_allclose(refined_points[~accepted], global_points[~accepted], atol=1e-9)
    errors = np.loadtxt(out / "errors_per_image.csv", delimiter=",", skiprows=1, usecols=range(1, 20), ndmin=2)
    # the point-error mean is over the predicted landmarks (a missing prediction's error is inf in the CSV)
    assert refined["pe_mean"] == pytest.approx(float(np.mean(errors[np.isfinite(errors)])), rel=1e-6)


@pytest.mark.parametrize("bundle", ["scn_ceph", "mtunet_ceph", "farnet_ceph", "gu2net_universal"])
def test_refine_loss_is_the_scn_loss_whatever_the_global_method(bundle, ceph_data, tmp_path):
    """refine.yaml trains the same refinement (SCN heatmap loss, fixed sigma, no sigma regulariser) on every bundle,
    also where the global method's recipe has no SCN target scale (gamma null: the multi-task U-Net, FARNet,
    GU2Net); the SCN bundles keep their own gamma."""
    args = ["--dataset_dir", str(ceph_data), "--ckpt_dir", str(tmp_path / "models"), *TRAIN_TINY]
    loss = bundle_parser(bundle, TRAIN, args).get_parsed_content("loss")
    assert type(loss).__name__ == "SCNHeatmapLoss" and not loss.learn_sigma and loss.sigma_weight == 0.0
    assert loss.gamma == 100.0  # scn_2d.yaml's gamma, and the default where the recipe has none
    assert torch.allclose(loss.sigmas, torch.full((19,), 2.0))
