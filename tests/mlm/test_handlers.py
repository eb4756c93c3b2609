"""Unit tests of the bundle handlers and helpers (in-process, tiny tensors)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from mlm.bundle import (
    check_checkpoint_compatible,
    check_dataset_dir,
    landmark_preprocessing,
    latest_checkpoint,
    load_split,
    parameter_groups,
    rank_zero_handlers,
)
from mlm.engines import PrepareLandmarkBatch, lower_is_better
from mlm.handlers import (
    LandmarkCheckpointLoader,
    LandmarkReportHandler,
    ResumeFromCheckpoint,
    SigmaLogger,
    TrainingCheckpointSaver,
)
from mlm.losses import SCNHeatmapLoss
from transforms.io import read_landmark_file
from transforms.io.prediction_files import landmark_record
from transforms.post import HeatmapsToLandmarksd, LandmarksToWorldd

torch.set_num_threads(1)


def _engine(max_epochs: int = 2, epoch_length: int = 2) -> Engine:
    engine = Engine(lambda e, b: {"loss": 0.0})
    engine.state.max_epochs = max_epochs
    return engine


def test_prepare_batch_returns_plain_bnd_landmarks_and_checks_count():
    img = MetaTensor(torch.zeros(2, 1, 8, 8))
    lm = MetaTensor(torch.tensor([[[1.0, 2.0], [float("nan")] * 2]] * 2))
    image, landmarks = PrepareLandmarkBatch(num_landmarks=2)({"image": img, "landmarks": lm}, "cpu")
    assert type(landmarks) is torch.Tensor and landmarks.shape == (2, 2, 2) and torch.isnan(landmarks[:, 1]).all()
    assert PrepareLandmarkBatch()({"image": img, "landmarks": ["a.json", "b.json"]})[1] is None
    with pytest.raises(ValueError, match="predicts 3"):
        PrepareLandmarkBatch(num_landmarks=3)({"image": img, "landmarks": lm})


def test_lower_is_better_accepts_first_metric():
    assert lower_is_better(5.0, -1) and lower_is_better(1.0, 2.0) and not lower_is_better(3.0, 2.0)


def test_parameter_groups_decay_only_kernels():
    net = torch.nn.Conv2d(1, 2, 3)
    loss = SCNHeatmapLoss(2, 2)
    groups = parameter_groups(net, loss, 0.1)
    assert groups[0]["weight_decay"] == 0.1 and groups[0]["params"][0] is net.weight
    assert any(p is loss.sigmas for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0


def test_parameter_groups_module_lr_factors_split_the_spatial_configuration():
    from mlm.networks import SpatialConfigurationNet

    net = SpatialConfigurationNet(3, 1, 4, num_filters=4, num_levels=2, spatial_downsample=2, spatial_kernel_size=3)
    loss = SCNHeatmapLoss(4, 3)
    groups = parameter_groups(net, loss, 0.01, lr=1e-3, module_lr_factors={"spatial_configuration": 0.1})
    sc = {id(p) for p in net.spatial_configuration.parameters()}
    by_lr: dict[float, set] = {}
    for g in groups:
        by_lr.setdefault(round(g["lr"], 12), set()).update(id(p) for p in g["params"])
        assert g["weight_decay"] == (0.01 if all(p.ndim > 1 for p in g["params"]) else 0.0)
    assert set(by_lr) == {1e-3, 1e-4}
    assert by_lr[1e-4] == sc
    others = {id(p) for p in net.parameters()} - sc | {id(loss.sigmas)}
    assert by_lr[1e-3] == others
    # every parameter exactly once; the LR schedule keeps the 10:1 ratio
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters())) + 1
    opt = torch.optim.Adam(groups)
    from mlm.bundle import iteration_lr_scheduler

    sched = iteration_lr_scheduler(opt, "cosine", 10)
    for _ in range(5):
        opt.step()
        sched.step()
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs[1] / lrs[0] == pytest.approx(10.0, rel=1e-9) and lrs[1] < 1e-3
    with pytest.raises(ValueError, match="has no submodule 'spatial'"):
        parameter_groups(net, loss, lr=1e-3, module_lr_factors={"spatial": 0.1})
    with pytest.raises(ValueError, match="needs the optimizer's lr"):
        parameter_groups(net, loss, module_lr_factors={"spatial_configuration": 0.1})
    assert all("lr" not in g for g in parameter_groups(net, loss, 0.01))


def _lrs_along(schedule: str, num_iterations: int, steps: int, min_factor: float = 0.01) -> list[float]:
    from mlm.bundle import iteration_lr_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = iteration_lr_scheduler(opt, schedule, num_iterations, min_factor)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_iteration_lr_schedules_constant_and_cosine():
    assert _lrs_along("constant", 10, 12) == [1e-4] * 13
    lrs = _lrs_along("cosine", 10, 12, min_factor=0.01)
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[5] == pytest.approx(1e-4 * (0.01 + 0.99 * 0.5), rel=1e-9)  # half way: the mean of both ends
    assert lrs[10] == pytest.approx(1e-6) and lrs[12] == pytest.approx(1e-6)  # held at the end
    assert all(a > b for a, b in zip(lrs[:10], lrs[1:11]))  # strictly decreasing on the way


def test_iteration_lr_schedule_resumes_at_saved_iteration_with_the_new_length():
    from mlm.bundle import iteration_lr_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = iteration_lr_scheduler(opt, "cosine", 10)
    for _ in range(4):
        opt.step()
        sched.step()
    state_opt, state_sched = opt.state_dict(), sched.state_dict()
    # resumed with a longer run (num_iterations 20): iteration 4 of the new schedule, not of the old one
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched2 = iteration_lr_scheduler(opt2, "cosine", 20)
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    opt2.step()
    sched2.step()
    assert sched2.last_epoch == 5
    assert opt2.param_groups[0]["lr"] == pytest.approx(_lrs_along("cosine", 20, 5)[5], rel=1e-9)


def test_iteration_lr_schedule_bad_arguments():
    from mlm.bundle import iteration_lr_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'; choose one of constant, cosine"):
        iteration_lr_scheduler(opt, "linear", 10)
    with pytest.raises(ValueError, match="num_iterations must be >= 1"):
        iteration_lr_scheduler(opt, "cosine", 0)
    with pytest.raises(ValueError, match="min_factor must be in"):
        iteration_lr_scheduler(opt, "cosine", 10, min_factor=1.5)


def test_rank_zero_handlers_without_distributed_keeps_all():
    assert rank_zero_handlers([1, 2, 3]) == [1, 2, 3]


def test_rank_zero_handlers_on_other_ranks_keep_the_training_handlers_in_order(monkeypatch, tmp_path):
    """A rank > 0 attaches resume, gradient sync/clipping, LR schedule and validation, whatever their positions."""
    from monai.handlers import LrScheduleHandler, StatsHandler, ValidationHandler

    import mlm.bundle.distributed as distributed
    from mlm.handlers import AllReduceGradients, GradientNormClipping, ResumeFromCheckpoint, SigmaLogger

    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    stats = StatsHandler()
    resume = ResumeFromCheckpoint(ckpt_dir=str(tmp_path), load_dict={"model": net})
    clip = GradientNormClipping(max_norm=1.0)
    lr = LrScheduleHandler(sched, epoch_level=False, print_lr=False)
    sync = AllReduceGradients(module=net)
    val = ValidationHandler(interval=1, validator=None)
    sigmas = SigmaLogger(loss=SCNHeatmapLoss(2, 2), output_dir=str(tmp_path))
    handlers = [stats, resume, clip, sigmas, lr, sync, val]
    monkeypatch.setattr(distributed, "is_rank_zero", lambda: False)
    assert rank_zero_handlers(handlers) == [resume, clip, lr, sync, val]
    assert rank_zero_handlers(handlers, every_rank=[StatsHandler]) == [stats]
    monkeypatch.setattr(distributed, "is_rank_zero", lambda: True)
    assert rank_zero_handlers(handlers) == handlers


def test_missing_dataset_dir_and_wrong_landmark_count_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate_phantoms.py ceph"):
        check_dataset_dir(tmp_path / "absent", "ceph")
    (tmp_path / "datalist.json").write_text(
        json.dumps({"num_landmarks": 19, "spatial_dims": 2, "training": [{"id": "a", "image": "a.bmp"}]}),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="19 landmarks per image but the bundle's network predicts 26"):
        load_split(tmp_path, "training", num_landmarks=26)
    assert load_split(tmp_path, "training", num_landmarks=19)[0]["id"] == "a"
    # a dataset with official splits only (no "validation"): the error names the splits and the bundle option
    with pytest.raises(ValueError, match=r"no split 'validation' \(available: \['training'\]\).*--val_split"):
        load_split(tmp_path, "validation")


def test_preprocessing_without_landmarks_drops_landmark_steps():
    with_lm = landmark_preprocessing(3, 2.0, [16, 16, -1], 26)
    without = landmark_preprocessing(3, 2.0, [16, 16, -1], 26, with_landmarks=False)
    assert len(without) == len(with_lm) - 2
    assert not any("Landmarks" in type(t).__name__ for t in without)


def test_heatmaps_decode_to_world_with_the_image_affine():
    from mlm.heatmaps import gaussian_heatmaps

    pts = torch.tensor([[[3.25, 5.5, 7.0], [10.0, 2.0, 4.75]]])
    heat = gaussian_heatmaps(pts, (16, 12, 10), torch.tensor([1.5, 1.5]), None)[0]
    affine = torch.tensor([[2.0, 0, 0, -10], [0, 2.0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]], dtype=torch.float64)
    image = MetaTensor(torch.zeros(1, 16, 12, 10), affine=affine)
    d = HeatmapsToLandmarksd("pred")({"pred": heat, "image": image, "label": pts[0]})
    d = LandmarksToWorldd("label")(d)
    expected = pts[0].double() @ affine[:3, :3].T + affine[:3, 3]
    torch.testing.assert_close(d["pred"], expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(d["label"], expected)
    assert d["pred_voxel"].shape == (2, 3) and d["pred_values"].shape == (2,)


def test_landmark_record_is_a_readable_lps_landmark_file(tmp_path):
    ras = np.array([[1.0, 2.0, 3.0], [np.nan] * 3])
    orig = np.diag([2.0, 2.0, 2.0, 1.0])
    rec = landmark_record(ras, ["a", "b"], orig, values=np.array([0.5, 0.1]), image="x.nii.gz")
    assert rec["points"] == [[-1.0, -2.0, 3.0], None] and rec["voxel_points"] == [[0.5, 1.0, 1.5], None]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(rec), encoding="utf-8")
    lf = read_landmark_file(path)
    assert lf.coordinate_system == "LPS" and lf.names == ["a", "b"] and np.isnan(lf.points[1]).all()


def test_sigma_logger_writes_sigmas(tmp_path):
    loss = SCNHeatmapLoss(3, 2, sigma=[1.0, 2.0, 3.0])
    engine = _engine()
    SigmaLogger(loss, tmp_path, names=["a", "b", "c"]).attach(engine)
    engine.run([0, 0], max_epochs=1)
    rec = json.loads((tmp_path / "sigmas.json").read_text(encoding="utf-8"))
    assert rec["sigmas"] == {"a": 1.0, "b": 2.0, "c": 3.0} and rec["iteration"] == 2 and rec["mean"] == 2.0


def test_checkpoint_saver_and_resume_restore_trainer_iteration_and_sigmas(tmp_path):
    net, loss = torch.nn.Conv2d(1, 2, 1), SCNHeatmapLoss(2, 2, sigma=2.0)
    opt = torch.optim.Adam(list(net.parameters()) + list(loss.parameters()))
    engine = Engine(lambda e, b: None)
    saver = TrainingCheckpointSaver(
        tmp_path,
        {"model": net, "loss": loss, "optimizer": opt},
        file_prefix="checkpoint",
        save_interval=1,
        n_saved=1,
        save_final=True,
        final_filename="model.pt",
    )
    saver.attach(engine)
    engine.run([0, 0], max_epochs=2)
    assert latest_checkpoint(tmp_path) is not None
    assert torch.load(tmp_path / "model.pt", weights_only=True)["trainer"]["iteration"] == 4

    net2, loss2 = torch.nn.Conv2d(1, 2, 1), SCNHeatmapLoss(2, 2, sigma=5.0)
    seen = []
    engine2 = Engine(lambda e, b: seen.append(e.state.iteration))
    ResumeFromCheckpoint(tmp_path, {"model": net2, "loss": loss2}).attach(engine2)
    engine2.run([0, 0], max_epochs=3)
    assert seen == [5, 6]  # continued after the saved iteration 4
    torch.testing.assert_close(loss2.sigmas, loss.sigmas)
    torch.testing.assert_close(net2.weight, net.weight)


def test_resume_without_checkpoint_starts_from_scratch(tmp_path):
    engine = Engine(lambda e, b: None)
    ResumeFromCheckpoint(tmp_path, {"model": torch.nn.Linear(1, 1)}).attach(engine)
    engine.run([0], max_epochs=1)
    assert engine.state.iteration == 1


def test_checkpoint_with_other_landmark_count_is_refused_naming_both_counts(tmp_path):
    from mlm.networks import SpatialConfigurationNet

    kw = dict(spatial_dims=2, in_channels=1, num_filters=4, spatial_downsample=4, spatial_kernel_size=3)
    path = tmp_path / "model.pt"
    torch.save(
        {
            "model": SpatialConfigurationNet(num_landmarks=26, **kw).state_dict(),
            "loss": SCNHeatmapLoss(26, 2).state_dict(),
        },
        path,
    )
    net = SpatialConfigurationNet(num_landmarks=19, **kw)
    with pytest.raises(ValueError, match=r"model.pt was trained for 26 landmarks but this bundle's model has 19"):
        check_checkpoint_compatible(path, {"model": net})
    with pytest.raises(ValueError, match="26 landmarks"):
        LandmarkCheckpointLoader(str(path), {"model": net})(Engine(lambda e, b: None))
    with pytest.raises(FileNotFoundError, match="not found"):
        check_checkpoint_compatible(tmp_path / "absent.pt", {"model": net})
    wider = SpatialConfigurationNet(num_landmarks=26, **{**kw, "num_filters": 8})
    with pytest.raises(ValueError, match="does not fit this bundle's model"):
        check_checkpoint_compatible(path, {"model": wider})


def test_report_handler_writes_metrics_with_id_rate(tmp_path, capsys):
    true = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 30.0], [np.nan] * 3])
    # b is 25 mm off (> 20 mm): not identified; c has no ground truth
    pred = true + np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 25.0], [5.0, 5.0, 5.0]])
    image = MetaTensor(torch.zeros(1, 4, 4, 8))
    handler = LandmarkReportHandler(tmp_path, names=["a", "b", "c"], identification=True, num_overlays=1)
    engine = Engine(
        lambda e, b: [{"pred": torch.as_tensor(pred), "label": torch.as_tensor(true), "image": image, "id": "x"}]
    )
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    m = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert m["count"] == 2 and m["pe_mean"] == pytest.approx(13.0) and m["identification_rate"] == pytest.approx(0.5)
    assert (
        m["ids"] == ["x"]
        and (tmp_path / "overlays" / "x.png").is_file()
        and (tmp_path / "cumulative_ipe.png").is_file()
    )
    assert "ID rate (20 mm): 50.0%" in capsys.readouterr().out
    assert engine.state.metrics["id_rate"] == pytest.approx(0.5)


def test_report_handler_adds_wrist_normalised_errors_and_skips_images_without_the_pair(tmp_path, capsys):
    # landmarks 1 and 2 are the reference pair: 25 mm apart in image x, 100 mm apart in image y (skipped: z NaN)
    true_x = np.array([[0.0, 0.0], [0.0, 10.0], [25.0, 10.0]])
    pred_x = true_x + np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # errors 5 and 1 mm
    true_y = np.array([[0.0, 0.0], [0.0, 0.0], [100.0, 0.0]])
    pred_y = true_y + np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    true_z = np.array([[0.0, 0.0], [np.nan, np.nan], [5.0, 0.0]])
    items = [("x", pred_x, true_x), ("y", pred_y, true_y), ("z", true_z + 1.0, true_z)]
    handler = LandmarkReportHandler(
        tmp_path, names=["a", "b", "c"], radii=[2.0, 4.0], num_overlays=0, normalize_pair=(1, 2)
    )
    outputs = iter(items)

    def step(engine, batch):
        i, p, t = next(outputs)
        return [{"pred": torch.as_tensor(p), "label": torch.as_tensor(t), "id": i}]

    engine = Engine(step)
    handler.attach(engine)
    engine.run([0, 1, 2], max_epochs=1)
    m = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert m["units"] == "mm" and m["num_images"] == 3  # the plain mm report keeps every image
    n = m["normalized"]
    assert n["pair"] == [1, 2] and n["pair_names"] == ["b", "c"] and n["distance_mm"] == 50.0
    assert n["ids"] == ["x", "y"] and n["skipped_ids"] == ["z"] and n["num_images"] == 2
    # x: scale 50/25 = 2 -> 10, 0, 2; y: scale 50/100 = 0.5 -> 1, 0, 0
    assert n["pe_mean"] == pytest.approx((10 + 0 + 2 + 1 + 0 + 0) / 6)
    assert n["sdr"] == {"2": pytest.approx(5 / 6), "4": pytest.approx(5 / 6)}
    rows = (tmp_path / "metrics_per_landmark.csv").read_text(encoding="utf-8").splitlines()
    assert "pe_mean_normalized" in rows[0] and rows[1].startswith("a,")
    per_image = (tmp_path / "errors_per_image_normalized.csv").read_text(encoding="utf-8").splitlines()
    assert per_image[0] == "id,a,b,c" and per_image[1].startswith("x,10.0,0.0,2.0") and len(per_image) == 3
    assert engine.state.metrics["mre_normalized"] == pytest.approx(2.1666666)
    assert "normalised (50 mm between b and c): MRE 2.17" in capsys.readouterr().out
    with pytest.raises(ValueError, match="two different"):
        LandmarkReportHandler(tmp_path, normalize_pair=(1, 1))


def test_report_handler_without_normalize_pair_writes_no_normalised_section(tmp_path):
    true = np.array([[0.0, 0.0], [0.0, 10.0]])
    engine = Engine(lambda e, b: [{"pred": torch.as_tensor(true + 1.0), "label": torch.as_tensor(true), "id": "x"}])
    LandmarkReportHandler(tmp_path, num_overlays=0, print_summary=False).attach(engine)
    engine.run([0], max_epochs=1)
    assert "normalized" not in json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert not (tmp_path / "errors_per_image_normalized.csv").exists()


def _trainer_with_grad(grad: torch.Tensor, max_norm: float | None):
    """A SupervisedTrainer-like step: set a known gradient, fire BACKWARD_COMPLETED, record what the step sees."""
    from monai.engines.utils import IterationEvents

    from mlm.handlers import GradientNormClipping

    w = torch.nn.Parameter(torch.zeros_like(grad))
    seen = {}

    def step(engine, _):
        w.grad = grad.clone()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        seen["grad"] = w.grad.clone()

    engine = Engine(step)
    engine.register_events(*IterationEvents)
    engine.optimizer = torch.optim.SGD([w], lr=1.0)
    GradientNormClipping(max_norm).attach(engine)
    engine.run([0], max_epochs=1)
    return engine, seen["grad"]


def test_gradient_clipping_rescales_to_max_norm_before_the_step():
    grad = torch.tensor([3e4, 4e4])  # norm 5e4
    engine, clipped = _trainer_with_grad(grad, 1e4)
    assert engine.state.grad_norm == pytest.approx(5e4)
    assert float(clipped.norm()) == pytest.approx(1e4, rel=1e-5)
    assert torch.allclose(clipped / clipped.norm(), grad / grad.norm())  # direction kept
    _, small = _trainer_with_grad(torch.tensor([3.0, 4.0]), 1e4)
    assert torch.equal(small, torch.tensor([3.0, 4.0]))  # below the bound: untouched
    _, unclipped = _trainer_with_grad(grad, None)
    assert torch.equal(unclipped, grad)


def test_gradient_clipping_refuses_non_finite_gradients():
    with pytest.raises(FloatingPointError, match="gradient norm is nan at iteration 1"):
        _trainer_with_grad(torch.tensor([float("nan"), 1.0]), 1e4)


def _run_train_mode(net: torch.nn.Module, handler, iterations: int = 3, train: bool = True) -> Engine:
    x = torch.randn(1, 1, 16, 16, 16)

    def step(engine, batch):
        net.train(train)
        with torch.set_grad_enabled(train):
            return net(x).sum()

    engine = Engine(step)
    handler.attach(engine)
    engine.run(range(iterations), max_epochs=1)
    return engine


def test_spatial_saturation_monitor_warns_only_when_the_tanh_saturates(caplog):
    from mlm.handlers import SpatialSaturationMonitor
    from mlm.networks import LocalizationUNet, SpatialConfigurationNet

    def scn():
        torch.manual_seed(0)
        return SpatialConfigurationNet(
            3, 1, 2, num_filters=4, num_levels=2, spatial_downsample=2, spatial_kernel_size=3
        )

    healthy = scn()  # small-std init of the last spatial conv: pre-tanh ~0
    with caplog.at_level(logging.INFO, logger="SpatialSaturation"):
        engine = _run_train_mode(healthy, SpatialSaturationMonitor(healthy))
    assert engine.state.metrics["spatial_saturation"] == pytest.approx(0.0, abs=1e-12)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    saturated = scn()
    with torch.no_grad():
        saturated.spatial_configuration.heatmaps.conv.bias.fill_(100.0)  # tanh input ~100 everywhere
    monitor = SpatialSaturationMonitor(saturated)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="SpatialSaturation"):
        engine = _run_train_mode(saturated, monitor)
    assert engine.state.metrics["spatial_saturation"] == pytest.approx(1.0)
    assert monitor.history == [(3, pytest.approx(1.0))]
    assert any("module_lr_factors" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)

    # eval-mode forwards (validation) are not counted; networks without the component are left alone
    engine = _run_train_mode(saturated, SpatialSaturationMonitor(saturated), train=False)
    assert "spatial_saturation" not in engine.state.metrics
    unet = LocalizationUNet(3, 1, 2, num_filters=4, num_levels=2)
    engine = _run_train_mode(unet, SpatialSaturationMonitor(unet))
    assert "spatial_saturation" not in engine.state.metrics
    with pytest.raises(ValueError, match="warn_fraction"):
        SpatialSaturationMonitor(healthy, warn_fraction=1.5)


def _landmarks_with_drops(dropped: int) -> MetaTensor:
    return MetaTensor(torch.zeros(3, 2), meta={"num_landmarks_outside": dropped, "image_filename": "img.png"})


def test_outside_summary_counts_dropped_ground_truth_per_cached_dataset(caplog):
    from monai.data import CacheDataset
    from monai.transforms import Identityd

    from mlm.handlers import OutsideLandmarksSummary

    items = [{"id": f"i{k}", "landmarks": _landmarks_with_drops(d)} for k, d in enumerate([0, 2, 1])]
    cached = CacheDataset(items, transform=Identityd("landmarks"), progress=False)
    clean = CacheDataset(items[:1], transform=Identityd("landmarks"), progress=False)
    engine = _engine(max_epochs=1)
    OutsideLandmarksSummary({"training": cached, "validation": clean, "plain": items}).attach(engine)
    with caplog.at_level(logging.INFO):
        engine.run([0], max_epochs=1)
    assert engine.state.landmarks_outside == {"training": {"i1": 2, "i2": 1}, "validation": {}}
    messages = [r.getMessage() for r in caplog.records]
    assert any("training: 3 ground-truth landmarks in 2 of 3 images lie outside" in m for m in messages)
    assert any("validation: every ground-truth landmark lies inside" in m for m in messages)
    assert any("plain: dataset not cached" in m for m in messages)


def test_report_handler_counts_ground_truth_dropped_as_outside(tmp_path, capsys):
    true = np.array([[0.0, 0.0], [np.nan, np.nan]])
    batches = [{"id": ["a"], "landmarks": _landmarks_with_drops(1)}, {"id": ["b"], "landmarks": torch.zeros(2, 2)}]
    engine = Engine(
        lambda e, b: [{"pred": torch.as_tensor(true + 1.0), "label": torch.as_tensor(true), "id": b["id"][0]}]
    )
    LandmarkReportHandler(tmp_path, num_overlays=0).attach(engine)
    engine.run(batches, max_epochs=1)
    m = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert m["num_landmarks_outside"] == 1 and m["landmarks_outside"] == {"a": 1}
    assert "1 ground-truth landmarks in 1 images lie outside their image" in capsys.readouterr().out


def test_report_of_pixel_only_images_says_px_with_pixel_radii(tmp_path, capsys):
    true = np.array([[0.0, 0.0], [10.0, 10.0]])
    image = MetaTensor(torch.zeros(1, 16, 16), meta={"spatial_units": "px"})
    engine = Engine(
        lambda e, b: [{"pred": torch.as_tensor(true + 3.0), "label": torch.as_tensor(true), "image": image, "id": "x"}]
    )
    LandmarkReportHandler(tmp_path, num_overlays=0).attach(engine)
    engine.run([0], max_epochs=1)
    m = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert m["units"] == "px" and list(m["sdr"]) == ["5", "10", "20", "40"]
    assert m["pe_mean"] == pytest.approx(3 * 2**0.5)
    out = capsys.readouterr().out
    assert "MRE 4.24 +- 0.00 px" in out and "SDR: 5 px 100.0%" in out and " mm" not in out


def test_report_refuses_mixing_pixel_and_mm_images(tmp_path):
    true = np.array([[0.0, 0.0]])
    units = iter(["px", "mm"])
    engine = Engine(
        lambda e, b: [
            {
                "pred": torch.as_tensor(true),
                "label": torch.as_tensor(true),
                "image": MetaTensor(torch.zeros(1, 4, 4), meta={"spatial_units": next(units)}),
            }
        ]
    )
    LandmarkReportHandler(tmp_path, num_overlays=0).attach(engine)
    with pytest.raises(ValueError, match="give every pixel-only image"):
        engine.run([0, 1], max_epochs=1)


def test_loader_marks_pixel_only_files_and_a_datalist_spacing_makes_them_mm(tmp_path):
    from PIL import Image

    from transforms.io import CheckedLoadImage
    from transforms.landmarks import SetSpacing

    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 6), np.uint8)).save(png)
    nii = tmp_path / "x.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((6, 8), np.float32), np.eye(4)), str(nii))
    img = CheckedLoadImage(spatial_dims=2)(str(png))
    assert img.meta["spatial_units"] == "px"
    assert SetSpacing()(img, [0.1, 0.1]).meta["spatial_units"] == "mm"
    assert CheckedLoadImage(spatial_dims=2)(str(nii)).meta["spatial_units"] == "mm"


def _linear_with(value: float) -> torch.nn.Linear:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(value)
        net.bias.fill_(value)
    return net


def test_init_checkpoint_starts_a_new_run_from_given_weights_and_a_resumable_run_ignores_it(tmp_path):
    trained = _linear_with(3.0)
    torch.save({"model": trained.state_dict()}, tmp_path / "trained.pt")
    torch.save(trained.state_dict(), tmp_path / "plain.pt")
    for init in ("trained.pt", "plain.pt"):
        net = _linear_with(0.0)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        engine = Engine(lambda e, b: None)
        handler = ResumeFromCheckpoint(tmp_path / "empty", {"model": net, "optimizer": opt}, init_path=tmp_path / init)
        handler.attach(engine)
        engine.run([0], max_epochs=1)
        assert handler.loaded_path is None  # nothing resumed: a new run ...
        assert torch.equal(net.weight, torch.full((1, 2), 3.0)) and float(net.bias) == 3.0  # ... from the given weights
    # a run with its own checkpoint resumes it and leaves the init weights alone
    own = tmp_path / "own"
    own.mkdir()
    resumed = _linear_with(5.0)
    opt = torch.optim.SGD(resumed.parameters(), lr=0.1)
    trainer = Engine(lambda e, b: None)
    trainer.run([0, 1], max_epochs=1)
    torch.save(
        {"model": resumed.state_dict(), "optimizer": opt.state_dict(), "trainer": trainer.state_dict()},
        own / "checkpoint_iteration=2.pt",
    )
    net = _linear_with(0.0)
    handler = ResumeFromCheckpoint(
        own, {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}, init_path=tmp_path / "trained.pt"
    )
    handler.attach(engine := Engine(lambda e, b: None))
    engine.run([0, 1, 2], max_epochs=1)
    assert handler.loaded_path is not None and float(net.bias) == 5.0


def test_init_checkpoint_of_another_network_is_refused_naming_the_file(tmp_path):
    torch.save({"model": torch.nn.Linear(3, 1).state_dict()}, tmp_path / "other.pt")
    net = torch.nn.Linear(2, 1)
    handler = ResumeFromCheckpoint(tmp_path / "empty", {"model": net}, init_path=tmp_path / "other.pt")
    handler.attach(engine := Engine(lambda e, b: None))
    with pytest.raises(ValueError, match=r"other\.pt does not fit this bundle's model"):
        engine.run([0], max_epochs=1)
    with pytest.raises(ValueError, match="init_keys"):
        ResumeFromCheckpoint(tmp_path, {"model": net}, init_keys=("loss",))
