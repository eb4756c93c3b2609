#!/usr/bin/env python
"""Time one SCN training step of this project against a straightforward PyTorch SCN, in the same run (no asserts).

On a CPU, training speed is accuracy: this benchmark times one 2D training step (forward, loss with its Gaussian
targets, backward, Adam step) of ``mlm.networks.SpatialConfigurationNet`` + ``mlm.losses.SCNHeatmapLoss`` (256x256,
19 landmarks, 128 filters by default, as the bundles' 2D recipe) and of a plain PyTorch SCN written below as a user
would write it in an afternoon (NCHW, fp32, default settings, full-grid Gaussian targets, MSE), with the same
shapes. The steps are interleaved and repeated; the medians and their ratio are printed (issue 13's bar: this
project's step <= 0.85x the plain one). ``--channels-last`` adds the project's step in channels-last memory format.

``--refine`` also times the refinement stage's step (``configs/refine.yaml``: ``mlm.networks.LocalizationUNet``, 32
filters, 4 levels, one 64x64 patch per landmark, 19 patches per batch, fixed sigma 2) against a plain PyTorch U-Net
of the same architecture written below (conv3/dropout/conv3 per level, average pooling, bilinear upsampling,
concatenated skips), in the same run.

Timings mean something only on a quiet machine: never while a training runs.

Example::

    python scripts/benchmark_training.py                     # 128 filters, 256x256, ~2-4 minutes on 2 cores
    python scripts/benchmark_training.py --filters 64 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class PlainSCN(nn.Module):
    """A straightforward SpatialConfiguration-Net (Payer et al. 2019), the baseline of the benchmark.

    Local appearance: conv, then per level (conv3, dropout, conv3) with a parallel conv3, average pooling by 2,
    bilinear upsampling and additive skips; local heatmaps by a conv3; spatial configuration: average pooling by
    ``downsample``, four ``kernel``x``kernel`` convs, tanh, bicubic upsampling; output = local * spatial.
    """

    def __init__(self, landmarks: int, filters: int, levels: int = 4, downsample: int = 16, kernel: int = 11) -> None:
        super().__init__()
        self.levels, self.downsample = levels, downsample
        self.conv0 = nn.Conv2d(1, filters, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(filters, filters, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Dropout2d(0.5),
                nn.Conv2d(filters, filters, 3, padding=1),
                nn.LeakyReLU(0.1),
            )
            for _ in range(levels)
        )
        self.parallel = nn.ModuleList(nn.Conv2d(filters, filters, 3, padding=1) for _ in range(levels))
        self.local = nn.Conv2d(filters, landmarks, 3, padding=1)
        pad = kernel // 2
        self.spatial = nn.Sequential(
            nn.Conv2d(landmarks, filters, kernel, padding=pad),
            nn.LeakyReLU(0.1),
            nn.Conv2d(filters, filters, kernel, padding=pad),
            nn.LeakyReLU(0.1),
            nn.Conv2d(filters, filters, kernel, padding=pad),
            nn.LeakyReLU(0.1),
            nn.Conv2d(filters, landmarks, kernel, padding=pad),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node = F.leaky_relu(self.conv0(x), 0.1)
        skips = []
        for level in range(self.levels):
            if level > 0:
                node = F.avg_pool2d(node, 2)
            node = self.blocks[level](node)
            skips.append(F.leaky_relu(self.parallel[level](node), 0.1))
        node = skips[-1]
        for level in reversed(range(self.levels - 1)):
            node = skips[level] + F.interpolate(node, scale_factor=2, mode="bilinear", align_corners=False)
        local = self.local(node)
        spatial = torch.tanh(self.spatial(F.avg_pool2d(local, self.downsample)))
        spatial = F.interpolate(spatial, scale_factor=self.downsample, mode="bicubic", align_corners=False)
        return local * spatial


class PlainUNet(nn.Module):
    """A straightforward U-Net with average pooling, bilinear upsampling and concatenated skips (the architecture of
    ``mlm.networks.LocalizationUNet``), the baseline of the refinement step."""

    def __init__(self, landmarks: int, filters: int, levels: int = 4) -> None:
        super().__init__()
        self.levels = levels

        def block(cin: int, cout: int, dropout: float) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Dropout(dropout),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.LeakyReLU(0.1),
            )

        self.down = nn.ModuleList(block(1 if level == 0 else filters, filters, 0.0) for level in range(levels))
        self.up = nn.ModuleList(block(2 * filters, filters, 0.0) for _ in range(levels - 1))
        self.head = nn.Conv2d(filters, landmarks, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        node = x
        for level in range(self.levels):
            if level > 0:
                node = F.avg_pool2d(node, 2)
            node = self.down[level](node)
            skips.append(node)
        for level in reversed(range(self.levels - 1)):
            up = F.interpolate(node, scale_factor=2, mode="bilinear", align_corners=False)
            node = self.up[level](torch.cat([skips[level], up], dim=1))
        return self.head(node)


def plain_targets(landmarks: torch.Tensor, shape: tuple[int, int], sigma: float, gamma: float) -> torch.Tensor:
    """Full-grid Gaussian targets ``(B, N, H, W)`` of landmarks ``(B, N, 2)``, as a plain implementation builds them."""
    ys = torch.arange(shape[0], dtype=torch.float32).view(1, 1, -1, 1)
    xs = torch.arange(shape[1], dtype=torch.float32).view(1, 1, 1, -1)
    d2 = (ys - landmarks[..., 0, None, None]) ** 2 + (xs - landmarks[..., 1, None, None]) ** 2
    return gamma * torch.exp(-d2 / (2 * sigma**2))


def time_steps(step, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--filters", type=int, default=128)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--landmarks", type=int, default=19)
    p.add_argument("--repeats", type=int, default=7, help="timed steps of each variant (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--channels-last", action="store_true", help="also time this project's step in channels-last")
    p.add_argument("--refine", action="store_true", help="also time the refinement stage's step against a plain U-Net")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mlm.losses import SCNHeatmapLoss
    from mlm.networks import LocalizationUNet, SpatialConfigurationNet

    torch.manual_seed(0)
    size, n = args.size, args.landmarks
    image = torch.randn(1, 1, size, size)
    points = torch.rand(1, n, 2) * (size - 1)
    sigma, gamma = 2.5, 100.0

    plain = PlainSCN(n, args.filters)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-4)

    def plain_step():
        plain_opt.zero_grad()
        loss = F.mse_loss(plain(image), plain_targets(points, (size, size), sigma, gamma), reduction="sum")
        loss.backward()
        plain_opt.step()

    variants = {"plain PyTorch SCN (NCHW)": plain_step}
    for memory_format in [torch.contiguous_format] + ([torch.channels_last] if args.channels_last else []):
        net = SpatialConfigurationNet(2, 1, n, num_filters=args.filters).to(memory_format=memory_format)
        loss_fn = SCNHeatmapLoss(n, 2, sigma=sigma, gamma=gamma, sigma_weight=20.0, learn_sigma=True)
        opt = torch.optim.Adam(list(net.parameters()) + list(loss_fn.parameters()), lr=1e-4)
        x = image.contiguous(memory_format=memory_format)

        def step(net=net, loss_fn=loss_fn, opt=opt, x=x):
            opt.zero_grad()
            loss = loss_fn(net(x), points)
            loss.backward()
            opt.step()

        name = "mlm SCN + SCNHeatmapLoss" + (" (channels-last)" if memory_format == torch.channels_last else "")
        variants[name] = step

    report(variants, args.repeats, "plain PyTorch SCN (NCHW)")
    print(
        f"(one 2D training step, {size}x{size}, {n} landmarks, {args.filters} filters, {torch.get_num_threads()} "
        f"threads, median of {args.repeats})"
    )
    if args.refine:
        refine_variants(n, args.repeats, args.channels_last, LocalizationUNet, SCNHeatmapLoss)
    print("bar (issue 13): this project's step <= 0.85x the plain one")


def report(variants: dict, repeats: int, baseline: str) -> None:
    """Warm up, time the variants interleaved (a load change hits every variant alike), print medians and ratios."""
    for step in variants.values():  # warm-up
        time_steps(step, 2)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, step in variants.items():
            times[name] += time_steps(step, 1)
    base = statistics.median(times[baseline])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:48s} {median:7.3f} s   ratio to plain {median / base:5.3f}")


def refine_variants(n: int, repeats: int, channels_last: bool, unet_class, loss_class) -> None:
    """The refinement stage's step (refine.yaml: 19 patches of 64x64, 32 filters, 4 levels, sigma 2 fixed)."""
    patches = torch.randn(n, 1, 64, 64)
    centres = (32.0 + 4.0 * torch.randn(n, n, 2)).clamp(0, 63)  # one landmark per patch matters; all N targets built
    plain = PlainUNet(n, 32)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=5e-4)

    def plain_step():
        plain_opt.zero_grad()
        loss = F.mse_loss(plain(patches), plain_targets(centres, (64, 64), 2.0, 100.0), reduction="sum")
        loss.backward()
        plain_opt.step()

    variants = {"plain PyTorch U-Net (NCHW)": plain_step}
    for memory_format in [torch.contiguous_format] + ([torch.channels_last] if channels_last else []):
        net = unet_class(2, 1, n, num_filters=32, num_levels=4, dropout=0.0).to(memory_format=memory_format)
        loss_fn = loss_class(n, 2, sigma=2.0, gamma=100.0, sigma_weight=20.0, learn_sigma=False)
        opt = torch.optim.Adam(net.parameters(), lr=5e-4)
        x = patches.contiguous(memory_format=memory_format)

        def step(net=net, loss_fn=loss_fn, opt=opt, x=x):
            opt.zero_grad()
            loss = loss_fn(net(x), centres)
            loss.backward()
            opt.step()

        name = "mlm LocalizationUNet + SCNHeatmapLoss" + (
            " (channels-last)" if memory_format == torch.channels_last else ""
        )
        variants[name] = step
    report(variants, repeats, "plain PyTorch U-Net (NCHW)")
    print(f"(one refinement step: {n} patches of 64x64, 32 filters, 4 levels, median of {repeats})")


if __name__ == "__main__":
    main()
