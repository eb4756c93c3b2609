"""GU2Net of Zhu et al. ("You Only Learn Once", MICCAI 2021): one universal landmark network for several datasets
(domains), 2D and 3D.

The authors' ``GLN(U2Net)`` (``-m gln -l u2net``, shared/docs/METHODS.md section 2), with base width ``f``
(``num_filters``, 64 in the paper) and ``K`` domains, domain ``d`` having ``N_d`` landmarks:

- local network :class:`U2Net` (the paper's "universal U-Net"; not Qin et al.'s salient-object U^2-Net):
  ``in_d`` (``1^D`` conv, ``in_channels -> f``, per domain) -> DoubleConv(f, f) -> four ``MaxPool(2) ->
  DoubleConv`` (f -> 2f -> 4f -> 8f -> 8f) -> four ``Up`` (``(bi/tri)linear x2`` with ``align_corners=True``, zero
  padding to the skip's size, concatenation ``[skip, up]``, DoubleConv): 16f -> 4f (mid 8f), 8f -> 2f (mid 4f),
  4f -> f (mid 2f), 2f -> f (mid f) -> ``out_d`` (``1^D`` conv, ``f -> N_d``, per domain) -> sigmoid;
- DoubleConv(in, out, mid) (:class:`SeparableDoubleConv`): depthwise ``3^D`` conv per domain (``groups=in``, bias)
  -> pointwise ``1^D`` conv ``in -> mid`` **shared by all domains** -> BatchNorm per domain -> LeakyReLU(0.01) ->
  depthwise ``3^D`` per domain (mid) -> pointwise ``mid -> out`` shared -> BatchNorm per domain -> LeakyReLU(0.01);
- global network :class:`GlobalNet`, every layer per domain: the image and the local network's sigmoid output are
  downsampled x1/4, ``in_d`` (``3^D`` conv, ``in_channels -> f``) and ``in_local_d`` (``3^D`` conv, ``N_d -> f``)
  concatenated to 2f channels, five ``[3^D conv with dilation r (padding r), 2f -> 2f, BatchNorm, ReLU]`` with
  ``r = 1, 2, 5, 2, 1``, a ``1^D`` conv ``2f -> N_d``, upsampling to the input size, sigmoid;
- output: ``global * local`` (elementwise), probabilities for a BCE loss (the authors' ``BCELoss(reduction='sum')``
  on this product; there is no separate loss on the local output, and the gradient reaches the local network both
  directly and through the global network's local input, which is not detached).

Global-branch resampling: the authors call ``F.interpolate`` with its default ``mode="nearest"`` both ways
(METHODS.md section 8, item 2): downsampling then keeps one pixel in 4 per axis (aliasing the image, and the local
heatmap's peak can fall between the kept pixels) and upsampling gives 4 x 4 blocks, a blocky global factor on
the final heatmaps. METHODS.md lists this among the code's departures from the paper (implement the intent, not the
bug), so the default ``global_interpolation="linear"`` resizes properly: area (average) downsampling and (bi/tri)linear
upsampling (``align_corners=False``); ``global_interpolation="nearest"`` reproduces the authors' code exactly. Both
use ``scale_factor=0.25`` down (sizes ``floor(S / 4)``) and the exact input size up. A checkpoint trained with one
setting should be evaluated with the same one.

Input sizes need not be multiples of 16: like the authors' ``Up``, each upsampled map is zero-padded (``diff // 2``
before, the rest after) to its skip's size. Every spatial size must be at least 16 (four 2x max-poolings); in
training mode BatchNorm also needs more than one value per channel at the 1/16 level (batch > 1 or sizes >= 32).

Domains: ``forward(x, domain=k)`` runs the whole batch through domain ``k``'s layers; ``domain`` is a Python
``int`` or an integer tensor of 0 or 1 dims (a collated batch of equal domain tags: ``{"domain": k}`` from a
MONAI ``prepare_batch`` returning ``(image, label, (), {"domain": k})``, which MONAI's ``SupervisedTrainer`` and
``SimpleInferer`` pass on as ``network(image, domain=k)``). Mixed domains in one batch and domains outside
``0 .. K - 1`` raise ``ValueError``. Per-domain layers live in :class:`DomainModuleList` s (``nn.ModuleList`` s
indexed by the domain), so domain ``k``'s parameters are named ``...<list>.<k>.<param>`` (:func:`parameter_domains`,
:func:`count_parameters`); the other domains' layers are not called, so they get no gradient and their BatchNorm
statistics do not move.

Ablations (the paper's Table 2), as :class:`GU2Net` options:

- ``global_network=False``: the local network only (U2Net), output = its sigmoid;
- ``local_network=False``: the global network only, without the local input branch; its ``in_d`` then maps
  ``in_channels -> 2f`` directly (the authors' ``GlobalNet``), output = its sigmoid;
- ``separable=False``: the "shared U-Net" (the authors' ``unet2d`` in the universal setting): every DoubleConv is
  two ordinary ``3^D`` convs (with bias) ``in -> mid -> out`` **shared by all domains** (:class:`SharedDoubleConv`);
  per domain remain ``in_d``, ``out_d`` and the BatchNorms of every DoubleConv (the authors' ``unet2d`` also shares
  the BatchNorms and uses ReLU instead of LeakyReLU(0.01): not reproduced). Combine with ``global_network=False`` for
  the plain shared U-Net row, or keep the global network.

Parameter counts, ``in_channels=1`` and the paper's three domains ``N = (19, 37, 6)`` (cephalometric, hand, chest),
``f = 64`` in 2D (checked in tests/mlm/test_gu2net.py against a count from the layer list):

=================================  ==========  ====================================
model                              total       used by domain 0 / 1 / 2
=================================  ==========  ====================================
GU2Net                             4,381,052   2,742,694 / 2,756,554 / 2,732,684
U2Net (local network only)         2,117,630   1,989,395 / 1,990,565 / 1,988,550
global network only                2,229,438     742,931 /   745,253 /   741,254
shared U-Net (local network only)  17,324,542  17,303,827 / 17,304,997 / 17,302,982
shared U-Net + global network      19,587,964  18,057,126 / 18,070,986 / 18,047,116
=================================  ==========  ====================================

(METHODS.md quotes no figures from the paper to compare with; the authors' ``count_parameters.py`` prints totals for
four domains, ``N = (37, 19, 85, 6)``.)

Initialisation: PyTorch's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

from mlm.networks.blocks import TensorModule, check_input

__all__ = [
    "GLOBAL_DILATIONS",
    "DomainModuleList",
    "GU2Net",
    "GlobalNet",
    "SeparableDoubleConv",
    "SharedDoubleConv",
    "U2Net",
    "count_parameters",
    "domain_index",
    "parameter_domains",
]

#: dilation rates of the global network's five ``3^D`` convs (the authors' ``config.yaml``)
GLOBAL_DILATIONS: tuple[int, ...] = (1, 2, 5, 2, 1)

#: every input spatial size must be at least this (four 2x max-poolings)
GU2NET_MIN_SIZE = 16

_GLOBAL_INTERPOLATIONS = ("linear", "nearest")


def domain_index(domain: int | torch.Tensor, num_domains: int, name: str = "GU2Net") -> int:
    """The domain of a batch as a Python int in ``0 .. num_domains - 1``.

    Args:
        domain: a Python int, or an integer tensor of 0 dims or 1 dim (one tag per batch item, all equal: one batch is
            one domain).
        num_domains: K, the number of domains of the network.
        name: the network's name, for the error messages.

    Raises:
        ValueError: a floating-point or boolean tensor, a tensor of more than 1 dim or without elements, a 1-dim tensor
            holding different domains, or a domain outside ``0 .. num_domains - 1``.

    TorchScript-compatible.
    """
    if isinstance(domain, torch.Tensor):
        if domain.is_floating_point() or domain.is_complex() or domain.dtype == torch.bool:
            raise ValueError(f"{name}: domain must be an int or an integer tensor, got a tensor of {domain.dtype}.")
        if domain.dim() > 1 or domain.numel() == 0:
            raise ValueError(
                f"{name}: a domain tensor must have 0 dims or 1 dim (one tag per batch item) and at least one element, "
                f"got shape {list(domain.shape)}."
            )
        flat = domain.reshape(-1)
        if not bool((flat == flat[0]).all()):
            raise ValueError(
                f"{name}: one batch must come from one domain, got domain tags {flat.cpu()} (batch the datasets "
                "separately, e.g. one DataLoader per domain, interleaved)."
            )
        index = int(flat[0].item())
    else:
        index = domain
    if index < 0 or index >= num_domains:
        raise ValueError(f"{name}: domain must be in 0 .. {num_domains - 1} ({num_domains} domains), got {index}.")
    return index


def parameter_domains(model: nn.Module) -> dict[str, int | None]:
    """``{parameter name: owning domain}`` of a GU2Net (or one of its parts); ``None`` for shared parameters.

    A parameter belongs to domain ``k`` when it sits at index ``k`` of a :class:`DomainModuleList`.
    """
    owner: dict[str, int | None] = {name: None for name, _ in model.named_parameters()}
    for module_name, module in model.named_modules():
        if not isinstance(module, DomainModuleList):
            continue
        prefix = f"{module_name}." if module_name else ""
        for index, child in enumerate(module):
            for param_name, _ in child.named_parameters():
                owner[f"{prefix}{index}.{param_name}"] = index
    return owner


def count_parameters(model: nn.Module, domain: int | None = None) -> int:
    """Trainable parameters of ``model``: all of them (``domain=None``) or those one domain's forward uses (the
    shared parameters plus domain ``domain``'s own, :func:`parameter_domains`).

    Raises:
        TypeError: ``domain`` given for a model without a ``num_domains`` attribute.
        ValueError: ``domain`` outside ``0 .. num_domains - 1``.
    """
    params = dict(model.named_parameters())
    if domain is None:
        return sum(p.numel() for p in params.values() if p.requires_grad)
    num_domains = getattr(model, "num_domains", None)
    if not isinstance(num_domains, int):
        raise TypeError(f"count_parameters: {type(model).__name__} has no num_domains; pass domain=None.")
    domain = domain_index(domain, num_domains, f"count_parameters({type(model).__name__})")
    owner = parameter_domains(model)
    return sum(p.numel() for name, p in params.items() if p.requires_grad and owner[name] in (None, domain))


def _check_num_landmarks(num_landmarks: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(num_landmarks, int) or len(num_landmarks) == 0 or any(int(n) < 1 for n in num_landmarks):
        raise ValueError(
            f"{name}: num_landmarks must be a non-empty sequence of positive ints (one per domain), got {num_landmarks!r}."
        )
    return tuple(int(n) for n in num_landmarks)


class DomainModuleList(nn.ModuleList):
    """One module per domain; ``forward(x, domain)`` runs domain ``domain``'s: ``(B, C, *S) -> its output``.

    An ``nn.ModuleList`` (parameters named ``<list>.<domain>.<param>``) whose call goes through the chosen module's
    ``__call__`` in eager mode (its hooks run) and through a module interface in TorchScript (which cannot call a
    module picked by a run-time index).
    """

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        if torch.jit.is_scripting():
            module: TensorModule = self[domain]
            return module.forward(x)
        return self[domain](x)


class SeparableDoubleConv(nn.Module):
    """GU2Net's DoubleConv: two separable convs, depthwise per domain and pointwise shared, each followed by a
    per-domain BatchNorm and LeakyReLU.

    ``depthwise1[d]`` (``3^D``, ``groups=in``, bias) -> ``pointwise1`` (``1^D``, in -> mid, shared) -> ``norm1[d]`` ->
    LeakyReLU -> ``depthwise2[d]`` (mid) -> ``pointwise2`` (mid -> out, shared) -> ``norm2[d]`` -> LeakyReLU.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        mid_channels: channels between the two separable convs (default ``out_channels``).
        num_domains: K, the number of per-domain copies of the depthwise convs and norms.
        negative_slope: LeakyReLU slope (0.01, PyTorch's default, in the authors' code).

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S)``; ``forward(x, domain)`` with ``domain`` an int.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        num_domains: int = 1,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        mid = out_channels if mid_channels is None else mid_channels
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        k = range(num_domains)
        self.depthwise1 = DomainModuleList(conv(in_channels, in_channels, 3, padding=1, groups=in_channels) for _ in k)
        self.pointwise1 = conv(in_channels, mid, 1)
        self.norm1 = DomainModuleList(norm(mid) for _ in k)
        self.depthwise2 = DomainModuleList(conv(mid, mid, 3, padding=1, groups=mid) for _ in k)
        self.pointwise2 = conv(mid, out_channels, 1)
        self.norm2 = DomainModuleList(norm(out_channels) for _ in k)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        x = self.act(self.norm1(self.pointwise1(self.depthwise1(x, domain)), domain))
        return self.act(self.norm2(self.pointwise2(self.depthwise2(x, domain)), domain))


