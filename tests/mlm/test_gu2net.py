"""mlm.networks.GU2Net: output shapes per domain, parameter counts against the authors' layer list, domain routing of
gradients and BatchNorm statistics, the ablations, domain arguments, input sizes, global resampling, 3D, TorchScript
and MONAI's engines passing ``domain=``."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer

from mlm.networks import GU2Net, count_parameters, parameter_domains

#: the paper's three domains: cephalometric (19), hand (37), chest (6) landmarks
PAPER_LANDMARKS = (19, 37, 6)

# ---------------------------------------------------------------------------------------------------------------
# parameter counts from the layer list of shared/docs/METHODS.md section 2 (not from the module)


def _conv(cin: int, cout: int, k: int, d: int = 2, groups: int = 1) -> int:
    return k**d * cin // groups * cout + cout


def _separable_double_conv(cin: int, cout: int, mid: int, d: int = 2) -> tuple[int, int]:
    """(shared, per-domain) parameters of the authors' DoubleConv: depthwise_d, pointwise, BN_d, depthwise_d,
    pointwise, BN_d."""
    shared = _conv(cin, mid, 1, d) + _conv(mid, cout, 1, d)
    per_domain = _conv(cin, cin, 3, d, groups=cin) + 2 * mid + _conv(mid, mid, 3, d, groups=mid) + 2 * cout
    return shared, per_domain


def _shared_double_conv(cin: int, cout: int, mid: int, d: int = 2) -> tuple[int, int]:
    """(shared, per-domain): two shared 3^D convs, per-domain BNs."""
    return _conv(cin, mid, 3, d) + _conv(mid, cout, 3, d), 2 * mid + 2 * cout


def _local_counts(n: tuple[int, ...], f: int = 64, cin: int = 1, separable: bool = True, d: int = 2):
    """(shared, [per-domain own]) of U2Net: in_d, DoubleConv(64,64), downs 64->128->256->512->512, ups 1024->256
    (mid 512), 512->128 (mid 256), 256->64 (mid 128), 128->64 (mid 64), out_d."""
    blocks = [
        (f, f, f),
        (f, 2 * f, 2 * f),
        (2 * f, 4 * f, 4 * f),
        (4 * f, 8 * f, 8 * f),
        (8 * f, 8 * f, 8 * f),
        (16 * f, 4 * f, 8 * f),
        (8 * f, 2 * f, 4 * f),
        (4 * f, f, 2 * f),
        (2 * f, f, f),
    ]
    block = _separable_double_conv if separable else _shared_double_conv
    shared = sum(block(a, b, m, d)[0] for a, b, m in blocks)
    per_block = sum(block(a, b, m, d)[1] for a, b, m in blocks)
    own = [_conv(cin, f, 1, d) + per_block + _conv(f, k, 1, d) for k in n]
    return shared, own


def _global_counts(n: tuple[int, ...], f: int = 64, cin: int = 1, local_input: bool = True, d: int = 2) -> list[int]:
    """Per-domain parameters of the global network (all of them are per domain): in_d 3^D (cin -> 64, or -> 128
    without the local branch), in_local_d 3^D (N -> 64), 5 x [dilated 3^D 128 -> 128, BN], out_d 1^D 128 -> N."""
    dilated = 5 * (_conv(2 * f, 2 * f, 3, d) + 2 * 2 * f)
    if local_input:
        return [_conv(cin, f, 3, d) + _conv(k, f, 3, d) + dilated + _conv(2 * f, k, 1, d) for k in n]
    return [_conv(cin, 2 * f, 3, d) + dilated + _conv(2 * f, k, 1, d) for k in n]


def _expected(n, local=True, global_=True, separable=True, f=64, d=2) -> tuple[int, list[int]]:
    """(total, [used by domain k]) from the layer list."""
    shared, own = _local_counts(n, f, separable=separable, d=d) if local else (0, [0] * len(n))
    glob = _global_counts(n, f, local_input=local, d=d) if global_ else [0] * len(n)
    own = [a + b for a, b in zip(own, glob)]
    return shared + sum(own), [shared + o for o in own]


@pytest.mark.parametrize(
    "options,total,per_domain",
    [
        ({}, 4_381_052, [2_742_694, 2_756_554, 2_732_684]),
        ({"global_network": False}, 2_117_630, [1_989_395, 1_990_565, 1_988_550]),
        ({"local_network": False}, 2_229_438, [742_931, 745_253, 741_254]),
        ({"separable": False, "global_network": False}, 17_324_542, [17_303_827, 17_304_997, 17_302_982]),
        ({"separable": False}, 19_587_964, [18_057_126, 18_070_986, 18_047_116]),
    ],
)
def test_full_size_parameter_counts_match_the_layer_list_and_the_docstring_table(options, total, per_domain):
    net = GU2Net(2, 1, PAPER_LANDMARKS, **options)
    expected = _expected(
        PAPER_LANDMARKS,
        local=options.get("local_network", True),
        global_=options.get("global_network", True),
        separable=options.get("separable", True),
    )
    assert (count_parameters(net), [count_parameters(net, k) for k in range(3)]) == expected
    assert expected == (total, per_domain)  # the figures quoted in mlm/networks/gu2net.py's docstring
    assert count_parameters(net) == sum(p.numel() for p in net.parameters())


def test_3d_parameter_count_matches_the_layer_list_with_cubic_kernels():
    net = GU2Net(3, 1, (2, 3), num_filters=4)
    assert (count_parameters(net), [count_parameters(net, k) for k in range(2)]) == _expected((2, 3), f=4, d=3)


def test_count_parameters_skips_frozen_parameters_and_checks_the_domain():
    net = GU2Net(2, 1, (2, 3), num_filters=4)
    total = count_parameters(net)
    net.local_net.out_conv[1].weight.requires_grad_(False)
    assert count_parameters(net) == total - 4 * 3
    assert count_parameters(net, 0) == _expected((2, 3), f=4)[1][0]
    with pytest.raises(ValueError, match=r"0 \.\. 1"):
        count_parameters(net, 2)
    with pytest.raises(TypeError, match="num_domains"):
        count_parameters(torch.nn.Linear(2, 2), 0)


# ---------------------------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("training", [True, False])
def test_output_has_each_domains_landmark_count_at_the_input_size(training):
    torch.manual_seed(0)
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4).train(training)
    x = torch.randn(1, 1, 64, 48)
    for k, n in enumerate(PAPER_LANDMARKS):
        out = net(x, domain=k)
        assert out.shape == (1, n, 64, 48)
        assert out.min() > 0 and out.max() < 1  # product of two sigmoids
    assert net.num_domains == 3 and net.num_landmarks == PAPER_LANDMARKS


def test_default_width_network_runs_on_a_small_input():
    net = GU2Net(2, 1, (3, 2))
    assert net.local_net.down4.conv.pointwise2.out_channels == 512
    assert net.global_net.dilated[0][0][0].in_channels == 128
    out = net(torch.randn(2, 1, 32, 32), domain=1)
    assert out.shape == (2, 2, 32, 32)


@pytest.mark.parametrize("shape", [(2, 1, 37, 51), (1, 1, 16, 17), (2, 1, 50, 33)])
@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_sizes_not_divisible_by_16_work_like_the_authors_padded_up_path(shape, interpolation):
    net = GU2Net(2, 1, (3, 2), num_filters=4, global_interpolation=interpolation).eval()
    assert net(torch.randn(shape), domain=0).shape == (shape[0], 3, *shape[2:])


def test_too_small_or_wrongly_shaped_inputs_are_refused():
    net = GU2Net(2, 1, (3, 2), num_filters=4)
    with pytest.raises(ValueError, match=r">= 16"):
        net(torch.randn(1, 1, 15, 32))
    with pytest.raises(ValueError, match="2 spatial dims"):
        net(torch.randn(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="1 input channels"):
        net(torch.randn(1, 2, 32, 32))


def test_3d_network_runs_on_tiny_inputs_in_both_modes_and_both_interpolations():
    for interpolation in ("linear", "nearest"):
        net = GU2Net(3, 1, (2, 3), num_filters=2, global_interpolation=interpolation)
        assert net(torch.randn(2, 1, 16, 16, 20), domain=1).shape == (2, 3, 16, 16, 20)
        net.eval()
        assert net(torch.randn(1, 1, 16, 17, 18), domain=0).shape == (1, 2, 16, 17, 18)
    for options in ({"global_network": False}, {"local_network": False}, {"separable": False}):
        net = GU2Net(3, 1, (2, 3), num_filters=2, **options).eval()
        assert net(torch.randn(1, 1, 16, 16, 16), domain=1).shape == (1, 3, 16, 16, 16)


def test_evaluation_mode_output_is_deterministic():
    torch.manual_seed(0)
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4)
    net(torch.randn(2, 1, 32, 32), domain=2)  # one training step of BN statistics
    net.eval()
    x = torch.randn(1, 1, 48, 40)
    with torch.no_grad():
        assert torch.equal(net(x, domain=2), net(x, domain=2))
        assert torch.equal(net(x[:, :, :, :], domain=torch.tensor(2)), net(x, domain=2))


# ---------------------------------------------------------------------------------------------------------------
# domain routing

#: the per-domain module lists (their index is the domain); everything else must be a shared pointwise conv
_PER_DOMAIN = re.compile(
    r"(?:^|\.)(in_conv|out_conv|depthwise1|depthwise2|norm1|norm2|image_in|local_in|dilated)\.(\d+)\."
)


def _owner(name: str) -> int | None:
    match = _PER_DOMAIN.search(name)
    return None if match is None else int(match.group(2))


def test_per_domain_and_shared_parameters_are_the_papers_split():
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4)
    shared = [name for name, _ in net.named_parameters() if _owner(name) is None]
    assert shared and all(re.search(r"\.pointwise[12]\.(weight|bias)$", name) for name in shared)
    assert all(name.startswith("local_net.") for name in shared)  # the global network has no shared layer
    assert all(_owner(name) is not None for name, _ in net.global_net.named_parameters(prefix="global_net"))
    assert parameter_domains(net) == {name: _owner(name) for name, _ in net.named_parameters()}
    # 9 DoubleConvs: 2 pointwise convs each (weight + bias)
    assert len(shared) == 9 * 2 * 2


@pytest.mark.parametrize("options", [{}, {"separable": False}, {"local_network": False}])
@pytest.mark.parametrize("domain", [0, 1, 2])
def test_backward_on_one_domain_reaches_only_its_own_and_the_shared_parameters(options, domain):
    torch.manual_seed(domain)
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4, **options).eval()  # eval: no BN to cancel conv biases
    out = net(torch.randn(2, 1, 32, 32), domain=domain)
    F.binary_cross_entropy(out, torch.rand_like(out), reduction="sum").backward()
    for name, param in net.named_parameters():
        owner = _owner(name)
        if owner is None or owner == domain:
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{name}: no gradient from domain {domain}"
        else:
            assert param.grad is None or not param.grad.any(), f"{name} (domain {owner}) got a gradient from {domain}"


def test_training_step_on_one_domain_updates_only_its_batchnorm_statistics():
    torch.manual_seed(0)
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4).train()
    before = {name: b.clone() for name, b in net.named_buffers()}
    out = net(torch.randn(2, 1, 32, 32), domain=torch.tensor([1, 1]))
    F.binary_cross_entropy(out, torch.rand_like(out)).backward()
    for name, buffer in net.named_buffers():
        owner = _owner(name)
        assert owner is not None, name  # every BatchNorm is per domain
        assert torch.equal(buffer, before[name]) == (owner != 1), name
    for name, param in net.named_parameters():  # in training mode too, other domains get no gradient
        if _owner(name) not in (None, 1):
            assert param.grad is None, name


# ---------------------------------------------------------------------------------------------------------------
# ablations


def test_local_only_has_no_global_parameters_and_outputs_the_local_sigmoid():
    torch.manual_seed(0)
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4, global_network=False).eval()
    assert net.global_net is None
    assert not any(name.startswith("global_net") for name, _ in net.named_parameters())
    x = torch.randn(1, 1, 32, 48)
    out = net(x, domain=1)
    assert out.shape == (1, 37, 32, 48)
    assert torch.equal(out, net.local_net(x, 1))


def test_global_only_drops_the_local_network_and_its_input_branch():
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4, local_network=False).eval()
    assert net.local_net is None and net.global_net.local_in is None
    assert all(name.startswith("global_net.") for name, _ in net.named_parameters())
    assert net.global_net.image_in[0].out_channels == 8  # 2f: the authors' GlobalNet
    x = torch.randn(1, 1, 32, 48)
    out = net(x, domain=2)
    assert out.shape == (1, 6, 32, 48) and torch.equal(out, net.global_net(x, None, 2))


def test_full_model_output_is_global_times_local():
    torch.manual_seed(0)
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4).eval()
    x = torch.randn(1, 1, 32, 48)
    local = net.local_net(x, 0)
    assert torch.allclose(net(x, domain=0), net.global_net(x, local, 0) * local)


def test_shared_unet_has_no_depthwise_convs_and_shares_its_3x3_convs():
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4, separable=False, global_network=False)
    names = [name for name, _ in net.named_parameters()]
    assert not any("depthwise" in name or "pointwise" in name for name in names)
    shared = [name for name in names if _owner(name) is None]
    assert len(shared) == 9 * 2 * 2 and all(re.search(r"\.conv[12]\.(weight|bias)$", name) for name in shared)
    assert net.local_net.conv.conv1.kernel_size == (3, 3)
    assert net(torch.randn(1, 1, 32, 32), domain=2).shape == (1, 6, 32, 32)


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        GU2Net(2, 1, (3,), local_network=False, global_network=False)
    with pytest.raises(ValueError, match="global_interpolation"):
        GU2Net(2, 1, (3,), global_interpolation="bicubic")
    with pytest.raises(ValueError, match="num_landmarks"):
        GU2Net(2, 1, 3)
    with pytest.raises(ValueError, match="num_landmarks"):
        GU2Net(2, 1, (3, 0))
    with pytest.raises(ValueError, match="spatial_dims"):
        GU2Net(1, 1, (3,))
    net = GU2Net(2, 1, (3, 2), num_filters=4)
    with pytest.raises(ValueError, match=r"U2Net: domain must be in 0 \.\. 1"):
        net.local_net(torch.randn(1, 1, 32, 32), -1)  # the parts check their domain too (no wrap-around)
    with pytest.raises(ValueError, match="takes the local heatmaps"):
        net.global_net(torch.randn(1, 1, 32, 32), None, 0)


# ---------------------------------------------------------------------------------------------------------------
# domain argument


@pytest.fixture(scope="module")
def small_net() -> GU2Net:
    torch.manual_seed(0)
    return GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4).eval()


@pytest.mark.parametrize(
    "domain", [torch.tensor(1), torch.tensor([1]), torch.tensor([1, 1]), torch.tensor([1, 1], dtype=torch.int32)]
)
def test_domain_may_be_an_integer_tensor_of_equal_tags(small_net, domain):
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(small_net(x, domain=domain), small_net(x, domain=1))


def test_default_domain_is_zero(small_net):
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(small_net(x), small_net(x, domain=0))


@pytest.mark.parametrize(
    "domain,message",
    [
        (3, r"domain must be in 0 \.\. 2 \(3 domains\), got 3"),
        (-1, r"got -1"),
        (torch.tensor(5), r"got 5"),
        (torch.tensor([0, 1]), "one batch must come from one domain"),
        (torch.tensor([[1]]), "0 dims or 1 dim"),
        (torch.tensor([], dtype=torch.long), "0 dims or 1 dim"),
        (torch.tensor(1.0), "integer tensor"),
        (torch.tensor(True), "integer tensor"),
    ],
)
def test_bad_domains_raise_a_clear_value_error(small_net, domain, message):
    with pytest.raises(ValueError, match=message):
        small_net(torch.randn(2, 1, 32, 32), domain=domain)


# ---------------------------------------------------------------------------------------------------------------
# global resampling


def _run_with_global_hooks(net: GU2Net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the global network's x1/4 image input, its low-resolution output logits, the network's output), domain 0."""
    captured = {}
    hooks = [
        net.global_net.image_in[0].register_forward_pre_hook(lambda _m, args: captured.setdefault("low", args[0])),
        net.global_net.out_conv[0].register_forward_hook(lambda _m, _a, out: captured.setdefault("logits", out)),
    ]
    try:
        with torch.no_grad():
            out = net(x, domain=0)
    finally:
        for hook in hooks:
            hook.remove()
    return captured["low"], captured["logits"], out


