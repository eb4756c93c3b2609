"""Tests of mlm.handlers.LandmarkAttackHandler on a real MONAI SupervisedEvaluator (tiny network, synthetic batches)."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from torch import nn

from mlm.attacks import PGD, AdaptiveTargetedIFGSM, HeatmapAttackObjective, TargetedIFGSM, moved_landmarks
from mlm.engines import PrepareLandmarkBatch
from mlm.handlers import LandmarkAttackHandler, image_seed

torch.set_num_threads(1)

NUM_LANDMARKS = 4
SIZE = (8, 8)


def _items(count: int = 3) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(count):
        image = MetaTensor(torch.rand(1, *SIZE, generator=gen), meta={"filename_or_obj": f"/data/case_{i:03d}.png"})
        landmarks = torch.rand(NUM_LANDMARKS, 2, generator=gen, dtype=torch.float64) * 7
        landmarks[-1] = float("nan")  # a missing ground-truth landmark
        items.append({"image": image, "landmarks": landmarks})
    return items


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Conv2d(3, NUM_LANDMARKS, 3, padding=1))


class _Capture:
    """Keeps what post-processing and metrics would see at the end of every iteration."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.states: list[dict] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        for batch_item, output_item in zip(engine.state.batch, engine.state.output):
            self.items.append({**batch_item, **output_item})
        self.states.append(dict(engine.state.attack))


def _run(handler: LandmarkAttackHandler, network: nn.Module, batch_size: int = 2, items=None) -> _Capture:
    capture = _Capture()
    loader = DataLoader(Dataset(items if items is not None else _items()), batch_size=batch_size, num_workers=0)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=network,
        prepare_batch=PrepareLandmarkBatch(num_landmarks=NUM_LANDMARKS),
        val_handlers=[handler, capture],
    )
    evaluator.run()
    return capture


def test_handler_replaces_the_image_and_keeps_clean_and_adversarial_predictions():
    network = _network().train()  # the evaluator predicts in eval mode; the attack must run in that mode too
    flags = [p.requires_grad for p in network.parameters()]
    weights = {k: v.clone() for k, v in network.state_dict().items()}
    eps = 0.1
    attack = AdaptiveTargetedIFGSM(HeatmapAttackObjective(1.0), eps=eps, num_iterations=4, value_range=(0.0, 1.0))
    handler = LandmarkAttackHandler(attack, seed=3, target_box=[[1, 1], [6, 6]], record_transform=None)
    capture = _run(handler, network)
    assert len(capture.items) == 3 and len(capture.states) == 2  # batches of 2 and 1
    network.eval()
    for item in capture.items:
        clean, adv = item["clean_image"], item["image"]
        assert isinstance(adv, MetaTensor) and adv.meta["filename_or_obj"] == clean.meta["filename_or_obj"]
        delta = (adv - clean).as_tensor()
        assert 0 < float(delta.abs().max()) <= eps + 1e-6
        assert float(adv.min()) >= 0 and float(adv.max()) <= 1
        with torch.no_grad():
            torch.testing.assert_close(item["pred"].as_tensor(), network(adv[None].as_tensor())[0])
            torch.testing.assert_close(item["clean_pred"].as_tensor(), network(clean[None].as_tensor())[0])
        goals = item["attack_goals"]
        moved = moved_landmarks(goals[None])[0]
        assert 1 <= int(moved.sum()) <= NUM_LANDMARKS - 2
        assert bool((goals[moved] >= 1).all()) and bool((goals[moved] <= 6).all())
    assert set(capture.states[0]) >= {"clean_image", "clean_pred", "adversarial_image", "goals", "moved", "losses"}
    assert capture.states[0]["image_ids"] == ["case_000.png", "case_001.png"]
    network.train()
    assert all(m.training for m in network.modules())
    assert [p.requires_grad for p in network.parameters()] == flags
    for name, value in network.state_dict().items():
        assert torch.equal(value, weights[name]), name  # weights and BatchNorm statistics untouched


