"""Tests of mlm.attacks: invariants under hypothesis (eps ball, range, model untouched), reproducibility, ATI weights,
and targeted attacks that really move the chosen landmarks (tiny CPU models on 8x8 to 24x24 images)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlm.attacks import (
    PAPER_TARGET_BOX_FRACTION,
    PGD,
    AdaptiveTargetedIFGSM,
    HeatmapAttackObjective,
    HeatmapOffsetAttackObjective,
    TargetedIFGSM,
    adaptive_landmark_weights,
    iterative_landmark_attack,
    moved_landmarks,
    random_attack_goals,
    target_box_from_fraction,
)

torch.set_num_threads(1)

#: float32 rounding of ``clean + delta - clean``: the perturbation may exceed eps by a few ulps of the intensities
TOLERANCE = 1e-5


def _tiny_net(out_channels: int, spatial_dims: int = 2, norm: bool = False, seed: int = 0) -> nn.Module:
    """1-2 conv network (optionally with BatchNorm and dropout, whose train mode changes buffers/outputs)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    if not norm:
        return nn.Sequential(conv(1, out_channels, 3, padding=1))
    bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
    return nn.Sequential(conv(1, 2, 3, padding=1), bn(2), nn.LeakyReLU(0.1), conv(2, out_channels, 3, padding=1))


NUM_LANDMARKS = 3
# one model per (objective kind, spatial dims, normalisation): built once, their weights must never change
MODELS = {
    (kind, dims, norm): _tiny_net(NUM_LANDMARKS * (1 if kind == "heatmap" else 1 + dims), dims, norm)
    for kind in ("heatmap", "offset")
    for dims in (2, 3)
    for norm in (False, True)
}
REFERENCE_WEIGHTS = {key: {k: v.clone() for k, v in m.state_dict().items()} for key, m in MODELS.items()}


def _objective(kind: str):
    return HeatmapAttackObjective(sigma=1.0) if kind == "heatmap" else HeatmapOffsetAttackObjective(radius=2.0)


attack_settings = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["heatmap", "offset"]),
        "dims": st.sampled_from([2, 2, 2, 3]),
        "norm_layer": st.booleans(),
        "train_mode": st.booleans(),
        "frozen": st.sampled_from([None, "all", "some"]),
        "with_grads": st.booleans(),
        "batch": st.integers(1, 2),
        "eps": st.floats(0.0, 2.0, allow_nan=False),
        "step_ratio": st.floats(0.0, 2.0, allow_nan=False),
        "iterations": st.integers(0, 3),
        "targeted": st.booleans(),
        "adaptive": st.booleans(),
        "random_start": st.booleans(),
        "value_range": st.sampled_from([None, (0.0, 1.0), (-1.0, 1.0), (-0.25, 0.5)]),
        "scale": st.sampled_from([1.0, 100.0]),
        "seed": st.integers(0, 2**31 - 1),
    }
)


