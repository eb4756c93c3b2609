"""Run summary of the landmarks that the preprocessing set to missing because they lie outside their image, and the
refusal of landmarks that lie outside the network's field of view (the preprocessed grid)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from transforms.landmarks import dropped_landmark_counts

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["OutsideLandmarksSummary", "count_dropped_landmarks", "landmarks_outside_grid"]


def count_dropped_landmarks(dataset: Any, landmark_key: str = "landmarks") -> dict[str, int] | None:
    """Landmarks set to missing as outside their image in the cached items of a MONAI ``CacheDataset``.

    Args:
        dataset: a ``CacheDataset`` (its cache holds the deterministic preprocessing, where the drop happens).
        landmark_key: key of the landmarks in the cached items.

    Returns:
        ``{item id (or image file): dropped count}`` for the items with a drop, or None when ``dataset``
        has no cache to read (the drops are then only in the log).
    """
    cache = getattr(dataset, "_cache", None)
    if not isinstance(cache, list) or not cache:
        return None
    data = getattr(dataset, "data", [None] * len(cache))
    counts: dict[str, int] = {}
    for position, (item, source) in enumerate(zip(cache, data)):
        if not isinstance(item, Mapping):
            continue
        landmarks = item.get(landmark_key)
        dropped = sum(dropped_landmark_counts(landmarks))
        if dropped:
            meta = getattr(landmarks, "meta", {}) or {}
            key = source.get("id") if isinstance(source, Mapping) and "id" in source else None
            counts[str(key if key is not None else meta.get("image_filename", f"item {position}"))] = dropped
    return counts


def _item_name(source: Any, landmarks: Any, position: int) -> str:
    if isinstance(source, Mapping) and "id" in source:
        return str(source["id"])
    meta = getattr(landmarks, "meta", {}) or {}
    return str(meta.get("image_filename", f"item {position}"))


def landmarks_outside_grid(
    dataset: Any, image_key: str = "image", landmark_key: str = "landmarks"
) -> dict[str, list[int]] | None:
    """Present landmarks outside the preprocessed grid (the network's field of view) in a ``CacheDataset``'s cache.

    A landmark at voxel coordinate ``p`` is inside when ``-0.5 <= p < size - 0.5`` on every axis of the cached
    (deterministically preprocessed) image ``(C, *S)``.

    Returns:
        ``{item id: [landmark indices]}`` for the items with such landmarks, or None when ``dataset`` has no cache.
    """
    cache = getattr(dataset, "_cache", None)
    if not isinstance(cache, list) or not cache:
        return None
    data = getattr(dataset, "data", [None] * len(cache))
    found: dict[str, list[int]] = {}
    for position, (item, source) in enumerate(zip(cache, data)):
        if not isinstance(item, Mapping) or image_key not in item or landmark_key not in item:
            continue
        points = torch.as_tensor(item[landmark_key]).detach().float()
        size = torch.tensor(item[image_key].shape[1:], dtype=torch.float32)
        if points.ndim != 2 or points.shape[1] != size.numel():
            continue
        present = torch.isfinite(points).all(dim=1)
        outside = present & ((points < -0.5) | (points >= size - 0.5)).any(dim=1)
        if outside.any():
            found[_item_name(source, item[landmark_key], position)] = outside.nonzero().flatten().tolist()
    return found


class OutsideLandmarksSummary:
    """Log once, when training starts, how many ground-truth landmarks were set to missing as outside their image.

    Every dropped landmark is already logged by :class:`transforms.landmarks.LoadLandmarks` (file, landmark,
    position) as the datasets are cached; this handler adds the count per dataset, so the run's log says how much
    ground truth the model does not see. The counts go to ``engine.state.landmarks_outside``
    (``{dataset name: {item id: count}}``).

    It also checks that every present landmark lies inside the preprocessed grid, the network's field of view
    (:func:`landmarks_outside_grid`): a landmark inside its image but cropped away by the preprocessing (e.g. a
    resampling to a pixel size that keeps only part of the image) could never be predicted. With
    ``outside_view="error"`` training is refused before its first iteration, naming the count, the first images and
    what to change; with ``"warn"`` it is logged.

    Args:
        datasets: ``{name: CacheDataset}``, e.g. ``{training: "@train#dataset", validation: "@validate#dataset"}``.
        landmark_key: key of the landmarks in the cached items.
        name: logger name.
        outside_view: ``"error"`` (default) or ``"warn"`` for landmarks outside the preprocessed grid.
        image_key: key of the preprocessed image in the cached items.
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        landmark_key: str = "landmarks",
        name: str | None = None,
        outside_view: str = "error",
        image_key: str = "image",
    ) -> None:
        if outside_view not in ("error", "warn"):
            raise ValueError(f"outside_view must be 'error' or 'warn', got {outside_view!r}")
        self.datasets = dict(datasets)
        self.landmark_key = landmark_key
        self.image_key = image_key
        self.outside_view = outside_view
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.STARTED):
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        summary: dict[str, dict[str, int]] = {}
        for name, dataset in self.datasets.items():
            counts = count_dropped_landmarks(dataset, self.landmark_key)
            if counts is None:
                self.logger.info(f"{name}: dataset not cached, landmarks outside their image are only in the log.")
                continue
            summary[name] = counts
            if counts:
                items = ", ".join(f"{k} ({v})" for k, v in list(counts.items())[:10])
                more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
                self.logger.warning(
                    f"{name}: {sum(counts.values())} ground-truth landmarks in {len(counts)} of "
                    f"{len(getattr(dataset, 'data', counts))} images lie outside their image and are treated as "
                    f"missing: {items}{more}."
                )
            else:
                self.logger.info(f"{name}: every ground-truth landmark lies inside its image.")
        engine.state.landmarks_outside = summary
        self.check_field_of_view()

    def check_field_of_view(self) -> None:
        """Refuse (or log) landmarks outside the preprocessed grid of every cached dataset.

        Raises:
            ValueError: with ``outside_view="error"``, some present landmark lies outside the grid.
        """
        problems = []
        for name, dataset in self.datasets.items():
            found = landmarks_outside_grid(dataset, self.image_key, self.landmark_key)
            if not found:
                continue
            count = sum(len(v) for v in found.values())
            items = ", ".join(f"{k} (landmarks {v[:5]})" for k, v in list(found.items())[:5])
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            problems.append(
                f"{name}: {count} ground-truth landmarks in {len(found)} of {len(getattr(dataset, 'data', found))} "
                f"images lie outside the network's field of view after preprocessing: {items}{more}"
            )
        if not problems:
            return
        advice = (
            "the preprocessing (pixdim x patch_size, pad_crop) keeps only part of these images: fit the whole image "
            "(--resize_mode fit --pixdim -1.0), or choose a pixdim that covers it (a pixel-only image without "
            "'spacing' in the datalist has 1 px = 1 unit)"
        )
        message = "; ".join(problems) + f"; {advice}."
        if self.outside_view == "error":
            raise ValueError(message)
        self.logger.warning(message)