def test_nearest_global_interpolation_reproduces_the_authors_subsampling_and_blocky_upsampling():
    torch.manual_seed(0)
    net = GU2Net(2, 1, (2,), num_filters=4, global_interpolation="nearest", local_network=False).eval()
    x = torch.randn(1, 1, 32, 48)
    low, logits, out = _run_with_global_hooks(net, x)
    assert torch.equal(low, x[:, :, ::4, ::4])
    assert logits.shape == (1, 2, 8, 12)
    assert torch.equal(out, torch.sigmoid(logits.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)))


def test_linear_global_interpolation_averages_down_and_interpolates_up():
    torch.manual_seed(0)
    net = GU2Net(2, 1, (2,), num_filters=4, local_network=False).eval()
    x = torch.randn(1, 1, 32, 48)
    low, logits, out = _run_with_global_hooks(net, x)
    assert torch.allclose(low, F.avg_pool2d(x, 4), atol=1e-6)
    up = F.interpolate(logits, size=[32, 48], mode="bilinear", align_corners=False)
    assert torch.allclose(out, torch.sigmoid(up), atol=1e-6)
    assert not torch.equal(out[:, :, 1::4, 1::4], out[:, :, 2::4, 1::4])  # not constant on 4 x 4 blocks


def test_per_domain_layers_run_their_hooks_in_eager_mode():
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4).eval()
    calls = []
    handles = [
        net.local_net.conv.depthwise1[k].register_forward_hook(lambda *_a, k=k: calls.append(k)) for k in range(3)
    ]
    with torch.no_grad():
        net(torch.randn(1, 1, 32, 32), domain=2)
    for handle in handles:
        handle.remove()
    assert calls == [2]


