"""Benchmark: one attack iteration vs one forward + backward pass of the same model, measured in the same run.

The model is a 2D :class:`mlm.networks.SpatialConfigurationNet` (default 256x256, 19 landmarks, 64 filters, batch 1,
eval mode) and the attack :class:`mlm.attacks.AdaptiveTargetedIFGSM` with the heatmap-only objective (or
``--attack ifgsm`` / ``pgd-linf`` / ``pgd-l2``). One attack iteration is the time between two consecutive iterations of
a running attack (forward, per-landmark losses, ATI weights, input gradient, update), taken from the attack's
callback; the reference is a forward pass, the same objective's loss and a backward pass to the weights, as in a
training step (without the optimizer). The two are measured alternately, ``--repeats`` times each, after a warm-up;
the medians and their ratio are printed. Issue bar: ratio <= 1.15.

Example (a few minutes on 2 CPU cores; timings are only meaningful on an otherwise idle machine)::

    python scripts/benchmark_attack.py --threads 2 --repeats 5
    python scripts/benchmark_attack.py --size 128 128 --filters 32 --repeats 2   # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mlm.attacks import PGD, AdaptiveTargetedIFGSM, HeatmapAttackObjective, TargetedIFGSM, random_attack_goals
from mlm.networks import SpatialConfigurationNet

__all__ = ["main"]


def build_attack(name: str, objective: HeatmapAttackObjective, eps: float, iterations: int):
    """The attack named ``name`` with step ``0.05 * eps`` (the paper's ratio)."""
    if name == "ati":
        return AdaptiveTargetedIFGSM(objective, eps=eps, num_iterations=iterations, value_range=(-1.0, 1.0))
    if name == "ifgsm":
        return TargetedIFGSM(objective, eps=eps, num_iterations=iterations, value_range=(-1.0, 1.0))
    norm = "l2" if name == "pgd-l2" else "linf"
    return PGD(objective, eps=eps, step_size=0.05 * eps, num_iterations=iterations, norm=norm, value_range=(-1.0, 1.0))


def time_forward_backward(model: torch.nn.Module, images: torch.Tensor, objective, targets) -> float:
    """Seconds of one forward + loss + backward pass to the weights (as in training, no optimizer step)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss = objective.per_landmark_losses(model(images), targets).sum()
    loss.backward()
    return time.perf_counter() - start


def time_attack_iteration(model: torch.nn.Module, images: torch.Tensor, goals: torch.Tensor, attack) -> float:
    """Seconds between the callbacks of two consecutive attack iterations (one full iteration)."""
    stamps: list[float] = []
    attack(
        model,
        images,
        goals,
        generator=torch.Generator().manual_seed(0),
        callback=lambda step: stamps.append(time.perf_counter()),
    )
    return stamps[1] - stamps[0]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 256], help="image size (rows, columns)")
    parser.add_argument("--landmarks", type=int, default=19)
    parser.add_argument("--filters", type=int, default=64, help="SCN filters (the paper's 128 is ~3x slower)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--attack", choices=["ati", "ifgsm", "pgd-linf", "pgd-l2"], default="ati")
    parser.add_argument(
        "--eps", type=float, default=8 / 256, help="intensity units of the [-1, 1] image (the authors' 8/256)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = SpatialConfigurationNet(2, 1, args.landmarks, num_filters=args.filters).to(device).eval()
    images = (torch.rand(args.batch, 1, *args.size, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    box = ((0.0, 0.0), tuple(s - 1.0 for s in args.size))
    goals = random_attack_goals(args.landmarks, *box, args.batch, torch.Generator().manual_seed(2)).to(device)
    objective = HeatmapAttackObjective(sigma=2.0)
    with torch.no_grad():
        targets = objective.targets(model(images), goals)
    attack = build_attack(args.attack, objective, args.eps, iterations=2)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    time_forward_backward(model, images, objective, targets)  # warm-up
    time_attack_iteration(model, images, goals, attack)
    sync()
    reference, iteration = [], []
    for _ in range(args.repeats):  # alternate, so that a change of machine load hits both alike
        reference.append(time_forward_backward(model, images, objective, targets))
        sync()
        iteration.append(time_attack_iteration(model, images, goals, attack))
        sync()
    ref, it = statistics.median(reference), statistics.median(iteration)
    print(
        f"SCN 2D {args.size[0]}x{args.size[1]}, {args.landmarks} landmarks, {args.filters} filters, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, {device}; attack {args.attack}, {args.repeats} repeats (medians)"
    )
    print(f"forward+backward (to the weights): {ref * 1000:.1f} ms   runs: {[round(t * 1000, 1) for t in reference]}")
    print(f"one attack iteration:              {it * 1000:.1f} ms   runs: {[round(t * 1000, 1) for t in iteration]}")
    print(f"ratio attack iteration / forward+backward: {it / ref:.3f} (bar <= 1.15)")
    return {"forward_backward_s": ref, "attack_iteration_s": it, "ratio": it / ref}


if __name__ == "__main__":
    main()