def _run_invariant_case(case: dict, norm: str) -> None:
    """Run one generated attack and check every invariant of the issue."""
    key = (case["kind"], case["dims"], case["norm_layer"])
    model = MODELS[key]
    gen = torch.Generator().manual_seed(case["seed"])
    size = (8, 8) if case["dims"] == 2 else (4, 4, 4)
    lo, hi = case["value_range"] if case["value_range"] is not None else (-case["scale"], case["scale"])
    images = lo + (hi - lo) * torch.rand((case["batch"], 1, *size), generator=gen)
    goals = random_attack_goals(
        NUM_LANDMARKS, (0.0,) * len(size), tuple(s - 1.0 for s in size), case["batch"], gen, max_moved=NUM_LANDMARKS
    )
    model.train(case["train_mode"])
    if case["train_mode"] and case["norm_layer"]:
        model[0].train(False)  # a mixed mode must come back mixed
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.requires_grad_(not (case["frozen"] == "all" or (case["frozen"] == "some" and i % 2 == 0)))
        p.grad = torch.full_like(p, 0.5) if case["with_grads"] else None
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in params]
    buffers = [b.clone() for b in model.buffers()]

    eps = case["eps"] * (hi - lo) / 2
    result = iterative_landmark_attack(
        model,
        images,
        _objective(case["kind"]),
        goals,
        eps=eps,
        step_size=case["step_ratio"] * eps,
        num_iterations=case["iterations"],
        norm=norm,
        targeted=case["targeted"],
        adaptive=case["adaptive"],
        random_start=case["random_start"],
        value_range=case["value_range"],
        generator=torch.Generator().manual_seed(case["seed"]),
    )
    delta = result.adversarial - images
    tol = TOLERANCE * max(1.0, abs(lo), abs(hi))
    if norm == "linf":
        assert float(delta.abs().max()) <= eps + tol
    else:
        assert float(delta.flatten(1).norm(dim=1).max()) <= eps + tol * math.sqrt(delta[0].numel())
    if case["value_range"] is not None:
        assert float(result.adversarial.min()) >= lo and float(result.adversarial.max()) <= hi
    assert torch.isfinite(result.adversarial).all() and torch.equal(result.perturbation, delta)
    assert result.losses.shape == (case["batch"], NUM_LANDMARKS) and bool((result.losses >= 0).all())
    assert torch.equal(result.moved, moved_landmarks(goals))
    for name, value in model.state_dict().items():
        if name in REFERENCE_WEIGHTS[key] and "running" not in name and "num_batches" not in name:
            assert torch.equal(value, REFERENCE_WEIGHTS[key][name]), name
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in params] == flags
    for b, before in zip(model.buffers(), buffers):
        assert torch.equal(b, before)
    for p in params:
        assert (p.grad is None) if not case["with_grads"] else bool((p.grad == 0.5).all())


@settings(max_examples=3500, deadline=None)
@given(case=attack_settings)
def test_linf_attack_stays_in_eps_ball_and_range_and_leaves_the_model_untouched(case):
    _run_invariant_case(case, "linf")


@settings(max_examples=3000, deadline=None)
@given(case=attack_settings)
def test_l2_attack_stays_in_eps_ball_and_range_and_leaves_the_model_untouched(case):
    _run_invariant_case(case, "l2")


@settings(max_examples=2000, deadline=None)
@given(
    losses=st.tuples(st.integers(1, 3), st.integers(1, 6)).flatmap(
        lambda shape: st.lists(
            st.lists(st.floats(0.0, 1e6, allow_nan=False, allow_subnormal=False), min_size=shape[1], max_size=shape[1]),
            min_size=shape[0],
            max_size=shape[0],
        )
    )
)
def test_ati_weights_are_losses_over_their_per_image_mean(losses):
    values = torch.tensor(losses, dtype=torch.float64)
    weights = adaptive_landmark_weights(values)
    mean = values.mean(dim=1, keepdim=True)
    expected = torch.where(
        mean > 0, values / torch.where(mean > 0, mean, torch.ones_like(mean)), torch.ones_like(values)
    )
    torch.testing.assert_close(weights, expected, rtol=1e-12, atol=0.0)
    positive = mean[:, 0] > 0
    torch.testing.assert_close(weights[positive].mean(dim=1), torch.ones(int(positive.sum()), dtype=torch.float64))


@settings(max_examples=1600, deadline=None)
@given(
    num=st.integers(1, 25),
    batch=st.integers(1, 3),
    dims=st.integers(2, 3),
    seed=st.integers(0, 2**31 - 1),
    corner=st.lists(st.floats(-5.0, 50.0), min_size=3, max_size=3),
    extent=st.lists(st.floats(0.0, 50.0), min_size=3, max_size=3),
)
def test_random_goals_move_1_to_n_minus_2_landmarks_inside_the_box_reproducibly(num, batch, dims, seed, corner, extent):
    box_min = corner[:dims]
    box_max = [c + e for c, e in zip(corner, extent)][:dims]
    goals = random_attack_goals(num, box_min, box_max, batch, torch.Generator().manual_seed(seed))
    again = random_attack_goals(num, box_min, box_max, batch, torch.Generator().manual_seed(seed))
    assert goals.shape == (batch, num, dims) and torch.equal(goals.isnan(), again.isnan())
    assert torch.equal(torch.nan_to_num(goals), torch.nan_to_num(again))
    moved = moved_landmarks(goals)
    counts = moved.sum(dim=1)
    assert bool((counts >= 1).all()) and bool((counts <= max(1, num - 2)).all())
    assert bool(goals.isnan().all(dim=-1).eq(~moved).all())  # a row is all NaN or all finite
    points = goals[moved]
    lo, hi = torch.tensor(box_min), torch.tensor(box_max)
    assert bool((points >= lo - 1e-4).all()) and bool((points <= hi + 1e-4).all())


