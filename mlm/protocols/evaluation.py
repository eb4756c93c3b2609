"""Evaluation of prediction folders against prepared datalists under a named protocol: groups and their metrics."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm.data.datalist import datalist_split_names, load_datalist, read_datalist_json
from mlm.metrics import (
    identification_rate,
    identification_rate_per_landmark,
    identified_landmarks,
    per_landmark_table,
    point_errors,
    summarize_errors,
)
from mlm.protocols.ground_truth import ground_truth_world
from mlm.protocols.predictions import read_predictions
from mlm.protocols.settings import CSI_REGIONS, ProtocolSettings, protocol_defaults

__all__ = ["evaluate_protocol"]


@dataclass
class _Group:
    name: str
    ids: list[str]
    pred: np.ndarray  # (B, N, D) RAS
    true: np.ndarray  # (B, N, D) RAS
    missing_files: list[str]


def _datalist_items(path: Path, splits: Sequence[str] | None) -> dict[str, dict]:
    """``{id: item}`` over ``splits`` (default every split); an id in two splits must name the same image."""
    data = read_datalist_json(path)
    names = list(splits) if splits else datalist_split_names(data)
    out: dict[str, dict] = {}
    for s in names:
        for item in load_datalist(path, s):
            i = str(item["id"])
            if i in out and (out[i]["image"], out[i].get("landmarks")) != (item["image"], item.get("landmarks")):
                raise ValueError(f"{path}: id '{i}' names different images or landmarks in two splits.")
            out.setdefault(i, item)
    return out


def _header(path: Path) -> tuple[int, int | None, list[str] | None]:
    data = read_datalist_json(path)
    if "num_landmarks" not in data:
        raise ValueError(f"{path}: datalist has no 'num_landmarks'.")
    dims = data.get("spatial_dims")
    return int(data["num_landmarks"]), None if dims is None else int(dims), data.get("landmark_names")


def _check_prediction(points: np.ndarray, file: Path, n: int, d: int, datalist: Path) -> None:
    if points.shape != (n, d):
        raise ValueError(
            f"{file}: {points.shape[0]} landmarks in {points.shape[1]}D, but the datalist {datalist} has {n} "
            f"landmarks in {d}D: evaluate a bundle only on a dataset with the same landmark count."
        )


def _build_group(
    name: str,
    ids: list[str],
    predictions: dict[str, tuple[np.ndarray, Path]],
    items: dict[str, dict],
    n: int,
    d: int,
    datalist: Path,
    allow_missing: bool,
    units: set[str],
) -> _Group:
    missing = [i for i in ids if i not in predictions]
    if missing and not allow_missing:
        raise FileNotFoundError(
            f"group '{name}': no prediction file for {len(missing)} of {len(ids)} images of {datalist} "
            f"(e.g. {missing[:5]}); run inference on them or pass --allow-missing to count them as failures."
        )
    pred = np.full((len(ids), n, d), np.nan)
    true = np.full((len(ids), n, d), np.nan)
    for b, i in enumerate(ids):
        if i in predictions:
            points, file = predictions[i]
            _check_prediction(points, file, n, d, datalist)
            pred[b] = points
        true[b], unit = ground_truth_world(items[i], n, d)
        units.add(unit)
    return _Group(name, list(ids), pred, true, missing)


def _group_report(g: _Group, names: list[str], s: ProtocolSettings) -> dict:
    """Metrics of one group: the summary, the per-landmark rows and (CSI) the regions."""
    skipped: list[str] = []
    if s.normalize_pair is not None:
        # like LandmarkReportHandler: an image whose reference pair has no ground truth cannot be normalised
        a, b = s.normalize_pair
        if max(a, b) >= g.true.shape[1]:
            raise ValueError(f"normalize_pair {s.normalize_pair} is out of range for {g.true.shape[1]} landmarks.")
        ref = np.linalg.norm(g.true[:, a] - g.true[:, b], axis=-1)
        keep = np.isfinite(ref) & (ref > 0)
        skipped = [i for i, k in zip(g.ids, keep) if not k]
        g = _Group(g.name, [i for i, k in zip(g.ids, keep) if k], g.pred[keep], g.true[keep], g.missing_files)
    errors = point_errors(g.pred, g.true, normalize_pair=s.normalize_pair, normalize_distance=s.normalize_distance)
    summary = summarize_errors(errors, s.radii)
    summary["ids"] = g.ids
    summary["images_without_prediction_file"] = g.missing_files
    if s.normalize_pair is not None:
        summary["normalization_skipped_ids"] = skipped
    table = per_landmark_table(errors, names, s.radii)
    for k, row in enumerate(table):
        row.update(
            {f"outliers_{key}": v for key, v in summarize_errors(errors[:, k : k + 1], s.radii)["outliers"].items()}
        )
    report = {"name": g.name, "errors": errors, "summary": summary, "per_landmark": table}
    if s.identification:
        summary["id_rate"] = identification_rate(g.pred, g.true, s.max_dist)
        summary["id_max_dist_mm"] = s.max_dist
        for row, rate in zip(table, identification_rate_per_landmark(g.pred, g.true, s.max_dist)):
            row["id_rate"] = float(rate)
        if len(names) == 26:
            ok = identified_landmarks(g.pred, g.true, s.max_dist)
            regions = []
            for region, idx in [("All", range(26)), *CSI_REGIONS.items()]:
                cols = list(idx)
                rs = summarize_errors(errors[:, cols], s.radii)
                okr = ok[:, cols]
                pr = ~np.isnan(okr)
                rs["id_rate"] = float(okr[pr].sum() / pr.sum()) if pr.any() else float("nan")
                regions.append({"region": region, **{k: v for k, v in rs.items() if k != "ipe"}})
            report["regions"] = regions
    return report


def evaluate_protocol(
    protocol: str,
    predictions: Sequence[str | os.PathLike],
    datalists: Sequence[str | os.PathLike],
    splits: Sequence[str] | None = None,
    radii: Sequence[float] | None = None,
    normalize_pair: tuple[int, int] | None | str = "default",
    max_dist: float | None = None,
    identification: bool | None = None,
    allow_missing: bool = False,
    method: str = "prediction",
) -> dict:
    """Evaluate prediction folders against prepared datalists under a named protocol.

    Args:
        protocol: ``"isbi2015"``, ``"hand"``, ``"csi2014"`` or ``"generic"``.
        predictions: prediction folders (``<id>_landmarks.json`` files, or a bundle's ``output_dir`` holding
            ``predictions/``). ``isbi2015`` pools them; the other protocols treat each as one fold.
        datalists: one datalist, or (fold protocols) one per prediction folder (e.g. ``datalist_cv1.json`` ...).
        splits: ``isbi2015``: the splits to tabulate (default ``test1``, ``test2``). Fold protocols: when given, each
            fold evaluates exactly the items of these splits of its datalist (e.g. ``test``); by default each fold
            evaluates the predictions present in its folder, looked up in every split of its datalist.
        radii: override the protocol's radii.
        normalize_pair: zero-based landmark pair for the wrist-width normalisation; ``"default"`` = the protocol's
            (hand: :data:`mlm.data.hand_xray.WRIST_WIDTH_PAIR`), None = no normalisation.
        max_dist: identification radius (mm), default 20.
        identification: override whether the ID rate is computed (on for ``csi2014``).
        allow_missing: count images without a prediction file as missing predictions instead of raising.
        method: the method's name in the tables and the plot.

    Returns:
        a dict: ``protocol``, ``method``, ``units``, ``settings``, ``names``, ``groups`` (list of group reports:
        ``name``, ``errors`` ``(B, N)``, ``summary``, ``per_landmark`` and, for 26-landmark spines with the ID rate,
        ``regions``), ``notes``.
    """
    s = protocol_defaults(protocol)
    if radii is not None:
        s.radii = tuple(float(r) for r in radii)
    if normalize_pair != "default":
        s.normalize_pair = None if normalize_pair is None else tuple(int(k) for k in normalize_pair)
    if max_dist is not None:
        s.max_dist = float(max_dist)
    if identification is not None:
        s.identification = bool(identification)
    pred_dirs = [Path(p) for p in predictions]
    dl_paths = [Path(p) for p in datalists]
    if not pred_dirs:
        raise ValueError("no prediction folder given.")
    if not dl_paths:
        raise ValueError("no datalist given.")
    headers = [_header(p) for p in dl_paths]
    n, d, names = headers[0]
    for p, (n2, d2, _) in zip(dl_paths[1:], headers[1:]):
        if (n2, d2) != (n, d):
            raise ValueError(f"{p}: {n2} landmarks in {d2}D, but {dl_paths[0]} has {n} in {d}D.")
    loaded = [read_predictions(p) for p in pred_dirs]
    if d is None:
        d = next(iter(loaded[0].values()))[0].shape[1]
    names = [str(x) for x in names] if names else [str(k) for k in range(n)]
    units: set[str] = set()
    notes: list[str] = []
    groups: list[_Group] = []
    if s.groups == "splits":
        if len(dl_paths) != 1:
            raise ValueError(f"protocol {protocol} takes one datalist, got {len(dl_paths)}.")
        pooled: dict[str, tuple[np.ndarray, Path]] = {}
        for preds in loaded:
            for i, v in preds.items():
                if i in pooled:
                    raise ValueError(f"id '{i}' has a prediction in two folders: {pooled[i][1]} and {v[1]}.")
                pooled[i] = v
        data = read_datalist_json(dl_paths[0])
        for split in splits or s.splits:
            if split not in data:
                raise ValueError(
                    f"{dl_paths[0]}: no split '{split}' (available: {datalist_split_names(data)}); prepare the "
                    f"dataset with scripts/prepare_dataset.py {protocol}."
                )
            items = _datalist_items(dl_paths[0], [split])
            ids = list(items)
            if not any(i in pooled for i in ids):
                notes.append(f"split '{split}': no predictions, left out")
                continue
            name = split[:1].upper() + split[1:]
            groups.append(_build_group(name, ids, pooled, items, n, d, dl_paths[0], allow_missing, units))
        if not groups:
            raise FileNotFoundError(
                f"none of the prediction files in {[str(p) for p in pred_dirs]} belongs to the splits "
                f"{list(splits or s.splits)} of {dl_paths[0]}."
            )
    else:
        if len(dl_paths) not in (1, len(pred_dirs)):
            raise ValueError(
                f"give one datalist, or one per prediction folder: got {len(dl_paths)} datalists for "
                f"{len(pred_dirs)} folders."
            )
        seen: dict[str, int] = {}
        for k, (folder, preds) in enumerate(zip(pred_dirs, loaded)):
            dl = dl_paths[k] if len(dl_paths) > 1 else dl_paths[0]
            items = _datalist_items(dl, splits)
            if splits:
                ids = list(items)
                extra = sorted(set(preds) - set(items))
                if extra:
                    notes.append(f"fold {k + 1}: {len(extra)} prediction files outside splits {list(splits)} ignored")
            else:
                unknown = sorted(set(preds) - set(items))
                if unknown:
                    raise ValueError(
                        f"{folder}: predictions for ids not in {dl}: {unknown[:5]} ({len(unknown)}); is it the "
                        "right datalist?"
                    )
                ids = list(preds)
            for i in ids:
                if i in seen:
                    raise ValueError(f"id '{i}' is evaluated in fold {seen[i] + 1} and fold {k + 1}.")
                seen[i] = k
            name = f"Fold {k + 1}" if len(pred_dirs) > 1 else ("+".join(splits).capitalize() if splits else "All")
            groups.append(_build_group(name, ids, preds, items, n, d, dl, allow_missing, units))
        if len(groups) > 1:
            groups.append(
                _Group(
                    f"{len(groups)}-fold CV (all)",
                    [i for g in groups for i in g.ids],
                    np.concatenate([g.pred for g in groups]),
                    np.concatenate([g.true for g in groups]),
                    [i for g in groups for i in g.missing_files],
                )
            )
    if len(units) > 1:
        raise ValueError(
            "the ground truth mixes mm and px (pixel-only images without 'spacing'): add 'spacing' to the items."
        )
    unit = units.pop() if units else "mm"
    if s.normalize_pair is not None:
        unit = f"{unit} (normalised: landmarks {s.normalize_pair[0]}-{s.normalize_pair[1]} = {s.normalize_distance:g})"
    return {
        "protocol": protocol,
        "method": method,
        "units": unit,
        "settings": {
            "radii": list(s.radii),
            "normalize_pair": None if s.normalize_pair is None else list(s.normalize_pair),
            "normalize_distance": s.normalize_distance if s.normalize_pair is not None else None,
            "identification": s.identification,
            "max_dist": s.max_dist if s.identification else None,
            "predictions": [str(p) for p in pred_dirs],
            "datalists": [str(p) for p in dl_paths],
            "splits": list(splits) if splits else (list(s.splits) if s.groups == "splits" else None),
        },
        "names": names,
        "groups": [_group_report(g, names, s) for g in groups],
        "notes": notes,
    }
