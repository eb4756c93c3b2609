"""Coarse-to-fine training recipes on real 2D datasets (``scripts/train_real.py``): one command per dataset.

A recipe prepares the dataset with ``scripts/prepare_dataset.py``, holds out the last images of the training split
for validation, trains the global stage (``train.yaml`` + ``cpu.yaml``, or the Localization U-Net with
``unet.yaml``), measures the global stage's errors on the validation images, trains the refinement stage
(``refine.yaml``) with patch-centre offsets drawn like those errors, evaluates both stages on the held-out test
splits with the dataset's protocol and writes plain network state dicts plus a JSON of the figures reached and the
data seen. Every step is a printed ``python -m monai.bundle run`` command; a finished step leaves
``<step>/done.json`` and is skipped when the recipe runs again, an unfinished training resumes from its checkpoint
(exactly: see ``mlm.handlers.ResumeFromCheckpoint``), so a recipe can be run in legs, each killed at any moment.

Run folder layout (``OUT``)::

    data/                   prepared datalist (+ data_<ground truth>/ for other ground truths)
    global/models/          global stage checkpoints, model.pt;  global/train/ its validation reports
    global/validation/      the global stage on the validation images: the refinement's offset sigma
    refine/models/          refinement stage checkpoints, model.pt
    eval/<split>[_<gt>]/    the refined landmarks' report; global/ inside it: the global stage's
    weights/                global.pt, refine.pt (plain state dicts), figures.json
    recipe.json             the commands run, the minutes each took, the figures
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from mlm.bundle.checkpoints import atomic_torch_save
from mlm.bundle.launch import REPO_DIR, read_metrics, run_bundle_step
from mlm.data.datalist import datalist_split_names, load_datalist, read_datalist_json, write_datalist
from mlm.reports import read_point_errors, write_metrics_json

__all__ = [
    "RECIPES",
    "Recipe",
    "RecipeRun",
    "metrics_summary",
    "percent",
    "prepare_ground_truth",
    "run_recipe",
    "value_at",
]


@dataclass(frozen=True)
class Recipe:
    """A dataset's recipe.

    Attributes:
        dataset: ``prepare_dataset.py`` subcommand (``isbi2015``, ``hand_xray``).
        bundle: bundle folder under ``bundles/``.
        ground_truths: ``{name: extra prepare_dataset.py arguments}``; the first is the main one.
        validation_images: images at the end of the training split held out for validation.
        eval_splits: splits of the prepared datalist the recipe reports (never used for any choice).
        global_iterations / refine_iterations / val_interval: training lengths (iterations).
        refine_overrides: refinement overrides (``--refine_spacing``...); the offset sigma comes from the validation.
        published: the papers' figures the table stands next to (text lines).
    """

    dataset: str
    bundle: str
    ground_truths: dict[str, list[str]]
    validation_images: int
    eval_splits: tuple[str, ...]
    global_iterations: int = 4000
    refine_iterations: int = 3000
    val_interval: int = 250
    refine_overrides: tuple[str, ...] = ()
    published: tuple[str, ...] = field(default_factory=tuple)


RECIPES: dict[str, Recipe] = {
    "isbi2015": Recipe(
        dataset="isbi2015",
        bundle="scn_ceph",
        ground_truths={"average": ["--annotation", "average"], "senior": ["--annotation", "senior"]},
        validation_images=15,
        eval_splits=("test1", "test2"),
        published=(
            "SCN (Payer et al. 2019), mean of Test1 and Test2: SDR 2 mm 73.3%, 4 mm 89.8%",
            "Lindner et al. 2016, Test1: MRE 1.67 mm, SDR 2 mm 74.95%",
            "FARNet (Ao et al. 2022, GPU, 800x640): Test1 1.12 mm / SDR 2 mm 88.0%, Test2 1.42 mm / 77.0%",
        ),
    ),
    # a user's own data: a datalist JSON with a training split (and usually a test split); --bundle picks the bundle
    "datalist": Recipe(
        dataset="datalist",
        bundle="scn_ceph",
        ground_truths={"given": []},
        validation_images=0,
        eval_splits=("test",),
    ),
    "hand_xray": Recipe(
        dataset="hand_xray",
        bundle="scn_hand_xray",
        ground_truths={"payer": []},
        validation_images=9,
        eval_splits=("validation",),
        published=("SCN (Payer et al. 2019, 600 training images per fold, 512x512): median 0.43 mm, 0.66 +- 0.74 mm",),
    ),
}

#: split names the recipe adds to the prepared datalist: training minus the validation images, and those images
FIT_SPLIT, VALIDATION_SPLIT = "recipe_fit", "recipe_validation"


def add_validation_split(datalist_path: Path, validation_images: int) -> tuple[int, int]:
    """Split the datalist's ``training`` items into :data:`FIT_SPLIT` and the last ``validation_images`` as
    :data:`VALIDATION_SPLIT` (rewritten in place, atomically). Returns the two sizes."""
    data = read_datalist_json(datalist_path)
    training = data["training"]
    if not 0 < validation_images < len(training):
        raise ValueError(f"{datalist_path}: cannot hold out {validation_images} of {len(training)} training images")
    data[FIT_SPLIT], data[VALIDATION_SPLIT] = training[:-validation_images], training[-validation_images:]
    write_datalist(datalist_path, data, overwrite=True)
    return len(data[FIT_SPLIT]), len(data[VALIDATION_SPLIT])


class RecipeRun:
    """The steps of one recipe run in ``out``; a step already done (``<folder>/done.json``) is skipped."""

    def __init__(self, recipe: Recipe, out: Path, model: str, threads: int | None = None):
        self.recipe, self.out, self.model = recipe, out, model
        self.extra_configs = ["unet.yaml"] if model == "unet" else []
        self.threads = threads
        self.log = self._read_log()

    def _read_log(self) -> dict:
        path = self.out / "recipe.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"steps": {}}

    def _save_log(self) -> None:
        write_metrics_json(self.out / "recipe.json", self.log)

    def claim_settings(self, settings: dict) -> None:
        """Record ``settings`` in ``recipe.json``; a folder holding a run of other settings is refused.

        Raises:
            ValueError: ``recipe.json`` records other settings (the message names both and the fix).
        """
        settings = json.loads(json.dumps(settings))  # as recipe.json stores them (tuples as lists)
        earlier = self.log.get("settings")
        if earlier is not None and earlier != settings:
            raise ValueError(
                f"{self.out} holds a run of another recipe setting ({earlier}, this command: {settings}): resume it "
                "with its own options or use another --out."
            )
        self.log["settings"] = settings
        self._save_log()

    def step(self, name: str, folder: Path, run) -> dict:
        """Run ``run()`` (returning the commands it ran) unless ``folder/done.json`` exists; record its minutes."""
        done = folder / "done.json"
        if done.is_file():
            print(f"\n[{name}] done earlier ({done})", flush=True)
            return json.loads(done.read_text(encoding="utf-8"))
        print(f"\n[{name}]", flush=True)
        t0 = time.perf_counter()
        commands = run()
        record = {"commands": commands, "minutes": round((time.perf_counter() - t0) / 60, 2)}
        folder.mkdir(parents=True, exist_ok=True)
        write_metrics_json(done, record)
        self.log["steps"][name] = record
        self._save_log()
        return record

    def bundle(self, configs: Sequence[str], overrides: Sequence[str], log: Path) -> str:
        env = {"OMP_NUM_THREADS": str(self.threads)} if self.threads else None
        log.parent.mkdir(parents=True, exist_ok=True)
        return run_bundle_step(self.recipe.bundle, configs, overrides, log, env=env)


def copy_datalist(source: Path, out: Path) -> Path:
    """Copy a user's datalist into ``out/datalist.json`` with every path made absolute (the source folder's)."""
    data = read_datalist_json(source)
    for split in datalist_split_names(data):
        data[split] = load_datalist(source, split)
    out.mkdir(parents=True, exist_ok=True)
    return write_datalist(out / "datalist.json", data, overwrite=True)


def held_out_count(recipe: Recipe, training_images: int) -> int:
    """Validation images held out of the training split: the recipe's count, else 10% (at least 1)."""
    return recipe.validation_images or max(1, math.ceil(0.1 * training_images))


