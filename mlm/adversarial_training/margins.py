"""AMAT's per-sample margins and loss thresholds (Ma & Liang; shared/docs/METHODS.md section 5).

- :func:`clean_thresholds`: the threshold ``xi`` of each loss term from the clean losses of the training samples:
  ``"mean"``, ``"mean_sd"`` (mean + z SD, z = 2 by default) or ``"huber"`` (Huber's robust location + z robust
  scale, z = 3 by default: the authors' ``getThreshold*.py``, which the authors then replaced by hard-coded values).
- :class:`AdaptiveMargins`: one margin per training sample, keyed by its datalist id, grown by ``delta`` when the
  sample stayed correct under attack, refined to the estimated decision boundary otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["THRESHOLD_METHODS", "AdaptiveMargins", "clean_thresholds", "huber_location_scale"]

#: the threshold methods of :func:`clean_thresholds` and their default z
THRESHOLD_METHODS = {"mean": 0.0, "mean_sd": 2.0, "huber": 3.0}


def huber_location_scale(values: Sequence[float] | np.ndarray, c: float = 1.5, tol: float = 1e-8, maxiter: int = 100):
    """Huber's joint M-estimate of location and scale ("proposal 2", as ``statsmodels.robust.scale.huber``).

    Args:
        values: ``(M,)`` finite samples.
        c: the Huber threshold, in scale units (1.5: statsmodels' default).

    Returns:
        ``(location, scale)`` floats; a constant sample gives ``(value, 0.0)``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("huber_location_scale: no values.")
    mu = float(np.median(x))
    s = float(np.median(np.abs(x - mu)) * 1.482602218505602)
    if s <= 0:
        s = float(x.std())
    if s <= 0:
        return mu, 0.0
    phi_c = math.exp(-0.5 * c * c) / math.sqrt(2 * math.pi)
    big_phi = 0.5 * (1 + math.erf(c / math.sqrt(2)))
    # E[min(Z^2, c^2)] for standard normal Z: the scale's consistency factor
    beta = (2 * big_phi - 1) - 2 * c * phi_c + 2 * c * c * (1 - big_phi)
    for _ in range(maxiter):
        clipped = np.clip(x, mu - c * s, mu + c * s)
        mu_new = float(clipped.mean())
        psi = np.clip((x - mu_new) / s, -c, c)
        s_new = float(s * math.sqrt((psi**2).mean() / beta))
        done = abs(mu_new - mu) <= tol * s and abs(s_new - s) <= tol * s
        mu, s = mu_new, s_new
        if done or s <= 0:
            break
    return mu, s


def clean_thresholds(
    losses: torch.Tensor | np.ndarray, method: str = "mean_sd", z: float | None = None
) -> torch.Tensor:
    """The threshold of each loss term from its values on clean samples.

    Args:
        losses: ``(M, T)`` clean losses of M samples and T terms (e.g. one per landmark); NaN = not present
            (a missing landmark), left out.
        method: ``"mean"``, ``"mean_sd"`` (mean + z SD, ddof 0) or ``"huber"`` (Huber location + z scale).
        z: the number of (robust) SDs above the location; None: 2 for ``"mean_sd"``, 3 for ``"huber"``.

    Returns:
        ``(T,)`` float64 thresholds; a term with no finite value gets ``inf`` (never wrong).
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"clean_thresholds: method must be one of {sorted(THRESHOLD_METHODS)}, got {method!r}.")
    z = THRESHOLD_METHODS[method] if z is None else float(z)
    values = losses.detach().cpu().double().numpy() if isinstance(losses, torch.Tensor) else np.asarray(losses, float)
    if values.ndim != 2:
        raise ValueError(f"clean_thresholds: losses must be (M, T), got shape {values.shape}.")
    out = []
    for column in values.T:
        v = column[np.isfinite(column)]
        if v.size == 0:
            out.append(math.inf)
        elif method == "huber":
            mu, s = huber_location_scale(v)
            out.append(mu + z * s)
        else:
            out.append(float(v.mean()) + (z * float(v.std()) if method == "mean_sd" else 0.0))
    return torch.tensor(out, dtype=torch.float64)


class AdaptiveMargins:
    """One adversarial margin (perturbation radius, intensity units) per training sample, keyed by a stable id.

    A sample seen for the first time starts at ``initial`` (default ``delta``). After each attack of a sample
    (:meth:`update`):

    - it stayed correct (clean and at every attack iterate): ``E <- min(E + delta, max_margin)`` (grow);
    - it was correct on the clean image but the attack made it wrong: ``E <- clip(boundary, min_margin,
      max_margin)``, ``boundary`` the norm of the perturbation where it became wrong, refined by bisection
      (refine towards the boundary; the authors' landmark code never shrinks, their nnU-Net variant does this);
    - it was wrong on the clean image: ``E`` unchanged (it is not attacked).

    Args:
        max_margin: ``eps_max``, the largest margin (the authors: the ``noise`` of the run's tag, e.g. 5).
        delta: the growth step (default ``max_margin / 10``, the authors').
        initial: the margin of a new sample (default ``delta``, the authors').
        min_margin: the smallest margin after a refinement (default ``delta``).

    The margins are a ``{id: float}`` dict in :meth:`state_dict`, so a checkpoint restores them exactly.
    """

    def __init__(
        self,
        max_margin: float,
        delta: float | None = None,
        initial: float | None = None,
        min_margin: float | None = None,
    ) -> None:
        if not max_margin > 0:
            raise ValueError(f"AdaptiveMargins: max_margin must be > 0, got {max_margin}.")
        self.max_margin = float(max_margin)
        self.delta = self.max_margin / 10.0 if delta is None else float(delta)
        self.initial = self.delta if initial is None else float(initial)
        self.min_margin = self.delta if min_margin is None else float(min_margin)
        if not (0 < self.delta and 0 <= self.min_margin <= self.max_margin and 0 <= self.initial <= self.max_margin):
            raise ValueError(
                f"AdaptiveMargins: need 0 < delta, 0 <= min_margin, initial <= max_margin; got delta {self.delta}, "
                f"min_margin {self.min_margin}, initial {self.initial}, max_margin {self.max_margin}."
            )
        self.margins: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.margins)

    def get(self, ids: Iterable[str]) -> list[float]:
        """The margins of ``ids`` (new ids start at ``initial`` and are stored)."""
        return [self.margins.setdefault(str(i), self.initial) for i in ids]

    def grow(self, sample_id: str) -> float:
        """``E <- min(E + delta, max_margin)``; returns the new margin."""
        new = min(self.get([sample_id])[0] + self.delta, self.max_margin)
        self.margins[str(sample_id)] = new
        return new

    def refine(self, sample_id: str, boundary: float) -> float:
        """``E <- clip(boundary, min_margin, max_margin)``; returns the new margin."""
        new = min(max(float(boundary), self.min_margin), self.max_margin)
        self.margins[str(sample_id)] = new
        return new

    def update(self, sample_id: str, clean_correct: bool, adversarial_correct: bool, boundary: float | None) -> float:
        """Apply the rule of the class docstring to one attacked sample; returns its new margin."""
        if not clean_correct:
            return self.get([sample_id])[0]
        if adversarial_correct:
            return self.grow(sample_id)
        if boundary is None:
            raise ValueError(f"AdaptiveMargins.update: sample {sample_id!r} became wrong but no boundary was given.")
        return self.refine(sample_id, boundary)

    def values(self) -> np.ndarray:
        """``(K,)`` float64 margins of the samples seen so far (in id order)."""
        return np.array([self.margins[k] for k in sorted(self.margins)], dtype=np.float64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "margins": dict(self.margins),
            "max_margin": self.max_margin,
            "delta": self.delta,
            "initial": self.initial,
            "min_margin": self.min_margin,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the margins; the settings of this run are kept (a change is allowed, e.g. a larger eps_max)."""
        self.margins = {str(k): float(v) for k, v in dict(state["margins"]).items()}
