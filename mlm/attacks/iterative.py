"""Iterative gradient attacks on landmark detectors: targeted I-FGSM, adaptive targeted I-FGSM (ATI-FGSM) and PGD.

All attacks run :func:`iterative_landmark_attack` with different settings; the classes hold those settings (plain
constructor arguments, so a bundle config can build them) and are called like torchattacks' attacks, with the model
at call time::

    attack = AdaptiveTargetedIFGSM(HeatmapOffsetAttackObjective(radius=10), eps=8 / 256, num_iterations=300,
                                   value_range=(-1, 1))
    result = attack(model.eval(), images, goals)   # goals (B, N, D): NaN rows stay still
    result.adversarial                             # (B, C, *S)

Units: ``eps`` and ``step_size`` are in the image's intensity units. The authors' ``--epsilon 8`` is ``8 / 256 =
0.03125`` in the ``[-1, 1]`` units of the multi-task U-Net's images (about 4/255 of a ``[0, 1]`` range), with step
``0.05 * eps`` (METHODS.md section 1); a bundle whose images are normalised otherwise gives eps in its own units.

The model: pass it in **eval mode**. The attack calls it in the mode it is in (so the authors' setting can be
reproduced), and the authors' code never called ``model.eval()``: their BatchNorm ran in train mode with batch 1
during the attacks, so each prediction depended on the batch statistics of the attacked image. Whatever the mode,
the attack leaves the model as it found it: train/eval flag of every module, ``requires_grad`` of every parameter
(they are switched off during the attack, so no weight gradient is computed and ``.grad`` is untouched), weights,
and buffers (BatchNorm running statistics updated by train-mode forwards are restored).

Differences from the authors' ``attack.py`` (METHODS.md section 1):

- every image of a batch is attacked, each with its own goals (the authors attack the first test image only);
- the update projects the adversarial image: ``x <- clip_range(x_clean + clip_eps(x - s sign(grad) - x_clean))``;
  the authors accumulate ``delta <- clip(delta + s sign(grad), +-eps)`` and clip ``x_clean - delta`` to the range,
  so their ``delta`` can drift away from the perturbation actually applied at the range limits;
- ATI-FGSM weights ``alpha_j = L_j / mean_k L_k`` are computed per image (mean over that image's landmarks) and
  detached; the authors' ``L_j * (L_j / mean)`` keeps ``L_j`` in the graph, so their gradient is ``2 alpha_j dL_j``:
  a constant factor that ``sign`` ignores;
- the AMAT evaluation's L2 PGD clamps to ``[-1, 1]`` and then overwrites the clamped image (no clipping); here
  ``value_range`` is always kept;
- the objective is computed per landmark on the batch at once, with targets built once per attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from mlm.attacks.objectives import LandmarkAttackObjective, moved_landmarks

__all__ = [
    "PGD",
    "AdaptiveTargetedIFGSM",
    "AttackResult",
    "AttackStep",
    "LandmarkAttack",
    "TargetedIFGSM",
    "adaptive_landmark_weights",
    "iterative_landmark_attack",
    "preserved_model_state",
]


@dataclass
class AttackStep:
    """What a callback sees at each iteration ``k`` (0-based), after the forward pass on ``images``.

    Attributes:
        iteration: ``k``: ``images`` is the start image after ``k`` updates.
        images: ``(B, C, *S)`` current adversarial images (detached).
        output: ``(B, C', *S)`` model output on ``images`` (detached).
        losses: ``(B, N)`` per-landmark losses ``L_j`` (detached).
        weights: ``(B, N)`` landmark weights of this iteration's loss (ones, or ATI's ``L_j / mean L``).
    """

    iteration: int
    images: torch.Tensor
    output: torch.Tensor
    losses: torch.Tensor
    weights: torch.Tensor


@dataclass
class AttackResult:
    """Outcome of an attack.

    Attributes:
        adversarial: ``(B, C, *S)`` adversarial images (plain tensor, detached), inside ``value_range``.
        perturbation: ``adversarial - images``, ``(B, C, *S)``.
        clean_output: ``(B, C', *S)`` model output on the clean images (the stationary landmarks' reference).
        goals: ``(B, N, D)`` goal positions used (NaN rows: stationary landmarks).
        moved: ``(B, N)`` bool, the landmarks with a goal.
        losses: ``(B, N)`` per-landmark losses at the last iteration's forward pass (before the last update).
        records: ``{k: record}`` for every requested ``k`` in ``record_iterations``: the output (or
            ``record_transform(output)``) on the image after ``k`` updates.
    """

    adversarial: torch.Tensor
    perturbation: torch.Tensor
    clean_output: torch.Tensor
    goals: torch.Tensor
    moved: torch.Tensor
    losses: torch.Tensor
    records: dict[int, torch.Tensor] = field(default_factory=dict)


def adaptive_landmark_weights(losses: torch.Tensor) -> torch.Tensor:
    """ATI-FGSM weights ``alpha_j = L_j / mean_k L_k`` per image, detached.

    Args:
        losses: ``(B, N)`` per-landmark losses.

    Returns:
        ``(B, N)`` weights; an image whose losses are all 0 gets weights 1.
    """
    losses = losses.detach()
    mean = losses.mean(dim=1, keepdim=True)
    return torch.where(mean > 0, losses / torch.where(mean > 0, mean, torch.ones_like(mean)), torch.ones_like(losses))


@contextmanager
def preserved_model_state(model: nn.Module) -> Iterator[None]:
    """Freeze the parameters of ``model`` for an attack and restore everything the attack could change.

    Inside: every parameter has ``requires_grad=False`` (gradients flow to the input only). On exit: the
    ``requires_grad`` flags, the ``training`` flag of every submodule and, when any submodule is in train mode, the
    buffers (BatchNorm running statistics) are as on entry. Weights are never written.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    saved_buffers = None
    if any(training for _, training in modes):
        saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training
        if saved_buffers is not None:
            with torch.no_grad():
                for b, value in saved_buffers:
                    b.copy_(value)