def prepare_ground_truth(recipe: Recipe, root: Path, out: Path, ground_truth: str) -> list[str]:
    """Prepare ``recipe``'s dataset at ``root`` into ``out`` with one ground truth (a user's datalist is copied) and
    hold out the validation images; returns the commands run (for ``recipe.json``)."""
    if recipe.dataset == "datalist":
        copy_datalist(root, out)
        print(f"\ncopied {root} to {out / 'datalist.json'} (absolute paths)", flush=True)
        lines = [f"copy {root} -> {out / 'datalist.json'}"]
        count = held_out_count(recipe, len(read_datalist_json(out / "datalist.json")["training"]))
        fit, val = add_validation_split(out / "datalist.json", count)
        print(f"  training split: {fit} images to fit, the last {val} held out for validation", flush=True)
        return lines
    cmd = [sys.executable, "scripts/prepare_dataset.py", recipe.dataset, str(root), str(out)]
    cmd += [*recipe.ground_truths[ground_truth], "--overwrite"]
    line = "python " + shlex.join(cmd[1:])
    print(f"\n$ {line}", flush=True)
    subprocess.run(cmd, cwd=REPO_DIR, check=True)
    fit, val = add_validation_split(out / "datalist.json", held_out_count(recipe, 0))
    print(f"  training split: {fit} images to fit, the last {val} held out for validation", flush=True)
    return [line]