def test_random_goals_draw_every_count_of_the_paper_protocol():
    goals = random_attack_goals(19, (250, 100), (750, 600), 400, torch.Generator().manual_seed(0))
    counts = set(moved_landmarks(goals).sum(dim=1).tolist())
    assert counts == set(range(1, 18))
    box = target_box_from_fraction(PAPER_TARGET_BOX_FRACTION, (800, 640))
    assert box == ((250.0, 100.0), (750.0, 600.0))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [True, False])
def test_seeded_attack_reproduces_exactly(norm, targeted):
    model = _tiny_net(NUM_LANDMARKS).eval()
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    goals = random_attack_goals(NUM_LANDMARKS, (0, 0), (7, 7), 2, torch.Generator().manual_seed(2), max_moved=2)
    attack = PGD(HeatmapAttackObjective(1.0), eps=0.2, step_size=0.05, num_iterations=4, norm=norm, targeted=targeted)
    runs = [attack(model, images, goals, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert torch.equal(runs[0].losses, runs[1].losses)
    assert not torch.equal(runs[0].adversarial, runs[2].adversarial)


def _blur_identity(channels: int) -> nn.Module:
    """Per-channel 3x3 smoothing (a constructed 'detector' whose heatmap j is the image's channel j, blurred)."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    with torch.no_grad():
        conv.weight.copy_(kernel.expand(channels, 1, 3, 3))
    return conv.eval()


def _argmax_points(heatmaps: torch.Tensor) -> torch.Tensor:
    """``(B, N, 2)`` integer argmax positions of ``(B, N, H, W)`` heatmaps."""
    flat = heatmaps.flatten(2).argmax(dim=-1)
    width = heatmaps.shape[-1]
    return torch.stack([flat // width, flat % width], dim=-1).float()


@pytest.mark.parametrize("attack_class", [TargetedIFGSM, AdaptiveTargetedIFGSM])
def test_targeted_attack_moves_the_chosen_landmark_to_its_goal_and_keeps_the_other(attack_class):
    from transforms.heatmap.functional import gaussian_heatmaps

    size = (24, 24)
    start = torch.tensor([[[6.0, 6.0], [17.0, 8.0]]])
    images = gaussian_heatmaps(start, size, 1.5)  # (1, 2, 24, 24): channel j shows landmark j
    model = _blur_identity(2)
    goals = torch.tensor([[[16.0, 18.0], [float("nan"), float("nan")]]])
    clean_points = _argmax_points(model(images))
    assert torch.equal(clean_points, start)
    attack = attack_class(
        HeatmapAttackObjective(sigma=1.5), eps=1.0, step_size=0.05, num_iterations=60, record_iterations=(0, 60)
    )
    result = attack(model, images, goals)
    adv_points = _argmax_points(model(result.adversarial))
    assert float((adv_points[0, 0] - goals[0, 0]).norm()) <= 1.0  # moved from 15.6 px away to its goal
    assert torch.equal(adv_points[0, 1], start[0, 1])  # the stationary landmark stays exactly
    torch.testing.assert_close(result.records[60], model(result.adversarial).detach())
    torch.testing.assert_close(result.records[0], model(images).detach())
    assert float(result.losses[0, 0]) < 0.1 * float(
        HeatmapAttackObjective(1.5).per_landmark_losses(
            model(images), {"heatmaps": gaussian_heatmaps(goals, size, 1.5)}
        )[0, 0]
    )


def test_offset_objective_attack_moves_the_heatmap_peak_in_3d_and_keeps_the_stationary_landmark():
    from transforms.heatmap.functional import gaussian_heatmaps

    size = (10, 10, 10)
    start = torch.tensor([[[2.0, 2.0, 3.0], [7.0, 6.0, 2.0]]])
    images = gaussian_heatmaps(start, size, 1.5)  # (1, 2, *S): channel j shows landmark j
    # a constructed heatmap + offset model: heat logits 8 * image_j - 4, offsets a fixed mix of the channels
    model = nn.Conv3d(2, 2 * 4, 1).eval()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[0, 0] = model.weight[1, 1] = 8.0
        model.bias[:2] = -4.0
        model.weight[2:, :, 0, 0, 0] = torch.linspace(-0.3, 0.3, 12).reshape(6, 2)
    goals = torch.tensor([[[7.0, 3.0, 7.0], [float("nan")] * 3]])
    objective = HeatmapOffsetAttackObjective(radius=2.0)
    steps = []
    result = AdaptiveTargetedIFGSM(objective, eps=1.0, num_iterations=60, value_range=(0.0, 1.0))(
        model, images, goals, callback=steps.append
    )
    assert len(steps) == 60

    def peaks(output: torch.Tensor) -> torch.Tensor:
        flat = output[0, :2].flatten(1).argmax(dim=1)
        return torch.stack([flat // 100, flat // 10 % 10, flat % 10], dim=-1).float()

    assert torch.equal(peaks(model(images)), start[0])
    adv_peaks = peaks(model(result.adversarial))
    assert float((adv_peaks[0] - goals[0, 0]).norm()) <= 1.0  # moved 8.1 voxels, to its goal
    assert torch.equal(adv_peaks[1], start[0, 1])
    assert float(result.losses[0, 0]) < 0.85 * float(steps[0].losses[0, 0])  # bounded logits: BCE cannot reach 0


def test_ati_weights_are_recomputed_every_iteration_from_the_current_losses():
    model = _tiny_net(NUM_LANDMARKS).eval()
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    goals = random_attack_goals(NUM_LANDMARKS, (0, 0), (7, 7), 2, torch.Generator().manual_seed(4))
    steps = []
    AdaptiveTargetedIFGSM(HeatmapAttackObjective(1.0), eps=0.3, num_iterations=5)(
        model, images, goals, callback=steps.append
    )
    assert [s.iteration for s in steps] == list(range(5))
    for step in steps:
        torch.testing.assert_close(step.weights, step.losses / step.losses.mean(dim=1, keepdim=True))
        assert not step.weights.requires_grad
    assert not torch.equal(steps[0].weights, steps[-1].weights)
    steps_ti = []
    TargetedIFGSM(HeatmapAttackObjective(1.0), eps=0.3, num_iterations=2)(
        model, images, goals, callback=steps_ti.append
    )
    assert all(bool((s.weights == 1).all()) for s in steps_ti)


def test_ati_step_is_the_sign_of_the_weighted_loss_gradient():
    model = _tiny_net(NUM_LANDMARKS).eval()
    images = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    goals = torch.tensor([[[1.0, 1.0], [float("nan")] * 2, [6.0, 2.0]]])
    objective = HeatmapAttackObjective(1.0)
    result = AdaptiveTargetedIFGSM(objective, eps=1.0, step_size=0.01, num_iterations=1)(model, images, goals)
    x = images.clone().requires_grad_(True)
    losses = objective.per_landmark_losses(model(x), objective.targets(model(images), goals))
    (grad,) = torch.autograd.grad((losses * (losses / losses.mean(dim=1, keepdim=True)).detach()).sum(), x)
    torch.testing.assert_close(result.adversarial, images - 0.01 * grad.sign())


def test_untargeted_pgd_increases_the_loss_and_clean_output_is_the_clean_prediction():
    model = _tiny_net(NUM_LANDMARKS).eval()
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    truth = random_attack_goals(NUM_LANDMARKS, (0, 0), (7, 7), 2, torch.Generator().manual_seed(7), min_moved=3)
    objective = HeatmapAttackObjective(1.0)
    result = PGD(objective, eps=0.3, step_size=0.05, num_iterations=10)(
        model, images, truth, generator=torch.Generator().manual_seed(0)
    )
    clean = model(images).detach()
    torch.testing.assert_close(result.clean_output, clean)
    before = objective.per_landmark_losses(clean, objective.targets(clean, truth)).sum()
    after = objective.per_landmark_losses(model(result.adversarial).detach(), objective.targets(clean, truth)).sum()
    assert float(after) > float(before)


def test_stationary_targets_are_the_clean_prediction():
    model = _tiny_net(2 * 3).eval()
    images = torch.rand(1, 1, 8, 8)
    clean = model(images).detach()
    goals = torch.tensor([[[3.0, 4.0], [float("nan")] * 2]])
    authors = HeatmapOffsetAttackObjective(radius=2.0, stationary_mask="threshold").targets(clean, goals)
    torch.testing.assert_close(authors["masks"][0, 1], (torch.sigmoid(clean[0, 1]) > 0.5).float())
    targets = HeatmapOffsetAttackObjective(radius=2.0).targets(clean, goals)
    torch.testing.assert_close(targets["heatmaps"][0, 1], torch.sigmoid(clean[0, 1]))
    # default: the offsets are held on the landmark's voters, the int(pi R^2) = 12 voxels of highest clean heatmap
    voters = torch.zeros(64)
    voters[clean[0, 1].flatten().topk(12).indices] = 1.0
    torch.testing.assert_close(targets["masks"][0, 1], voters.view(8, 8))
    for key in ("heatmaps", "offsets"):
        torch.testing.assert_close(authors[key], targets[key])
    torch.testing.assert_close(targets["offsets"][0, :, 1], clean[0, [3, 5]])
    assert float(targets["heatmaps"][0, 0, 3, 4]) == 1.0 and float(targets["masks"][0, 0].sum()) == 9.0
    heat_targets = HeatmapAttackObjective(1.0).targets(clean[:, :2], goals)["heatmaps"]
    torch.testing.assert_close(heat_targets[0, 1], clean[0, 1])
    assert float(heat_targets[0, 0, 3, 4]) == 1.0


def test_voters_hold_a_stationary_landmark_of_an_unconfident_model_whose_threshold_mask_is_empty():
    # heatmaps below 0.5 everywhere (logits < 0), as the CPU-trained multi-task U-Net's: the authors' mask is empty
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 8, 8) - 4.0
    output = torch.cat([logits, torch.randn(1, 4, 8, 8) * 0.1], dim=1)
    goals = torch.full((1, 2, 2), float("nan"))
    authors = HeatmapOffsetAttackObjective(radius=1.5, stationary_mask="threshold").targets(output, goals)
    voters = HeatmapOffsetAttackObjective(radius=1.5, num_votes=5).targets(output, goals)
    assert float(authors["masks"].sum()) == 0.0
    assert voters["masks"].sum(dim=(2, 3)).tolist() == [[5.0, 5.0]]
    moved_offsets = output.clone()
    moved_offsets[:, 2:] += 0.5  # every offset shifted: only the held ones count
    loss = HeatmapOffsetAttackObjective(radius=1.5, num_votes=5).per_landmark_losses
    assert (loss(moved_offsets, voters) - loss(output, voters)).min() > 0.99  # + 0.5 per axis on the voters
    assert torch.allclose(
        HeatmapOffsetAttackObjective(radius=1.5, stationary_mask="threshold").per_landmark_losses(
            moved_offsets, authors
        ),
        HeatmapOffsetAttackObjective(radius=1.5, stationary_mask="threshold").per_landmark_losses(output, authors),
    )
    with pytest.raises(ValueError, match="stationary_mask"):
        HeatmapOffsetAttackObjective(radius=1.5, stationary_mask="all")


def test_attack_errors_are_clear():
    model = _tiny_net(NUM_LANDMARKS)
    images = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="goals must be"):
        TargetedIFGSM(HeatmapAttackObjective(1.0), eps=0.1, num_iterations=1)(model, images, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="norm"):
        PGD(HeatmapAttackObjective(1.0), eps=0.1, step_size=0.1, norm="l1")
    with pytest.raises(ValueError, match="record_iterations"):
        iterative_landmark_attack(
            model, images, HeatmapAttackObjective(1.0), eps=0.1, step_size=0.1, num_iterations=2, record_iterations=[3]
        )
    with pytest.raises(ValueError, match="sigma"):
        HeatmapAttackObjective(0.0)
