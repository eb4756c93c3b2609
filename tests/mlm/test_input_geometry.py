"""The input geometry: recorded in checkpoints and checked on load, pixel-only images fitted whole, landmarks outside
the network's field of view refused before training, no untrained model.pt after a refused start."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import CacheDataset, MetaTensor
from monai.transforms import Identityd

from mlm.bundle.geometry import PreprocessingGeometry, checkpoint_geometry, geometry_overrides
from mlm.handlers import LandmarkCheckpointLoader, OutsideLandmarksSummary, TrainingCheckpointSaver
from mlm.handlers.outside_summary import landmarks_outside_grid
from transforms.spatial import FitPixelOnlyd


def _geometry(**changes) -> PreprocessingGeometry:
    values = dict(
        spatial_dims=2,
        pixdim=0.9375,
        preprocessed_size=(256, 256),
        resize_mode="auto",
        intensity_normalization="xray",
    )
    values.update(changes)
    return PreprocessingGeometry(**values)


def test_geometry_round_trip_accepts_the_same_values_in_other_types():
    state = _geometry().state_dict()
    assert state == {
        "spatial_dims": 2,
        "pixdim": 0.9375,
        "preprocessed_size": [256, 256],
        "resize_mode": "auto",
        "intensity_normalization": "xray",
    }
    same = _geometry(preprocessed_size=torch.tensor([256, 256]), pixdim=0.9375 + 1e-9)
    same.load_state_dict(state)  # no error
    assert same.mismatches(state) == {}


def test_geometry_mismatch_names_both_values_and_the_overrides():
    trained = _geometry(pixdim=-1.0, resize_mode="fit", preprocessed_size=[256, 192]).state_dict()
    with pytest.raises(ValueError) as e:
        _geometry().load_state_dict(trained)
    message = str(e.value)
    assert "pixdim: trained with -1.0, this run uses 0.9375" in message
    assert "resize_mode: trained with fit, this run uses auto" in message
    assert '--pixdim -1.0 --preprocessed_size "[256,192]" --resize_mode fit' in message
    assert "intensity_normalization" not in message


def test_geometry_missing_from_an_old_checkpoint_is_only_logged(caplog):
    with caplog.at_level(logging.INFO):
        _geometry().load_state_dict(None)
    assert any("records no preprocessing geometry" in r.getMessage() for r in caplog.records)


def test_checkpoint_loader_refuses_a_model_of_another_geometry(tmp_path):
    net = torch.nn.Conv2d(1, 2, 3)
    path = tmp_path / "model.pt"
    trained = _geometry(pixdim=0.5)
    torch.save({"model": net.state_dict(), "geometry": trained.state_dict()}, path)
    assert checkpoint_geometry(path) == trained.state_dict()
    assert geometry_overrides(trained.state_dict())["pixdim"] == 0.5
    engine = Engine(lambda e, b: None)
    loader = LandmarkCheckpointLoader(load_path=str(path), load_dict={"model": net}, geometry=_geometry())
    loader.attach(engine)
    with pytest.raises(ValueError, match=r"model.pt: the model was trained on another preprocessing geometry"):
        engine.run([0], max_epochs=1)
    # the same geometry loads; a plain state dict (no geometry) loads unchecked
    other = torch.nn.Conv2d(1, 2, 3)
    engine = Engine(lambda e, b: None)
    LandmarkCheckpointLoader(load_path=str(path), load_dict={"model": other}, geometry=trained).attach(engine)
    engine.run([0], max_epochs=1)
    assert torch.equal(other.weight, net.weight)
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    engine = Engine(lambda e, b: None)
    LandmarkCheckpointLoader(load_path=str(tmp_path / "plain.pt"), load_dict={"model": other}, geometry=trained).attach(
        engine
    )
    engine.run([0], max_epochs=1)


def _image(shape, units):
    return MetaTensor(torch.rand(1, *shape), meta={"spatial_units": units})


def test_fit_pixel_only_fits_a_pixel_only_image_whole_and_crops_a_physical_one():
    fit = FitPixelOnlyd(keys="image", spacing=1.0, spatial_size=(64, 64))
    # a 200 x 100 px image: fitted whole (3.125 px per output pixel along the long axis, aspect kept, padded)
    px = fit({"image": _image((200, 100), "px")})["image"]
    assert tuple(px.shape) == (1, 64, 64)
    assert torch.allclose(px.affine[:2, :2].diagonal().abs(), torch.tensor([3.125, 3.125], dtype=torch.float64))
    # the same array with a physical pixel size of 1 mm: resampled at 1 mm and centre cropped to 64 x 64
    mm = fit({"image": _image((200, 100), "mm")})["image"]
    assert tuple(mm.shape) == (1, 64, 64)
    assert torch.allclose(mm.affine[:2, :2].diagonal().abs(), torch.tensor([1.0, 1.0], dtype=torch.float64))


def _cached(items):
    return CacheDataset(items, transform=Identityd(["image", "landmarks"]), progress=False)


def test_landmarks_outside_the_grid_are_found_per_item():
    image = torch.zeros(1, 10, 8)
    items = [
        {"id": "a", "image": image, "landmarks": torch.tensor([[0.0, 0.0], [9.4, 7.4], [float("nan")] * 2])},
        {"id": "b", "image": image, "landmarks": torch.tensor([[-0.6, 3.0], [5.0, 7.5], [3.0, 3.0]])},
    ]
    assert landmarks_outside_grid(_cached(items)) == {"b": [0, 1]}
    assert landmarks_outside_grid(items) is None  # not cached: nothing to read


def test_summary_refuses_landmarks_outside_the_field_of_view_before_training(caplog):
    image = torch.zeros(1, 10, 8)
    items = [{"id": "b", "image": image, "landmarks": torch.tensor([[20.0, 3.0], [5.0, 5.0]])}]
    iterations = []
    engine = Engine(lambda e, b: iterations.append(b))
    OutsideLandmarksSummary({"training": _cached(items)}).attach(engine)
    with pytest.raises(
        ValueError, match=r"training: 1 ground-truth landmarks in 1 of 1 images lie outside the network"
    ):
        engine.run([0], max_epochs=1)
    assert iterations == []
    engine = Engine(lambda e, b: iterations.append(b))
    OutsideLandmarksSummary({"training": _cached(items)}, outside_view="warn").attach(engine)
    with caplog.at_level(logging.WARNING):
        engine.run([0], max_epochs=1)
    assert iterations == [0]
    assert any("--resize_mode fit" in r.getMessage() for r in caplog.records)


def test_saver_writes_no_model_when_no_iteration_completed(tmp_path):
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    saver = TrainingCheckpointSaver(
        save_dir=str(tmp_path), save_dict={"model": net}, save_final=True, final_filename="model.pt", save_interval=1
    )
    saver.attach(engine)

    @engine.on(Events.STARTED)
    def refuse(_):
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        engine.run([0, 1], max_epochs=1)
    assert not (tmp_path / "model.pt").exists()
