"""Benchmark heatmap target generation and decoding; prints timings and ratios measured in one run.

1. Target generation for N landmarks on a 3D grid (default 26 on 96x96x192, sigma 4, gamma 1000): the
   local-window :func:`transforms.heatmap.functional.gaussian_heatmaps` vs a naive whole-grid implementation
   (dense exp over the full grid for every landmark), forward and forward+backward w.r.t. sigma.
2. Its share of one SCN training step (``mlm.networks.scn.SpatialConfigurationNet`` with the spine settings,
   ``--filters`` filters, batch 1), or of ``--step-seconds`` when given / when the network is not available.
3. Decoding throughput (maps/s) for 2D 19x512x512 and 3D 26x(size) heatmaps, per method.

Example (about 1-3 minutes on 2 CPU cores at the default size)::

    python scripts/benchmark_heatmaps.py --threads 1
    python scripts/benchmark_heatmaps.py --size 48 48 96 --filters 32 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from mlm.heatmaps import decode_heatmaps, gaussian_heatmaps


def naive_gaussian_heatmaps(landmarks: torch.Tensor, shape, sigma: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Baseline: the Gaussian of every landmark evaluated densely on the whole grid ``(B, N, *S)``."""
    batch, num, dims = landmarks.shape
    sig = sigma.reshape(1, num, *([1] * dims))
    sq = torch.zeros((batch, num, *shape), dtype=landmarks.dtype)
    for d, size in enumerate(shape):
        axis = torch.arange(size, dtype=landmarks.dtype).reshape(*([1] * d), size, *([1] * (dims - d - 1)))
        sq = sq + (axis[None, None] - landmarks[..., d].reshape(batch, num, *([1] * dims))) ** 2
    out = torch.exp(-sq / (2 * sig**2))
    if gamma is not None:
        out = out * (gamma / ((2 * math.pi) ** (dims / 2) * sig**dims))
    return out


def timed(fn, repeats: int) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def bench_targets(args) -> float:
    shape = tuple(args.size)
    g = torch.Generator().manual_seed(0)
    landmarks = torch.rand(1, args.landmarks, 3, generator=g) * torch.tensor(shape, dtype=torch.float32)
    sigma = torch.full((args.landmarks,), args.sigma, requires_grad=True)
    # a peaked weight (like the residual of a heatmap loss), so the sigma gradients are comparable
    with torch.no_grad():
        weight = naive_gaussian_heatmaps(landmarks, shape, 0.75 * sigma, None)

    def fwd_local():
        with torch.no_grad():
            gaussian_heatmaps(landmarks, shape, sigma, args.gamma)

    def fwd_naive():
        with torch.no_grad():
            naive_gaussian_heatmaps(landmarks, shape, sigma, args.gamma)

    def fb_local():
        sigma.grad = None
        (gaussian_heatmaps(landmarks, shape, sigma, args.gamma) * weight).sum().backward()

    def fb_naive():
        sigma.grad = None
        (naive_gaussian_heatmaps(landmarks, shape, sigma, args.gamma) * weight).sum().backward()

    with torch.no_grad():
        a = gaussian_heatmaps(landmarks, shape, sigma, args.gamma)
        b = naive_gaussian_heatmaps(landmarks, shape, sigma, args.gamma)
        peak = float(b.max())
        diff = float((a - b).abs().max())
    fb_local()
    g_local = sigma.grad.clone()
    fb_naive()
    g_naive = sigma.grad.clone()
    print(f"targets: {args.landmarks} landmarks on {shape}, sigma {args.sigma}, gamma {args.gamma}")
    print(
        f"  max |local - naive| = {diff:.3g} (peak {peak:.3g}; truncation at 4 sigma), "
        f"max rel. grad diff = {float(((g_local - g_naive).abs() / g_naive.abs()).max()):.2e}"
    )
    t = {
        "forward local": timed(fwd_local, args.repeats),
        "forward naive": timed(fwd_naive, args.repeats),
        "fwd+bwd local": timed(fb_local, args.repeats),
        "fwd+bwd naive": timed(fb_naive, args.repeats),
    }
    for k, v in t.items():
        print(f"  {k:14s} {v * 1000:9.1f} ms")
    print(
        f"  speed-up forward {t['forward naive'] / t['forward local']:.1f}x, "
        f"forward+backward {t['fwd+bwd naive'] / t['fwd+bwd local']:.1f}x"
    )
    return t["fwd+bwd local"]


def scn_step_seconds(args) -> float | None:
    try:
        from mlm.networks.scn import SpatialConfigurationNet
    except ImportError as e:  # another module not there yet
        print(f"  (SpatialConfigurationNet not importable: {e})")
        return None
    shape = tuple(args.size)
    net = SpatialConfigurationNet(
        spatial_dims=3,
        in_channels=1,
        num_landmarks=args.landmarks,
        num_filters=args.filters,
        spatial_downsample=8,
        spatial_kernel_size=7,
        padding_mode="reflect",
        heatmap_init_std=1e-3,
    )
    opt = torch.optim.SGD(net.parameters(), lr=1e-8, momentum=0.99, nesterov=True)
    image = torch.randn(1, 1, *shape)
    target = torch.zeros(1, args.landmarks, *shape)

    def step():
        opt.zero_grad()
        loss = 0.5 * ((net(image) - target) ** 2).sum()
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()  # warm-up, also timed in case repeats is 1 and time is short
    first = time.perf_counter() - t0
    if args.step_repeats <= 0:
        return first
    times = []
    for _ in range(args.step_repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_decoding(args) -> None:
    g = torch.Generator().manual_seed(1)
    cases = [("2D", 19, (512, 512)), ("3D", args.landmarks, tuple(args.size))]
    for name, num, shape in cases:
        lm = torch.rand(1, num, len(shape), generator=g) * torch.tensor(shape, dtype=torch.float32)
        h = gaussian_heatmaps(lm, shape, args.sigma, None)
        h = h + 0.01 * torch.rand(h.shape, generator=g)  # no exact zeros: a realistic network output
        for method in ("dark", "quadratic", "argmax"):
            t = timed(lambda m=method, maps=h: decode_heatmaps(maps, m), args.repeats)
            print(
                f"decoding {name} {num}x{'x'.join(map(str, shape))} {method:9s}: {t * 1000:8.1f} ms, "
                f"{num / t:9.1f} maps/s"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=3, default=[96, 96, 192], help="3D grid (default 96 96 192)")
    p.add_argument("--landmarks", type=int, default=26)
    p.add_argument("--sigma", type=float, default=4.0)
    p.add_argument("--gamma", type=float, default=1000.0)
    p.add_argument("--filters", type=int, default=64, help="SCN filters for the training-step reference")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of the target/decoding measurements")
    p.add_argument("--step-repeats", type=int, default=0, help="timed SCN steps after a warm-up (0: time the warm-up)")
    p.add_argument("--step-seconds", type=float, default=None, help="use this SCN step time instead of measuring")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--skip-step", action="store_true", help="do not build the SCN")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    t_targets = bench_targets(args)
    step = args.step_seconds
    source = "given"
    if step is None and not args.skip_step:
        step = scn_step_seconds(args)
        source = f"measured, SCN {args.filters} filters, 1x1x{'x'.join(map(str, args.size))}"
    if step is not None:
        print(
            f"SCN training step {step:.2f} s ({source}); targets fwd+bwd {t_targets * 1000:.1f} ms "
            f"= {100 * t_targets / step:.2f}% of a step (bar: <= 5%)"
        )
    bench_decoding(args)


if __name__ == "__main__":
    main()
