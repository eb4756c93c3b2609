"""The random attack protocol of "Miss the Point" (Yao et al., MICCAI 2020): which landmarks move, and where to.

Per image, ``randint(1, N - 2)`` landmarks (both ends included: 1 to 17 of the 19 cephalometric landmarks) are drawn
without replacement and each gets a random goal inside a box of the image; the others stay still. The authors draw
integer pixels ``x ~ randint(100, 600)``, ``y ~ randint(250, 750)`` in their 640 x 800 (W x H) image, i.e. in array
axis order (row, column) the box ``[250, 100]`` to ``[750, 600]`` (:data:`PAPER_TARGET_BOX_FRACTION` as fractions
of the size), with Python's unseeded ``random``.

Differences from the authors' code: the draws come from a ``torch.Generator`` (a seed reproduces them; the
authors set no seed), goals are continuous (sub-pixel) rather than integer pixels, and every image of the test set
gets its own draw (the authors attack one image per run).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["PAPER_TARGET_BOX_FRACTION", "random_attack_goals", "target_box_from_fraction"]

#: the authors' target box as fractions of the image size, array axis order (rows 250..750 of 800, columns
#: 100..600 of 640): ``(min fractions, max fractions)``; :func:`target_box_from_fraction` maps it to voxels.
PAPER_TARGET_BOX_FRACTION: tuple[tuple[float, float], tuple[float, float]] = (
    (250 / 800, 100 / 640),
    (750 / 800, 600 / 640),
)


def target_box_from_fraction(
    fraction_box: Sequence[Sequence[float]], spatial_size: Sequence[int]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Voxel box ``(min, max)`` of a box given as fractions of the image size: ``f -> f * size`` per axis
    (the authors' pixel coordinates scaled with the image), clipped to ``[0, size - 1]``.

    Args:
        fraction_box: ``(min fractions, max fractions)``, D values each, array axis order.
        spatial_size: ``S``, the image's D sizes.
    """
    lo, hi = (tuple(float(v) for v in corner) for corner in fraction_box)
    if len(lo) != len(spatial_size) or len(hi) != len(spatial_size):
        raise ValueError(f"target_box_from_fraction: a {len(spatial_size)}D box is needed, got {fraction_box}.")
    box_min = tuple(min(max(f * s, 0.0), s - 1.0) for f, s in zip(lo, spatial_size))
    box_max = tuple(min(max(f * s, 0.0), s - 1.0) for f, s in zip(hi, spatial_size))
    return box_min, box_max


def random_attack_goals(
    num_landmarks: int,
    box_min: Sequence[float],
    box_max: Sequence[float],
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    min_moved: int = 1,
    max_moved: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random goals of the paper's protocol: per image a random subset of landmarks moved to random positions.

    Args:
        num_landmarks: ``N``.
        box_min, box_max: corners of the goal box, voxel coordinates (array axis order), D values each
            (inclusive; goals are uniform in the box).
        batch_size: ``B``, images (each gets its own draw, in batch order, from ``generator``).
        generator: CPU ``torch.Generator`` (seeded: reproducible); None: torch's global generator.
        min_moved, max_moved: the number moved is uniform in ``min_moved..max_moved`` (both included); default
            ``1..N - 2`` (the authors' ``randint(1, 17)`` for 19 landmarks), at least ``min_moved`` and at most N.

    Returns:
        ``(B, N, D)`` goals: voxel coordinates for the moved landmarks, NaN rows for the stationary ones
        (the ``goals`` of :func:`mlm.attacks.iterative_landmark_attack`).
    """
    if num_landmarks < 1:
        raise ValueError(f"random_attack_goals: num_landmarks must be >= 1, got {num_landmarks}.")
    lo = torch.as_tensor([float(v) for v in box_min], dtype=torch.float64)
    hi = torch.as_tensor([float(v) for v in box_max], dtype=torch.float64)
    if lo.shape != hi.shape or lo.ndim != 1 or bool((hi < lo).any()):
        raise ValueError(f"random_attack_goals: box_min {lo.tolist()} and box_max {hi.tolist()} are not a box.")
    upper = num_landmarks - 2 if max_moved is None else int(max_moved)
    upper = min(max(upper, int(min_moved)), num_landmarks)
    lower = min(max(int(min_moved), 1), upper)
    goals = torch.full((batch_size, num_landmarks, lo.numel()), float("nan"), dtype=torch.float64)
    for b in range(batch_size):
        count = int(torch.randint(lower, upper + 1, (1,), generator=generator))
        chosen = torch.randperm(num_landmarks, generator=generator)[:count]
        goals[b, chosen] = lo + (hi - lo) * torch.rand((count, lo.numel()), generator=generator, dtype=torch.float64)
    return goals.to(dtype=dtype, device=device)
