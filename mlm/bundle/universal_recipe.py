"""The GU2Net universal model on real data against single-domain GU2Nets at the same budget, one resumable command
(``python scripts/train_real.py universal --out OUT``).

The recipe prepares the three domains of ``bundles/gu2net_universal`` (head: ISBI 2015 with the doctors' mean as
ground truth, the last 15 training images held out for validation; hand: the Digital Hand Atlas with Payer's
annotations, 9 held out; chest: a prepared datalist or, by default, the chest PHANTOM, since no chest images are
available here), trains the universal model (``train.yaml`` + ``cpu.yaml`` + ``universal.yaml``: batches of one
domain each, interleaved by :class:`mlm.bundle.DomainBlockSampler`), evaluates it per domain on the held-out test
splits (head Test1 / Test2 in mm, hand the 21 validation images with wrist-normalised errors, chest test in px), then
trains one single-domain GU2Net per domain (``domain.yaml``) for exactly as many iterations as the universal run gave
that domain's batches (:func:`domain_block_counts`), evaluates it the same way and writes the comparison: per domain
and split MRE +- SD, median and SDR of both, the parameter counts, iterations and minutes of every model.

Every step is a printed ``python -m monai.bundle run`` command run through :class:`mlm.bundle.recipes.RecipeRun`:
a finished step leaves ``<folder>/done.json`` and is skipped when the command runs again, an unfinished training
resumes from its checkpoint, so the recipe can be run in legs (``--stop-after universal``) and killed at any moment.

Run folder layout (``OUT``)::

    data/<domain>/                    prepared datalist of each domain (recipe_fit / recipe_validation splits)
    universal/models/                 the universal model's checkpoints, model.pt; universal/train/ its validation
    universal/eval/<domain>_<split>/  its evaluation report (metrics.json) per domain and split
    single/<domain>/models/           a single-domain GU2Net's checkpoints; single/<domain>/eval/<split>/ its reports
    weights/                          universal.pt, <domain>.pt (plain state dicts), figures.json
    recipe.json                       the settings, the commands run, the minutes each took, the figures
"""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from mlm.bundle.domains import DomainBlockSampler, merge_settings
from mlm.bundle.launch import BUNDLES_DIR, REPO_DIR, read_metrics
from mlm.bundle.recipes import (
    FIT_SPLIT,
    RECIPES,
    VALIDATION_SPLIT,
    Recipe,
    RecipeRun,
    add_validation_split,
    copy_datalist,
    export_weights,
    held_out_count,
    metrics_summary,
    percent,
    prepare_ground_truth,
    value_at,
)
from mlm.data.datalist import datalist_split_names, read_datalist_json
from mlm.reports import write_metrics_json

__all__ = [
    "BUNDLE",
    "DOMAINS",
    "VARIANTS",
    "DomainSource",
    "bundle_domain_names",
    "check_extra",
    "default_sources",
    "domain_block_counts",
    "parse_domain_overrides",
    "run_universal_recipe",
    "scaled_step_iterations",
    "state_dict_parameters",
    "universal_table",
]

