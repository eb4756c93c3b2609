"""Adaptive-margin adversarial training (AMAT, Ma & Liang) of a MONAI ``SupervisedTrainer``: one margin per sample."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from monai.data import MetaTensor, list_data_collate
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.adversarial_training import AdaptiveMargins, clean_thresholds, unwrap_network
from mlm.attacks import AttackStep
from mlm.handlers.adversarial_training import AdversarialTrainingHandler, network_mode

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["AdaptiveMarginTrainingHandler", "THRESHOLD_UPDATES"]

#: when the thresholds xi are recomputed (see :class:`AdaptiveMarginTrainingHandler`)
THRESHOLD_UPDATES = ("epoch", "running", "once")


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


class AdaptiveMarginTrainingHandler(AdversarialTrainingHandler):
    """Adaptive-margin adversarial training (AMAT; Ma & Liang, ``SarielMa/amat_conf``, METHODS.md section 5).

    Like :class:`mlm.handlers.AdversarialTrainingHandler` (same way of changing the trainer's loss), but each
    training sample has its own PGD radius, its margin ``E``, kept in an
    :class:`mlm.adversarial_training.AdaptiveMargins` keyed by the sample's datalist id (``batch[id_key]``, so the
    margin follows the sample whatever the shuffling, batch size or number of processes). Per iteration:

    1. the clean per-landmark losses ``L (B, N)`` of the attack objective against the ground truth; a sample is
       *clean-correct* when every loss term is ``<= xi`` (its threshold; missing landmarks left out). The authors'
       clean check used a threshold of 1.0 that let every sample pass ("this threshold does not work");
       ``clean_check=False`` reproduces that.
    2. clean-correct samples are attacked: untargeted L2 PGD of radius ``E`` (``num_iterations`` steps of
       ``step_factor * E / num_iterations``, the authors' ``5 E / 20``; samples grouped by equal margins);
    3. margins: a sample whose terms stayed ``<= xi`` at every attack iterate grows, ``E <- min(E + delta,
       eps_max)``; one that became wrong is set to the estimated boundary: the perturbation norm of the point between the
       last correct and the first wrong iterate where the first loss term reaches its threshold, the terms taken as
       linear along that segment (no extra forward; the authors' code used the wrong iterate itself), or, with
       ``refine_steps`` > 0, that many bisections of the segment instead (one extra forward each, no gradient);
       clean-wrong samples keep theirs;
    4. loss ``(1 - w) * L(clean batch) + w * L(adversarial images of the clean-correct samples)`` (the authors'
       ``beta = 0.5``; 0 for the adversarial term when no sample is clean-correct).

    Loss terms and thresholds: one term per landmark (``per_landmark=True``, the objective's ``L_j``), or the mean
    over the present landmarks (one term). ``xi`` comes from a clean pass over ``threshold_data`` (the training
    images with the deterministic preprocessing): ``threshold_method`` ``"mean"``, ``"mean_sd"`` (mean + z SD,
    z 2) or ``"huber"`` (Huber location + z scale, z 3, the authors' ``getThreshold*.py``), recomputed at the start
    of every epoch (``threshold_update="epoch"``, with the current weights), from the clean terms the last epoch's
    iterations computed anyway for their clean check (``"running"``: no extra pass after the first epoch's, each
    sample's terms taken with the weights of its iteration), or once (``"once"``, e.g. from a
    pretrained clean model); or fixed values (``thresholds``, the authors' hard-coded way). The clean pass indexes
    the dataset directly (no DataLoader), so it draws nothing from the global random generators.

    State (:meth:`state_dict`, add the handler to the checkpoint saver's ``save_dict`` and the resume handler's
    ``load_dict``): the margins, the thresholds and the epoch they were computed at; a resumed run continues with
    exactly these (mid-epoch too: the thresholds of the running epoch are not recomputed). Under DDP every rank
    attacks its own samples and the margin updates of all ranks are exchanged after each iteration, so every rank
    (and rank 0's checkpoint) holds every margin.

    Logging: ``engine.state.metrics`` gets ``amat_margin_mean``, ``amat_margin_min``, ``amat_margin_max``,
    ``amat_samples`` after each iteration (TensorBoardStatsHandler and StatsHandler report them per epoch); with
    ``output_dir``, rank 0 writes a TensorBoard histogram ``amat/margins`` and ``<output_dir>/amat_margins/
    margins_epoch_<e>.png`` (the margins' distribution) after every epoch.

    Args:
        max_margin: ``eps_max`` (intensity units, L2 per image unless ``norm="linf"``).
        delta: the growth step (default ``max_margin / 10``); initial_margin, min_margin: see
            :class:`mlm.adversarial_training.AdaptiveMargins` (default ``delta``).
        num_iterations, norm, step_factor, objective, loss, objective_kind, value_range, adversarial_weight,
            attack_mode, seed, id_key, image_key, name: as :class:`mlm.handlers.AdversarialTrainingHandler`.
        refine_steps: bisection steps of the boundary estimate (0, the default: the free secant estimate).
        thresholds: fixed ``xi`` (one value, or one per landmark); None: from the clean pass.
        threshold_data: a dataset (indexable, items as the training's) or an iterable of collated batches.
        threshold_method, threshold_z: see :func:`mlm.adversarial_training.clean_thresholds`.
        threshold_update: ``"epoch"``, ``"running"`` or ``"once"``.
        per_landmark: one term per landmark (True) or one per sample (False).
        clean_check: require the clean image to be correct (False: the authors' behaviour).
        output_dir: where the margin plots and the TensorBoard histogram go (None: not written).
    """

    def __init__(
        self,
        max_margin: float,
        delta: float | None = None,
        initial_margin: float | None = None,
        min_margin: float | None = None,
        num_iterations: int = 20,
        norm: str = "l2",
        step_factor: float = 5.0,
        refine_steps: int = 0,
        thresholds: float | Sequence[float] | None = None,
        threshold_data: Any = None,
        threshold_method: str = "mean_sd",
        threshold_z: float | None = None,
        threshold_update: str = "epoch",
        per_landmark: bool = True,
        clean_check: bool = True,
        output_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            eps=float(max_margin), num_iterations=num_iterations, norm=norm, step_factor=step_factor, **kwargs
        )
        if threshold_update not in THRESHOLD_UPDATES:
            raise ValueError(
                f"AdaptiveMarginTrainingHandler: threshold_update must be one of {THRESHOLD_UPDATES}, got "
                f"{threshold_update!r}."
            )
        if thresholds is None and threshold_data is None:
            raise ValueError("AdaptiveMarginTrainingHandler: give threshold_data (a clean pass) or fixed thresholds.")
        clean_thresholds(np.zeros((1, 1)), threshold_method, threshold_z)  # an unknown method raises here
        self.margins = AdaptiveMargins(max_margin, delta, initial_margin, min_margin)
        self.refine_steps = int(refine_steps)
        self.fixed_thresholds = (
            None if thresholds is None else torch.as_tensor(thresholds, dtype=torch.float64).flatten()
        )
        self.threshold_data = threshold_data
        self.threshold_method = threshold_method
        self.threshold_z = threshold_z
        self.threshold_update = threshold_update
        self.per_landmark = bool(per_landmark)
        self.clean_check = bool(clean_check)
        self.output_dir = None if output_dir is None else str(output_dir)
        self.thresholds: torch.Tensor | None = self.fixed_thresholds
        self.threshold_epoch: int | None = None
        # "running": the clean loss terms of the samples trained in the current epoch (rows of (B, T))
        self.running_terms: list[torch.Tensor] = []
        self.last_update: dict[str, dict] = {}
        self._writer = None

    # ---- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "margins": self.margins.state_dict(),
            "thresholds": None if self.thresholds is None else self.thresholds.clone(),
            "threshold_epoch": self.threshold_epoch,
            "running_terms": torch.cat(self.running_terms) if self.running_terms else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.margins.load_state_dict(state["margins"])
        saved = state.get("thresholds")
        if self.fixed_thresholds is None:
            self.thresholds = None if saved is None else torch.as_tensor(saved, dtype=torch.float64).clone()
            self.threshold_epoch = state.get("threshold_epoch")
        running = state.get("running_terms")
        self.running_terms = [] if running is None else [torch.as_tensor(running, dtype=torch.float64).clone()]

    # ---- engine wiring -------------------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_metrics)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._close)

    def _epoch_started(self, engine: Engine) -> None:
        if self.fixed_thresholds is not None:
            return
        if self.thresholds is not None and (
            self.threshold_update == "once" or self.threshold_epoch == engine.state.epoch
        ):
            return
        if self.threshold_update == "running" and self.thresholds is not None:
            terms = self._gathered(torch.cat(self.running_terms) if self.running_terms else None)
            if terms is not None:
                self.running_terms = []
                self.set_thresholds(terms, engine.state.epoch, "the last epoch's clean terms")
                return
        self.update_thresholds(engine)

    # ---- loss terms and thresholds -------------------------------------------------------------------------------
    def terms(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` loss terms from per-landmark losses ``(B, N)``: NaN where the landmark is missing
        (``per_landmark``), or the mean over the present landmarks (``T = 1``)."""
        losses = losses.detach().double().masked_fill(~present, float("nan"))
        if self.per_landmark:
            return losses
        return losses.nanmean(dim=1, keepdim=True)

    def wrong(self, terms: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: a term above its threshold (missing terms never count)."""
        xi = self.thresholds.to(terms.device)
        if xi.numel() not in (1, terms.shape[1]):
            raise ValueError(f"AdaptiveMarginTrainingHandler: {xi.numel()} thresholds for {terms.shape[1]} loss terms.")
        return (terms > xi).any(dim=1)  # NaN > xi is False

    def _clean_batches(self) -> Iterable[dict]:
        data = self.threshold_data
        if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, dict):
            for i in range(len(data)):
                item = data[i]
                yield list_data_collate(item if isinstance(item, list) else [item])
        else:
            yield from data

    def clean_losses(self, engine: Engine) -> torch.Tensor:
        """``(M, T)`` clean loss terms of every sample of ``threshold_data`` with the current weights (the attack's
        network mode, no gradient, buffers restored)."""
        module = unwrap_network(engine.network)
        rows = []
        with network_mode(module, self.attack_mode == "train"), self.frozen(module), torch.no_grad():
            for batch in self._clean_batches():
                image, label = engine.prepare_batch(batch, engine.state.device, engine.non_blocking)[:2]
                if label is None:
                    raise ValueError("AdaptiveMarginTrainingHandler: threshold_data has no landmarks.")
                goals = label.to(device=image.device, dtype=torch.float32)
                out = module(_plain(image))
                losses = self.objective.per_landmark_losses(out, self.objective.targets(out, goals))
                rows.append(self.terms(losses, torch.isfinite(goals).all(-1)).cpu())
        if not rows:
            raise ValueError("AdaptiveMarginTrainingHandler: threshold_data is empty.")
        return torch.cat(rows)

    def update_thresholds(self, engine: Engine) -> torch.Tensor:
        """Recompute ``xi`` from a clean pass (:meth:`clean_losses`) and log it."""
        return self.set_thresholds(self.clean_losses(engine), engine.state.epoch, "a clean pass")

    def set_thresholds(self, terms: torch.Tensor, epoch: int, source: str) -> torch.Tensor:
        """``xi`` from clean loss terms ``(M, T)`` (:func:`mlm.adversarial_training.clean_thresholds`), logged."""
        self.thresholds = clean_thresholds(terms, self.threshold_method, self.threshold_z)
        self.threshold_epoch = epoch
        xi = self.thresholds.tolist()
        self.logger.info(
            f"AMAT thresholds ({self.threshold_method}, epoch {epoch}, from {source}, {terms.shape[0]} samples): "
            f"min {min(xi):.4g}, mean {float(np.mean(xi)):.4g}, max {max(xi):.4g}"
        )
        return self.thresholds

    @staticmethod
    def _gathered(terms: torch.Tensor | None) -> torch.Tensor | None:
        """This rank's running terms with every other rank's (DDP), in rank order; None when there are none."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[torch.Tensor | None] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, None if terms is None else terms.cpu())
            kept = [t for t in parts if t is not None]
            return torch.cat(kept) if kept else None
        return terms

    # ---- one iteration -------------------------------------------------------------------------------------------
    def _norm(self, delta: torch.Tensor) -> torch.Tensor:
        flat = delta.flatten(1)
        return flat.norm(p=2, dim=1) if self.norm == "l2" else flat.abs().amax(dim=1)

    def crossing_fraction(self, before: torch.Tensor, after: torch.Tensor) -> float:
        """Where on the segment from a correct iterate (terms ``before (T,)``) to a wrong one (``after``) the first
        term reaches its threshold, the terms taken as linear along it: ``min_t (xi_t - b_t) / (a_t - b_t)`` over
        the terms that crossed, in ``[0, 1]`` (1: no estimate, the wrong iterate itself)."""
        xi = self.thresholds.to(after.device, after.dtype).expand_as(after)
        crossed = (after > xi) & torch.isfinite(before) & (before <= xi)
        if not bool(crossed.any()):
            return 1.0
        rise = (after - before)[crossed]
        fractions = ((xi - before)[crossed] / rise.clamp_min(1e-12)).clamp(0.0, 1.0)
        return float(fractions.min())

    def __call__(self, engine: Engine) -> None:
        if self.thresholds is None:
            self.update_thresholds(engine)
        image, label, ids = self.prepared(engine)
        if label is None:
            raise ValueError("AdaptiveMarginTrainingHandler: the training batch has no landmarks.")
        module = unwrap_network(engine.network)
        clean = _plain(image)
        goals = label.to(device=image.device, dtype=torch.float32)
        present = torch.isfinite(goals).all(-1)
        batch_size = int(image.shape[0])
        with network_mode(module, self.attack_mode == "train"):
            with self.frozen(module), torch.no_grad():
                clean_out = module(clean)
                targets = self.objective.targets(clean_out, goals)
                clean_terms = self.terms(self.objective.per_landmark_losses(clean_out, targets), present)
            clean_ok = ~self.wrong(clean_terms) if self.clean_check else torch.ones(batch_size, dtype=torch.bool)
            if self.threshold_update == "running":
                self.running_terms.append(clean_terms.cpu())
            margins = self.margins.get(ids)
            adversarial = clean.detach().clone()
            boundary: dict[int, float] = {}
            for eps in sorted({m for m, ok in zip(margins, clean_ok.tolist()) if ok}):
                idx = [i for i in range(batch_size) if clean_ok[i] and margins[i] == eps]
                adversarial[idx], found = self._attack_group(
                    engine, module, clean, goals, present, clean_out, targets, clean_terms, idx, ids, eps
                )
                boundary.update(found)
        updates = {}
        for i, sample_id in enumerate(ids):
            ok = bool(clean_ok[i])
            new = self.margins.update(sample_id, ok, i not in boundary, boundary.get(i))
            updates[sample_id] = new
            self.last_update[sample_id] = {
                "clean_correct": ok,
                "adversarial_correct": ok and i not in boundary,
                "margin": new,
            }
        self._share(updates)
        keep = clean_ok.to(image.device)
        self.loss.set_adversarial(self.as_input(adversarial[keep], image), label[keep], self.forward(engine))

    def _attack_group(
        self,
        engine: Engine,
        module: torch.nn.Module,
        clean: torch.Tensor,
        goals: torch.Tensor,
        present: torch.Tensor,
        clean_out: torch.Tensor,
        targets: dict[str, torch.Tensor],
        clean_terms: torch.Tensor,
        idx: list[int],
        ids: Sequence[str],
        eps: float,
    ) -> tuple[torch.Tensor, dict[int, float]]:
        """PGD of radius ``eps`` on the samples ``idx``; returns their adversarial images and, for those that
        became wrong, ``{batch index: boundary estimate}``."""
        x0 = clean[idx]
        sub_present = present[idx]
        first_wrong: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}
        previous = {"x": x0, "terms": clean_terms[idx]}  # the clean check's terms: the iterate before the first

        def watch(step: AttackStep) -> None:
            terms = self.terms(step.losses, sub_present)
            wrong = self.wrong(terms)
            for j in torch.nonzero(wrong).flatten().tolist():
                if j not in first_wrong:
                    fraction = self.crossing_fraction(previous["terms"][j], terms[j])
                    first_wrong[j] = (previous["x"][j], step.images[j], fraction)
            previous["x"], previous["terms"] = step.images, terms

        result = self.pgd(eps)(
            module,
            x0,
            goals[idx],
            generator=self.generator(engine, [ids[i] for i in idx]),
            clean_output=clean_out[idx],
            callback=watch,
        )
        found: dict[int, float] = {}
        if first_wrong:
            js = sorted(first_wrong)
            lo = torch.stack([first_wrong[j][0] for j in js])
            hi = torch.stack([first_wrong[j][1] for j in js])
            # the secant estimate (free): where the first term to cross its threshold crosses it on the segment
            fraction = torch.tensor([first_wrong[j][2] for j in js], dtype=lo.dtype, device=lo.device)
            fraction = fraction.view(-1, *([1] * (lo.ndim - 1)))
            if self.refine_steps == 0:
                hi = lo + fraction * (hi - lo)
            sub_targets = {k: v[idx][js] for k, v in targets.items()}
            sub_mask = sub_present[js]
            with self.frozen(module), torch.no_grad():
                for _ in range(self.refine_steps):
                    mid = 0.5 * (lo + hi)
                    out = module(mid)
                    wrong = self.wrong(self.terms(self.objective.per_landmark_losses(out, sub_targets), sub_mask))
                    w = wrong.view(-1, *([1] * (mid.ndim - 1)))
                    hi = torch.where(w, mid, hi)
                    lo = torch.where(w, lo, mid)
            norms = self._norm(hi - x0[js])
            found = {idx[j]: float(n) for j, n in zip(js, norms.tolist())}
        return result.adversarial, found

    def _share(self, updates: dict[str, float]) -> None:
        """Exchange this iteration's margin updates between the DDP ranks (every rank then holds every margin)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        gathered: list[dict[str, float] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, updates)
        for part in gathered:
            self.margins.margins.update(part or {})

    # ---- logging -------------------------------------------------------------------------------------------------
    def margin_summary(self) -> dict[str, float]:
        """``amat_margin_mean/min/max`` and ``amat_samples`` of the margins so far."""
        values = self.margins.values()
        if values.size == 0:
            return {}
        return {
            "amat_margin_mean": float(values.mean()),
            "amat_margin_min": float(values.min()),
            "amat_margin_max": float(values.max()),
            "amat_samples": float(values.size),
        }

    def _iteration_metrics(self, engine: Engine) -> None:
        engine.state.metrics.update(self.margin_summary())

    def _epoch_completed(self, engine: Engine) -> None:
        if self.output_dir is None or (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0):
            return
        from mlm.robustness import plot_margin_histogram

        values = self.margins.values()
        epoch = engine.state.epoch
        plot_margin_histogram(
            values,
            os.path.join(self.output_dir, "amat_margins", f"margins_epoch_{epoch:04d}.png"),
            self.margins.max_margin,
            title=f"AMAT margins, epoch {epoch} ({values.size} samples)",
        )
        try:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=self.output_dir)
            if values.size:
                self._writer.add_histogram("amat/margins", values, epoch)
            for key, value in self.margin_summary().items():
                self._writer.add_scalar(f"amat/{key.removeprefix('amat_')}", value, epoch)
            self._writer.flush()
        except ImportError:  # pragma: no cover - tensorboard absent
            self.logger.warning("tensorboard is not installed: the margin histogram is not logged.")

    def _close(self, engine: Engine) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
