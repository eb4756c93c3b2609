"""Standard adversarial training (SAT, Madry et al.) of a MONAI ``SupervisedTrainer``: loss = (clean + adv) / 2."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from monai.data import MetaTensor
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from mlm.adversarial_training import AdversarialTrainingLoss, training_objective, unwrap_network
from mlm.attacks import PGD, LandmarkAttackObjective, preserved_model_state
from mlm.handlers.attack import image_seed

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["AdversarialTrainingHandler", "batch_sample_ids", "network_mode"]


def batch_sample_ids(batch: dict, batch_size: int, id_key: str | None = "id", image_key: str = "image") -> list[str]:
    """Stable ids of a batch's samples: ``batch[id_key]`` (the datalist's ``id``), else the base names of the
    image's ``filename_or_obj``. Raises ``ValueError`` when neither is there (a position is not a stable id)."""
    ids = batch.get(id_key) if id_key is not None else None
    if ids is None:
        image = batch.get(image_key)
        names = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
        if names is not None:
            ids = [os.path.basename(str(n)) for n in (names if isinstance(names, list | tuple) else [names])]
    if ids is None:
        raise ValueError(
            f"no sample ids in the batch: neither {id_key!r} nor the image's filename_or_obj (keys {sorted(batch)})."
        )
    if isinstance(ids, torch.Tensor):
        ids = ids.flatten().tolist()
    ids = [str(i) for i in (ids if isinstance(ids, list | tuple) else [ids])]
    if len(ids) != batch_size:
        raise ValueError(f"{len(ids)} sample ids for a batch of {batch_size} images.")
    return ids


