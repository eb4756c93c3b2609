#!/usr/bin/env python
"""Benchmark the SCN inference and training costs on CPU; prints ratios measured in one run (no asserts).

1. Max-merged sliding-window inference (``mlm.inferers.MaxSlidingWindowInferer``) vs MONAI's averaging
   ``SlidingWindowInferer`` on the same network and the same windows -> time ratio (project bar: <= 1.10).
2. Peak resident memory (``ru_maxrss`` delta, measured in a fresh subprocess per inferer) of 3D inference on a
   96x96x400 volume with 96x96x192 windows, step 64 along z (Payer's spine tiling).
3. Time of one training step (forward + SCN loss + backward + SGD step) for the 2D SCN at 256x256 and the 3D SCN
   at 96x96x192, and the share of the loss (target generation included) in it.

Defaults are CPU-sized (finish in a few minutes on 2 cores); ``--paper`` uses the paper's filter counts
(2D: 128, 3D: 64; the 3D step then takes ~45 s and inference ~15 s per window on 2 cores).

Example::

    python scripts/benchmark_inference.py              # defaults, ~2-3 minutes
    python scripts/benchmark_inference.py --paper      # paper-size networks (slow on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def _scn_3d(num_landmarks: int, filters: int):
    from mlm.networks import SpatialConfigurationNet

    return SpatialConfigurationNet(
        3,
        1,
        num_landmarks,
        num_filters=filters,
        spatial_downsample=8,
        spatial_kernel_size=7,
        padding_mode="reflect",
        heatmap_init_std=1e-3,
    )


def _monai_overlap(roi: int, step: int) -> float:
    """Overlap for which MONAI's interval ``int(roi * (1 - overlap))`` equals ``step`` exactly."""
    return 1.0 - (step + 0.5) / roi


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_inference_ratio(args) -> None:
    from monai.inferers import SlidingWindowInferer

    from mlm.inferers import MaxSlidingWindowInferer

    roi = tuple(args.ratio_roi)
    shape = tuple(args.ratio_volume)
    step = args.ratio_step
    net = _scn_3d(args.landmarks, args.ratio_filters).eval()
    image = torch.rand(1, 1, *shape) * 2 - 1
    max_inf = MaxSlidingWindowInferer(roi, step=(roi[0], roi[1], step), batch_size=1)
    overlaps = [0.0, 0.0, _monai_overlap(roi[2], step)]
    avg_inf = SlidingWindowInferer(roi, sw_batch_size=1, overlap=overlaps, mode="constant")
    n_windows = max_inf.splitter(shape).num_windows(image)
    with torch.no_grad():
        max_inf(image, net)  # warm-up
        avg_inf(image, net)
        t_max, t_avg = [], []
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
            t_max += _time(lambda: max_inf(image, net), 1)
            t_avg += _time(lambda: avg_inf(image, net), 1)
    m_max, m_avg = statistics.median(t_max), statistics.median(t_avg)
    b_max, b_avg = min(t_max), min(t_avg)
    print(
        f"[inference] SCN 3D {args.ratio_filters} filters, volume {shape}, windows {roi}, step {step} along z "
        f"({n_windows} windows), {args.repeats} interleaved repeats (median / best):"
    )
    print(f"  MaxSlidingWindowInferer (max merge)     {m_max:8.3f} s / {b_max:8.3f} s")
    print(f"  monai SlidingWindowInferer (average)    {m_avg:8.3f} s / {b_avg:8.3f} s")
    print(f"  ratio max / average                     {m_max / m_avg:8.3f}   / {b_max / b_avg:8.3f}   (bar <= 1.10)")
    print("  (on a shared machine, trust the best-of ratio: load from other processes only adds time)")


def _memory_worker(kind: str, filters: int, landmarks: int, threads: int) -> None:
    torch.set_num_threads(threads)
    from monai.inferers import SlidingWindowInferer

    from mlm.inferers import MaxSlidingWindowInferer

    roi, shape, step = (96, 96, 192), (96, 96, 400), 64
    net = _scn_3d(landmarks, filters).eval()
    image = torch.rand(1, 1, *shape) * 2 - 1
    if kind == "max":
        inferer = MaxSlidingWindowInferer(roi, step=(96, 96, step))
    else:
        inferer = SlidingWindowInferer(roi, overlap=[0.0, 0.0, _monai_overlap(192, step)], mode="constant")
    with torch.no_grad():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        out = inferer(image, net)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"kind": kind, "delta_mib": (after - before) / 1024.0, "seconds": seconds, "shape": list(out.shape)})
    )


