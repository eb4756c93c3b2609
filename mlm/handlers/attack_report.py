"""Report of a targeted landmark attack run in a MONAI evaluator: metrics at the checkpoints, convergence and
isolation plots (the protocol of "Miss the Point", Yao et al., MICCAI 2020)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

from mlm.attacks.metrics import attack_errors, attack_metrics, isolation_analysis, isolation_degree
from mlm.metrics import point_errors
from mlm.reports import write_metrics_csv, write_metrics_json
from transforms.geometry import image_affine, voxel_to_world

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["LandmarkAttackReportHandler"]


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().as_subclass(torch.Tensor)
    return np.asarray(x, dtype=np.float64)


class LandmarkAttackReportHandler:
    """Collect a targeted attack's predictions at its checkpoints and write the attack report at the end of the run.

    Runs after :class:`mlm.handlers.LandmarkAttackHandler` in the same ``SupervisedEvaluator`` (whose attack records
    the outputs at its ``record_iterations``, ideally decoded to landmarks by its ``record_transform``). At every
    ``ITERATION_COMPLETED`` it reads ``engine.state.attack`` (goals, records, clean output: voxel coordinates of the
    network input), maps every point to world mm through the affine of the preprocessed image (the item's
    ``image_key``, as the evaluator's ``pred`` is mapped), and takes the ground truth (world mm) from the
    evaluator's output ``label_key`` (evaluate.yaml's ``LandmarksToWorldd``). At ``COMPLETED`` it writes to
    ``output_dir``:

    - ``attack_metrics.json``: ``settings``, ``units``, ``ids``, ``moved_per_image``, and
      :func:`mlm.attacks.attack_metrics` (``clean``; ``iterations``: targeted MRE / MedRE / SDR of the moved
      landmarks against their goals and MRE / MedRE / SDR of the stationary ones against the ground truth, after
      ``k`` updates; iteration 0 is the clean prediction), and ``isolation`` (:func:`mlm.attacks.isolation_analysis`
      at the last checkpoint);
    - ``attack_metrics.csv``: the same rows, one per checkpoint;
    - ``attack_errors.csv``: per image and landmark: moved or not, the error at the last checkpoint and on the clean
      image (against the goal for moved landmarks, the ground truth for stationary ones), the degree of isolation;
    - ``attack_convergence.png`` (:func:`mlm.visualize.plot_attack_convergence`) and ``attack_isolation.png``
      (:func:`mlm.visualize.plot_isolation`);

    and prints a summary. ``engine.state.metrics`` receives ``targeted_mre``, ``targeted_sdr``, ``stationary_mre``
    and ``stationary_sdr`` of the last checkpoint.

    Args:
        output_dir: report folder (created).
        decoder: ``output (B, C, *S) -> (B, N, D)`` voxel coordinates (:class:`mlm.attacks.LandmarkOutputDecoder`),
            for the clean output and for records that were kept as raw outputs.
        names: N landmark names.
        radius: SDR radius (the paper's 4 mm; px for pixel-only images).
        isolation_neighbours: ``k`` of the degree of isolation (the paper's 5).
        settings: the attack's settings, written into the JSON as given (method, eps, step, iterations, seed...).
        method_name: the attack's name in the plot and the summary.
        label_key, image_key, id_key: keys of the evaluator output / batch.
        print_summary: print the summary (else log it).
        name: logger name.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        decoder: Callable[[torch.Tensor], torch.Tensor],
        names: Sequence[str] | None = None,
        radius: float = 4.0,
        isolation_neighbours: int = 5,
        settings: Mapping[str, Any] | None = None,
        method_name: str = "attack",
        label_key: str = "label",
        image_key: str = "image",
        id_key: str = "id",
        print_summary: bool = True,
        name: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.decoder = decoder
        self.names = None if names is None else [str(n) for n in names]
        self.radius = float(radius)
        self.isolation_neighbours = int(isolation_neighbours)
        self.settings = dict(settings or {})
        self.method_name = str(method_name)
        self.label_key, self.image_key, self.id_key = label_key, image_key, id_key
        self.print_summary = print_summary
        self.logger = logging.getLogger(name)
        self.reset()

    def reset(self) -> None:
        self.ids: list[str] = []
        self.goals: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []
        self.clean: list[np.ndarray] = []
        self.records: dict[int, list[np.ndarray]] = {}
        self.units: set[str] = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def _coords(self, x: torch.Tensor, spatial_dims: int) -> torch.Tensor:
        """``(B, N, D)`` voxel coordinates of a record: as given, or decoded from a raw output."""
        x = torch.as_tensor(x).detach().cpu()
        if x.ndim == 3 and x.shape[-1] == spatial_dims:
            return x.to(torch.float64)
        return torch.as_tensor(self.decoder(x), dtype=torch.float64)

    def collect(self, engine: Engine) -> None:
        """Append the current iteration's images (world mm)."""
        state = getattr(engine.state, "attack", None)
        if not isinstance(state, Mapping):
            raise ValueError(
                "LandmarkAttackReportHandler: no attack in this run (engine.state.attack): put a "
                "mlm.handlers.LandmarkAttackHandler before it in the evaluator's handlers."
            )
        goals = torch.as_tensor(state["goals"]).detach().cpu().to(torch.float64)
        dims = int(goals.shape[-1])
        if not state.get("records"):
            raise ValueError(
                "LandmarkAttackReportHandler: the attack recorded no iteration: give the attack record_iterations."
            )
        records = {int(k): self._coords(v, dims) for k, v in state["records"].items()}
        clean = self._coords(state["clean_pred"], dims)
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batches = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch] * len(outputs)
        for i, (out, bat) in enumerate(zip(outputs, batches)):
            truth = out.get(self.label_key)
            if truth is None:
                raise ValueError(
                    "LandmarkAttackReportHandler: the evaluator output has no ground truth (label): the attack "
                    "report needs evaluate.yaml and a datalist split with landmark files."
                )
            image = out.get(self.image_key, bat.get(self.image_key) if isinstance(bat, dict) else None)
            affine = image_affine(image, dims)

            def world(v: torch.Tensor, affine: torch.Tensor = affine) -> np.ndarray:
                return _np(voxel_to_world(v.to(torch.float64), affine))

            item = out.get(self.id_key, bat.get(self.id_key) if isinstance(bat, dict) else None)
            ids = state.get("image_ids") or []
            self.ids.append(
                str(item) if item is not None else (ids[i] if i < len(ids) else f"image{len(self.ids):04d}")
            )
            self.units.add(str((getattr(image, "meta", None) or {}).get("spatial_units", "mm")))
            self.goals.append(world(goals[i]))
            self.truth.append(_np(truth))
            self.clean.append(world(clean[i]))
            for k, v in records.items():
                self.records.setdefault(k, []).append(world(v[i]))

    @property
    def unit(self) -> str:
        """``"px"`` when every image lacks a physical pixel size, else ``"mm"``."""
        return "px" if self.units == {"px"} else "mm"

    def report(self) -> dict[str, Any]:
        """The report's content (``attack_metrics.json``)."""
        if not self.ids:
            raise ValueError("LandmarkAttackReportHandler: no images were attacked.")
        goals, truth, clean = np.stack(self.goals), np.stack(self.truth), np.stack(self.clean)
        preds = {k: np.stack(v) for k, v in self.records.items()}
        metrics = attack_metrics({0: clean, **preds}, goals, truth, clean, self.radius)
        last = max(preds)
        targeted, _ = attack_errors(preds[last], goals, truth)
        isolation = isolation_analysis(truth, targeted, self.isolation_neighbours)
        return {
            "method": self.method_name,
            "settings": self.settings,
            "units": self.unit,
            "ids": list(self.ids),
            "moved_per_image": [int(c) for c in np.isfinite(goals).all(axis=-1).sum(axis=1)],
            "last_iteration": int(last),
            **metrics,
            "isolation": {**isolation, "names": self.names},
        }

    def error_rows(self) -> list[dict[str, Any]]:
        """``attack_errors.csv``: one row per image and landmark (last checkpoint and clean errors, isolation)."""
        goals, truth, clean = np.stack(self.goals), np.stack(self.truth), np.stack(self.clean)
        last = np.stack(self.records[max(self.records)])
        t_last, s_last = attack_errors(last, goals, truth)
        t_clean, s_clean = attack_errors(clean, goals, truth)
        degree = isolation_degree(truth, self.isolation_neighbours)
        moved = np.isfinite(goals).all(axis=-1)
        names = self.names or [str(j) for j in range(goals.shape[1])]

        def value(x: float) -> float | None:
            return float(x) if not np.isnan(x) else None

        rows = []
        for b, item in enumerate(self.ids):
            for j, name in enumerate(names):
                rows.append(
                    {
                        "id": item,
                        "landmark": name,
                        "moved": int(moved[b, j]),
                        "error": value(t_last[b, j] if moved[b, j] else s_last[b, j]),
                        "clean_error": value(t_clean[b, j] if moved[b, j] else s_clean[b, j]),
                        "clean_error_to_truth": value(point_errors(clean[b : b + 1], truth[b : b + 1])[0, j]),
                        "isolation": value(degree[b, j]),
                    }
                )
        return rows

    def __call__(self, engine: Engine) -> None:
        from mlm.visualize import plot_attack_convergence, plot_isolation

        self.output_dir.mkdir(parents=True, exist_ok=True)
        report = self.report()
        write_metrics_json(self.output_dir / "attack_metrics.json", report)
        write_metrics_csv(self.output_dir / "attack_metrics.csv", report["iterations"])
        write_metrics_csv(self.output_dir / "attack_errors.csv", self.error_rows())
        plot_attack_convergence(
            {self.method_name: report["iterations"]},
            self.output_dir / "attack_convergence.png",
            radius=self.radius,
            unit=self.unit,
            title=f"{self.method_name}: {len(self.ids)} images",
        )
        iso = report["isolation"]
        plot_isolation(
            iso["isolation"],
            iso["attack_error"],
            self.output_dir / "attack_isolation.png",
            names=self.names,
            pearson_r=iso["pearson_r"],
            unit=self.unit,
        )
        final = report["iterations"][-1]
        for key in ("targeted_mre", "targeted_sdr", "stationary_mre", "stationary_sdr"):
            engine.state.metrics[key] = final[key]
        text = self.format_summary(report)
        if self.print_summary:
            print(text, flush=True)
        else:
            self.logger.info(text)

    def format_summary(self, report: Mapping[str, Any]) -> str:
        """A few lines: images, clean accuracy, the metrics at each checkpoint, the isolation correlation."""
        u, r = report["units"], report["radius"]

        def f(x: float | None, scale: float = 1.0) -> str:
            return "n/a" if x is None or not np.isfinite(x) else f"{scale * x:.2f}"

        c = report["clean"]
        lines = [
            f"attack {self.method_name}: {len(report['ids'])} images, {sum(report['moved_per_image'])} landmarks moved",
            f"clean: MRE {f(c['mre'])} {u}, SDR {r:g} {u} {f(c['sdr'], 100)}% "
            f"(stationary landmarks: SDR {f(c['stationary_sdr'], 100)}%)",
        ]
        for row in report["iterations"]:
            lines.append(
                f"iteration {row['iteration']:>3}: targeted MRE {f(row['targeted_mre'])} {u}, MedRE "
                f"{f(row['targeted_medre'])} {u}, SDR {f(row['targeted_sdr'], 100)}% | stationary MRE "
                f"{f(row['stationary_mre'])} {u}, SDR {f(row['stationary_sdr'], 100)}%"
            )
        iso = report["isolation"]
        r_text = "n/a" if iso["pearson_r"] is None or not np.isfinite(iso["pearson_r"]) else f"{iso['pearson_r']:.3f}"
        lines.append(f"isolation vs targeted error: Pearson r {r_text} over {iso['num_landmarks']} landmarks")
        lines.append(f"attack report written to {self.output_dir}")
        return "\n".join(lines)