BUNDLE = "gu2net_universal"
#: the domains of the bundle's configs/domains.yaml, in its order (domain k of the universal model is DOMAINS[k])
DOMAINS = ("head", "hand", "chest")
#: ``--network_def#variant`` values: GU2Net and the paper's Table 2 ablations
VARIANTS = ("gu2net", "local_only", "global_only", "shared_unet")
#: the authors' cyclic learning rate: a half cycle of 2000 iterations in a training of 21 700 (100 epochs)
PAPER_STEP_ITERATIONS, PAPER_ITERATIONS = 2000, 21700
#: the bundle's stream seed (train.yaml ``seed``): the DomainBlockSampler's block order
DEFAULT_SEED = 0
DEFAULT_ISBI = REPO_DIR.parent / "shared" / "data" / "isbi2015"
DEFAULT_HAND = REPO_DIR.parent / "shared" / "data" / "dha_hand_xray_half"
#: bundle overrides the recipe sets itself (``--extra`` may not give them)
RESERVED_OVERRIDES = (
    "--num_iterations",
    "--val_interval",
    "--batch_size",
    "--domain",
    "--domain_names",
    "--domain_overrides",
    "--universal",
    "--ckpt_dir",
    "--ckpt_path",
    "--output_dir",
    "--infer_split",
    "--max_train_items",
    "--lr_scheduler#step_iterations",
    "--network_def#variant",
)
#: domain keys the recipe sets itself (``--domain-overrides`` may not give them)
RESERVED_DOMAIN_KEYS = ("dataset_dir", "train_split", "val_split")
#: the table's protocol per domain: which errors (plain, or the hand's wrist-normalised ones) and the SDR radii
DOMAIN_PROTOCOL: dict[str, tuple[str, tuple[float, ...]]] = {
    "head": ("plain", (2.0, 2.5, 3.0, 4.0)),
    "hand": ("normalized", (2.0, 4.0, 10.0)),
    "chest": ("plain", (3.0, 6.0, 9.0)),
}
#: the published figures the table stands next to: GU2Net's Table 1 is not in shared/docs/METHODS.md, so none are
#: quoted (never invent them)
PUBLISHED = ("paper: see Zhu et al. 2021 Table 1",)
PHANTOM_NOTE = (
    "chest: PHANTOM data (scripts/generate_phantoms.py chest; no chest X-rays are available here): its figures say "
    "nothing about real chest images"
)


@dataclass(frozen=True)
class DomainSource:
    """Where one domain's data comes from.

    Attributes:
        domain: ``head``, ``hand`` or ``chest``.
        kind: ``isbi2015`` / ``hand_xray`` (the dataset's original layout at ``path``, prepared with
            ``scripts/prepare_dataset.py``), ``prepared`` (a prepared datalist folder or JSON at ``path``) or
            ``phantom`` (the chest phantom, generated).
        path: the dataset root, datalist folder or file (None for the phantom).
        eval_splits: the splits the models are evaluated on (never used for any choice).
    """

    domain: str
    kind: str
    path: Path | None
    eval_splits: tuple[str, ...]

    @property
    def is_phantom(self) -> bool:
        return self.kind == "phantom"

    def describe(self) -> str:
        """``kind:path`` (``phantom`` alone): what ``recipe.json``'s settings record."""
        return "phantom" if self.path is None else f"{self.kind}:{self.path}"


def default_sources(
    isbi: Path | None = None,
    hand: Path | None = None,
    chest: Path | None = None,
    head_prepared: Path | None = None,
    hand_prepared: Path | None = None,
) -> dict[str, DomainSource]:
    """The domains' data: ISBI 2015 at ``isbi`` (Test1 and Test2), the Digital Hand Atlas at ``hand`` (its 21
    validation images), and the chest datalist folder ``chest`` or else the chest phantom (``test``).
    ``head_prepared`` / ``hand_prepared``: prepared datalist folders instead (evaluated on their ``test`` split)."""
    sources = {
        "head": DomainSource("head", "isbi2015", Path(isbi or DEFAULT_ISBI).resolve(), RECIPES["isbi2015"].eval_splits)
        if head_prepared is None
        else DomainSource("head", "prepared", Path(head_prepared).resolve(), ("test",)),
        "hand": DomainSource(
            "hand", "hand_xray", Path(hand or DEFAULT_HAND).resolve(), RECIPES["hand_xray"].eval_splits
        )
        if hand_prepared is None
        else DomainSource("hand", "prepared", Path(hand_prepared).resolve(), ("test",)),
        "chest": DomainSource("chest", "phantom", None, ("test",))
        if chest is None
        else DomainSource("chest", "prepared", Path(chest).resolve(), ("test",)),
    }
    return sources


