"""SAT / AMAT building blocks on crafted models and losses (no bundle): the loss, margins, thresholds, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from torch import nn

from mlm.adversarial_training import AdaptiveMargins, AdversarialTrainingLoss, clean_thresholds, huber_location_scale
from mlm.attacks import LandmarkAttackObjective
from mlm.engines import PrepareLandmarkBatch
from mlm.handlers import AdaptiveMarginTrainingHandler, AdversarialTrainingHandler

torch.set_num_threads(1)


class MeanAbsObjective(LandmarkAttackObjective):
    """One loss term per image: the mean absolute output (grows with any perturbation of a zero image)."""

    def num_landmarks(self, output):
        return 1

    def targets(self, clean_output, goals):
        return {}

    def per_landmark_losses(self, output, targets):
        return output.abs().flatten(1).mean(dim=1, keepdim=True)


def _identity_conv() -> nn.Module:
    net = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    return net


def _batch(image: torch.Tensor, sample_id: str) -> dict:
    return {"image": image, "landmarks": torch.tensor([[[1.0, 1.0]]]), "id": [sample_id]}


def _trainer(net, batches, handler, lr: float = 0.0, loss=None) -> SupervisedTrainer:
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        epoch_length=len(batches),
        train_data_loader=batches,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=lr),
        loss_function=loss or (lambda pred, label: pred.abs().mean()),
        prepare_batch=PrepareLandmarkBatch(),
        decollate=False,
    )
    handler.attach(trainer)
    return trainer


def test_adversarial_training_loss_is_the_mean_of_the_clean_and_adversarial_terms():
    loss = AdversarialTrainingLoss(lambda pred, label: pred.mean(), adversarial_weight=0.5)
    pred, adv = torch.full((2, 3), 2.0), torch.full((2, 3), 5.0)
    loss.set_adversarial(adv, None, forward=lambda x: 2 * x)
    assert float(loss(pred, None)) == pytest.approx(0.5 * (2.0 + 10.0))
    assert float(loss(pred, None)) == pytest.approx(2.0)  # the adversarial batch is used once
    loss.set_adversarial(adv[:0], None, forward=lambda x: 2 * x)  # no adversarial sample: term 0
    assert float(loss(pred, None)) == pytest.approx(1.0)


def test_sat_handler_trains_on_clean_plus_adversarial_over_two_and_steps_the_optimizer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 1))
    image = torch.rand(1, 1, 6, 6) * 2 - 1
    handler = AdversarialTrainingHandler(eps=0.5, num_iterations=3, objective=MeanAbsObjective(), value_range=(-1, 1))
    trainer = _trainer(net, [_batch(image, "a")], handler, lr=0.1, loss=lambda p, y: p.square().mean())
    seen = {}

    @trainer.on(Events.ITERATION_STARTED)
    def keep(engine):  # registered after the handler: its adversarial batch is pending
        seen["adv"] = handler.loss._pending[0].clone()
        seen["weights"] = [p.detach().clone() for p in net.parameters()]

    trainer.run()
    adv = seen["adv"]
    assert float((adv - image).flatten().norm()) <= 0.5 + 1e-5 and float(adv.abs().max()) <= 1.0
    with torch.no_grad():
        before = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 1))
        for p, w in zip(before.parameters(), seen["weights"]):
            p.copy_(w)
        expected = 0.5 * (before(image).square().mean() + before(adv).square().mean())
    assert trainer.state.output["loss"].item() == pytest.approx(float(expected), rel=1e-5)
    assert trainer.state.metrics["loss_adversarial"] > trainer.state.metrics["loss_clean"]
    assert any(not torch.equal(p, w) for p, w in zip(net.parameters(), seen["weights"]))  # the step happened


def test_amat_margins_grow_while_correct_then_refine_to_the_boundary():
    # identity model, zero image: the attack can reach mean |x| = E / 4 on 16 voxels, wrong above xi = 0.3 (E > 1.2)
    handler = AdaptiveMarginTrainingHandler(
        max_margin=5.0, num_iterations=10, thresholds=[0.3], refine_steps=12, objective=MeanAbsObjective()
    )
    zero, bright = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5)
    trainer = _trainer(_identity_conv(), [_batch(zero, "a"), _batch(bright, "b")], handler)
    trainer.state.max_epochs = 3
    history = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: history.append(dict(handler.margins.margins)))
    trainer.run()
    a = [h["a"] for h in history[::2]]
    assert a[:2] == [1.0, 1.5]  # grown by delta = 0.5 from the initial delta while correct
    assert 1.2 - 1e-3 <= a[2] < 1.5  # wrong at 1.5: refined to the boundary (mean |x| = 0.3 needs ||x|| >= 1.2)
    assert all(h["b"] == 0.5 for h in history[1::2])  # clean-wrong (mean |x| 0.5 > 0.3): not attacked, kept
    assert handler.last_update["b"] == {"clean_correct": False, "adversarial_correct": False, "margin": 0.5}


def _boundary_margin(refine_steps: int) -> tuple[float, int]:
    """AMAT on one zero image with an identity model (margin 1.5 crosses mean |x| = 0.3): its new margin and the
    number of forward passes of the iteration."""
    handler = AdaptiveMarginTrainingHandler(
        max_margin=5.0,
        delta=0.5,
        initial_margin=1.5,
        num_iterations=10,
        thresholds=[0.3],
        refine_steps=refine_steps,
        objective=MeanAbsObjective(),
    )
    net = _identity_conv()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    trainer = _trainer(net, [_batch(torch.zeros(1, 1, 4, 4), "a")], handler)
    trainer.run()
    assert handler.last_update["a"]["adversarial_correct"] is False
    return handler.margins.margins["a"], len(calls)


def test_amat_secant_boundary_estimate_matches_bisection_without_extra_forwards():
    secant, secant_calls = _boundary_margin(0)
    bisected, bisected_calls = _boundary_margin(12)
    assert 1.2 - 1e-3 <= bisected < 1.5  # mean |x| = 0.3 needs ||x|| >= 1.2 on 16 voxels; 1.5 is wrong
    assert secant == pytest.approx(bisected, abs=0.01)  # mean |x| is close to linear between two PGD iterates
    # clean check (also the attack's reference) + 10 PGD steps + the training step's 2 losses; a bisection costs 1 more
    assert secant_calls == 1 + 10 + 2 and bisected_calls == secant_calls + 12


def test_adaptive_margins_rules_and_state_round_trip():
    m = AdaptiveMargins(max_margin=1.0)
    assert m.get(["x"]) == [0.1] and m.delta == pytest.approx(0.1)
    for _ in range(20):
        m.update("x", True, True, None)
    assert m.margins["x"] == 1.0  # clamped at eps_max
    assert m.update("x", True, False, 0.42) == pytest.approx(0.42)
    assert m.update("x", True, False, 0.0) == pytest.approx(0.1)  # not below min_margin
    assert m.update("x", False, False, None) == pytest.approx(0.1)
    m.margins["y"] = 0.123456789012345
    other = AdaptiveMargins(max_margin=1.0)
    other.load_state_dict(m.state_dict())
    assert other.margins == m.margins


def test_clean_thresholds_mean_sd_and_huber():
    losses = np.array([[1.0, 1.0], [2.0, np.nan], [3.0, 3.0], [4.0, 5.0]])
    assert clean_thresholds(losses, "mean").tolist() == pytest.approx([2.5, 3.0])
    sd = np.std([1.0, 2.0, 3.0, 4.0])
    assert clean_thresholds(losses, "mean_sd").tolist()[0] == pytest.approx(2.5 + 2 * sd)
    x = np.r_[np.random.default_rng(0).normal(1.0, 0.1, 500), [50.0, 80.0]]  # two gross outliers
    mu, s = huber_location_scale(x)
    assert mu == pytest.approx(1.0, abs=0.02) and s == pytest.approx(0.1, rel=0.15)
    assert clean_thresholds(x[:, None], "huber").item() == pytest.approx(mu + 3 * s)
    assert clean_thresholds(np.full((3, 1), np.nan), "mean").item() == float("inf")


def test_amat_state_dict_round_trip_restores_margins_and_thresholds_exactly():
    handler = AdaptiveMarginTrainingHandler(max_margin=2.0, threshold_data=[], objective=MeanAbsObjective())
    handler.margins.margins.update({"001": 0.2, "017": 1.7000000000000002})
    handler.thresholds = torch.tensor([0.1, 0.30000000000000004], dtype=torch.float64)
    handler.threshold_epoch = 3
    state = handler.state_dict()
    fresh = AdaptiveMarginTrainingHandler(max_margin=2.0, threshold_data=[], objective=MeanAbsObjective())
    fresh.load_state_dict(state)
    assert fresh.margins.margins == handler.margins.margins and fresh.threshold_epoch == 3
    assert torch.equal(fresh.thresholds, handler.thresholds)


def test_amat_running_thresholds_come_from_the_last_epochs_clean_terms_without_another_pass():
    images = {
        "a": torch.full((1, 1, 4, 4), 0.1),
        "b": torch.full((1, 1, 4, 4), 0.2),
        "c": torch.full((1, 1, 4, 4), 0.4),
    }
    batches = [_batch(img, name) for name, img in images.items()]
    passes = []

    class CountedPass:  # threshold_data as collated batches, counting the clean passes over it
        def __iter__(self):
            passes.append(1)
            return iter(batches)

    handler = AdaptiveMarginTrainingHandler(
        max_margin=1.0,
        num_iterations=2,
        threshold_data=CountedPass(),
        threshold_method="mean",
        threshold_update="running",
        objective=MeanAbsObjective(),
    )
    trainer = _trainer(_identity_conv(), batches, handler)
    trainer.state.max_epochs = 2
    seen = {}
    trainer.add_event_handler(
        Events.EPOCH_STARTED, lambda e: seen.setdefault(e.state.epoch, handler.thresholds.clone())
    )
    trainer.run()
    # epoch 1: the clean pass (mean of 0.1, 0.2, 0.4); epoch 2: the same terms from epoch 1's iterations, no new pass
    assert len(passes) == 1
    assert seen[1].tolist() == pytest.approx([0.7 / 3]) and seen[2].tolist() == pytest.approx([0.7 / 3])
    assert handler.threshold_epoch == 2 and handler.state_dict()["running_terms"].shape == (3, 1)
    with pytest.raises(ValueError, match="threshold_update must be one of"):
        AdaptiveMarginTrainingHandler(max_margin=1.0, thresholds=[1.0], threshold_update="never")
