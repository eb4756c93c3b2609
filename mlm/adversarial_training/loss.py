"""The training loss of adversarial training: the trainer's own loss on the clean batch plus an adversarial term."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["AdversarialTrainingLoss"]


class AdversarialTrainingLoss:
    """``loss(pred, label) = (1 - w) * base(pred, label) + w * base(forward(x_adv), label_adv)``.

    It replaces a ``SupervisedTrainer``'s ``loss_function`` (:class:`mlm.handlers.AdversarialTrainingHandler` does
    it when attached). The trainer computes ``pred`` on the clean batch and calls the loss as usual; the handler has
    set the adversarial images before the iteration (:meth:`set_adversarial`), and the loss runs the network on them
    itself, inside the trainer's loss call: in the same autocast context, with the network in the trainer's (train)
    mode, in the same graph. The trainer's single ``backward()``, optimizer step, gradient clipping and the handlers
    of the loss's learnable parameters (sigmas) therefore see one ordinary iteration.

    The adversarial term is used once: after the call the pending batch is cleared, and a call without one (e.g.
    when the loss is used outside the trainer's iteration) returns ``base(pred, label)``.

    Args:
        loss: the base loss ``(pred (B, C, *S), label) -> scalar`` (e.g. :class:`mlm.losses.SCNHeatmapLoss`).
        adversarial_weight: ``w``, the adversarial term's weight (0.5: Madry-style ``(clean + adv) / 2``).

    Attributes:
        last_terms: ``{"clean": ..., "adversarial": ...}`` detached scalars of the last call with an adversarial
            batch (the adversarial term is 0 when that batch was empty).
    """

    def __init__(self, loss: Callable, adversarial_weight: float = 0.5) -> None:
        if isinstance(loss, AdversarialTrainingLoss):
            raise ValueError("AdversarialTrainingLoss: the loss already has an adversarial term (two handlers?).")
        if not 0.0 <= float(adversarial_weight) <= 1.0:
            raise ValueError(
                f"AdversarialTrainingLoss: adversarial_weight must be in [0, 1], got {adversarial_weight}."
            )
        self.loss = loss
        self.adversarial_weight = float(adversarial_weight)
        self.last_terms: dict[str, torch.Tensor] = {}
        self._pending: tuple[torch.Tensor, torch.Tensor | None, Callable] | None = None

    def set_adversarial(
        self, images: torch.Tensor, labels: torch.Tensor | None, forward: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        """Set the adversarial batch of the next call.

        Args:
            images: ``(B', C, *S)`` adversarial images (``B' = 0``: no adversarial sample this iteration, the term
                is 0, e.g. AMAT when no sample was correct on its clean image).
            labels: ``(B', ...)`` their labels, as the base loss takes them.
            forward: ``images -> pred`` (the trainer's inferer and network).
        """
        self._pending = (images, labels, forward)

    def clear(self) -> None:
        """Drop a pending adversarial batch."""
        self._pending = None

    def __call__(self, pred: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        clean = self.loss(pred, label).mean()
        pending, self._pending = self._pending, None
        if pending is None:
            return clean
        images, labels, forward = pending
        if images.shape[0] == 0:
            adversarial = torch.zeros_like(clean)
        else:
            adversarial = self.loss(forward(images), labels).mean()
        self.last_terms = {"clean": clean.detach(), "adversarial": adversarial.detach()}
        return (1.0 - self.adversarial_weight) * clean + self.adversarial_weight * adversarial

    def __repr__(self) -> str:
        return f"AdversarialTrainingLoss({self.loss!r}, adversarial_weight={self.adversarial_weight})"
