"""Compare the robustness of several trained models of one bundle on the same test split: one table, one figure.

:func:`compare_robustness` (``scripts/compare_robustness.py``, and the comparison step of
:func:`mlm.bundle.hardening.run_hardening`) trains nothing. For each model (a name and a checkpoint: standard
training, SAT at several eps, AMAT, ...) it runs the bundle's robustness overlay (``inference.yaml`` +
``evaluate.yaml`` [+ ``cpu.yaml``] + ``robustness.yaml``: untargeted L2 PGD at every noise level) with
:func:`mlm.bundle.launch.run_bundle` into ``<out>/<name>/``, or, with ``reuse``, keeps a model's existing
``<out>/<name>/robustness/robustness.json``. It then writes ``<out>/robustness_comparison.csv`` / ``.md`` (one row
per model and level: MRE, SD, median, SDR, and the model's mean MRE over the levels) and
``robustness_comparison.png`` (MRE and SDR against eps, one line per model:
:func:`mlm.robustness.plot_robustness_curves`), and returns the rows with each model's mean MRE over the levels and
its clean MRE (level 0), the numbers the hardening protocol's bars compare
(:func:`mlm.bundle.hardening.hardening_bars`). A run that fails raises a ``RuntimeError`` naming the model, with
the end of the run's output.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlm.bundle.launch import run_bundle
from mlm.reports import write_metrics_csv
from mlm.robustness import markdown_table, plot_robustness_curves
from transforms.io.atomic import atomic_write_text

__all__ = ["compare_robustness"]


def compare_robustness(
    bundle: str,
    models: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    *,
    dataset_dir: str | os.PathLike | None = None,
    infer_split: str | None = None,
    levels: Sequence[float] | None = None,
    iterations: int | None = None,
    max_items: int | None = None,
    cpu: bool = True,
    extra: Sequence[str] = (),
    threads: str | int | None = "2",
    reuse: bool = False,
) -> dict:
    """Run the bundle's robustness overlay on every model and write the comparison into ``out``.

    Args:
        bundle: bundle under ``bundles/`` (e.g. ``"mtunet_ceph"``).
        models: ``{name: checkpoint}``, in the order of the table and the figure's legend; each model's run goes
            to ``<out>/<name>/``.
        out: folder of the runs and of ``robustness_comparison.csv``, ``.md`` and ``.png`` (created).
        dataset_dir: the prepared dataset (None: the bundle's default).
        infer_split: the split the models are attacked on (None: the bundle's default).
        levels: the noise levels (L2 radii; None: the overlay's 0..3).
        iterations: PGD steps (None: the overlay's 100).
        max_items: test images (None: all).
        cpu: add ``cpu.yaml`` (models trained with it; False for the paper-sized configs).
        extra: further ``--key value`` overrides of every run.
        threads: ``OMP_NUM_THREADS`` of the runs (None: inherited).
        reuse: keep a model's existing ``<out>/<name>/robustness/robustness.json`` instead of running it again
            (delete it to re-run).

    Returns:
        ``{"bundle", "out", "rows", "curves", "mean_mre", "clean_mre", "files"}``: the table's rows (one per model
        and level, with ``model`` and ``mean_mre_over_levels``), ``{name: the model's rows}`` from its
        ``robustness.json``, ``{name: mean MRE over the levels}``, ``{name: MRE at level 0}`` (models measured at
        level 0 only) and the paths of the files written (``csv``, ``md``, ``png``).

    Raises:
        RuntimeError: a model's run failed (the message names the model and ends with the end of its output).
        FileNotFoundError: ``bundles/<bundle>`` does not exist.
    """
    models = {name: Path(ckpt).resolve() for name, ckpt in models.items()}
    configs = ["inference.yaml", "evaluate.yaml"] + (["cpu.yaml"] if cpu else []) + ["robustness.yaml"]
    common = [str(arg) for arg in extra]
    if dataset_dir:
        common += ["--dataset_dir", str(Path(dataset_dir).resolve())]
    if infer_split:
        common += ["--infer_split", infer_split]
    if levels is not None:
        common += ["--robustness_levels", "[" + ",".join(f"{float(v):g}" for v in levels) + "]"]
    if iterations is not None:
        common += ["--robustness_iterations", str(int(iterations))]
    if max_items is not None:
        common += ["--max_items", str(int(max_items))]
    env = {"OMP_NUM_THREADS": str(threads)} if threads not in (None, "") else None
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = {}
    table: list[dict] = []
    mean_mre: dict[str, float] = {}
    clean_mre: dict[str, float] = {}
    radius = None
    for name, ckpt in models.items():
        run_dir = out / name
        args = common + ["--ckpt_path", str(ckpt), "--output_dir", str(run_dir)]
        print(f"[{name}] python -m monai.bundle run --config_file {configs} {shlex.join(args)}", flush=True)
        done = run_dir / "robustness" / "robustness.json"
        if reuse and done.is_file():
            print(f"[{name}] reusing {done}", flush=True)
        else:
            result = run_bundle(bundle, configs, args, env=env)
            if result.returncode != 0:
                tail = (result.stdout or "")[-2000:] + (result.stderr or "")[-4000:]
                raise RuntimeError(
                    f"the robustness run of {name} failed (exit {result.returncode}; output in {run_dir}); "
                    f"the end of its output:\n{tail}"
                )
        rows = json.loads(done.read_text(encoding="utf-8"))["rows"]
        curves[name] = rows
        sdr_keys = [k for k in rows[0] if k.startswith("sdr_")]
        radius = radius if radius is not None else (float(sdr_keys[0][4:]) if sdr_keys else None)
        mean_mre[name] = sum(r["mre"] for r in rows) / len(rows)
        clean = [r["mre"] for r in rows if float(r["eps"]) == 0.0]
        if clean:
            clean_mre[name] = clean[0]
        table += [{"model": name, **r, "mean_mre_over_levels": mean_mre[name]} for r in rows]
        print(f"[{name}] MRE per level: {[round(r['mre'], 3) for r in rows]} (mean {mean_mre[name]:.3f})", flush=True)
    files = {
        "csv": write_metrics_csv(out / "robustness_comparison.csv", table),
        "md": atomic_write_text(
            out / "robustness_comparison.md", markdown_table(table, f"{bundle}: robustness under L2 PGD")
        ),
        "png": plot_robustness_curves(curves, out / "robustness_comparison.png", radius=radius),
    }
    print(f"wrote {files['md']} and {files['png']}")
    return {
        "bundle": bundle,
        "out": out,
        "rows": table,
        "curves": curves,
        "mean_mre": mean_mre,
        "clean_mre": clean_mre,
        "files": files,
    }