def offset_sigma_from_report(report_dir: Path, spatial_dims: int = 2, outlier_factor: float = 5.0) -> float:
    """The isotropic Gaussian sigma (mm, px without a spacing) of a global stage's typical errors in its report folder:
    ``sqrt(mean(|e|^2) / D)`` over the landmarks of every image (``errors_per_image.csv``) with a prediction, leaving
    out gross failures (errors above ``outlier_factor`` x the median): a refinement patch cannot repair those, and
    one 300 px failure among 300 errors of 5 px would double the sigma and so blur every training patch.

    Raises:
        ValueError: no landmark of the report has a finite error.
    """
    errors = read_point_errors(report_dir / "errors_per_image.csv")
    errors = errors[np.isfinite(errors)]
    if errors.size == 0:
        raise ValueError(f"{report_dir}: no finite error in errors_per_image.csv (no landmark was predicted)")
    typical = errors[errors <= outlier_factor * np.median(errors)]
    return float(math.sqrt(np.mean(typical**2) / spatial_dims))


def export_weights(checkpoint: Path, target: Path) -> Path:
    """Write the network state dict of a training checkpoint (``{"model": ..., "optimizer": ...}``) to ``target``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(state, target)


def metrics_summary(metrics: dict) -> dict:
    """The figures of an evaluation's ``metrics.json`` that the recipes' tables and ``figures.json`` keep."""
    keys = ("num_images", "units", "pe_mean", "pe_std", "pe_median", "pe_max", "sdr", "normalized")
    return {k: metrics[k] for k in keys if k in metrics}


def run_recipe(
    name: str,
    root: Path,
    out: Path,
    model: str = "scn",
    global_iterations: int | None = None,
    refine_iterations: int | None = None,
    val_interval: int | None = None,
    threads: int | None = None,
    stop_after: str | None = None,
    bundle: str | None = None,
    eval_splits: Sequence[str] | None = None,
) -> dict:
    """Run (or resume) recipe ``name`` on the dataset at ``root`` into ``out``; returns the figures.

    Args:
        name: a key of :data:`RECIPES`.
        root: the dataset in its original layout (e.g. ``../shared/data/isbi2015``).
        out: the run folder (created; reused by a later call to resume).
        model: ``"scn"`` or ``"unet"`` (the Localization U-Net, ``unet.yaml``) for the global stage.
        global_iterations / refine_iterations / val_interval: override the recipe's lengths.
        threads: ``OMP_NUM_THREADS`` of the bundle runs (None: the default).
        stop_after: ``"global"`` stops after the global stage's training (a leg of a longer run).
        bundle: the bundle (default: the recipe's; ``scn_ceph`` for ``"datalist"``).
        eval_splits: the splits to evaluate (default: the recipe's).
    """
    recipe = RECIPES[name]
    if bundle is not None or eval_splits is not None:
        recipe = replace(recipe, bundle=bundle or recipe.bundle, eval_splits=tuple(eval_splits or recipe.eval_splits))
    if model not in ("scn", "unet"):
        raise ValueError(f"model must be 'scn' or 'unet', got {model!r}")
    g_it = global_iterations or recipe.global_iterations
    r_it = refine_iterations or recipe.refine_iterations
    v_it = val_interval or recipe.val_interval
    out.mkdir(parents=True, exist_ok=True)
    run = RecipeRun(recipe, out, model, threads)
    run.claim_settings({"recipe": name, "bundle": recipe.bundle, "model": model, "iterations": [g_it, r_it, v_it]})
    gts = list(recipe.ground_truths)
    data = {gt: out / ("data" if i == 0 else f"data_{gt}") for i, gt in enumerate(gts)}
    for gt in gts:
        run.step(f"prepare ({gt})", data[gt], lambda gt=gt: prepare_ground_truth(recipe, root, data[gt], gt))
    main_data = data[gts[0]]
    configs = ["cpu.yaml", *run.extra_configs]
    train_common = ["--dataset_dir", str(main_data), "--train_split", FIT_SPLIT, "--val_split", VALIDATION_SPLIT]
    train_common += ["--val_interval", str(v_it)]

    g = out / "global"
    run.step(
        "global training",
        g / "models",
        lambda: [
            run.bundle(
                ["train.yaml", *configs],
                train_common
                + ["--num_iterations", str(g_it), "--ckpt_dir", str(g / "models"), "--output_dir", str(g / "train")],
                g / "train.log",
            )
        ],
    )
    if stop_after == "global":
        return {}
    g_val = g / "validation"
    g_ckpt = g / "models" / "model.pt"
    run.step(
        "global stage on the validation images",
        g_val,
        lambda: [
            run.bundle(
                ["inference.yaml", "evaluate.yaml", *configs],
                ["--dataset_dir", str(main_data), "--infer_split", VALIDATION_SPLIT, "--ckpt_path", str(g_ckpt)]
                + ["--output_dir", str(g_val)],
                g / "validation.log",
            )
        ],
    )
    sigma = offset_sigma_from_report(g_val)
    units = read_metrics(g_val).get("units", "mm")
    print(f"  global stage's errors on the validation images: offset sigma {sigma:.2f} {units}", flush=True)
    # pixel-only data: the bundle's patch spacing (mm) means nothing; patches of sigma / 6 px per voxel cover about
    # +-5 sigma with 64 voxels (what 0.25 mm patches do for a 1.6 mm cephalogram global stage)
    # (at most 4 px: beyond that the global stage failed and patches of the whole image would only be slow)
    patch_overrides = ["--refine_spacing", f"{min(sigma / 6, 4.0):.4f}"] if units == "px" else []
    patch_overrides += list(recipe.refine_overrides)
    r = out / "refine"
    refine_overrides = ["--refine_offset_sigma", f"{sigma:.3f}", "--refine_max_offset", f"{3 * sigma:.3f}"]
    run.step(
        "refinement training",
        r / "models",
        lambda: [
            run.bundle(
                ["train.yaml", *configs, "refine.yaml"],
                train_common
                + ["--num_iterations", str(r_it), "--ckpt_dir", str(r / "models"), "--output_dir", str(r / "train")]
                + [*patch_overrides, *refine_overrides],
                r / "train.log",
            )
        ],
    )
    r_ckpt = r / "models" / "model.pt"
    figures: dict = {}
    for gt in gts:
        for split in recipe.eval_splits:
            key = split if gt == gts[0] else f"{split}_{gt}"
            e = out / "eval" / key
            run.step(
                f"evaluation on {split} ({gt})",
                e,
                lambda e=e, gt=gt, split=split, key=key: [
                    run.bundle(
                        ["inference.yaml", "evaluate.yaml", *configs, "refine_inference.yaml"],
                        ["--dataset_dir", str(data[gt]), "--infer_split", split, "--ckpt_path", str(g_ckpt)]
                        + ["--refine_ckpt_path", str(r_ckpt), "--output_dir", str(e), *patch_overrides],
                        out / "eval" / f"{key}.log",
                    )
                ],
            )
            figures[key] = {
                "ground_truth": gt,
                "global": metrics_summary(read_metrics(e / "global")),
                "refined": metrics_summary(read_metrics(e)),
            }
    weights = out / "weights"
    export_weights(g_ckpt, weights / "global.pt")
    export_weights(r_ckpt, weights / "refine.pt")
    fit = read_datalist_json(main_data / "datalist.json")
    summary = {
        "recipe": name,
        "bundle": recipe.bundle,
        "model": model,
        "configs": configs,
        "iterations": {"global": g_it, "refine": r_it, "val_interval": v_it},
        "refine_offset_sigma": sigma,
        "refine_overrides": patch_overrides,
        "data": {
            "root": str(root),
            "fit_ids": [item["id"] for item in fit[FIT_SPLIT]],
            "validation_ids": [item["id"] for item in fit[VALIDATION_SPLIT]],
            "ground_truths": gts,
        },
        "figures": figures,
        "training_minutes": {k: v["minutes"] for k, v in run.log["steps"].items() if "training" in k},
        "published": list(recipe.published),
        "bars": recipe_bars(name, figures),
    }
    write_metrics_json(weights / "figures.json", summary)
    run.log["summary"] = summary
    run._save_log()
    return summary


def percent(x) -> str:
    """A fraction as a table's percentage (``-`` when absent)."""
    return "-" if x is None else f"{100 * x:.1f}%"


def value_at(values: dict, radius: float):
    """The entry of a ``{"2": ..., "2.5": ...}`` radius table at ``radius`` (None when absent)."""
    return next((v for k, v in values.items() if math.isclose(float(k), radius)), None)


def recipe_bars(name: str, figures: dict) -> list[dict]:
    """Issue 13's accuracy bars for a recipe's refined figures: ISBI 2015 Test1 (doctors' mean) MRE <= 1.5 mm and
    SDR 2 mm >= 75%; hands: wrist-normalised PE median <= 0.8 mm and no error above 10 mm. ``[]`` for other recipes.

    Returns:
        ``[{"bar": text, "value": text, "passed": bool}]``.
    """
    bars = []
    if name == "isbi2015" and "test1" in figures:
        m = figures["test1"]["refined"]
        sdr2 = value_at(m["sdr"], 2.0)
        bars.append({"bar": "Test1 MRE <= 1.5 mm", "value": f"{m['pe_mean']:.2f} mm", "passed": m["pe_mean"] <= 1.5})
        bars.append(
            {"bar": "Test1 SDR 2 mm >= 75%", "value": percent(sdr2), "passed": sdr2 is not None and sdr2 >= 0.75}
        )
    if name == "hand_xray" and "validation" in figures:
        n = figures["validation"]["refined"]["normalized"]
        over = value_at(n["outliers"], 10.0)
        bars.append(
            {"bar": "PE median <= 0.8 mm", "value": f"{n['pe_median']:.2f} mm", "passed": n["pe_median"] <= 0.8}
        )
        bars.append({"bar": "no error above 10 mm", "value": f"{over} above", "passed": over == 0})
    return bars


def recipe_table(summary: dict) -> str:
    """Markdown table of a recipe's figures (:func:`run_recipe`'s summary): both stages per evaluated split, in the
    dataset's protocol, followed by the published figures."""
    lines = []
    hand = summary["recipe"] == "hand_xray"
    if hand:
        lines.append(
            "| split (ground truth) | stage | images | PE median | PE mean +- SD | #O 2 mm | #O 4 mm | #O 10 mm |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
    else:
        first = next(iter(summary["figures"].values()), {}).get("refined", {})
        units = first.get("units", "mm")
        # the radii the reports hold (mm data: 2, 2.5, 3, 4 mm; pixel-only data: the px radii)
        radii = sorted(float(r) for r in first.get("sdr", {}))[:4] or [2.0, 2.5, 3.0, 4.0]
        shown = " / ".join(f"{r:g}" for r in radii)
        lines.append(f"| split (ground truth) | stage | images | MRE +- SD ({units}) | median | SDR {shown} {units} |")
        lines.append("|---|---|---|---|---|---|")
    for key, fig in summary["figures"].items():
        for stage in ("global", "refined"):
            m = fig[stage]
            label = f"{key} ({fig['ground_truth']})"
            if hand:
                n = m["normalized"]
                outliers = " | ".join(str(value_at(n["outliers"], r)) for r in (2.0, 4.0, 10.0))
                lines.append(
                    f"| {label} | {stage} | {m['num_images']} | {n['pe_median']:.2f} mm | "
                    f"{n['pe_mean']:.2f} +- {n['pe_std']:.2f} mm | {outliers} |"
                )
            else:
                sdr = " / ".join(percent(v) for _, v in sorted(m["sdr"].items(), key=lambda kv: float(kv[0]))[:4])
                lines.append(
                    f"| {label} | {stage} | {m['num_images']} | {m['pe_mean']:.2f} +- {m['pe_std']:.2f} | "
                    f"{m['pe_median']:.2f} | {sdr} |"
                )
    lines += ["", "Published:", *[f"- {p}" for p in summary["published"]]]
    bars = summary.get("bars", [])
    if bars:
        lines += ["", *[f"{'PASS' if b['passed'] else 'FAIL'}: {b['bar']} ({b['value']})" for b in bars]]
    return "\n".join(lines)
