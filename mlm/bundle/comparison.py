"""Compare trained models of one or several bundles on the same prepared dataset: one table, one figure.

:func:`compare_models` (``scripts/compare_models.py``) takes models given as :class:`ModelSpec` (a name, a bundle
under ``bundles/``, a checkpoint, optionally a refinement checkpoint, extra overlays and overrides) and for each:

1. measures it in this process (:func:`measure_model`): the trainable parameters of the bundle's networks as the
   bundle builds them (:func:`count_parameters`), and the CPU time of its forward pass per image (the bundle's
   inferer on the preprocessed test images, plus the refinement of every landmark's patch for a coarse-to-fine
   model), after loading the checkpoint, so that a model that does not fit its bundle fails before any run;
2. runs the bundle's inference and evaluation (``inference.yaml`` + ``evaluate.yaml`` + the overlays [+
   ``refine_inference.yaml``]) with :func:`mlm.bundle.launch.run_bundle_step` into ``<out>/<name>/``, the printed
   command a user would type, with the preprocessing geometry the checkpoint records
   (:mod:`mlm.bundle.geometry`) as overrides; a model whose ``metrics.json`` is newer than its checkpoints and whose
   recorded command and ground truth (``<out>/<name>/comparison_run.json``) are the same is not run again, so an
   interrupted comparison resumes;
3. reads the reports back (:class:`ModelResult`), refuses models that cannot share a table (:func:`check_comparable`:
   other split, ground truth, images, landmark count or units) and writes ``comparison.md``, ``comparison.csv`` and
   ``cumulative_error.png`` (:func:`write_comparison`), all atomically.

Errors are those of the bundles' reports: mm in the original image's space, px for pixel-only data, or the
normalised mm of a bundle whose evaluation normalises them (hand X-rays; ``errors="normalized"``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from mlm.bundle.checkpoints import check_checkpoint_compatible, load_checkpoint
from mlm.bundle.geometry import checkpoint_geometry, geometry_overrides
from mlm.bundle.launch import BUNDLES_DIR, read_metrics, run_bundle_step
from mlm.data.datalist import load_datalist
from mlm.reports import read_point_errors, write_metrics_csv, write_metrics_json
from transforms.io.atomic import atomic_write_text

__all__ = [
    "ComparisonError",
    "Measurement",
    "ModelResult",
    "ModelSpec",
    "check_comparable",
    "compare_models",
    "comparison_rows",
    "count_parameters",
    "evaluate_model",
    "ground_truth_fingerprint",
    "measure_model",
    "model_overrides",
    "read_result",
    "timing_caption",
    "write_comparison",
]

#: config ids the comparison sets itself for every model (the data, the checkpoints and where the bundle writes)
MANAGED_KEYS = ("dataset_dir", "infer_split", "ckpt_path", "refine_ckpt_path", "output_dir", "prediction_dir")
#: the record of the command that produced a model's report (``<out>/<name>/``)
RUN_RECORD = "comparison_run.json"
#: the files :func:`write_comparison` writes
TABLE_MD, TABLE_CSV, FIGURE = "comparison.md", "comparison.csv", "cumulative_error.png"


class ComparisonError(ValueError):
    """Models that cannot be compared (other split, ground truth, images or units), or a bad model spec."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of a comparison.

    Attributes:
        name: the model's name in the table (a folder name under the output folder).
        bundle: a bundle folder under ``bundles/`` (``scn_ceph``, ``farnet_ceph``...).
        checkpoint: the global stage's checkpoint (a training checkpoint or a plain state dict).
        refine_checkpoint: the refinement stage's checkpoint (``refine.yaml``), or None for a single-stage model.
        configs: overlays of this model, after the comparison's common ones (e.g. ``("unet.yaml",)``).
        overrides: ``(id, value text)`` pairs of this model, as on the ``python -m monai.bundle run`` command line
            (``("num_filters", "32")``); they win over the common ones and the checkpoint's geometry.
    """

    name: str
    bundle: str
    checkpoint: Path
    refine_checkpoint: Path | None = None
    configs: tuple[str, ...] = ()
    overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``NAME=BUNDLE:CHECKPOINT[:REFINE_CHECKPOINT]`` -> a spec (paths made absolute; a checkpoint path that
        holds a colon is taken whole when such a file exists).

        Raises:
            ComparisonError: not of that form, an unsafe name, no such bundle or checkpoint file.
        """
        name, sep, rest = text.partition("=")
        bundle, sep2, paths = rest.partition(":")
        if not sep or not sep2 or not name or not bundle or not paths:
            raise ComparisonError(f"--model {text!r}: expected NAME=BUNDLE:CHECKPOINT[:REFINE_CHECKPOINT].")
        checkpoint, refine = paths, None
        if not Path(paths).is_file() and ":" in paths:
            checkpoint, refine = paths.rsplit(":", 1)
        spec = cls(name, bundle, Path(checkpoint).absolute(), None if refine is None else Path(refine).absolute())
        spec.check()
        return spec

    def check(self) -> None:
        """Raise :class:`ComparisonError` for an unsafe name, a missing bundle or checkpoint, or a managed override."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.name):
            raise ComparisonError(
                f"model name {self.name!r}: use letters, digits, '.', '_', '+' or '-' (it names the model's folder)."
            )
        if not (BUNDLES_DIR / self.bundle / "configs").is_dir():
            known = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs").is_dir())
            raise ComparisonError(f"model {self.name}: no bundle {self.bundle!r} in {BUNDLES_DIR} (there are {known}).")
        for what, path in (("checkpoint", self.checkpoint), ("refinement checkpoint", self.refine_checkpoint)):
            if path is not None and not Path(path).is_file():
                raise ComparisonError(f"model {self.name}: {what} {path} not found.")
        managed = sorted({k for k, _ in self.overrides if re.split(r"#|::", k)[0] in MANAGED_KEYS})
        if managed:
            raise ComparisonError(
                f"model {self.name}: cannot override {managed}: the comparison sets them (the data, the checkpoints "
                "and the output folder)."
            )

    @property
    def checkpoints(self) -> list[Path]:
        return [self.checkpoint] + ([] if self.refine_checkpoint is None else [self.refine_checkpoint])


@dataclass
class Measurement:
    """What :func:`measure_model` measured.

    Attributes:
        parameters: trainable parameters of the global network.
        refine_parameters: trainable parameters of the refinement network (0 without one).
        seconds_per_image: median CPU seconds of one image's forward pass (None: not timed).
        timed_runs: timed forward passes the median is over.
        distinct_images: different images among them (the split's first ones).
        warmup: untimed forward passes before them.
        threads: torch threads of the timing.
    """

    parameters: int
    refine_parameters: int = 0
    seconds_per_image: float | None = None
    timed_runs: int = 0
    distinct_images: int = 0
    warmup: int = 0
    threads: int = 1


@dataclass
class ModelResult:
    """One model's report, read back from its bundle run (:func:`read_result`).

    Attributes:
        name, bundle: the model's name and bundle.
        split: the evaluated split.
        metrics: the bundle's ``metrics.json``.
        errors: ``(B, N)`` point errors of ``errors_per_image.csv`` (NaN: no ground truth, inf: no prediction).
        normalized_errors: the same in normalised mm (``errors_per_image_normalized.csv``), None without them.
        measurement: parameters and time (None: not measured).
        refined: a coarse-to-fine model (the report is the refined landmarks').
        ground_truth: :func:`ground_truth_fingerprint` of the split (None: unknown).
        output_dir: the report's folder.
    """

    name: str
    bundle: str
    split: str
    metrics: dict
    errors: np.ndarray
    normalized_errors: np.ndarray | None = None
    measurement: Measurement | None = None
    refined: bool = False
    ground_truth: str | None = None
    output_dir: Path | None = None


# ---------------------------------------------------------------------------------------------------- measuring
def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """The number of parameters of ``module`` (shared ones counted once); buffers (BatchNorm's running mean and
    variance, ``num_batches_tracked``) are not parameters and are never counted.

    Args:
        module: the network.
        trainable_only: count only the parameters with ``requires_grad`` (frozen ones left out).
    """
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only))


def _value_text(value: Any) -> str:
    """A config value as the text of a ``python -m monai.bundle run --key TEXT`` argument (read back by fire)."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    return str(value)


def _key(key: str) -> str:
    return str(key).removeprefix("--").replace("::", "#")


def model_overrides(spec: ModelSpec, common: Sequence[tuple[str, str]] = ()) -> tuple[dict[str, str], dict[str, Any]]:
    """The overrides of a model's runs: the preprocessing geometry its checkpoints record (the refinement
    checkpoint's as ``refine_spacing`` / ``refine_patch_size``), then ``common``, then the spec's own.

    Returns:
        ``({id: text}, {id: value})``: the command line's texts and the values for an in-process ``ConfigParser``
        (texts read as YAML, like ``python -m monai.bundle run`` reads them).
    """
    values: dict[str, Any] = {}
    geometry = checkpoint_geometry(spec.checkpoint)
    if geometry:
        values.update(geometry_overrides(geometry))
    if spec.refine_checkpoint is not None:
        refine = checkpoint_geometry(spec.refine_checkpoint) or {}
        for source, target in (("pixdim", "refine_spacing"), ("preprocessed_size", "refine_patch_size")):
            if source in refine:
                values[target] = refine[source]
    texts = {k: _value_text(v) for k, v in values.items()}
    for key, text in [*common, *spec.overrides]:
        texts[_key(key)] = str(text)
        values[_key(key)] = yaml.safe_load(str(text))
    return texts, values


def _state_dict(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    return checkpoint["model"] if isinstance(checkpoint.get("model"), Mapping) else checkpoint


def _load_network(parser, network_id: str, path: Path) -> nn.Module:
    """The config's ``network_id`` with the weights of checkpoint ``path`` (checked to fit), in eval mode."""
    network = parser.get_parsed_content(network_id)
    checkpoint = load_checkpoint(path)
    check_checkpoint_compatible(path, {"model": network}, checkpoint)
    network.load_state_dict(_state_dict(checkpoint))
    return network.eval()


def _image_centre(image: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """World mm of the centre of a channel-first ``MetaTensor`` image, ``(D,)``."""
    from transforms.geometry import image_affine, voxel_to_world

    centre = torch.as_tensor([(s - 1) / 2 for s in image.shape[1:]], dtype=torch.float64)
    return voxel_to_world(centre[None], image_affine(image, spatial_dims))[0]


def measure_model(
    spec: ModelSpec,
    dataset_dir: str | os.PathLike,
    split: str,
    configs: Sequence[str] = ("cpu.yaml",),
    overrides: Mapping[str, Any] | None = None,
    images: int = 3,
    warmup: int = 1,
    threads: int = 1,
) -> Measurement:
    """Parameters and CPU time per image of a model, as its bundle builds and runs it (in this process).

    The networks are the bundle's inference config (``inference.yaml`` + ``configs`` + the spec's [+
    ``refine_inference.yaml``], ``overrides`` as from :func:`model_overrides`) with the checkpoints' weights. The time
    of one image is the bundle's inferer on its preprocessed input (sliding windows included), plus, with a
    refinement checkpoint, the bundle's ``PatchRefiner`` on one patch per landmark (patches centred on the image's
    centre: the cost does not depend on where they are); reading, preprocessing, decoding the global heatmaps and
    writing are not timed. The first ``warmup`` runs are not timed; the median of the next ``images`` is returned
    (the split's first images, taken again in turn when it has fewer).

    Args:
        spec: the model.
        dataset_dir: the prepared dataset (its datalist gives the landmark count and the images).
        split: the split whose images are timed.
        configs: overlays common to every model.
        overrides: config ids and values (:func:`model_overrides`).
        images: images timed (0: no timing; the parameters only).
        warmup: untimed runs first.
        threads: ``torch.set_num_threads`` during the timing (restored afterwards).

    Raises:
        ValueError: a checkpoint does not fit the bundle's network (the message names the file).
    """
    from monai.data import list_data_collate

    from mlm.bundle.predict import inference_parser

    refine = spec.refine_checkpoint is not None
    cfgs = [*configs, *spec.configs, *(["refine_inference.yaml"] if refine else [])]
    values = {
        **dict(overrides or {}),
        "dataset_dir": str(Path(dataset_dir).absolute()),
        "infer_split": split,
        "max_items": max(1, images + warmup),
        "device": "$torch.device('cpu')",
        "num_workers": 0,
    }
    parser = inference_parser(spec.bundle, cfgs, values)
    network = _load_network(parser, "network", spec.checkpoint)
    measurement = Measurement(parameters=count_parameters(network), threads=int(threads))
    refine_network = refiner = None
    if refine:
        refine_network = _load_network(parser, "refine_network", spec.refine_checkpoint)
        refiner = parser.get_parsed_content("refiner")
        measurement.refine_parameters = count_parameters(refine_network)
    if images <= 0:
        return measurement
    dataset = parser.get_parsed_content("dataset")
    if len(dataset) == 0:
        raise ComparisonError(f"{dataset_dir}: split {split!r} has no images to time.")
    inferer = parser.get_parsed_content("inferer")
    prepare_batch = parser.get_parsed_content("prepare_batch")
    dims = int(parser.get_parsed_content("spatial_dims"))
    num_landmarks = int(parser.get_parsed_content("num_landmarks"))
    items = [dataset[i] for i in range(min(len(dataset), images + warmup))]
    # batches as the evaluator gets them (collated, in the network's memory format), prepared before the timing
    inputs = [prepare_batch(list_data_collate([item]), torch.device("cpu"))[0] for item in items]

    def forward(n: int) -> None:
        inferer(inputs[n], network)
        if refine:
            image = items[n]["refine_image"]
            refiner.refine(image, refine_network, _image_centre(image, dims)[None].repeat(num_landmarks, 1))

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    times = []
    try:
        with torch.no_grad():
            for n in range(warmup + images):
                t0 = time.perf_counter()
                forward(n % len(items))
                if n >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    measurement.seconds_per_image = float(np.median(times))
    measurement.timed_runs, measurement.distinct_images, measurement.warmup = len(times), len(items), int(warmup)
    return measurement


# ---------------------------------------------------------------------------------------------------- running
def ground_truth_fingerprint(dataset_dir: str | os.PathLike, split: str, datalist: str = "datalist.json") -> str:
    """A SHA-256 of a split's ground truth: each item's id, spacing and landmarks (the file's bytes, or the inline
    list). Two reports with the same fingerprint were measured against the same ground truth.

    Raises:
        FileNotFoundError: no datalist or landmark file. ValueError: no such split.
    """
    items = load_datalist(Path(dataset_dir) / datalist, split)
    digest = hashlib.sha256(split.encode("utf-8"))
    for item in items:
        landmarks = item.get("landmarks")
        if isinstance(landmarks, str):
            path = Path(landmarks)
            if not path.is_file():
                raise FileNotFoundError(f"{dataset_dir}: landmark file {path} of item {item.get('id')} not found.")
            content = path.read_bytes()
        else:
            content = json.dumps(landmarks, sort_keys=True).encode("utf-8")
        head = json.dumps([item.get("id"), item.get("spacing"), item.get("coordinate_system")], sort_keys=True)
        digest.update(head.encode("utf-8") + hashlib.sha256(content).digest())
    return digest.hexdigest()


def _up_to_date(spec: ModelSpec, output_dir: Path, record: Mapping[str, Any]) -> bool:
    """The model's report is newer than its checkpoints and came from the same command and ground truth."""
    metrics, saved = output_dir / "metrics.json", output_dir / RUN_RECORD
    if not metrics.is_file() or not saved.is_file():
        return False
    newest = max(os.stat(p).st_mtime_ns for p in spec.checkpoints)
    if os.stat(metrics).st_mtime_ns <= newest:
        return False
    try:
        earlier = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    earlier = {k: v for k, v in earlier.items() if k != "command"} if isinstance(earlier, dict) else None
    return earlier == json.loads(json.dumps(record))


def evaluate_model(
    spec: ModelSpec,
    dataset_dir: str | os.PathLike,
    split: str,
    output_dir: str | os.PathLike,
    configs: Sequence[str] = ("cpu.yaml",),
    overrides: Mapping[str, str] | None = None,
    ground_truth: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Path, bool]:
    """Run the bundle's inference and evaluation of ``spec`` on ``split`` into ``output_dir`` unless its report is
    up to date (newer than the checkpoints, same command and ground truth; see ``comparison_run.json``).

    Args:
        spec: the model.
        dataset_dir: the prepared dataset.
        split: the evaluated split.
        output_dir: the bundle's ``--output_dir`` (``metrics.json``, ``predictions/``...).
        configs: overlays common to every model (after ``inference.yaml`` and ``evaluate.yaml``).
        overrides: ``{id: text}`` (:func:`model_overrides`).
        ground_truth: :func:`ground_truth_fingerprint` of the split, recorded with the run.
        env: extra environment variables of the run (``OMP_NUM_THREADS``).

    Returns:
        ``(output_dir, ran)``: ``ran`` is False when the report was up to date.

    Raises:
        RuntimeError: the bundle run failed (the message holds the end of its log).
    """
    out = Path(output_dir).absolute()
    refine = spec.refine_checkpoint is not None
    cfgs = ["inference.yaml", "evaluate.yaml", *configs, *spec.configs, *(["refine_inference.yaml"] if refine else [])]
    args = ["--dataset_dir", str(Path(dataset_dir).absolute()), "--infer_split", split]
    args += ["--ckpt_path", str(spec.checkpoint)]
    args += ["--refine_ckpt_path", str(spec.refine_checkpoint)] if refine else []
    args += ["--output_dir", str(out)]
    for key, text in (overrides or {}).items():
        args += [f"--{key}", text]
    record = {"bundle": spec.bundle, "configs": cfgs, "args": args, "split": split, "ground_truth": ground_truth}
    if _up_to_date(spec, out, record):
        print(f"\n[{spec.name}] {out / 'metrics.json'} is newer than its checkpoints (same command): not run again")
        return out, False
    print(f"\n[{spec.name}] {spec.bundle}: inference and evaluation on {split}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_RECORD).unlink(missing_ok=True)
    line = run_bundle_step(spec.bundle, cfgs, args, out / "evaluate.log", env=dict(env) if env else None)
    write_metrics_json(out / RUN_RECORD, {**record, "command": line})
    return out, True


def read_result(
    spec_or_name: ModelSpec | str,
    output_dir: str | os.PathLike,
    split: str,
    bundle: str | None = None,
    measurement: Measurement | None = None,
    ground_truth: str | None = None,
) -> ModelResult:
    """A model's report read back from its folder (``metrics.json``, ``errors_per_image.csv`` [and
    ``errors_per_image_normalized.csv``]).

    Raises:
        FileNotFoundError: the report is incomplete.
    """
    out = Path(output_dir)
    spec = spec_or_name if isinstance(spec_or_name, ModelSpec) else None
    name = spec.name if spec else str(spec_or_name)
    metrics = read_metrics(out)
    table = out / "errors_per_image.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table} not found: the evaluation of {name} did not finish (see its log).")
    normalized = out / "errors_per_image_normalized.csv"
    return ModelResult(
        name=name,
        bundle=spec.bundle if spec else (bundle or ""),
        split=split,
        metrics=metrics,
        errors=read_point_errors(table),
        normalized_errors=read_point_errors(normalized) if normalized.is_file() else None,
        measurement=measurement,
        refined=bool(spec and spec.refine_checkpoint is not None),
        ground_truth=ground_truth,
        output_dir=out,
    )


# ---------------------------------------------------------------------------------------------------- tables
def _where(result: ModelResult) -> str:
    return f"{result.name} ({result.output_dir / 'metrics.json'})" if result.output_dir else result.name


def _block(result: ModelResult, errors: str) -> tuple[Mapping[str, Any], np.ndarray]:
    """The metrics and ``(B, N)`` errors of ``result`` in the ``errors`` kind (``"plain"`` or ``"normalized"``)."""
    if errors == "plain":
        return result.metrics, result.errors
    section = result.metrics.get("normalized")
    if section is None or result.normalized_errors is None:
        raise ComparisonError(
            f"{_where(result)} has no normalised errors (its bundle's evaluation has no normalize_pair): compare the "
            "plain errors (errors='plain')."
        )
    return section, result.normalized_errors


def _errors_kind(results: Sequence[ModelResult], errors: str) -> str:
    if errors not in ("auto", "plain", "normalized"):
        raise ValueError(f"errors must be 'auto', 'plain' or 'normalized', got {errors!r}.")
    if errors != "auto":
        return errors
    return "normalized" if all("normalized" in r.metrics for r in results) else "plain"


def _radius(key: str) -> float:
    return float(key)


def check_comparable(results: Sequence[ModelResult], errors: str = "auto") -> dict[str, Any]:
    """Check that ``results`` can share one table and return what they share.

    They must be evaluated on the same split, against the same ground truth (when known), on the same images, with
    the same landmark count and in the same units (``metrics.json``: ``"mm"``, ``"px"``, or the normalised units).

    Args:
        results: two or more models (one is accepted too).
        errors: ``"plain"``, ``"normalized"`` (hand X-rays: the wrist-normalised errors) or ``"auto"`` (normalised
            when every report has them).

    Returns:
        ``{"split", "units", "errors" (the kind), "radii" (the SDR radius keys every report has, ascending),
        "images", "landmarks"}``.

    Raises:
        ComparisonError: no results, or a difference; the message names the models, their values and files.
    """
    if not results:
        raise ComparisonError("no models to compare.")
    kind = _errors_kind(results, errors)
    blocks = [_block(r, kind) for r in results]

    def same(what: str, values: Sequence[Any], hint: str) -> None:
        if any(v != values[0] for v in values[1:]):
            listing = "; ".join(f"{_where(r)}: {v}" for r, v in zip(results, values))
            raise ComparisonError(f"the models cannot share one table: their {what} differ ({listing}). {hint}")

    same("splits", [r.split for r in results], "Evaluate every model on the same split.")
    truths = {r.ground_truth for r in results if r.ground_truth is not None}
    if len(truths) > 1:
        listing = "; ".join(f"{_where(r)}: {r.ground_truth}" for r in results if r.ground_truth is not None)
        raise ComparisonError(
            f"the models cannot share one table: their ground truths differ ({listing}). Evaluate every model against "
            "the same datalist's landmarks (same dataset folder)."
        )
    same("units", [b.get("units", "mm") for b, _ in blocks], "Compare models whose errors are in the same units.")
    same(
        "evaluated images",
        [sorted(b.get("ids", r.metrics.get("ids", []))) for r, (b, _) in zip(results, blocks)],
        "Evaluate every model on all the split's images (no --max_items).",
    )
    same("landmark counts", [int(e.shape[1]) for _, e in blocks], "Compare models of the same landmarks.")
    radii = set.intersection(*(set(b.get("sdr", {})) for b, _ in blocks))
    return {
        "split": results[0].split,
        "units": blocks[0][0].get("units", "mm"),
        "errors": kind,
        "radii": sorted(radii, key=_radius),
        "images": int(blocks[0][1].shape[0]),
        "landmarks": int(blocks[0][1].shape[1]),
    }


def comparison_rows(results: Sequence[ModelResult], errors: str = "auto") -> list[dict[str, Any]]:
    """One row per model (after :func:`check_comparable`): ``model``, ``bundle``, ``refined``, ``parameters``
    (global + refinement networks, trainable), ``seconds_per_image`` (CPU, None when not measured), ``images``,
    ``mre``, ``sd``, ``median``, ``max``, ``sdr_<r>`` (fractions, at the radii every report has),
    ``missing_predictions`` and ``units``: the bundles' own figures, copied from their ``metrics.json``."""
    shared = check_comparable(results, errors)
    rows = []
    for result in results:
        block, _ = _block(result, shared["errors"])
        m = result.measurement
        row: dict[str, Any] = {
            "model": result.name,
            "bundle": result.bundle,
            "refined": result.refined,
            "parameters": None if m is None else m.parameters + m.refine_parameters,
            "seconds_per_image": None if m is None else m.seconds_per_image,
            "images": block.get("num_images"),
            "mre": block.get("pe_mean"),
            "sd": block.get("pe_std"),
            "median": block.get("pe_median"),
            "max": block.get("pe_max"),
        }
        row.update({f"sdr_{k}": block["sdr"][k] for k in shared["radii"]})
        row["missing_predictions"] = block.get("num_missing_predictions")
        row["units"] = shared["units"]
        rows.append(row)
    return rows


def _number(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _markdown(rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any], caption: str) -> str:
    from mlm.robustness import markdown_table

    units = shared["units"]
    shown = []
    for row in rows:
        cells = {
            "model": row["model"] + (" (+ refinement)" if row["refined"] else ""),
            "bundle": row["bundle"],
            "parameters": "-" if row["parameters"] is None else f"{row['parameters']:,}",
            "CPU s / image": _number(row["seconds_per_image"], 3),
            "images": row["images"],
            f"MRE ({units})": _number(row["mre"]),
            "SD": _number(row["sd"]),
            "median": _number(row["median"]),
        }
        for key in shared["radii"]:
            value = row[f"sdr_{key}"]
            cells[f"SDR {key}"] = "-" if value is None else f"{100 * value:.1f}%"
        shown.append(cells)
    title = (
        f"Models compared on the {shared['split']} split ({_count(shared['images'], 'image')}, "
        f"{_count(shared['landmarks'], 'landmark')})"
    )
    return markdown_table(shown, title) + "\n" + caption + "\n"


def write_comparison(
    results: Sequence[ModelResult],
    out: str | os.PathLike,
    errors: str = "auto",
    caption: str = "",
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``comparison.md`` (Markdown table and ``caption``), ``comparison.csv`` (:func:`comparison_rows`) and
    ``cumulative_error.png`` (fraction of landmarks with error <= r against r, one curve per model) into ``out``.

    Raises:
        ComparisonError: the models cannot share a table (:func:`check_comparable`).
    """
    from mlm.visualize import plot_cumulative_ipe

    shared = check_comparable(results, errors)
    rows = comparison_rows(results, errors)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    curves = {r.name: _block(r, shared["errors"])[1] for r in results}
    radii = [_radius(k) for k in shared["radii"]]
    unit = "mm (normalised)" if shared["errors"] == "normalized" else shared["units"]
    return {
        "csv": write_metrics_csv(folder / TABLE_CSV, rows),
        "md": atomic_write_text(folder / TABLE_MD, _markdown(rows, shared, caption)),
        "png": plot_cumulative_ipe(
            curves,
            folder / FIGURE,
            radii=radii,
            unit=unit,
            per_image=False,
            title=title or f"{shared['split']}: cumulative point error ({_count(shared['images'], 'image')})",
        ),
    }


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def timing_caption(measurements: Sequence[Measurement]) -> str:
    """The Markdown table's caption: what the parameters and the times are (from the models' measurements)."""
    timed = [m for m in measurements if m.seconds_per_image is not None]
    if timed:
        m = timed[0]
        timing = (
            f"CPU s / image: the median of {_count(m.timed_runs, 'timed run')} (after {m.warmup} untimed) "
            f"over the split's first {_count(m.distinct_images, 'image')}, {_count(m.threads, 'torch thread')}: the "
            "bundle's inferer on the preprocessed image (sliding windows included), plus, with refinement, the "
            "refinement network on one patch per landmark (patch extraction included); reading, preprocessing and "
            "decoding the global heatmaps excluded."
        )
    else:
        timing = "CPU s / image: not measured."
    return (
        "Parameters: trainable parameters of the networks as the bundle builds them (global + refinement); "
        "buffers such as BatchNorm running statistics are not counted. "
        + timing
        + " Errors: the bundles' evaluation reports (metrics.json) on the same images and ground truth; SDR: share "
        "of landmarks with error <= r."
    )


# ---------------------------------------------------------------------------------------------------- workflow
def compare_models(
    specs: Sequence[ModelSpec],
    dataset_dir: str | os.PathLike,
    split: str,
    out: str | os.PathLike,
    configs: Sequence[str] = ("cpu.yaml",),
    overrides: Sequence[tuple[str, str]] = (),
    errors: str = "auto",
    threads: int = 1,
    timing_images: int = 3,
    warmup: int = 1,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate every model on ``split`` of ``dataset_dir`` and write the comparison into ``out``.

    Args:
        specs: the models (unique names).
        dataset_dir: the prepared dataset (a folder holding ``datalist.json``).
        split: the datalist split every model is evaluated on.
        out: the output folder: ``<name>/`` per model (the bundle's report), ``comparison.md``, ``comparison.csv``,
            ``cumulative_error.png``, ``comparison.json`` (rows, measurements, commands).
        configs: overlays of every model after ``inference.yaml`` + ``evaluate.yaml`` (default ``cpu.yaml``).
        overrides: ``(id, text)`` overrides of every model.
        errors: ``"auto"``, ``"plain"`` or ``"normalized"`` (:func:`check_comparable`).
        threads: torch threads of the timing.
        timing_images: images timed per model (0: not timed).
        warmup: untimed forward passes first.
        env: extra environment variables of the bundle runs.

    Returns:
        ``{"rows": ..., "files": {...}, "shared": ...}``.

    Raises:
        ComparisonError: duplicate names, models that cannot share a table.
        RuntimeError: a bundle run failed.
    """
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names):
        raise ComparisonError(f"give at least one model, each with its own name (got {names}).")
    if threads < 1 or timing_images < 0 or warmup < 0:
        raise ComparisonError(
            f"threads must be >= 1 and timing_images, warmup >= 0 (got {threads}, {timing_images}, {warmup})."
        )
    for spec in specs:
        spec.check()
    folder = Path(out).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    truth = ground_truth_fingerprint(dataset_dir, split)
    measurements: dict[str, Measurement] = {}
    texts: dict[str, dict[str, str]] = {}
    for spec in specs:
        texts[spec.name], values = model_overrides(spec, overrides)
        print(f"[{spec.name}] measuring parameters and CPU time ({threads} thread(s))", flush=True)
        m = measure_model(spec, dataset_dir, split, configs, values, timing_images, warmup, threads)
        measurements[spec.name] = m
        seconds = "-" if m.seconds_per_image is None else f"{m.seconds_per_image:.3f} s / image"
        print(f"[{spec.name}] {m.parameters + m.refine_parameters:,} parameters, {seconds}", flush=True)
    results, commands = [], {}
    for spec in specs:
        run_dir, _ = evaluate_model(spec, dataset_dir, split, folder / spec.name, configs, texts[spec.name], truth, env)
        commands[spec.name] = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8")).get("command")
        results.append(read_result(spec, run_dir, split, measurement=measurements[spec.name], ground_truth=truth))
    shared = check_comparable(results, errors)
    files = write_comparison(results, folder, errors, timing_caption(list(measurements.values())))
    rows = comparison_rows(results, errors)
    summary = {
        "dataset_dir": str(Path(dataset_dir).absolute()),
        "split": split,
        "ground_truth_sha256": truth,
        "shared": shared,
        "rows": rows,
        "measurements": {k: vars(v) for k, v in measurements.items()},
        "commands": commands,
    }
    files["json"] = write_metrics_json(folder / "comparison.json", summary)
    return {"rows": rows, "files": files, "shared": shared}
