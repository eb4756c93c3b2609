"""Run summary of the landmarks that the preprocessing set to missing because they lie outside their image."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from monai.utils import IgniteInfo, min_version, optional_import

from transforms.landmarks import dropped_landmark_counts

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["OutsideLandmarksSummary", "count_dropped_landmarks"]


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


class OutsideLandmarksSummary:
    """Log once, when training starts, how many ground-truth landmarks were set to missing as outside their image.

    Every dropped landmark is already logged by :class:`transforms.landmarks.LoadLandmarks` (file, landmark,
    position) as the datasets are cached; this handler adds the count per dataset, so the run's log says how much
    ground truth the model does not see. The counts go to ``engine.state.landmarks_outside``
    (``{dataset name: {item id: count}}``).

    Args:
        datasets: ``{name: CacheDataset}``, e.g. ``{training: "@train#dataset", validation: "@validate#dataset"}``.
        landmark_key: key of the landmarks in the cached items.
        name: logger name.
    """

    def __init__(self, datasets: Mapping[str, Any], landmark_key: str = "landmarks", name: str | None = None) -> None:
        self.datasets = dict(datasets)
        self.landmark_key = landmark_key
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