def _plain(x: torch.Tensor) -> torch.Tensor:
    """A plain ``torch.Tensor`` view (MetaTensor arithmetic is slow and carries metadata we do not need)."""
    return x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, ..., 1)`` L2 norms of each sample of ``x``."""
    return x.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (x.ndim - 1)))


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
    return delta * factor


def _random_start(images: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random perturbation in the eps ball: uniform per voxel (L-inf), or a uniform direction with a radius
    uniform in ``[0, eps]`` (L2, as torchattacks' PGDL2). Drawn on the generator's device (CPU by default) and moved
    to the images, so a seed gives the same start on any device."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    shape = tuple(images.shape)
    if norm == "linf":
        noise = (torch.rand(shape, generator=generator, device=gen_device, dtype=torch.float64) * 2 - 1) * eps
    else:
        direction = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float64)
        radius = torch.rand((shape[0],), generator=generator, device=gen_device, dtype=torch.float64)
        radius = radius.view(-1, *([1] * (len(shape) - 1)))
        noise = direction / _per_sample_norm(direction).clamp_min(1e-12) * radius * eps
    return noise.to(device=images.device, dtype=images.dtype)


def iterative_landmark_attack(
    model: nn.Module,
    images: torch.Tensor,
    objective: LandmarkAttackObjective,
    goals: torch.Tensor | None = None,
    *,
    eps: float,
    step_size: float,
    num_iterations: int,
    norm: str = "linf",
    targeted: bool = True,
    adaptive: bool = False,
    random_start: bool = False,
    value_range: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    clean_output: torch.Tensor | None = None,
    record_iterations: Sequence[int] = (),
    record_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callback: Callable[[AttackStep], None] | None = None,
) -> AttackResult:
    """Iterative gradient attack on a landmark detector, the core of every attack of this module.

    At each iteration ``k = 0 .. num_iterations - 1``: forward on ``x_k``, per-landmark losses ``L (B, N)`` from
    ``objective``, loss ``sum_b sum_j w_bj L_bj`` (``w`` = 1, or ATI's ``L_j / mean L`` with ``adaptive``), gradient
    ``g`` with respect to the image, then ``x_{k+1} = clip_range(x + P_eps(x_k -+ s d(g) - x))`` with
    ``d = sign`` (L-inf) or ``g / ||g||_2`` per image (L2), ``-`` (descent towards the goals) when ``targeted``
    and ``+`` (ascent away from the targets) otherwise, ``P_eps`` the projection onto the eps ball.

    Args:
        model: the landmark detector (``nn.Module``), called in the mode it is in: pass it in eval mode (see the
            module docstring). Its modes, ``requires_grad`` flags, weights, buffers and gradients are left as found.
        images: ``(B, C, *S)`` clean images (a MetaTensor is used as a plain tensor), inside ``value_range``.
        objective: per-landmark losses and their targets (:mod:`mlm.attacks.objectives`).
        goals: ``(B, N, D)`` goal positions, voxel coordinates (array axis order) of the output grid; NaN rows =
            stationary landmarks (target: the clean prediction). Targeted: where each landmark should go.
            Untargeted: the positions to move away from (the ground truth; NaN rows move away from the clean
            prediction). None: every landmark stationary.
        eps: radius of the perturbation ball, intensity units (L-inf: per voxel; L2: per image).
        step_size: step ``s``, intensity units (L-inf: per voxel; L2: the step's L2 norm per image).
        num_iterations: number of updates (>= 0).
        norm: ``"linf"`` or ``"l2"``.
        targeted: descent towards the goals (True) or ascent on the loss against the targets (False).
        adaptive: ATI-FGSM's per-landmark weights ``alpha_j = L_j / mean_k L_k`` (per image, detached, recomputed
            every iteration).
        random_start: start from a random point of the eps ball (PGD) instead of the clean image.
        value_range: ``(min, max)`` valid intensities, kept; None: unbounded.
        generator: random generator of the random start (a seeded one reproduces the attack exactly).
        forward: how to call the model (e.g. ``lambda x: inferer(x, model)``); default ``model(x)``.
        clean_output: the model's output on the clean images, if already computed with the same ``forward``.
        record_iterations: iterations ``k`` (0..num_iterations) whose output to keep in ``result.records``: the
            output on the image after ``k`` updates (``k = num_iterations`` costs one extra forward). The authors
            log after iterations 1, 20, 50, 99, 150, 200, 250 and 299 of 300 (their 0-based loop counter, the same
            ``k`` as here).
        record_transform: applied to a recorded output (e.g. decoding to landmarks, to save memory).
        callback: called with an :class:`AttackStep` at every iteration.

    Returns:
        :class:`AttackResult`.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"iterative_landmark_attack: norm must be 'linf' or 'l2', got {norm!r}.")
    if not (eps >= 0 and math.isfinite(eps)) or not (step_size >= 0 and math.isfinite(step_size)):
        raise ValueError(
            f"iterative_landmark_attack: eps and step_size must be finite and >= 0, got {eps}, {step_size}."
        )
    if int(num_iterations) < 0:
        raise ValueError(f"iterative_landmark_attack: num_iterations must be >= 0, got {num_iterations}.")
    num_iterations = int(num_iterations)
    if images.ndim < 3:
        raise ValueError(f"iterative_landmark_attack: images must be (B, C, *S), got {tuple(images.shape)}.")
    lo, hi = (None, None) if value_range is None else (float(value_range[0]), float(value_range[1]))
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"iterative_landmark_attack: value_range must be (min, max), got {tuple(value_range)}.")
    records_wanted = sorted({int(k) for k in record_iterations})
    if any(k < 0 or k > num_iterations for k in records_wanted):
        raise ValueError(
            f"iterative_landmark_attack: record_iterations must lie in 0..{num_iterations}, got {records_wanted}."
        )
    call = forward if forward is not None else model
    clean = _plain(images).detach()
    direction = -1.0 if targeted else 1.0

    def clip(x: torch.Tensor) -> torch.Tensor:
        return x if value_range is None else x.clamp(lo, hi)

    def keep(output: torch.Tensor) -> torch.Tensor:
        output = _plain(output).detach()
        return record_transform(output) if record_transform is not None else output.clone()

    def stationary_goals(output: torch.Tensor) -> torch.Tensor:
        shape = (clean.shape[0], objective.num_landmarks(output), clean.ndim - 2)
        return torch.full(shape, float("nan"), device=output.device, dtype=output.dtype)

    starts_random = random_start and eps > 0
    # without a random start, the first forward pass is on the clean image: it gives the reference for free
    reuse_first_forward = clean_output is None and not starts_random and num_iterations > 0
    records: dict[int, torch.Tensor] = {}
    losses = None
    targets = None
    with preserved_model_state(model), torch.enable_grad():
        if clean_output is not None:
            clean_output = _plain(clean_output).detach()
        elif not reuse_first_forward:
            with torch.no_grad():
                clean_output = _plain(call(clean)).detach()
        x = clean.clone()
        if starts_random:
            x = clip(clean + _project(_random_start(clean, eps, norm, generator), eps, norm))
        for k in range(num_iterations):
            x.requires_grad_(True)
            output = _plain(call(x))
            if clean_output is None:  # k == 0, x is the clean image
                clean_output = output.detach()
            if targets is None:
                goals = stationary_goals(clean_output) if goals is None else goals.to(clean_output.device)
                targets = objective.targets(clean_output, goals)
            losses = objective.per_landmark_losses(output, targets)
            weights = adaptive_landmark_weights(losses) if adaptive else torch.ones_like(losses)
            (grad,) = torch.autograd.grad((weights * losses).sum(), x)
            x = x.detach()
            output = output.detach()
            if k in records_wanted:
                records[k] = keep(output)
            if callback is not None:
                callback(AttackStep(k, x, output, losses.detach(), weights))
            step = grad.sign() if norm == "linf" else grad / _per_sample_norm(grad).clamp_min(1e-12)
            x = clip(clean + _project(x + direction * step_size * step - clean, eps, norm)).detach()
        if num_iterations in records_wanted or losses is None:
            with torch.no_grad():
                output = _plain(call(x)).detach()
                if targets is None:  # no iteration ran
                    goals = stationary_goals(clean_output) if goals is None else goals.to(clean_output.device)
                    losses = objective.per_landmark_losses(output, objective.targets(clean_output, goals))
            if num_iterations in records_wanted:
                records[num_iterations] = keep(output)
    goals = goals.detach()
    return AttackResult(
        adversarial=x,
        perturbation=x - clean,
        clean_output=clean_output,
        goals=goals,
        moved=moved_landmarks(goals),
        losses=losses.detach(),
        records=records,
    )