def test_handler_goals_depend_only_on_seed_and_image_id():
    attack = TargetedIFGSM(HeatmapAttackObjective(1.0), eps=0.05, num_iterations=2)
    by_two = _run(LandmarkAttackHandler(attack, seed=5), _network().eval(), batch_size=2)
    by_one = _run(LandmarkAttackHandler(attack, seed=5), _network().eval(), batch_size=1)
    other = _run(LandmarkAttackHandler(attack, seed=6), _network().eval(), batch_size=1)
    for a, b, c in zip(by_two.items, by_one.items, other.items):
        torch.testing.assert_close(a["attack_goals"], b["attack_goals"], equal_nan=True)
        torch.testing.assert_close(a["image"].as_tensor(), b["image"].as_tensor())
        assert not torch.equal(torch.nan_to_num(a["attack_goals"]), torch.nan_to_num(c["attack_goals"]))
    assert image_seed(5, "case_000.png") == image_seed(5, "case_000.png") != image_seed(6, "case_000.png")


def test_untargeted_handler_attacks_the_ground_truth_and_given_goals_are_used():
    items = _items()
    attack = PGD(HeatmapAttackObjective(1.0), eps=0.05, step_size=0.02, num_iterations=2, norm="l2")
    capture = _run(LandmarkAttackHandler(attack, seed=0), _network().eval(), items=items)
    for item, source in zip(capture.items, items):
        torch.testing.assert_close(item["attack_goals"], source["landmarks"].float(), equal_nan=True)
        assert float((item["image"] - item["clean_image"]).as_tensor().flatten().norm()) <= 0.05 + 1e-6
    given = [dict(item, attack_goals=torch.full((NUM_LANDMARKS, 2), float("nan"))) for item in _items()]
    for item in given:
        item["attack_goals"][0] = torch.tensor([2.0, 5.0])
    targeted = TargetedIFGSM(HeatmapAttackObjective(1.0), eps=0.05, num_iterations=2)
    capture = _run(LandmarkAttackHandler(targeted, seed=0, goals_key="attack_goals"), _network().eval(), items=given)
    for item in capture.items:
        assert moved_landmarks(item["attack_goals"][None]).tolist() == [[True, False, False, False]]


def test_handler_is_built_from_a_bundle_config_and_runs_on_every_rank():
    config = {
        "attack": {
            "_target_": "mlm.attacks.AdaptiveTargetedIFGSM",
            "objective": {"_target_": "mlm.attacks.HeatmapAttackObjective", "sigma": 1.5},
            "eps": 0.0625,
            "num_iterations": 3,
            "value_range": [-1, 1],
            "record_iterations": [1, 3],
        },
        "handler": {
            "_target_": "mlm.handlers.LandmarkAttackHandler",
            "attack": "@attack",
            "seed": 0,
            "target_box": "$mlm.attacks.PAPER_TARGET_BOX_FRACTION",
            "box_in_fractions": True,
        },
    }
    parser = ConfigParser({"imports": ["$import mlm", "$import mlm.attacks"], **config})
    handler = parser.get_parsed_content("handler")
    assert isinstance(handler, LandmarkAttackHandler) and LandmarkAttackHandler.every_rank is True
    assert handler.attack.step_size == 0.0625 * 0.05 and handler.attack.record_iterations == (1, 3)
    capture = _run(handler, _network().eval(), batch_size=3)
    item = capture.items[0]
    assert sorted(item["attack_records"]) == [1, 3]
    torch.testing.assert_close(item["attack_records"][3], item["pred"].as_tensor())
    moved_goals = item["attack_goals"][moved_landmarks(item["attack_goals"][None])[0]]
    assert bool((moved_goals[:, 0] >= 8 * 250 / 800).all()) and bool((moved_goals[:, 1] >= 8 * 100 / 640).all())