class SharedDoubleConv(nn.Module):
    """The "shared U-Net" ablation's DoubleConv: two ordinary ``3^D`` convs (bias) shared by all domains, each
    followed by a per-domain BatchNorm and LeakyReLU.

    ``conv1`` (in -> mid, shared) -> ``norm1[d]`` -> LeakyReLU -> ``conv2`` (mid -> out, shared) -> ``norm2[d]`` ->
    LeakyReLU. Arguments and shapes as :class:`SeparableDoubleConv`.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        num_domains: int = 1,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        mid = out_channels if mid_channels is None else mid_channels
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.conv1 = conv(in_channels, mid, 3, padding=1)
        self.norm1 = DomainModuleList(norm(mid) for _ in range(num_domains))
        self.conv2 = conv(mid, out_channels, 3, padding=1)
        self.norm2 = DomainModuleList(norm(out_channels) for _ in range(num_domains))
        self.act = nn.LeakyReLU(negative_slope, inplace=True)

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x), domain))
        return self.act(self.norm2(self.conv2(x), domain))


def _double_conv(
    separable: bool, spatial_dims: int, cin: int, cout: int, mid: int | None, num_domains: int, slope: float
) -> nn.Module:
    block = SeparableDoubleConv if separable else SharedDoubleConv
    return block(spatial_dims, cin, cout, mid, num_domains, slope)


class _Down(nn.Module):
    """``MaxPool(2) -> DoubleConv``: ``(B, in, *S) -> (B, out, *floor(S / 2))``."""

    def __init__(self, spatial_dims: int, conv: nn.Module) -> None:
        super().__init__()
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.conv = conv

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        return self.conv(self.pool(x), domain)


class _Up(nn.Module):
    """``(bi/tri)linear x2 (align_corners=True) -> zero pad to the skip's size -> [skip, up] -> DoubleConv``:
    ``(B, c_x, *s), (B, c_skip, *S) -> (B, out, *S)`` with ``2 s <= S`` (the authors' ``Up``)."""

    def __init__(self, spatial_dims: int, conv: nn.Module) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.conv = conv

    def forward(self, x: torch.Tensor, skip: torch.Tensor, domain: int) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=True)
        pad: list[int] = []
        for axis in range(self.spatial_dims - 1, -1, -1):  # F.pad lists the last axis first
            diff = skip.shape[axis + 2] - up.shape[axis + 2]
            pad += [diff // 2, diff - diff // 2]
        if sum(pad) > 0:
            up = F.pad(up, pad)
        return self.conv(torch.cat([skip, up], dim=1), domain)


class U2Net(nn.Module):
    """GU2Net's local network (the paper's "universal U-Net"): a U-Net of separable convs, depthwise convs, norms and
    the in/out ``1^D`` convs per domain, pointwise convs shared (module docstring).

    Args:
        spatial_dims: 2 (the paper) or 3.
        in_channels: image channels (the same for every domain).
        num_landmarks: ``N_d`` per domain (K = its length), e.g. ``(19, 37, 6)``.
        num_filters: f, the base width; the levels have f, 2f, 4f, 8f, 8f channels (64 .. 512 in the paper).
        separable: False for the "shared U-Net" ablation (:class:`SharedDoubleConv`).
        negative_slope: LeakyReLU slope.

    ``forward(x (B, in_channels, *S), domain: int) -> (B, N_domain, *S)``, sigmoid probabilities; every size in ``S``
    at least 16 (others need no divisibility: the up path pads).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_landmarks: Sequence[int],
        num_filters: int = 64,
        separable: bool = True,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_landmarks = _check_num_landmarks(num_landmarks, "U2Net")
        self.num_domains = len(self.num_landmarks)
        k, f, d = self.num_domains, num_filters, spatial_dims
        conv = Conv[Conv.CONV, spatial_dims]

        def double(cin: int, cout: int, mid: int | None = None) -> nn.Module:
            return _double_conv(separable, d, cin, cout, mid, k, negative_slope)

        self.in_conv = DomainModuleList(conv(in_channels, f, 1) for _ in range(k))
        self.conv = double(f, f)
        self.down1 = _Down(d, double(f, 2 * f))
        self.down2 = _Down(d, double(2 * f, 4 * f))
        self.down3 = _Down(d, double(4 * f, 8 * f))
        self.down4 = _Down(d, double(8 * f, 8 * f))
        self.up1 = _Up(d, double(16 * f, 4 * f, 8 * f))
        self.up2 = _Up(d, double(8 * f, 2 * f, 4 * f))
        self.up3 = _Up(d, double(4 * f, f, 2 * f))
        self.up4 = _Up(d, double(2 * f, f, f))
        self.out_conv = DomainModuleList(conv(f, n, 1) for n in self.num_landmarks)

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        domain = domain_index(domain, self.num_domains, "U2Net")
        x1 = self.conv(self.in_conv(x, domain), domain)
        x2 = self.down1(x1, domain)
        x3 = self.down2(x2, domain)
        x4 = self.down3(x3, domain)
        y = self.down4(x4, domain)
        y = self.up1(y, x4, domain)
        y = self.up2(y, x3, domain)
        y = self.up3(y, x2, domain)
        y = self.up4(y, x1, domain)
        return torch.sigmoid(self.out_conv(y, domain))


class GlobalNet(nn.Module):
    """GU2Net's global network: per-domain dilated convs at 1/4 resolution on the image and the local heatmaps.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_landmarks: ``N_d`` per domain.
        num_filters: f; the two input convs give f channels each, the dilated convs have 2f (128 in the paper).
        local_input: False for the global-only ablation: no ``in_local`` branch, ``image_in`` maps to 2f.
        interpolation: ``"linear"`` (area down, linear up) or ``"nearest"`` (the authors'), see the module docstring.
        dilations: the dilation rates of the ``3^D`` convs.

    ``forward(x (B, in_channels, *S), local (B, N_domain, *S) or None, domain: int) -> (B, N_domain, *S)``, sigmoid
    probabilities; every size in ``S`` at least 4.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_landmarks: Sequence[int],
        num_filters: int = 64,
        local_input: bool = True,
        interpolation: str = "linear",
        dilations: Sequence[int] = GLOBAL_DILATIONS,
    ) -> None:
        super().__init__()
        if interpolation not in _GLOBAL_INTERPOLATIONS:
            raise ValueError(
                f"GlobalNet: interpolation must be one of {_GLOBAL_INTERPOLATIONS}, got {interpolation!r}."
            )
        self.num_landmarks = _check_num_landmarks(num_landmarks, "GlobalNet")
        self.num_domains = len(self.num_landmarks)
        self.scale_factor = 0.25
        self.interpolation = interpolation
        self.down_mode = "nearest" if interpolation == "nearest" else "area"
        self.up_mode = "nearest" if interpolation == "nearest" else ("bilinear" if spatial_dims == 2 else "trilinear")
        self.up_align_corners: bool | None = None if interpolation == "nearest" else False
        f = num_filters
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.image_in = DomainModuleList(
            conv(in_channels, f if local_input else 2 * f, 3, padding=1) for _ in self.num_landmarks
        )
        self.local_in: DomainModuleList | None = None
        if local_input:
            self.local_in = DomainModuleList(conv(n, f, 3, padding=1) for n in self.num_landmarks)
        self.dilated = DomainModuleList(
            nn.Sequential(
                *(
                    nn.Sequential(conv(2 * f, 2 * f, 3, padding=r, dilation=r), norm(2 * f), nn.ReLU(inplace=True))
                    for r in dilations
                )
            )
            for _ in self.num_landmarks
        )
        self.out_conv = DomainModuleList(conv(2 * f, n, 1) for n in self.num_landmarks)

    def forward(self, x: torch.Tensor, local: torch.Tensor | None, domain: int) -> torch.Tensor:
        domain = domain_index(domain, self.num_domains, "GlobalNet")
        size = list(x.shape[2:])
        y = self.image_in(F.interpolate(x, scale_factor=self.scale_factor, mode=self.down_mode), domain)
        local_in = self.local_in
        if local_in is not None:
            if local is None:
                raise ValueError("GlobalNet: this global network takes the local heatmaps; got local=None.")
            low = F.interpolate(local, scale_factor=self.scale_factor, mode=self.down_mode)
            y = torch.cat([y, local_in(low, domain)], dim=1)
        y = self.out_conv(self.dilated(y, domain), domain)
        y = F.interpolate(y, size=size, mode=self.up_mode, align_corners=self.up_align_corners)
        return torch.sigmoid(y)


class GU2Net(nn.Module):
    """GU2Net (Zhu et al. 2021): local :class:`U2Net` times per-domain :class:`GlobalNet`, one model for K domains.

    Args:
        spatial_dims: 2 (the paper) or 3 (the same layers from MONAI's 3D factories, trilinear resampling).
        in_channels: image channels, the same for every domain (1 in the paper).
        num_landmarks: ``N_d`` per domain; K = its length (the paper: ``(19, 37, 6)`` for cephalometric, hand, chest).
        num_filters: f, the base width: local levels f, 2f, 4f, 8f, 8f, global convs 2f (the paper: 64).
        local_network: False for the "global network only" ablation.
        global_network: False for the "local network only" ablation (output = the U2Net's sigmoid).
        separable: False for the "shared U-Net" ablation (ordinary shared ``3^D`` convs; module docstring says
            exactly what stays per domain).
        global_interpolation: ``"linear"`` (default: area downsampling, (bi/tri)linear upsampling, the paper's plain
            resize) or ``"nearest"`` (the authors' code), for the global network's x1/4 resampling.
        negative_slope: the local network's LeakyReLU slope.

    ``forward(x, domain=k)``: ``x (B, in_channels, *S)`` -> heatmaps ``(B, N_k, *S)``, probabilities in (0, 1) (the
    product of two sigmoids; train with BCE on probabilities, e.g. ``nn.BCELoss``, computed in float32). ``domain``
    is an int or an integer tensor (0 dims, or 1 dim of equal tags), passed as a keyword by MONAI's engines
    (module docstring). Every size in ``S`` at least 16, no divisibility needed.

    Attributes:
        num_domains: K.
        num_landmarks: ``N_d`` per domain (tuple).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_landmarks: Sequence[int],
        num_filters: int = 64,
        local_network: bool = True,
        global_network: bool = True,
        separable: bool = True,
        global_interpolation: str = "linear",
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"GU2Net: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or num_filters < 1:
            raise ValueError(f"GU2Net: in_channels and num_filters must be >= 1, got {in_channels}, {num_filters}.")
        if not (local_network or global_network):
            raise ValueError("GU2Net: at least one of local_network and global_network must be True.")
        if global_interpolation not in _GLOBAL_INTERPOLATIONS:
            raise ValueError(
                f"GU2Net: global_interpolation must be one of {_GLOBAL_INTERPOLATIONS}, got {global_interpolation!r}."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_landmarks = _check_num_landmarks(num_landmarks, "GU2Net")
        self.num_domains = len(self.num_landmarks)
        self.num_filters = num_filters
        self.separable = separable
        self.global_interpolation = global_interpolation
        self.local_net: U2Net | None = None
        if local_network:
            self.local_net = U2Net(
                spatial_dims, in_channels, self.num_landmarks, num_filters, separable, negative_slope
            )
        self.global_net: GlobalNet | None = None
        if global_network:
            self.global_net = GlobalNet(
                spatial_dims, in_channels, self.num_landmarks, num_filters, local_network, global_interpolation
            )

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor = 0) -> torch.Tensor:
        """Heatmaps ``(B, N_domain, *S)`` of ``x (B, in_channels, *S)``, every item from domain ``domain``."""
        check_input(x, self.spatial_dims, 1, 16, "GU2Net", "four 2x max-poolings: ")  # GU2NET_MIN_SIZE
        if x.shape[1] != self.in_channels:
            raise ValueError(f"GU2Net: expected {self.in_channels} input channels, got shape {list(x.shape)}.")
        d = domain_index(domain, self.num_domains, "GU2Net")
        local: torch.Tensor | None = None
        local_net = self.local_net
        if local_net is not None:
            local = local_net(x, d)
        global_net = self.global_net
        if global_net is None:
            assert local is not None
            return local
        heatmaps = global_net(x, local, d)
        if local is not None:
            heatmaps = heatmaps * local
        return heatmaps

    def extra_repr(self) -> str:
        return (
            f"spatial_dims={self.spatial_dims}, in_channels={self.in_channels}, num_landmarks={self.num_landmarks}, "
            f"num_filters={self.num_filters}, separable={self.separable}, "
            f"global_interpolation={self.global_interpolation!r}"
        )