class LandmarkAttack:
    """An iterative landmark attack with fixed settings; ``attack(model, images, goals)`` runs it.

    Args:
        objective: per-landmark losses (:class:`mlm.attacks.HeatmapAttackObjective` or
            :class:`mlm.attacks.HeatmapOffsetAttackObjective`).
        eps: perturbation radius, intensity units.
        step_size: step, intensity units (None: ``0.05 * eps``, the authors' ratio).
        num_iterations: updates (the paper: 300).
        norm: ``"linf"`` or ``"l2"``.
        targeted: towards the goals (True) or away from them (False).
        adaptive: ATI-FGSM weights.
        random_start: start at a random point of the eps ball.
        value_range: ``(min, max)`` valid intensities (``(-1, 1)`` for the multi-task U-Net), None: unbounded.
        record_iterations: iterations whose outputs :class:`AttackResult` keeps (see
            :func:`iterative_landmark_attack`).

    The remaining arguments of :func:`iterative_landmark_attack` (``generator``, ``forward``, ``clean_output``,
    ``record_transform``, ``callback``) are passed at call time.
    """

    def __init__(
        self,
        objective: LandmarkAttackObjective,
        eps: float,
        step_size: float | None = None,
        num_iterations: int = 300,
        norm: str = "linf",
        targeted: bool = True,
        adaptive: bool = False,
        random_start: bool = False,
        value_range: Sequence[float] | None = None,
        record_iterations: Sequence[int] = (),
    ) -> None:
        if norm not in ("linf", "l2"):
            raise ValueError(f"{type(self).__name__}: norm must be 'linf' or 'l2', got {norm!r}.")
        if not eps >= 0:
            raise ValueError(f"{type(self).__name__}: eps must be >= 0, got {eps}.")
        self.objective = objective
        self.eps = float(eps)
        self.step_size = 0.05 * self.eps if step_size is None else float(step_size)
        self.num_iterations = int(num_iterations)
        self.norm = norm
        self.targeted = bool(targeted)
        self.adaptive = bool(adaptive)
        self.random_start = bool(random_start)
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self.record_iterations = tuple(int(k) for k in record_iterations)

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        goals: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
        clean_output: torch.Tensor | None = None,
        record_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        callback: Callable[[AttackStep], None] | None = None,
    ) -> AttackResult:
        """Attack ``images (B, C, *S)``; ``goals (B, N, D)`` voxel coordinates, NaN rows stationary."""
        return iterative_landmark_attack(
            model,
            images,
            self.objective,
            goals,
            eps=self.eps,
            step_size=self.step_size,
            num_iterations=self.num_iterations,
            norm=self.norm,
            targeted=self.targeted,
            adaptive=self.adaptive,
            random_start=self.random_start,
            value_range=self.value_range,
            generator=generator,
            forward=forward,
            clean_output=clean_output,
            record_iterations=self.record_iterations,
            record_transform=record_transform,
            callback=callback,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(objective={type(self.objective).__name__}, eps={self.eps}, "
            f"step_size={self.step_size}, num_iterations={self.num_iterations}, norm={self.norm!r}, "
            f"targeted={self.targeted}, adaptive={self.adaptive}, random_start={self.random_start}, "
            f"value_range={self.value_range})"
        )


class TargetedIFGSM(LandmarkAttack):
    """Targeted iterative FGSM (the authors' mode 0): L-inf, descent on ``sum_j L_j`` with ``sign``, no random start.

    Args: as :class:`LandmarkAttack` (step_size default ``0.05 * eps``, 300 iterations: the paper's protocol).
    """

    #: weight the landmark terms by ``L_j / mean L`` (:class:`AdaptiveTargetedIFGSM`)
    ADAPTIVE = False

    def __init__(
        self,
        objective: LandmarkAttackObjective,
        eps: float,
        step_size: float | None = None,
        num_iterations: int = 300,
        value_range: Sequence[float] | None = None,
        record_iterations: Sequence[int] = (),
    ) -> None:
        super().__init__(
            objective,
            eps,
            step_size,
            num_iterations,
            norm="linf",
            targeted=True,
            adaptive=self.ADAPTIVE,
            random_start=False,
            value_range=value_range,
            record_iterations=record_iterations,
        )


class AdaptiveTargetedIFGSM(TargetedIFGSM):
    """Adaptive targeted iterative FGSM (ATI-FGSM, the authors' mode 1): :class:`TargetedIFGSM` with the loss
    ``sum_j alpha_j L_j``, ``alpha_j = L_j / mean_k L_k`` (per image, detached, recomputed every iteration), so
    landmarks far from their targets get more of the gradient's sign.

    Args: as :class:`TargetedIFGSM`.
    """

    ADAPTIVE = True


class PGD(LandmarkAttack):
    """Projected gradient descent/ascent (Madry et al.) on the landmark objective, L-inf or L2, with random start.

    ``targeted=True``: descent towards the goals; ``targeted=False`` (default, as torchattacks' PGD): ascent on the
    loss against the given positions (the ground truth; none given: the clean prediction).

    Args:
        objective, eps, value_range, record_iterations: as :class:`LandmarkAttack`.
        step_size: step, intensity units (L-inf: per voxel; L2: per image). Required (the AMAT evaluation uses
            ``5 * eps / num_iterations`` in L2; torchattacks' default L-inf is ``eps / 4``).
        num_iterations: updates (AMAT: 20 in training, 100 in evaluation).
        norm: ``"linf"`` or ``"l2"``.
        targeted: see above.
        adaptive: ATI weights on the loss terms.
        random_start: start at a random point of the eps ball (default True).
    """

    def __init__(
        self,
        objective: LandmarkAttackObjective,
        eps: float,
        step_size: float,
        num_iterations: int = 20,
        norm: str = "linf",
        targeted: bool = False,
        adaptive: bool = False,
        random_start: bool = True,
        value_range: Sequence[float] | None = None,
        record_iterations: Sequence[int] = (),
    ) -> None:
        super().__init__(
            objective,
            eps,
            step_size,
            num_iterations,
            norm=norm,
            targeted=targeted,
            adaptive=adaptive,
            random_start=random_start,
            value_range=value_range,
            record_iterations=record_iterations,
        )
