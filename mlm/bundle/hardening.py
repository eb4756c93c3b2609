"""Harden a trained model by adversarial fine-tuning and compare the results: issue 15's protocol.

From one trained checkpoint of a bundle, :func:`run_hardening` fine-tunes, each for the same number of iterations
and from the same weights (``--init_ckpt``, ``configs/train.yaml``):

- ``standard``: clean training continued (the fair baseline: as many extra iterations as the others);
- ``sat_eps<e>``: standard adversarial training (``configs/train_sat.yaml``) at each radius ``e``;
- ``amat``: adaptive-margin adversarial training (``configs/train_amat.yaml``) up to ``max_margin``;

all with the same PGD steps, then evaluates every model with the bundle's ``robustness`` overlay (untargeted L2 PGD
at each noise level, :func:`mlm.bundle.robustness_comparison.compare_robustness`) on one test split, and checks the
issue's bars (:func:`hardening_bars`): AMAT's mean MRE over the noise levels is at most the best SAT's, and AMAT's
clean MRE is within 5% of standard training's. Every step is skipped when its result exists (a finished fine-tuning
has its ``done.json``; a resumed fine-tuning continues from its checkpoint, a model's robustness report is reused),
so the protocol runs in legs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlm.bundle.launch import run_bundle_step
from mlm.bundle.robustness_comparison import compare_robustness
from transforms.io.atomic import atomic_write_text

__all__ = ["hardening_bars", "hardening_models", "run_hardening"]


def hardening_models(sat_eps: Sequence[float], max_margin: float) -> dict[str, tuple[str | None, list[str]]]:
    """``{name: (overlay or None, overrides)}`` of the fine-tuned models: standard, one SAT per eps, AMAT."""
    models: dict[str, tuple[str | None, list[str]]] = {"standard": (None, [])}
    for eps in sat_eps:
        models[f"sat_eps{float(eps):g}"] = ("train_sat.yaml", ["--adversarial_eps", f"{float(eps):g}"])
    models["amat"] = ("train_amat.yaml", ["--amat_max_margin", f"{float(max_margin):g}"])
    return models


def hardening_bars(
    mean_mre: Mapping[str, float], clean_mre: Mapping[str, float], clean_tolerance: float = 0.05
) -> list[dict]:
    """The issue's bars from each model's mean MRE over the noise levels and its clean MRE (level 0).

    Returns two rows ``{"bar", "measured", "passed"}``: AMAT's mean MRE <= the best SAT's; AMAT's clean MRE <=
    (1 + ``clean_tolerance``) x standard training's.
    """
    sats = {k: v for k, v in mean_mre.items() if k.startswith("sat")}
    if "amat" not in mean_mre or not sats or "standard" not in clean_mre:
        raise ValueError(f"hardening_bars: need standard, amat and at least one sat model, got {sorted(mean_mre)}.")
    best = min(sats, key=sats.get)
    ratio = clean_mre["amat"] / clean_mre["standard"]
    return [
        {
            "bar": f"AMAT mean MRE over the noise levels <= the best SAT's ({best})",
            "measured": f"{mean_mre['amat']:.3f} vs {sats[best]:.3f}",
            "passed": bool(mean_mre["amat"] <= sats[best]),
        },
        {
            "bar": f"AMAT clean MRE within {clean_tolerance:.0%} of standard training's",
            "measured": f"{clean_mre['amat']:.3f} vs {clean_mre['standard']:.3f} ({ratio:.3f}x)",
            "passed": bool(ratio <= 1.0 + clean_tolerance),
        },
    ]


def run_hardening(
    bundle: str,
    init_ckpt: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    test_split: str = "test1",
    iterations: int = 300,
    val_interval: int = 100,
    pgd_iterations: int = 20,
    sat_eps: Sequence[float] = (1.0, 2.0),
    max_margin: float = 3.0,
    levels: Sequence[float] | None = None,
    robustness_iterations: int | None = None,
    max_items: int | None = None,
    cpu: bool = True,
    threads: int | None = None,
    extra: Sequence[str] = (),
) -> dict:
    """Fine-tune the models of :func:`hardening_models` from ``init_ckpt``, compare their robustness, check the bars.

    Args:
        bundle: bundle under ``bundles/`` (e.g. ``"mtunet_ceph"``).
        init_ckpt: the trained model every fine-tuning starts from (training checkpoint or plain state dict).
        dataset_dir: the prepared dataset (training split to fine-tune on, validation split, ``test_split``).
        out: run folder: ``<name>/models`` and ``<name>/train.log`` per model, ``robustness/`` (the comparison),
            ``hardening.json`` (settings, minutes, mean MREs and bars).
        test_split: the split the robustness comparison runs on.
        iterations, val_interval: fine-tuning length and validation interval of every model.
        pgd_iterations: PGD steps of SAT and AMAT (the papers' 20; fewer for a CPU).
        sat_eps: L2 radii of the SAT models; max_margin: AMAT's eps_max.
        levels, robustness_iterations, max_items: the comparison's noise levels, PGD steps and test images (None:
            the overlay's defaults and every image).
        cpu: add ``cpu.yaml`` (the CPU-sized model the checkpoint was trained with).
        threads: ``OMP_NUM_THREADS`` of the runs (None: inherited).
        extra: further ``--key value`` overrides of every run (fine-tunings and robustness runs alike, e.g. the
            geometry the checkpoint was trained with).

    Returns:
        the content of ``hardening.json``.

    Raises:
        FileNotFoundError: ``init_ckpt`` does not exist.
        RuntimeError: a fine-tuning or a robustness run failed.
    """
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    init_ckpt = Path(init_ckpt).expanduser().resolve()
    if not init_ckpt.is_file():
        raise FileNotFoundError(f"run_hardening: the trained model {init_ckpt} does not exist.")
    data = Path(dataset_dir).expanduser().resolve()
    env = {"OMP_NUM_THREADS": str(threads)} if threads else None
    base = ["train.yaml"] + (["cpu.yaml"] if cpu else [])
    minutes: dict[str, float] = {}
    checkpoints: dict[str, Path] = {}
    for name, (overlay, overrides) in hardening_models(sat_eps, max_margin).items():
        folder = out / name
        folder.mkdir(exist_ok=True)
        done = folder / "done.json"
        checkpoints[name] = folder / "models" / "model.pt"
        if done.is_file():
            minutes[name] = json.loads(done.read_text(encoding="utf-8"))["minutes"]
            continue
        args = [
            "--dataset_dir", str(data),
            "--init_ckpt", str(init_ckpt),
            "--ckpt_dir", str(folder / "models"),
            "--output_dir", str(folder / "eval"),
            "--num_iterations", str(int(iterations)),
            "--val_interval", str(int(val_interval)),
        ]  # fmt: skip
        if overlay is not None:
            args += ["--adversarial_iterations", str(int(pgd_iterations))]
        args += [*overrides, *extra]
        t0 = time.perf_counter()
        run_bundle_step(bundle, base + ([overlay] if overlay else []), args, folder / "train.log", env=env)
        minutes[name] = (time.perf_counter() - t0) / 60.0
        atomic_write_text(done, json.dumps({"minutes": minutes[name], "args": args}, indent=1))
    # the comparison (mlm.bundle.robustness_comparison), every model on the same test images
    if levels is not None:  # level 0 (the clean MRE) is always measured
        levels = sorted({0.0, *(float(v) for v in levels)})
    comparison = compare_robustness(
        bundle,
        checkpoints,
        out / "robustness",
        dataset_dir=data,
        infer_split=test_split,
        levels=levels,
        iterations=robustness_iterations,
        max_items=max_items,
        cpu=cpu,
        extra=[str(arg) for arg in extra],
        threads=threads,
        reuse=True,
    )
    mean_mre = comparison["mean_mre"]
    clean_mre = {name: comparison["clean_mre"].get(name, float("nan")) for name in checkpoints}
    summary = {
        "bundle": bundle,
        "init_ckpt": str(init_ckpt),
        "iterations": int(iterations),
        "pgd_iterations": int(pgd_iterations),
        "sat_eps": [float(e) for e in sat_eps],
        "max_margin": float(max_margin),
        "test_split": test_split,
        "fine_tuning_minutes": minutes,
        "mean_mre_over_levels": mean_mre,
        "clean_mre": clean_mre,
        "bars": hardening_bars(mean_mre, clean_mre),
    }
    atomic_write_text(out / "hardening.json", json.dumps(summary, indent=1))
    return summary
