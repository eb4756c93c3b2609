"""How many trainer epochs of ``val_interval`` iterations cover ``num_iterations`` (the last one may be shorter)."""

from __future__ import annotations

__all__ = ["num_epochs"]


def num_epochs(num_iterations: int, epoch_length: int) -> int:
    """Epochs of ``epoch_length`` iterations needed for ``num_iterations``: ``ceil(num_iterations / epoch_length)``.

    The bundles' trainers run this many epochs and :class:`mlm.handlers.IterationLimit` ends the last one at
    ``num_iterations``, so the training has exactly ``num_iterations`` iterations and validates and saves at its end.

    Raises:
        ValueError: ``num_iterations`` or ``epoch_length`` below 1.
    """
    if int(num_iterations) < 1 or int(epoch_length) < 1:
        raise ValueError(f"num_iterations ({num_iterations}) and val_interval ({epoch_length}) must be >= 1.")
    return -(-int(num_iterations) // int(epoch_length))