@contextmanager
def network_mode(network: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Put ``network`` in train or eval mode inside the block and restore every submodule's mode after it."""
    modes = [(m, m.training) for m in network.modules()]
    network.train(train)
    try:
        yield network
    finally:
        for m, mode in modes:
            m.training = mode


class AdversarialTrainingHandler:
    """Standard adversarial training (SAT) of a MONAI ``SupervisedTrainer``: PGD at a fixed radius ``eps``, and the
    loss ``(1 - w) * L(clean) + w * L(adversarial)`` (``w = 0.5``: ``(clean + adv) / 2``).

    How the loss changes, without special-casing MONAI's engines: when the run starts, the handler replaces the trainer's
    ``loss_function`` by an :class:`mlm.adversarial_training.AdversarialTrainingLoss` around it. At
    ``ITERATION_STARTED`` it prepares the batch (``engine.prepare_batch``), crafts the adversarial images with the
    current weights (PGD on the unwrapped network, its weights frozen and its modes/buffers restored: no gradient
    reaches the weights, no BatchNorm statistic moves) and hands them to that loss. The trainer then runs its own
    iteration: forward on the clean batch, ``loss_function(pred, label)``, which adds the adversarial term by
    calling ``engine.inferer(x_adv, engine.network)`` itself (train mode, the same autocast and graph; under DDP the
    wrapped network, so its gradients are synchronised), one ``backward()``, the optimizer step. Gradient clipping,
    the LR schedule, the loss's learnable sigmas (saved, synchronised, logged by their own handlers through the
    base loss object) and checkpoints work unchanged. ``engine.state.metrics`` gets the last
    iteration's ``loss_clean`` and ``loss_adversarial`` (StatsHandler / TensorBoardStatsHandler report them per epoch).

    The attack: untargeted PGD (:class:`mlm.attacks.PGD`) away from the ground truth (missing landmarks: away from
    the clean prediction), ``num_iterations`` steps of ``step_factor * eps / num_iterations`` (the AMAT code's
    ``5 eps / 20``), random start, intensities kept in ``value_range``. Its random start is drawn from a generator
    seeded by ``(seed, iteration, sample ids)``: the global random streams are untouched, so exact resume holds.

    Args:
        eps: perturbation radius, image intensity units (L2: per image; L-inf: per voxel).
        num_iterations: PGD steps (20: the AMAT code's training attack).
        norm: ``"l2"`` (the AMAT code) or ``"linf"``.
        step_factor: the step is ``step_factor * eps / num_iterations``; ``step_size`` overrides it.
        step_size: PGD step, intensity units (None: from ``step_factor``).
        objective: per-landmark attack losses; None: :func:`mlm.adversarial_training.training_objective` of the
            trainer's network and ``loss`` (heatmap-only or heatmap + offset, chosen by ``objective_kind``).
        loss: the training loss the objective follows (the SCN's learned sigmas); None: the trainer's loss.
        objective_kind: ``"auto"`` (from the network), ``"heatmap"`` or ``"heatmap_offset"``.
        value_range: ``(min, max)`` valid intensities (``(-1, 1)`` for X-rays normalised as ``(I - 128) / 128``),
            None: unbounded.
        adversarial_weight: ``w`` (0.5).
        attack_mode: the network's mode while the attack runs: ``"eval"`` (default: the running BatchNorm
            statistics, independent of the batch) or ``"train"`` (the authors': batch statistics).
        seed: base seed of the random starts.
        id_key, image_key: batch keys of the sample ids and the image.
        name: logger name (None: the engine's logger).

    ``every_rank = True``: under DDP every process attacks its own samples.
    """

    #: every DDP process attaches it (:func:`mlm.bundle.runs_on_every_rank`)
    every_rank = True

    def __init__(
        self,
        eps: float,
        num_iterations: int = 20,
        norm: str = "l2",
        step_factor: float = 5.0,
        step_size: float | None = None,
        objective: LandmarkAttackObjective | None = None,
        loss: Any = None,
        objective_kind: str = "auto",
        value_range: Sequence[float] | None = None,
        adversarial_weight: float = 0.5,
        attack_mode: str = "eval",
        seed: int = 0,
        id_key: str | None = "id",
        image_key: str = "image",
        name: str | None = None,
    ) -> None:
        if norm not in ("l2", "linf"):
            raise ValueError(f"{type(self).__name__}: norm must be 'l2' or 'linf', got {norm!r}.")
        if attack_mode not in ("eval", "train"):
            raise ValueError(f"{type(self).__name__}: attack_mode must be 'eval' or 'train', got {attack_mode!r}.")
        if not eps >= 0 or int(num_iterations) < 1:
            raise ValueError(
                f"{type(self).__name__}: need eps >= 0 and num_iterations >= 1, got {eps}, {num_iterations}."
            )
        self.eps = float(eps)
        self.num_iterations = int(num_iterations)
        self.norm = norm
        self.step_factor = float(step_factor)
        self.step_size = None if step_size is None else float(step_size)
        self.objective = objective
        self.objective_loss = loss
        self.objective_kind = objective_kind
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self.adversarial_weight = float(adversarial_weight)
        self.attack_mode = attack_mode
        self.seed = int(seed)
        self.id_key = id_key
        self.image_key = image_key
        self._name = name
        self.logger = logging.getLogger(name)
        self.loss: AdversarialTrainingLoss | None = None

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        # the trainer sets loss_function after attaching its handlers: the loss is wrapped when the run starts
        engine.add_event_handler(Events.STARTED, self.wrap_loss)
        engine.add_event_handler(Events.ITERATION_STARTED, self)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record_terms)

    def wrap_loss(self, engine: Engine) -> None:
        """Replace ``engine.loss_function`` by an :class:`AdversarialTrainingLoss` around it (once per engine)."""
        if self.loss is not None and engine.loss_function is self.loss:
            return
        self.loss = AdversarialTrainingLoss(engine.loss_function, self.adversarial_weight)
        engine.loss_function = self.loss
        if self.objective is None:
            base = self.objective_loss if self.objective_loss is not None else self.loss.loss
            self.objective = training_objective(engine.network, base, self.objective_kind)

    def pgd(self, eps: float) -> PGD:
        """The training attack at radius ``eps``."""
        step = self.step_size if self.step_size is not None else self.step_factor * eps / self.num_iterations
        return PGD(
            self.objective,
            eps=eps,
            step_size=step,
            num_iterations=self.num_iterations,
            norm=self.norm,
            targeted=False,
            random_start=True,
            value_range=self.value_range,
        )

    def generator(self, engine: Engine, ids: Sequence[str]) -> torch.Generator:
        """The random-start generator of this iteration's samples ``ids``."""
        return torch.Generator().manual_seed(image_seed(self.seed, f"{engine.state.iteration}|{'|'.join(ids)}"))

    def prepared(self, engine: Engine) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
        """``(image (B, C, *S), label (B, N, D) or None, ids)`` of the current batch, as the trainer prepares it."""
        batch = engine.state.batch
        if not isinstance(batch, dict) or self.image_key not in batch:
            raise ValueError(f"{type(self).__name__}: the batch must be a dict with {self.image_key!r}.")
        prepared = engine.prepare_batch(batch, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        image, label = prepared[0], prepared[1]
        return image, label, batch_sample_ids(batch, int(image.shape[0]), self.id_key, self.image_key)

    def as_input(self, adversarial: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``adversarial`` with the dtype and memory layout of the trainer's input ``like`` (a plain tensor)."""
        plain = like.as_tensor() if isinstance(like, MetaTensor) else like
        return torch.empty_like(plain[: adversarial.shape[0]]).copy_(adversarial)

    def forward(self, engine: Engine):
        """How the adversarial term runs the network: the trainer's inferer on the (possibly DDP-wrapped) network."""
        return lambda x: engine.inferer(x, engine.network)

    def __call__(self, engine: Engine) -> None:
        image, label, ids = self.prepared(engine)
        module = unwrap_network(engine.network)
        goals = None if label is None else label.to(device=image.device, dtype=torch.float32)
        with network_mode(module, self.attack_mode == "train"):
            result = self.pgd(self.eps)(module, image, goals, generator=self.generator(engine, ids))
        self.loss.set_adversarial(self.as_input(result.adversarial, image), label, self.forward(engine))

    def _record_terms(self, engine: Engine) -> None:
        if self.loss is not None and self.loss.last_terms:
            engine.state.metrics["loss_clean"] = float(self.loss.last_terms["clean"])
            engine.state.metrics["loss_adversarial"] = float(self.loss.last_terms["adversarial"])

    @staticmethod
    def frozen(module: nn.Module):
        """The attack's context for extra forwards (no weight gradient, modes and buffers restored)."""
        return preserved_model_state(module)
