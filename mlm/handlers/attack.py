"""Run a landmark attack inside a MONAI evaluator: each batch's image is replaced by its adversarial version."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.data import MetaTensor
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.attacks import LandmarkAttack, random_attack_goals, target_box_from_fraction

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["LandmarkAttackHandler", "image_seed"]


def image_seed(seed: int, image_id: str) -> int:
    """A 63-bit seed from a base seed and an image id (stable across runs, machines and Python hash seeds)."""
    digest = hashlib.sha256(f"{int(seed)}/{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class LandmarkAttackHandler:
    """Attack every batch of a ``SupervisedEvaluator`` before its forward pass, keeping the clean prediction.

    At ``ITERATION_STARTED`` the handler prepares the batch as the evaluator does (``engine.prepare_batch``), predicts
    the clean image (``engine.inferer`` in the evaluator's mode, eval and no_grad: the evaluator's own prediction),
    builds the goals, runs ``attack`` on ``engine.network`` in the evaluator's mode, and writes into the batch:

    - ``batch[image_key]``: the adversarial image (a ``MetaTensor`` keeping the clean image's metadata), so that the
      evaluator's forward pass, post-processing and metrics see the adversarial prediction as ``pred``;
    - ``batch[clean_image_key]``: the clean image as it was;
    - ``batch[clean_pred_key]``: the clean prediction (same type and metadata as the evaluator's ``pred``), so a
      post-transform can decode it like ``pred`` (e.g. ``HeatmapsToLandmarksd(keys=["pred", "clean_pred"])``);
    - ``batch[goals_key]``: ``(B, N, D)`` goals in voxel coordinates of the network input (NaN rows: stationary);
    - ``batch[records_key]``: ``{k: (B, ...)}`` outputs after ``k`` updates (the attack's ``record_iterations``,
      each passed through ``record_transform``), when the attack records any.

    MONAI decollates the batch before post-processing, so each item gets its own copy of these keys. The same
    tensors (batched) are kept in ``engine.state.attack`` (a dict with keys ``clean_image``, ``clean_pred``,
    ``adversarial_image``, ``goals``, ``moved``, ``losses``, ``records``, ``image_ids``) until the next iteration.

    Goals (one of, in this order):

    - ``goals_key`` already in the batch (e.g. the user's target points loaded by a transform): used as given;
    - a targeted attack: random goals of the paper's protocol (:func:`mlm.attacks.random_attack_goals`) inside
      ``target_box`` (voxels of the network input, or fractions of its size with ``box_in_fractions``; default:
      the whole image), drawn per image from a generator seeded by ``image_seed(seed, image id)``: the same image
      gets the same goals in every run, whatever the batch size or order;
    - an untargeted attack: the batch's ground-truth landmarks (``engine.prepare_batch``'s label; missing: the
      clean prediction).

    The random start of PGD is drawn from a generator seeded by the ids of the batch's images.

    Args:
        attack: a :class:`mlm.attacks.LandmarkAttack` (``TargetedIFGSM``, ``AdaptiveTargetedIFGSM``, ``PGD``).
        seed: base seed of the goals and random starts.
        target_box: ``[box_min, box_max]`` (D values each, array axis order) of the random goals; None: the image.
        box_in_fractions: ``target_box`` is in fractions of the image size
            (:data:`mlm.attacks.PAPER_TARGET_BOX_FRACTION` is the paper's box).
        min_moved, max_moved: how many landmarks move per image (default ``1..N - 2``, the paper's).
        image_key: batch key of the image.
        id_key: batch key of the image ids; None: the base name of the image's ``filename_or_obj``, or the
            image's index in the run when it has none.
        goals_key, clean_image_key, clean_pred_key, records_key: batch keys written (see above).
        use_inferer: attack through ``engine.inferer`` (e.g. sliding windows) instead of calling the network on
            the whole image (default, cheaper; the bundles' 2D networks take the whole image).
        record_transform: applied to each recorded output (e.g. a heatmap decoder), None: the raw outputs.
        name: logger name (None: the engine's logger).

    The network is attacked in the evaluator's mode (eval): the authors' code attacked a train-mode network, see
    :mod:`mlm.attacks.iterative`. The attack restores the network's modes, flags and buffers afterwards.
    """

    #: under DDP every process attacks its own share of the test images
    every_rank = True

    def __init__(
        self,
        attack: LandmarkAttack,
        seed: int = 0,
        target_box: Sequence[Sequence[float]] | None = None,
        box_in_fractions: bool = False,
        min_moved: int = 1,
        max_moved: int | None = None,
        image_key: str = "image",
        id_key: str | None = None,
        goals_key: str = "attack_goals",
        clean_image_key: str = "clean_image",
        clean_pred_key: str = "clean_pred",
        records_key: str = "attack_records",
        use_inferer: bool = False,
        record_transform: Any = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(attack, LandmarkAttack):
            raise TypeError(f"LandmarkAttackHandler: attack must be a mlm.attacks.LandmarkAttack, got {type(attack)}.")
        if target_box is not None and len(target_box) != 2:
            raise ValueError(f"LandmarkAttackHandler: target_box must be [box_min, box_max], got {target_box}.")
        self.attack = attack
        self.seed = int(seed)
        self.target_box = None if target_box is None else [[float(v) for v in corner] for corner in target_box]
        self.box_in_fractions = bool(box_in_fractions)
        self.min_moved = int(min_moved)
        self.max_moved = None if max_moved is None else int(max_moved)
        self.image_key = image_key
        self.id_key = id_key
        self.goals_key = goals_key
        self.clean_image_key = clean_image_key
        self.clean_pred_key = clean_pred_key
        self.records_key = records_key
        self.use_inferer = bool(use_inferer)
        self.record_transform = record_transform
        self._name = name
        self.logger = logging.getLogger(name)
        self._seen = 0

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def started(self, engine: Engine) -> None:
        self._seen = 0

    def image_ids(self, batch: dict, batch_size: int) -> list[str]:
        """Ids of the batch's images: ``batch[id_key]``, else the base names of ``filename_or_obj``, else the
        running index of the image in this run."""
        ids = batch.get(self.id_key) if self.id_key is not None else None
        if ids is None:
            image = batch[self.image_key]
            names = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
            if names is not None:
                ids = names if isinstance(names, list | tuple) else [names]
                ids = [os.path.basename(str(n)) for n in ids]
        if ids is None:
            return [f"#{self._seen + i}" for i in range(batch_size)]
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        ids = [str(i) for i in (ids if isinstance(ids, list | tuple) else [ids])]
        if len(ids) != batch_size:
            raise ValueError(f"LandmarkAttackHandler: {len(ids)} image ids for a batch of {batch_size} images.")
        return ids

    def goals(
        self, batch: dict, ids: list[str], image: torch.Tensor, label: torch.Tensor | None, clean_pred: torch.Tensor
    ) -> torch.Tensor | None:
        """``(B, N, D)`` goals of the batch (see the class docstring), on the image's device."""
        if self.goals_key in batch and isinstance(batch[self.goals_key], torch.Tensor):
            given = batch[self.goals_key]
            given = given.as_tensor() if isinstance(given, MetaTensor) else given
            return given.to(device=image.device, dtype=clean_pred.dtype)
        if not self.attack.targeted:
            return None if label is None else label.to(device=image.device, dtype=clean_pred.dtype)
        spatial_size = tuple(int(s) for s in image.shape[2:])
        if self.target_box is None:
            box_min, box_max = (0.0,) * len(spatial_size), tuple(s - 1.0 for s in spatial_size)
        elif self.box_in_fractions:
            box_min, box_max = target_box_from_fraction(self.target_box, spatial_size)
        else:
            box_min, box_max = self.target_box
        num = self.attack.objective.num_landmarks(clean_pred)
        goals = [
            random_attack_goals(
                num,
                box_min,
                box_max,
                generator=torch.Generator().manual_seed(image_seed(self.seed, image_id)),
                min_moved=self.min_moved,
                max_moved=self.max_moved,
                dtype=clean_pred.dtype,
            )
            for image_id in ids
        ]
        return torch.cat(goals).to(image.device)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        if not isinstance(batch, dict) or self.image_key not in batch:
            raise ValueError(f"LandmarkAttackHandler: the batch must be a dict with {self.image_key!r}.")
        prepared = engine.prepare_batch(batch, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        image, label = prepared[0], prepared[1]
        network = engine.network
        ids = self.image_ids(batch, int(image.shape[0]))
        self._seen += len(ids)
        with engine.mode(network):
            clean_pred = engine.inferer(image, network)
        clean_plain = clean_pred.as_tensor() if isinstance(clean_pred, MetaTensor) else clean_pred
        goals = self.goals(batch, ids, image, label, clean_plain)
        forward = (lambda x: engine.inferer(x, network)) if self.use_inferer else None
        generator = torch.Generator().manual_seed(image_seed(self.seed, "|".join(ids)))
        with engine.mode(network):
            result = self.attack(
                network,
                image,
                goals,
                generator=generator,
                forward=forward,
                clean_output=clean_plain if self.use_inferer else None,
                record_transform=self.record_transform,
            )
        adversarial = result.adversarial.to(dtype=image.dtype)
        if isinstance(image, MetaTensor):
            adversarial = MetaTensor(adversarial, meta=image.meta, applied_operations=image.applied_operations)
        batch[self.clean_image_key] = batch[self.image_key]
        batch[self.image_key] = adversarial
        batch[self.clean_pred_key] = clean_pred
        batch[self.goals_key] = result.goals
        if result.records:
            batch[self.records_key] = result.records
        engine.state.attack = {
            "clean_image": batch[self.clean_image_key],
            "clean_pred": clean_pred,
            "adversarial_image": adversarial,
            "goals": result.goals,
            "moved": result.moved,
            "losses": result.losses,
            "records": result.records,
            "image_ids": ids,
        }
        moved = result.moved.sum(dim=1).tolist()
        self.logger.debug(
            f"attacked {ids} ({moved} landmarks moved), max |delta| {float(result.perturbation.abs().max()):.4g}"
        )
