"""GU2Net's bundle parts: the BCE heatmap loss (mlm.gu2net_loss), the cyclic LR schedule (mlm.bundle.optim) and the
config adapters building GU2Net and its loss (mlm.bundle.gu2net)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlm.bundle.gu2net import GU2NET_VARIANTS, gu2net, gu2net_loss
from mlm.bundle.optim import iteration_lr_scheduler
from mlm.gu2net_loss import HeatmapBCELoss
from mlm.networks.gu2net import GU2Net
from transforms.heatmap.functional import gaussian_heatmaps


# ---------------------------------------------------------------------------------------------------- HeatmapBCELoss
def _hand_bce(pred: torch.Tensor, landmarks: torch.Tensor, sigma: float, eps: float = 1e-7) -> torch.Tensor:
    """Per-voxel BCE in float64, written out: -(t log p + (1 - t) log(1 - p)), p clamped to [eps, 1 - eps]."""
    target = gaussian_heatmaps(landmarks.double(), tuple(pred.shape[2:]), sigma, truncate=3).double()
    p = pred.double().clamp(eps, 1 - eps)
    return -(target * torch.log(p) + (1 - target) * torch.log1p(-p))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_loss_equals_a_hand_computation(reduction):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 4, 20, 24, generator=g) * 0.98 + 0.01
    landmarks = torch.rand(3, 4, 2, generator=g) * torch.tensor([19.0, 23.0])
    loss = HeatmapBCELoss(2, sigma=2.0, reduction=reduction)(pred, landmarks)
    expected = _hand_bce(pred, landmarks, 2.0).sum() / (3 if reduction == "mean" else 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # and torch's own BCE on the same targets, summed
    torch_bce = F.binary_cross_entropy(pred, gaussian_heatmaps(landmarks, (20, 24), 2.0, truncate=3), reduction="sum")
    assert loss.item() == pytest.approx(torch_bce.item() / (3 if reduction == "mean" else 1), rel=1e-5)


def test_loss_targets_are_peak_one_gaussians_cut_at_three_sigma():
    loss = HeatmapBCELoss(2, sigma=2.0)
    target = loss.targets(torch.tensor([[[10.0, 12.0]]]), (32, 32))[0, 0]
    assert target[10, 12].item() == pytest.approx(1.0, abs=1e-6)
    assert target[11, 12].item() == pytest.approx(math.exp(-1 / 8), rel=1e-5)
    assert target[10 + 6, 12].item() == pytest.approx(math.exp(-36 / 8), rel=1e-5)  # 3 sigma: still inside
    assert target[10 + 7, 12].item() == 0.0 and target[10, 12 - 7].item() == 0.0  # beyond: 0


def test_loss_3d_equals_a_hand_computation():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(2, 3, 8, 10, 12, generator=g) * 0.98 + 0.01
    landmarks = torch.rand(2, 3, 3, generator=g) * 7
    loss = HeatmapBCELoss(3, sigma=1.5, reduction="sum")(pred, landmarks)
    assert loss.item() == pytest.approx(_hand_bce(pred, landmarks, 1.5).sum().item(), rel=1e-5)


def test_missing_landmarks_contribute_nothing_and_get_no_gradient():
    g = torch.Generator().manual_seed(2)
    pred = (torch.rand(2, 3, 16, 16, generator=g) * 0.98 + 0.01).requires_grad_()
    landmarks = torch.rand(2, 3, 2, generator=g) * 15
    landmarks[0, 1] = float("nan")
    landmarks[1, 2, 0] = float("nan")  # one NaN coordinate: the landmark is missing
    loss = HeatmapBCELoss(2, sigma=2.0, reduction="sum")(pred, landmarks)
    per_voxel = _hand_bce(pred.detach(), torch.nan_to_num(landmarks, nan=-100.0), 2.0)
    present = torch.ones(2, 3, 1, 1, dtype=torch.float64)
    present[0, 1] = present[1, 2] = 0
    assert loss.item() == pytest.approx((per_voxel * present).sum().item(), rel=1e-5)
    loss.backward()
    assert torch.count_nonzero(pred.grad[0, 1]) == 0 and torch.count_nonzero(pred.grad[1, 2]) == 0
    assert torch.count_nonzero(pred.grad[0, 0]) == 16 * 16 and torch.isfinite(pred.grad).all()
    # without masking they are trained towards an empty map: -sum log(1 - p) more
    unmasked = HeatmapBCELoss(2, sigma=2.0, reduction="sum", mask_missing=False)(pred.detach(), landmarks)
    extra = -(torch.log1p(-pred.detach()[0, 1].double()).sum() + torch.log1p(-pred.detach()[1, 2].double()).sum())
    assert unmasked.item() == pytest.approx(loss.item() + extra.item(), rel=1e-5)


@pytest.mark.parametrize("channels", [1, 6, 19, 37])
def test_loss_takes_any_channel_count(channels):
    g = torch.Generator().manual_seed(channels)
    pred = torch.rand(1, channels, 16, 16, generator=g) * 0.98 + 0.01
    landmarks = torch.rand(1, channels, 2, generator=g) * 15
    loss = HeatmapBCELoss(2, sigma=1.0, num_landmarks=19)(pred, landmarks)
    assert loss.item() == pytest.approx(_hand_bce(pred, landmarks, 1.0).sum().item(), rel=1e-5)


def test_loss_shape_errors():
    loss = HeatmapBCELoss(2)
    with pytest.raises(ValueError, match="pred must be"):
        loss(torch.rand(2, 3, 8, 8, 8), torch.rand(2, 3, 2))
    with pytest.raises(ValueError, match=r"landmarks must be \(B, N, D\) = \(2, 3, 2\)"):
        loss(torch.rand(2, 3, 8, 8), torch.rand(2, 4, 2))
    with pytest.raises(ValueError, match=r"landmarks must be \(B, N, D\)"):
        loss(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 3))


def test_loss_argument_errors():
    with pytest.raises(ValueError, match="reduction"):
        HeatmapBCELoss(2, reduction="none")
    with pytest.raises(ValueError, match="spatial_dims"):
        HeatmapBCELoss(1)
    with pytest.raises(ValueError, match="positive"):
        HeatmapBCELoss(2, sigma=0.0)
    with pytest.raises(ValueError, match="positive"):
        HeatmapBCELoss(2, truncate=-1.0)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_saturated_predictions_stay_finite(value):
    """A product of sigmoids reaches exactly 0 (or 1): the eps clamp keeps loss and gradient finite."""
    pred = torch.full((1, 2, 16, 16), value, requires_grad=True)
    landmarks = torch.tensor([[[5.0, 6.0], [10.0, 9.5]]])
    loss = HeatmapBCELoss(2, sigma=2.0, reduction="sum", eps=1e-6)(pred, landmarks)
    assert torch.isfinite(loss)
    target = gaussian_heatmaps(landmarks, (16, 16), 2.0, truncate=3).double()
    p = torch.tensor(min(max(value, 1e-6), 1 - 1e-6), dtype=torch.float32).double()  # the float32 clamp
    expected = -(target * torch.log(p) + (1 - target) * torch.log1p(-p)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert loss.item() > 10.0  # saturation on the wrong side costs, it is not hidden
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_sigmas_has_num_landmarks_entries():
    loss = HeatmapBCELoss(2, sigma=3.0, num_landmarks=19)
    assert loss.sigmas.shape == (19,) and torch.equal(loss.sigmas, torch.full((19,), 3.0))
    assert HeatmapBCELoss(2).sigmas.shape == (1,)
    assert list(loss.parameters()) == []  # the sigma is fixed


# ----------------------------------------------------------------------------------------------- cyclic LR schedule
def _optimizer(lr: float = 1e-4) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _rates(scheduler, optimizer, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_cyclic_schedule_equals_torch_cyclic_lr():
    opt = _optimizer()
    ours = iteration_lr_scheduler(opt, "cyclic", 130, max_factor=100, step_iterations=20)
    ref_opt = _optimizer()
    ref = torch.optim.lr_scheduler.CyclicLR(
        ref_opt, base_lr=1e-4, max_lr=1e-2, step_size_up=20, mode="triangular2", cycle_momentum=False
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], abs=1e-12)
    a, b = _rates(ours, opt, 130), _rates(ref, ref_opt, 130)
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-12
    # the shape itself: peak 1e-2 at 20, back to 1e-4 at 40, half the amplitude in the second cycle
    assert a[19] == pytest.approx(1e-2, abs=1e-12) and a[39] == pytest.approx(1e-4, abs=1e-12)
    assert a[59] == pytest.approx(1e-4 + (1e-2 - 1e-4) / 2, abs=1e-12)
    assert a[99] == pytest.approx(1e-4 + (1e-2 - 1e-4) / 4, abs=1e-12)


def test_cyclic_schedule_resumes_from_its_state_dict():
    opt = _optimizer()
    sched = iteration_lr_scheduler(opt, "cyclic", 130, max_factor=100, step_iterations=20)
    full = _rates(sched, opt, 130)

    opt = _optimizer()
    sched = iteration_lr_scheduler(opt, "cyclic", 130, max_factor=100, step_iterations=20)
    first = _rates(sched, opt, 57)
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert state["last_epoch"] == 57

    resumed_opt = _optimizer()
    resumed_opt.load_state_dict(opt_state)
    resumed = iteration_lr_scheduler(resumed_opt, "cyclic", 130, max_factor=100, step_iterations=20)
    resumed.load_state_dict(state)
    rest = _rates(resumed, resumed_opt, 130 - 57)
    assert max(abs(x - y) for x, y in zip(first + rest, full)) < 1e-15


@pytest.mark.parametrize("kwargs", [{"max_factor": 0.5}, {"step_iterations": 0}])
def test_cyclic_schedule_errors(kwargs):
    with pytest.raises(ValueError, match="cyclic lr_schedule"):
        iteration_lr_scheduler(_optimizer(), "cyclic", 100, **kwargs)


# ----------------------------------------------------------------------------------------------------- gu2net adapters
def test_gu2net_builds_the_domains_counts():
    net = gu2net(2, 1, 37, num_filters=2, domain_landmarks=[19, 37, 6], domain=1)
    assert isinstance(net, GU2Net)
    assert net.num_landmarks == (19, 37, 6) and net.num_domains == 3 and net.num_filters == 2
    assert net.local_net is not None and net.global_net is not None and net.separable
    with torch.no_grad():
        out = net.eval()(torch.rand(1, 1, 32, 32), domain=1)
    assert out.shape == (1, 37, 32, 32)
    single = gu2net(2, 1, 5, num_filters=2, spatial_downsample=None)
    assert single.num_landmarks == (5,)
    assert gu2net(2, 1, 5, num_filters=2, global_interpolation="nearest").global_interpolation == "nearest"


@pytest.mark.parametrize("variant", list(GU2NET_VARIANTS))
def test_gu2net_variants_map_to_the_gu2net_options(variant):
    net = gu2net(2, 1, 19, num_filters=2, domain_landmarks=[19, 37], domain=0, variant=variant)
    has_local, has_global, separable = {
        "gu2net": (True, True, True),
        "local_only": (True, False, True),
        "global_only": (False, True, True),
        "shared_unet": (True, False, False),
    }[variant]
    assert (net.local_net is not None, net.global_net is not None, net.separable) == (has_local, has_global, separable)
    names = [n for n, _ in net.named_parameters()]
    assert any(n.startswith("local_net.") for n in names) == has_local
    assert any(n.startswith("global_net.") for n in names) == has_global
    if has_local:  # separable: depthwise per domain, pointwise shared; shared U-Net: no depthwise convs
        assert any(".depthwise1." in n for n in names) == separable
    assert net.num_landmarks == (19, 37)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_levels": 4}, "num_levels"),
        ({"spatial_kernel_size": 3}, "spatial_kernel_size"),
        ({"heatmap_init_std": 0.001}, "heatmap_init_std"),
        ({"spatial_downsample": 2}, "spatial_downsample 4"),
        ({"padding_mode": "reflect"}, "pads with zeros"),
        ({"variant": "u2net"}, "unknown variant 'u2net'"),
        ({"domain_landmarks": [19, 37], "domain": 1}, "data has 19 landmarks per image but domain 1 .* predicts 37"),
        ({"domain_landmarks": [19, 37], "domain": 2}, "domain 2 is not one of the model's 2 domains"),
        ({"domain": 1}, "domain 1 is not one of the model's 1 domains"),
    ],
)
def test_gu2net_refuses(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gu2net(2, 1, 19, num_filters=2, **kwargs)


def test_gu2net_loss_adapter():
    loss = gu2net_loss(19, 2, sigma=3.0, learn_sigma=True, sigma_weight=0.0, reduction="sum", truncate=2.0)
    assert isinstance(loss, HeatmapBCELoss)
    assert (loss.spatial_dims, loss.sigma, loss.truncate, loss.reduction) == (2, 3.0, 2.0, "sum")
    assert loss.sigmas.shape == (19,) and loss.mask_missing
    with pytest.raises(ValueError, match="gamma"):
        gu2net_loss(19, 2, sigma=3.0, gamma=100.0)
    with pytest.raises(ValueError, match="sigma_weight"):
        gu2net_loss(19, 2, sigma=3.0, sigma_weight=0.1)
