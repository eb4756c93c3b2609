"""Evaluation report of a landmark detector: metrics JSON/CSV, cumulative IPE plot, overlays, printed summary."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.metrics import (
    DEFAULT_PIXEL_RADII,
    DEFAULT_RADII,
    identification_rate_per_landmark,
    identified_landmarks,
    per_landmark_table,
    point_errors,
    summarize_errors,
)
from mlm.reports import write_metrics_csv, write_metrics_json
from transforms.geometry import image_affine, world_to_voxel
from transforms.io.atomic import output_path
from transforms.landmarks import dropped_landmark_counts

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["LandmarkReportHandler", "stage_reports"]


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().as_subclass(torch.Tensor)
    return np.asarray(x, dtype=np.float64)


class LandmarkReportHandler:
    """Collect predictions and ground truth (world mm) of an evaluator run and write the evaluation report.

    Reads, per decollated item of ``engine.state.output``: ``pred_key`` and ``label_key``, both ``(N, D)`` world mm
    (the output of :class:`transforms.post.HeatmapsToLandmarksd` / :class:`transforms.post.LandmarksToWorldd`),
    the preprocessed image under ``image_key`` (for the overlays) and the item id from ``engine.state.batch``.
    At ``Events.COMPLETED`` it writes to ``output_dir``:

    - ``metrics.json``: :func:`mlm.metrics.summarize_errors` (PE mean/SD/median/max, IPE, SDR and outliers at
      ``radii``), plus ``identification_rate`` when ``identification`` and the image ids;
    - ``metrics_per_landmark.csv``: one row per landmark (PE statistics, SDR, ID rate);
    - ``errors_per_image.csv``: the point error of every landmark of every image (mm; empty = no ground truth);
    - ``cumulative_ipe.png`` and ``overlays/<id>.png`` for the first ``num_overlays`` images;

    and logs/prints a short summary. ``engine.state.metrics`` receives ``mre`` (and ``id_rate``).

    With ``normalize_pair`` (hand X-rays: errors scaled so that two reference landmarks are ``normalize_distance``
    = 50 mm apart, see :func:`mlm.metrics.point_errors`; Payer's zero-based pair ``(1, 5)``, GU2Net's ``(0, 4)``)
    the report also holds the normalised errors: a ``normalized`` section in ``metrics.json`` (the same
    statistics, plus ``pair``, ``pair_names``, ``distance_mm`` and the ids of images skipped because a reference
    landmark has no ground truth), ``pe_mean_normalized`` / ``pe_median_normalized`` columns in
    ``metrics_per_landmark.csv``, ``errors_per_image_normalized.csv``, a summary line and ``mre_normalized`` in
    ``engine.state.metrics``. The plain mm errors are always reported as well.

    Args:
        output_dir: report folder (created).
        names: N landmark names.
        radii: SDR/outlier radii in mm.
        pixel_radii: SDR/outlier radii in px, used instead of ``radii`` when the images have no physical pixel size
            (PNG/JPEG/BMP without a datalist ``spacing``: their meta ``spatial_units`` is ``"px"``); the report then
            says px everywhere.
        identification: also compute the identification rate (spine).
        max_dist: identification radius, mm.
        num_overlays: overlay PNGs to draw (0: none).
        method_name: curve label in the cumulative plot.
        pred_key, label_key, image_key, id_key: keys of the engine output / batch.
        landmark_key: key of the loaded ground truth in the batch, whose meta counts the landmarks set to missing
            as outside their image (``metrics.json``: ``num_landmarks_outside``, ``landmarks_outside`` per id).
        print_summary: print the summary to stdout as well as logging it.
        normalize_pair: zero-based ``(a, b)`` landmark pair for normalised errors, or None (default: mm only).
        normalize_distance: the distance (mm) the pair is taken to span, default 50 (wrist width).
        normalized_radii: SDR/outlier radii of the normalised errors (default: ``radii``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        names: Sequence[str] | None = None,
        radii: Sequence[float] = DEFAULT_RADII,
        pixel_radii: Sequence[float] = DEFAULT_PIXEL_RADII,
        identification: bool = False,
        max_dist: float = 20.0,
        num_overlays: int = 4,
        method_name: str = "prediction",
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
        id_key: str = "id",
        landmark_key: str = "landmarks",
        print_summary: bool = True,
        name: str | None = None,
        normalize_pair: Sequence[int] | None = None,
        normalize_distance: float = 50.0,
        normalized_radii: Sequence[float] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.names = None if names is None else [str(n) for n in names]
        self.mm_radii = tuple(float(r) for r in radii)
        self.pixel_radii = tuple(float(r) for r in pixel_radii)
        self.identification = identification
        self.max_dist = float(max_dist)
        self.num_overlays = int(num_overlays)
        self.method_name = method_name
        self.pred_key, self.label_key, self.image_key, self.id_key = pred_key, label_key, image_key, id_key
        self.landmark_key = landmark_key
        self.print_summary = print_summary
        self.logger = logging.getLogger(name)
        if normalize_pair is not None:
            pair = tuple(int(i) for i in normalize_pair)
            if len(pair) != 2 or pair[0] == pair[1] or min(pair) < 0:
                raise ValueError(
                    f"normalize_pair must be two different zero-based landmark indices, got {normalize_pair}."
                )
            normalize_pair = pair
        if not float(normalize_distance) > 0:
            raise ValueError(f"normalize_distance must be positive (mm), got {normalize_distance}.")
        self.normalize_pair = normalize_pair
        self.normalize_distance = float(normalize_distance)
        self.normalized_radii = self.mm_radii if normalized_radii is None else tuple(float(r) for r in normalized_radii)
        self.reset()

    def for_stage(self, pred_key: str, output_dir: str | os.PathLike, method_name: str | None = None):
        """A copy of this handler that reports ``pred_key`` into ``output_dir`` (another stage's predictions, e.g. a
        coarse-to-fine run's ``pred_global``), with the same radii, names and normalisation, without overlays."""
        other = copy.copy(self)
        other.pred_key = pred_key
        other.output_dir = Path(output_dir)
        other.method_name = method_name or f"{self.method_name} ({pred_key})"
        other.num_overlays = 0
        other.reset()
        return other

    def reset(self) -> None:
        self.ids: list[str] = []
        self.pred: list[np.ndarray] = []
        self.true: list[np.ndarray] = []
        self.overlays: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self.outside: dict[str, int] = {}
        self.spatial_units: set[str] = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def collect(self, engine: Engine) -> None:
        """Append the current iteration's items (decollated list or a single dict)."""
        outputs = engine.state.output
        batches = engine.state.batch
        outputs = outputs if isinstance(outputs, list) else [outputs]
        if isinstance(batches, list):
            dropped = [
                sum(dropped_landmark_counts(b.get(self.landmark_key) if isinstance(b, dict) else None)) for b in batches
            ]
        else:
            batch_landmarks = batches.get(self.landmark_key) if isinstance(batches, dict) else None
            dropped = dropped_landmark_counts(batch_landmarks) if batch_landmarks is not None else [0] * len(outputs)
            batches = [batches] * len(outputs)
        for out, bat, num_dropped in zip(outputs, batches, dropped):
            if out.get(self.label_key) is None:
                raise ValueError(
                    "LandmarkReportHandler: the evaluator output has no ground truth (label); "
                    "evaluate needs a datalist split with landmark files."
                )
            item = out.get(self.id_key, bat.get(self.id_key) if isinstance(bat, dict) else None)
            item = str(item) if item is not None else f"image{len(self.ids):04d}"
            pred, true = _np(out[self.pred_key]), _np(out[self.label_key])
            self.ids.append(item)
            image = out.get(self.image_key, bat.get(self.image_key) if isinstance(bat, dict) else None)
            self.spatial_units.add(str((getattr(image, "meta", None) or {}).get("spatial_units", "mm")))
            if num_dropped:
                self.outside[item] = int(num_dropped)
            self.pred.append(pred)
            self.true.append(true)
            if len(self.overlays) < self.num_overlays and self.image_key in out:
                image = out[self.image_key]
                affine = image_affine(image, pred.shape[-1])
                vox = [_np(world_to_voxel(torch.as_tensor(w), affine)) for w in (pred, true)]
                self.overlays.append((item, _np(image)[0], vox[0], vox[1]))

    @property
    def units(self) -> str:
        """``"px"`` when every evaluated image lacks a physical pixel size, else ``"mm"`` (mixing both raises)."""
        if self.spatial_units == {"px"}:
            return "px"
        if "px" in self.spatial_units:
            raise ValueError(
                "LandmarkReportHandler: some images have a physical pixel size (mm) and others do not (px): give every "
                "pixel-only image (PNG/JPEG/BMP) a 'spacing' in the datalist, or none of them."
            )
        return "mm"

    @property
    def radii(self) -> tuple[float, ...]:
        """The SDR/outlier radii in this report's units."""
        return self.pixel_radii if self.units == "px" else self.mm_radii

    def normalized_errors(self) -> tuple[np.ndarray, list[str], list[str]]:
        """Normalised point errors ``(B', N)`` of the images whose reference pair has ground truth, their ids, and
        the ids of the skipped images (a reference landmark missing or the two coinciding)."""
        pred, true = np.stack(self.pred), np.stack(self.true)
        a, b = self.normalize_pair
        if max(a, b) >= true.shape[1]:
            raise ValueError(
                f"LandmarkReportHandler: normalize_pair {self.normalize_pair} is out of range for {true.shape[1]} "
                "landmarks."
            )
        ref = np.sqrt(((true[:, a] - true[:, b]) ** 2).sum(axis=-1))
        ok = np.isfinite(ref) & (ref > 0)
        ids = [i for i, keep in zip(self.ids, ok) if keep]
        skipped = [i for i, keep in zip(self.ids, ok) if not keep]
        if not ok.any():
            return np.full((0, true.shape[1]), np.nan), ids, skipped
        errors = point_errors(
            pred[ok], true[ok], normalize_pair=self.normalize_pair, normalize_distance=self.normalize_distance
        )
        return errors, ids, skipped

    def summary(self) -> dict:
        """Metric summary of the collected images."""
        if not self.pred:
            raise ValueError("LandmarkReportHandler: no images were evaluated.")
        pred, true = np.stack(self.pred), np.stack(self.true)
        errors = point_errors(pred, true)
        summary = {"units": self.units, "ids": list(self.ids), **summarize_errors(errors, self.radii)}
        # ground truth set to missing as outside its image (left out of every metric)
        summary["num_landmarks_outside"] = int(sum(self.outside.values()))
        summary["landmarks_outside"] = dict(self.outside)
        if self.identification:
            ok = identified_landmarks(pred, true, self.max_dist)
            present = ~np.isnan(ok)
            summary["identification_rate"] = float(ok[present].sum() / present.sum()) if present.any() else None
            summary["identification_max_dist_mm"] = self.max_dist
        if self.normalize_pair is not None:
            norm, ids, skipped = self.normalized_errors()
            a, b = self.normalize_pair
            summary["normalized"] = {
                "units": f"mm, normalised to {self.normalize_distance:g} mm between landmarks {a} and {b}",
                "pair": [a, b],
                "pair_names": [self.names[a], self.names[b]] if self.names else [str(a), str(b)],
                "distance_mm": self.normalize_distance,
                "ids": ids,
                "skipped_ids": skipped,
                **summarize_errors(norm, self.normalized_radii),
            }
        return summary

    def __call__(self, engine: Engine) -> None:
        from mlm.visualize import plot_cumulative_ipe, plot_overlay

        self.output_dir.mkdir(parents=True, exist_ok=True)
        pred, true = np.stack(self.pred), np.stack(self.true)
        errors = point_errors(pred, true)
        summary = self.summary()
        table = per_landmark_table(errors, self.names, self.radii)
        if self.identification:
            for row, rate in zip(table, identification_rate_per_landmark(pred, true, self.max_dist)):
                row["id_rate"] = float(rate)
        if self.normalize_pair is not None:
            norm, norm_ids, _ = self.normalized_errors()
            for row, norm_row in zip(table, per_landmark_table(norm, self.names, self.normalized_radii)):
                row["pe_mean_normalized"] = norm_row["pe_mean"]
                row["pe_median_normalized"] = norm_row["pe_median"]
        write_metrics_json(self.output_dir / "metrics.json", summary)
        write_metrics_csv(self.output_dir / "metrics_per_landmark.csv", table)
        names = self.names or [str(k) for k in range(errors.shape[1])]
        rows = [
            {"id": i, **{n: (None if np.isnan(e) else float(e)) for n, e in zip(names, err)}}
            for i, err in zip(self.ids, errors)
        ]
        write_metrics_csv(self.output_dir / "errors_per_image.csv", rows)
        if self.normalize_pair is not None:
            rows = [
                {"id": i, **{n: (None if np.isnan(e) else float(e)) for n, e in zip(names, err)}}
                for i, err in zip(norm_ids, norm)
            ]
            write_metrics_csv(self.output_dir / "errors_per_image_normalized.csv", rows)
        plot_cumulative_ipe(
            {self.method_name: errors}, self.output_dir / "cumulative_ipe.png", radii=self.radii, unit=self.units
        )
        if self.overlays:
            (self.output_dir / "overlays").mkdir(exist_ok=True)
        for item, image, p, t in self.overlays:
            path = output_path(self.output_dir / "overlays", f"{item}.png", item)  # an id must not leave the folder
            path.parent.mkdir(parents=True, exist_ok=True)
            plot_overlay(image, p, t, path, names=self.names, title=item)
        engine.state.metrics["mre"] = summary["pe_mean"]
        if self.identification:
            engine.state.metrics["id_rate"] = summary["identification_rate"]
        if self.normalize_pair is not None:
            engine.state.metrics["mre_normalized"] = summary["normalized"]["pe_mean"]
        text = self.format_summary(summary)
        if self.print_summary:
            print(text, flush=True)
        else:
            self.logger.info(text)

    def format_summary(self, s: dict) -> str:
        """A few lines: images, MRE +- SD, median, SDR at each radius, ID rate, where the report is."""
        u = s.get("units", "mm")
        sdr = ", ".join(f"{k} {u} {100 * v:.1f}%" for k, v in s["sdr"].items())
        lines = [
            f"evaluated {s['num_images']} images, {s['count']} landmarks with ground truth "
            f"({s['num_missing_predictions']} without prediction)",
            f"MRE {s['pe_mean']:.2f} +- {s['pe_std']:.2f} {u}, median {s['pe_median']:.2f} {u}, max {s['pe_max']:.2f} {u}",
            f"SDR: {sdr}",
        ]
        if s.get("num_landmarks_outside"):
            lines.append(
                f"{s['num_landmarks_outside']} ground-truth landmarks in {len(s['landmarks_outside'])} images lie "
                "outside their image and are left out (metrics.json: landmarks_outside)"
            )
        if self.identification and s.get("identification_rate") is not None:
            lines.append(f"ID rate ({self.max_dist:g} mm): {100 * s['identification_rate']:.1f}%")
        if "normalized" in s:
            n = s["normalized"]
            sdr = ", ".join(f"{k} mm {100 * v:.1f}%" for k, v in n["sdr"].items())
            skipped = f", {len(n['skipped_ids'])} images skipped (no reference pair)" if n["skipped_ids"] else ""
            lines.append(
                f"normalised ({n['distance_mm']:g} mm between {n['pair_names'][0]} and {n['pair_names'][1]}): "
                f"MRE {n['pe_mean']:.2f} +- {n['pe_std']:.2f} mm, median {n['pe_median']:.2f} mm; SDR: {sdr}{skipped}"
            )
        lines.append(f"report written to {self.output_dir}")
        return "\n".join(lines)


def stage_reports(handlers: Sequence[Any], pred_key: str, subdir: str) -> list[LandmarkReportHandler]:
    """For each :class:`LandmarkReportHandler` in ``handlers``, one that reports the stage ``pred_key`` into
    ``<its output_dir>/<subdir>`` (:meth:`LandmarkReportHandler.for_stage`); an empty list when there is none
    (inference without evaluate.yaml). ``refine_inference.yaml`` reports the global stage so."""
    return [
        h.for_stage(pred_key, h.output_dir / subdir, f"{h.method_name} ({subdir} stage)")
        for h in handlers
        if isinstance(h, LandmarkReportHandler)
    ]