def bench_memory(args) -> None:
    results = {}
    for kind in ("max", "average"):
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--memory-worker",
            kind,
            "--memory-filters",
            str(args.memory_filters),
            "--landmarks",
            str(args.landmarks),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, encoding="utf-8")
        if proc.returncode != 0:
            print(f"[memory] worker {kind} failed:\n{proc.stderr[-2000:]}")
            return
        results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    out_mib = args.landmarks * 96 * 96 * 400 * 4 / 2**20
    print(
        f"[memory] SCN 3D {args.memory_filters} filters, {args.landmarks} landmarks, volume (96, 96, 400), "
        f"windows (96, 96, 192) step 64 (5 windows); output alone {out_mib:.0f} MiB:"
    )
    for kind, res in results.items():
        print(f"  {kind:8s} peak RSS increase {res['delta_mib']:8.0f} MiB   time {res['seconds']:7.2f} s")
    print(f"  ratio max / average peak increase   {results['max']['delta_mib'] / results['average']['delta_mib']:6.3f}")


def _train_step_time(net, loss_fn, image, landmarks, repeats: int) -> tuple[float, float]:
    params = list(net.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.SGD(params, lr=1e-8, momentum=0.99, nesterov=True)
    net.train()

    def step():
        opt.zero_grad()
        loss = loss_fn(net(image), landmarks)
        loss.backward()
        opt.step()

    step()  # warm-up
    t_step = statistics.median(_time(step, repeats))
    pred = net(image).detach().requires_grad_(True)

    def loss_only():
        loss_fn(pred, landmarks).backward()

    loss_only()
    t_loss = statistics.median(_time(loss_only, repeats))
    return t_step, t_loss


def bench_training(args) -> None:
    try:
        from mlm.losses import SCNHeatmapLoss
    except ImportError as err:
        print(f"[train] skipped: {err}")
        return
    from mlm.networks import SpatialConfigurationNet

    torch.manual_seed(0)
    n2d = 19
    net2d = SpatialConfigurationNet(2, 1, n2d, num_filters=args.filters_2d)
    image2d = torch.rand(1, 1, 256, 256) * 2 - 1
    lm2d = torch.rand(1, n2d, 2) * 255
    loss2d = SCNHeatmapLoss(n2d, 2, sigma=2.5, gamma=100.0, sigma_weight=20.0)
    t2, l2 = _train_step_time(net2d, loss2d, image2d, lm2d, args.repeats)
    print(f"[train] 2D SCN {args.filters_2d} filters (paper: 128), 256x256, {n2d} landmarks, batch 1:")
    print(f"  step {t2:7.3f} s   loss fwd+bwd {l2:6.3f} s   loss share {100 * l2 / t2:5.1f} %")

    n3d = args.landmarks
    net3d = _scn_3d(n3d, args.filters_3d)
    image3d = torch.rand(1, 1, 96, 96, 192) * 2 - 1
    lm3d = torch.rand(1, n3d, 3) * torch.tensor([95.0, 95.0, 191.0])
    loss3d = SCNHeatmapLoss(n3d, 3, sigma=4.0, gamma=1000.0, sigma_weight=100.0)
    t3, l3 = _train_step_time(net3d, loss3d, image3d, lm3d, max(1, args.repeats - 1))
    print(f"[train] 3D SCN {args.filters_3d} filters (paper: 64), 96x96x192, {n3d} landmarks, batch 1:")
    print(f"  step {t3:7.3f} s   loss fwd+bwd {l3:6.3f} s   loss share {100 * l3 / t3:5.1f} %")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median/best reported)")
    parser.add_argument("--landmarks", type=int, default=26, help="3D landmarks (spine: 26)")
    parser.add_argument("--ratio-filters", type=int, default=16, help="filters of the SCN in the ratio benchmark")
    parser.add_argument("--ratio-roi", type=int, nargs=3, default=[48, 48, 96], help="window size (voxels)")
    parser.add_argument("--ratio-volume", type=int, nargs=3, default=[48, 48, 200], help="volume size (voxels)")
    parser.add_argument("--ratio-step", type=int, default=32, help="window step along z (voxels)")
    parser.add_argument("--memory-filters", type=int, default=8, help="filters of the SCN in the memory benchmark")
    parser.add_argument("--filters-2d", type=int, default=64, help="2D SCN filters for the training step")
    parser.add_argument("--filters-3d", type=int, default=16, help="3D SCN filters for the training step")
    parser.add_argument("--paper", action="store_true", help="paper sizes: 2D 128 and 3D 64 filters everywhere")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["ratio", "memory", "train"], help="parts of the benchmark to skip"
    )
    parser.add_argument("--memory-worker", choices=["max", "average"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        _memory_worker(args.memory_worker, args.memory_filters, args.landmarks, args.threads)
        return
    if args.paper:
        args.filters_2d, args.filters_3d, args.memory_filters = 128, 64, 64
        args.ratio_roi, args.ratio_volume, args.ratio_step, args.ratio_filters = [96, 96, 192], [96, 96, 400], 64, 64
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU")
    start = time.perf_counter()
    if "ratio" not in args.skip:
        bench_inference_ratio(args)
    if "memory" not in args.skip:
        bench_memory(args)
    if "train" not in args.skip:
        bench_training(args)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