def bundle_domain_names() -> list[str]:
    """The domains of ``bundles/gu2net_universal/configs/domains.yaml`` in order (the universal model's order)."""
    path = BUNDLES_DIR / BUNDLE / "configs" / "domains.yaml"
    return list(yaml.safe_load(path.read_text(encoding="utf-8")))


def check_extra(extra: Sequence[str]) -> list[str]:
    """The ``--extra`` bundle overrides as a list; returns it.

    Raises:
        ValueError: an override the recipe sets itself (:data:`RESERVED_OVERRIDES`), naming the recipe's option.
    """
    extra = [str(e) for e in extra]
    taken = [e for e in extra if e.split("=")[0] in RESERVED_OVERRIDES]
    if taken:
        raise ValueError(
            f"--extra: {', '.join(taken)} is set by the recipe (use --iterations, --val-interval, --batch-size, "
            "--variant, --domain-overrides or --out)"
        )
    return extra


def _extra_seed(extra: Sequence[str]) -> int:
    """The stream seed a ``--seed S`` in ``extra`` gives the bundle runs (default :data:`DEFAULT_SEED`)."""
    for i, e in enumerate(extra):
        if e == "--seed" and i + 1 < len(extra):
            return int(extra[i + 1])
        if e.startswith("--seed="):
            return int(e.split("=", 1)[1])
    return DEFAULT_SEED


def parse_domain_overrides(text: str | None) -> dict[str, dict]:
    """``--domain-overrides``: a Python-literal ``{domain: {key: value}}`` merged into every bundle run's.

    Raises:
        ValueError: not a literal dict of dicts, or an unknown domain.
    """
    if not text:
        return {}
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"--domain-overrides: not a Python literal ({e}): {text!r}") from None
    return _checked_overrides(value)


def _checked_overrides(value) -> dict[str, dict]:
    """``value`` if it is ``{domain: {key: value}}`` of known domains leaving the recipe's own keys alone."""
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ValueError(f"--domain-overrides: expected {{domain: {{key: value}}}}, got {value!r}")
    unknown = sorted(set(value) - set(DOMAINS))
    if unknown:
        raise ValueError(f"--domain-overrides: unknown domains {unknown}; the bundle's are {list(DOMAINS)}")
    taken = sorted({k for v in value.values() for k in v} & set(RESERVED_DOMAIN_KEYS))
    if taken:
        raise ValueError(
            f"--domain-overrides: {', '.join(taken)} are set by the recipe (the prepared data and its hold-out; "
            "use --isbi, --hand, --chest)"
        )
    return {str(k): dict(v) for k, v in value.items()}