# ---------------------------------------------------------------------------------------------------------------
# TorchScript and MONAI's engines


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("options", [{}, {"global_network": False}, {"local_network": False, "separable": False}])
def test_scripted_network_matches_eager_with_int_and_tensor_domains(options, tmp_path):
    torch.manual_seed(0)
    net = GU2Net(2, 1, PAPER_LANDMARKS, num_filters=4, **options).eval()
    scripted = torch.jit.script(net)
    torch.jit.save(scripted, str(tmp_path / "net.ts"))
    loaded = torch.jit.load(str(tmp_path / "net.ts"))
    x = torch.randn(1, 1, 37, 32)
    with torch.no_grad():
        assert torch.equal(scripted(x), net(x))  # the model-zoo export calls net(x): domain 0
        for k in range(3):
            assert torch.equal(loaded(x, torch.tensor([k])), net(x, domain=k))
            assert torch.equal(scripted(x, domain=k), net(x, domain=k))
    with pytest.raises(torch.jit.Error, match="one batch must come from one domain"):
        scripted(torch.randn(2, 1, 32, 32), torch.tensor([0, 2]))


def test_simple_inferer_passes_the_domain_keyword(small_net):
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        out = SimpleInferer()(x, small_net, domain=2)
    assert out.shape == (1, 6, 32, 32) and torch.equal(out, small_net(x, domain=2))


def test_supervised_trainer_routes_each_batch_to_its_domain_through_prepare_batch():
    torch.manual_seed(0)
    net = GU2Net(2, 1, (2, 3), num_filters=4)
    batches = [
        {"image": torch.randn(2, 1, 32, 32), "label": torch.rand(2, 3, 32, 32), "domain": torch.tensor([1, 1])},
        {"image": torch.randn(2, 1, 32, 32), "label": torch.rand(2, 2, 32, 32), "domain": torch.tensor([0, 0])},
    ]
    seen = []

    def prepare_batch(batchdata, device=None, non_blocking=False, **kwargs):
        seen.append(int(batchdata["domain"][0]))
        return batchdata["image"], batchdata["label"], (), {"domain": batchdata["domain"]}

    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=batches,
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-4),
        loss_function=torch.nn.BCELoss(reduction="sum"),
        prepare_batch=prepare_batch,
        decollate=False,
    )
    trainer.run()
    assert seen == [1, 0] and trainer.state.output["pred"].shape == (2, 2, 32, 32)