def domain_block_counts(sizes: Sequence[int], batch_size: int, iterations: int, seed: int = DEFAULT_SEED) -> list[int]:
    """Batches of each domain among the first ``iterations`` of a universal training: the blocks of
    :class:`mlm.bundle.DomainBlockSampler` ``(sizes, batch_size, seed)`` in stream order (one block per iteration;
    every full pass holds ``sizes[k] // batch_size`` blocks of domain ``k``, the last partial pass is counted block
    by block).

    Args:
        sizes: training images of each domain, in the model's domain order.
        batch_size: images per batch (and block).
        iterations: training iterations of the universal model.
        seed: the stream seed (the bundle's ``seed``).
    """
    sampler = DomainBlockSampler([int(s) for s in sizes], int(batch_size), seed=seed)
    per_pass = [int(s) // sampler.batch_size for s in sizes]
    full, rest = divmod(int(iterations), sampler.blocks_per_pass)
    counts = [full * n for n in per_pass]
    for block in sampler.blocks(full)[:rest]:
        counts[int(np.searchsorted(sampler.offsets, block[0], side="right")) - 1] += 1
    return counts


def scaled_step_iterations(iterations: int) -> int:
    """The cyclic learning rate's half cycle for a training of ``iterations``: the authors' 2000 of 21 700 scaled
    (at least 1), so that every model goes through as many cycles as the paper's."""
    return max(1, round(iterations * PAPER_STEP_ITERATIONS / PAPER_ITERATIONS))


def state_dict_parameters(state: Mapping[str, torch.Tensor]) -> int:
    """Parameters held by a network state dict: every tensor but the batch norms' running statistics."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(v.numel() for k, v in state.items() if not k.endswith(buffers)))


def _literal(value: dict) -> str:
    """``value`` as a Python literal for the command line: JSON (double quotes, readable once the shell quotes it)
    when it reads back as the same Python value, else ``repr``."""
    text = json.dumps(value)
    try:
        return text if ast.literal_eval(text) == value else repr(value)
    except (ValueError, SyntaxError):  # true / false / null are not Python
        return repr(value)


def _datalist_file(path: Path) -> Path:
    return path / "datalist.json" if path.is_dir() else path


def _prepare_source(source: DomainSource, out: Path) -> list[str]:
    """Prepare ``source`` into ``out`` (``out/datalist.json`` with the training and validation splits the recipe
    uses); returns the commands run.

    Raises:
        ValueError: the dataset root or datalist is missing, or the prepared datalist lacks an evaluation split.
    """
    if source.kind in ("isbi2015", "hand_xray"):
        if not source.path.is_dir():
            raise ValueError(
                f"{source.path}: no such folder (the {source.kind} dataset's root for the {source.domain})"
            )
        recipe = RECIPES[source.kind]
        lines = prepare_ground_truth(recipe, source.path, out, next(iter(recipe.ground_truths)))
    elif source.kind == "phantom":
        print(f"\n  NOTE: {PHANTOM_NOTE}", flush=True)
        cmd = [sys.executable, "scripts/generate_phantoms.py", "chest", "--out", str(out), "--no-progress"]
        cmd.append("--overwrite")  # a killed generation left a part: this step rewrites it
        line = "python " + shlex.join(cmd[1:])
        print(f"\n$ {line}", flush=True)
        subprocess.run(cmd, cwd=REPO_DIR, check=True)
        lines = [line]
    else:
        datalist = _datalist_file(source.path)
        if not datalist.is_file():
            raise ValueError(f"{datalist}: no such datalist (the prepared {source.domain} data)")
        copy_datalist(datalist, out)
        lines = [f"copy {datalist} -> {out / 'datalist.json'}"]
        print(f"\ncopied {datalist} to {out / 'datalist.json'} (absolute paths)", flush=True)
        data = read_datalist_json(out / "datalist.json")
        if "validation" not in data:
            count = held_out_count(RECIPES["datalist"], len(data["training"]))
            fit, val = add_validation_split(out / "datalist.json", count)
            print(f"  training split: {fit} images to fit, the last {val} held out for validation", flush=True)
    splits = datalist_split_names(read_datalist_json(out / "datalist.json"))
    missing = [s for s in source.eval_splits if s not in splits]
    if missing:
        raise ValueError(
            f"{out / 'datalist.json'} (the {source.domain} data) has no split {', '.join(missing)} to evaluate on "
            f"(its splits: {', '.join(splits)})"
        )
    return lines


def _training_splits(data_dir: Path) -> tuple[str, str]:
    """The (training, validation) splits of a prepared domain: the recipe's hold-out when it made one."""
    data = read_datalist_json(data_dir / "datalist.json")
    return (FIT_SPLIT, VALIDATION_SPLIT) if FIT_SPLIT in data else ("training", "validation")


def run_universal_recipe(
    out: Path,
    sources: Mapping[str, DomainSource] | None = None,
    iterations: int = 3000,
    val_interval: int = 250,
    batch_size: int = 4,
    variant: str = "gu2net",
    threads: int | None = None,
    single_domain: bool = True,
    stop_after: str | None = None,
    extra: Sequence[str] = (),
    domain_overrides: Mapping[str, Mapping] | None = None,
) -> dict:
    """Run (or resume) the universal recipe into ``out``; returns the summary (``{}`` with ``stop_after``).

    Args:
        out: the run folder (created; reused by a later call to resume).
        sources: the domains' data (:func:`default_sources`).
        iterations: training iterations of the universal model (one batch of one domain each).
        val_interval: iterations between validations of the universal model (single-domain models: scaled to their
            length).
        batch_size: images per batch, every model.
        variant: ``--network_def#variant`` of every model (:data:`VARIANTS`).
        threads: ``OMP_NUM_THREADS`` of the bundle runs (None: the default).
        single_domain: also train and evaluate a single-domain GU2Net per domain.
        stop_after: ``"universal"`` stops after the universal training (a leg of a longer run).
        extra: bundle overrides added to every bundle run (``["--num_filters", "4"]``), recorded in the settings.
        domain_overrides: ``{domain: {key: value}}`` merged into every run's ``--domain_overrides``.

    Raises:
        ValueError: a bad option, or ``out`` holds a run of other settings.
        RuntimeError: a bundle run failed (the message holds its log's end).
    """
    sources = dict(sources or default_sources())
    names = bundle_domain_names()
    if sorted(names) != sorted(DOMAINS) or sorted(sources) != sorted(DOMAINS):
        raise ValueError(f"the universal recipe needs the domains {list(DOMAINS)}; domains.yaml has {names}")
    if variant not in VARIANTS:
        raise ValueError(f"--variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if min(iterations, val_interval, batch_size) < 1:
        raise ValueError(
            f"iterations, val_interval and batch_size must be >= 1, got {iterations}, {val_interval}, {batch_size}"
        )
    if stop_after not in (None, "universal"):
        raise ValueError(f"stop_after must be None or 'universal', got {stop_after!r}")
    extra = check_extra(extra)
    user_overrides = _checked_overrides(domain_overrides or {})
    seed = _extra_seed(extra)
    step_iterations = scaled_step_iterations(iterations)
    out.mkdir(parents=True, exist_ok=True)
    recipe = Recipe(dataset="universal", bundle=BUNDLE, ground_truths={}, validation_images=0, eval_splits=())
    run = RecipeRun(recipe, out, "gu2net", threads)
    run.claim_settings(
        {
            "recipe": "universal",
            "bundle": BUNDLE,
            "variant": variant,
            "iterations": iterations,
            "val_interval": val_interval,
            "batch_size": batch_size,
            "step_iterations": step_iterations,
            "seed": seed,
            "data": {d: sources[d].describe() for d in names},
            "extra": extra,
            "domain_overrides": user_overrides,
        }
    )
    if sources["chest"].is_phantom:
        print(f"NOTE: {PHANTOM_NOTE}", flush=True)

    data = {d: out / "data" / d for d in names}
    for d in names:
        run.step(f"prepare ({d})", data[d], lambda d=d: _prepare_source(sources[d], data[d]))
    splits = {d: _training_splits(data[d]) for d in names}
    overrides = {
        d: merge_settings(
            {"dataset_dir": str(data[d]), "train_split": splits[d][0], "val_split": splits[d][1]},
            user_overrides.get(d, {}),
        )
        for d in names
    }
    common = ["--domain_overrides", _literal(overrides), "--network_def#variant", variant]
    sizes = [len(read_datalist_json(data[d] / "datalist.json")[splits[d][0]]) for d in names]
    blocks = dict(zip(names, domain_block_counts(sizes, batch_size, iterations, seed)))
    print(
        f"\nuniversal model: {iterations} iterations of {batch_size} images, training images "
        + ", ".join(f"{d} {n}" for d, n in zip(names, sizes))
        + "; batches per domain "
        + ", ".join(f"{d} {blocks[d]}" for d in names),
        flush=True,
    )

    u = out / "universal"
    u_train = run.step(
        "universal training",
        u / "models",
        lambda: [
            run.bundle(
                ["train.yaml", "cpu.yaml", "universal.yaml"],
                [*common, "--num_iterations", str(iterations), "--val_interval", str(val_interval)]
                + ["--batch_size", str(batch_size), "--lr_scheduler#step_iterations", str(step_iterations)]
                + ["--ckpt_dir", str(u / "models"), "--output_dir", str(u / "train"), *extra],
                u / "train.log",
            )
        ],
    )
    if stop_after == "universal":
        return {}
    u_ckpt = u / "models" / "model.pt"
    eval_configs = ["inference.yaml", "evaluate.yaml", "cpu.yaml", "domain.yaml"]
    figures: dict = {d: {} for d in names}
    for d in names:
        for split in sources[d].eval_splits:
            e = u / "eval" / f"{d}_{split}"
            run.step(
                f"universal model on {d} {split}",
                e,
                lambda d=d, split=split, e=e: [
                    run.bundle(
                        eval_configs,
                        [*common, "--domain", d, "--universal", "true", "--infer_split", split]
                        + ["--ckpt_path", str(u_ckpt), "--output_dir", str(e), *extra],
                        u / "eval" / f"{d}_{split}.log",
                    )
                ],
            )
            figures[d][split] = {"universal": metrics_summary(read_metrics(e)), "single": None}

    weights = out / "weights"
    export_weights(u_ckpt, weights / "universal.pt")
    models = {
        "universal": {
            "iterations": iterations,
            "val_interval": val_interval,
            "step_iterations": step_iterations,
            "minutes": u_train["minutes"],
            "parameters": state_dict_parameters(torch.load(weights / "universal.pt", weights_only=True)),
            "batches": blocks,
        }
    }
    for d in names if single_domain else ():
        n_d = max(1, blocks[d])  # a domain without a batch in a very short run still gets one iteration
        v_d = max(1, round(val_interval * n_d / iterations))
        s_d = scaled_step_iterations(n_d)
        s = out / "single" / d
        record = run.step(
            f"single-domain training ({d})",
            s / "models",
            lambda d=d, s=s, n_d=n_d, v_d=v_d, s_d=s_d: [
                run.bundle(
                    ["train.yaml", "cpu.yaml", "domain.yaml"],
                    [*common, "--domain", d, "--num_iterations", str(n_d), "--val_interval", str(v_d)]
                    + ["--batch_size", str(batch_size), "--lr_scheduler#step_iterations", str(s_d)]
                    + ["--ckpt_dir", str(s / "models"), "--output_dir", str(s / "train"), *extra],
                    s / "train.log",
                )
            ],
        )
        ckpt = s / "models" / "model.pt"
        for split in sources[d].eval_splits:
            e = s / "eval" / split
            run.step(
                f"single-domain {d} model on {split}",
                e,
                lambda d=d, split=split, e=e, s=s, ckpt=ckpt: [
                    run.bundle(
                        eval_configs,
                        [*common, "--domain", d, "--infer_split", split, "--ckpt_path", str(ckpt)]
                        + ["--output_dir", str(e), *extra],
                        s / "eval" / f"{split}.log",
                    )
                ],
            )
            figures[d][split]["single"] = metrics_summary(read_metrics(e))
        export_weights(ckpt, weights / f"{d}.pt")
        models[d] = {
            "iterations": n_d,
            "val_interval": v_d,
            "step_iterations": s_d,
            "minutes": record["minutes"],
            "parameters": state_dict_parameters(torch.load(weights / f"{d}.pt", weights_only=True)),
            "batches": {d: n_d},
        }

    summary = {
        "recipe": "universal",
        "bundle": BUNDLE,
        "variant": variant,
        "settings": run.log["settings"],
        "domains": list(names),
        "data": {
            d: {
                "source": sources[d].describe(),
                "phantom": sources[d].is_phantom,
                "train_split": splits[d][0],
                "validation_split": splits[d][1],
                "training_images": size,
                "eval_splits": list(sources[d].eval_splits),
            }
            for d, size in zip(names, sizes)
        },
        "models": models,
        "figures": figures,
        "notes": [PHANTOM_NOTE] if sources["chest"].is_phantom else [],
        "published": list(PUBLISHED),
    }
    write_metrics_json(weights / "figures.json", summary)
    run.log["summary"] = summary
    run._save_log()
    return summary


def _row(metrics: dict, kind: str, radii: Sequence[float]) -> str:
    """``images | MRE +- SD | median | SDR...`` cells of one evaluation (``kind``: plain or normalized errors)."""
    m = metrics["normalized"] if kind == "normalized" else metrics
    sdr = " / ".join(percent(value_at(m.get("sdr", {}), r)) for r in radii)
    return f"{metrics['num_images']} | {m['pe_mean']:.2f} +- {m['pe_std']:.2f} | {m['pe_median']:.2f} | {sdr}"


def universal_table(summary: dict) -> str:
    """Markdown tables of :func:`run_universal_recipe`'s summary: per domain and split, the universal model against
    the single-domain one (MRE +- SD, median, SDR in the domain's protocol: head mm at 2 / 2.5 / 3 / 4 mm, hand
    wrist-normalised mm at 2 / 4 / 10 mm, chest px at 3 / 6 / 9 px; the radii the evaluation reported where it did
    not report these), then every model's parameters, iterations and training minutes, the notes (the chest phantom)
    and the published figures."""
    models = summary["models"]
    lines = []
    for d in summary["domains"]:
        kind, radii = DOMAIN_PROTOCOL[d]
        first = next(iter(summary["figures"][d].values()), None)
        if first is None:
            continue
        reported = (first["universal"]["normalized"] if kind == "normalized" else first["universal"]).get("sdr", {})
        if not all(value_at(reported, r) is not None for r in radii):  # the evaluation used other radii: show those
            radii = tuple(sorted(float(r) for r in reported))
        units = "mm, wrist-normalised" if kind == "normalized" else first["universal"].get("units", "mm")
        r_units = "mm" if kind == "normalized" else units
        phantom = " (PHANTOM)" if summary["data"][d]["phantom"] else ""
        lines += [
            f"{d}{phantom}: {summary['data'][d]['source']}",
            "",
            f"| split | model | iterations ({d} batches) | images | MRE +- SD ({units}) | median | "
            f"SDR {' / '.join(f'{r:g}' for r in radii)} {r_units} |",
            "|---|---|---|---|---|---|---|",
        ]
        for split, fig in summary["figures"][d].items():
            u = models["universal"]
            lines.append(
                f"| {split} | universal | {u['iterations']} ({u['batches'][d]}) | {_row(fig['universal'], kind, radii)} |"
            )
            if fig.get("single") is not None:
                s = models[d]
                lines.append(
                    f"| {split} | single-domain | {s['iterations']} ({s['iterations']}) | {_row(fig['single'], kind, radii)} |"
                )
        lines.append("")
    lines += ["| model | parameters | iterations | training minutes |", "|---|---|---|---|"]
    u = models["universal"]
    lines.append(
        f"| universal ({' + '.join(summary['domains'])}) | {u['parameters']:,} | {u['iterations']} | {u['minutes']} |"
    )
    singles = [d for d in summary["domains"] if d in models]
    for d in singles:
        s = models[d]
        lines.append(f"| single-domain {d} | {s['parameters']:,} | {s['iterations']} | {s['minutes']} |")
    if singles:
        total = [sum(models[d][k] for d in singles) for k in ("parameters", "iterations", "minutes")]
        lines.append(f"| single-domain, all {len(singles)} | {total[0]:,} | {total[1]} | {round(total[2], 2)} |")
    lines += [
        "",
        *[f"NOTE: {n}" for n in summary.get("notes", [])],
        "Published:",
        *[f"- {p}" for p in summary["published"]],
    ]
    return "\n".join(lines)
