"""Evaluation protocols of the papers: predictions on disk + a prepared datalist -> the papers' tables and curves.

A bundle's inference writes one ``<id>_landmarks.json`` per image to ``<output_dir>/predictions/``
(:func:`mlm.prediction.landmark_record`: world mm, LPS). This module matches those files to the items of a
prepared dataset's datalist (any dataset with the same landmark count and dimensionality), brings the ground truth
to world mm exactly as the bundles do (landmark file -> voxels of the loaded image, pixel spacing of pixel-only
images -> world through the image affine) and reports with :mod:`mlm.metrics`:

- ``isbi2015``: the ISBI 2015 cephalometric challenge, one table per test set (``test1``: 150 images,
  ``test2``: 100), MRE +- SD and SDR at 2, 2.5, 3 and 4 mm, as in Wang et al. 2016 / Lindner et al. 2016 /
  Payer et al. 2019.
- ``hand``: Payer et al.'s hand X-ray 3-fold cross-validation: one prediction folder per fold, the point error
  normalised to a 50 mm wrist width (``mlm.data.hand_xray.WRIST_WIDTH_PAIR``, zero-based landmarks 1 and 5; GU2Net
  uses 0 and 4), PE median, mean +- SD and the outlier counts #O_r at 2, 4 and 10 mm over all folds and per fold.
  An image whose ground truth lacks one of the pair is left out and listed (as ``LandmarkReportHandler`` does).
- ``csi2014``: MICCAI CSI 2014 spine CT (Glocker et al. 2013; Payer et al. 2019): PE median, mean +- SD, #O_20mm
  and identification rate at 20 mm, for all vertebrae and per region (cervical, thoracic, lumbar, sacral), plus a
  per-vertebra table; one prediction folder per fold (or one for a test set).
- ``generic``: any datalist: MRE +- SD, median, SDR at the given radii (and the ID rate on request).

Every protocol writes (atomically, via :mod:`mlm.reports` and :mod:`mlm.visualize`) ``table.md``, ``table.csv``,
``summary.json``, ``per_landmark_<group>.csv``, ``errors_per_image.csv`` and ``cumulative_ipe.png``.
Conventions (DESIGN.md): missing ground truth is excluded; a missing prediction for a present landmark is a
failure (SDR, #O_r, ID rate) and is left out of the mean / SD / median; success at r is ``error <= r``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm.data.datalist import datalist_split_names, load_datalist, read_datalist_json
from mlm.data.hand_xray import WRIST_WIDTH_MM, WRIST_WIDTH_PAIR
from mlm.metrics import (
    DEFAULT_RADII,
    identification_rate,
    identification_rate_per_landmark,
    identified_landmarks,
    per_landmark_table,
    point_errors,
    summarize_errors,
)
from mlm.reports import atomic_write_text, write_metrics_csv, write_metrics_json

__all__ = [
    "PROTOCOLS",
    "ProtocolSettings",
    "protocol_defaults",
    "PIXEL_ONLY_SUFFIXES",
    "read_prediction_file",
    "read_predictions",
    "ground_truth_world",
    "evaluate_protocol",
    "format_markdown",
    "markdown_table",
    "write_protocol_report",
]

PROTOCOLS = ("isbi2015", "hand", "csi2014", "generic")
#: image files without physical metadata: voxel landmarks of such an image without ``"spacing"`` are in px.
PIXEL_ONLY_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif")
#: CSI 2014 regions (slot ranges of ``mlm.data.csi2014.VERTEBRA_NAMES``).
CSI_REGIONS = {"Cervical": range(0, 7), "Thoracic": range(7, 19), "Lumbar": range(19, 24), "Sacral": range(24, 26)}


@dataclass
class ProtocolSettings:
    """What a protocol computes.

    Attributes:
        radii: SDR / outlier radii (mm, or normalised mm).
        groups: ``"splits"`` (one group per datalist split, predictions of all folders pooled: ISBI test sets)
            or ``"folds"`` (one group per prediction folder, plus their union when there are several).
        splits: default splits for ``groups="splits"``.
        normalize_pair: zero-based landmark pair whose distance is normalised to ``normalize_distance`` (hand).
        normalize_distance: mm spanned by ``normalize_pair``.
        identification: compute the identification rate (CSI 2014).
        max_dist: identification radius, mm (``<=``).
    """

    radii: tuple[float, ...] = DEFAULT_RADII
    groups: str = "folds"
    splits: tuple[str, ...] = ()
    normalize_pair: tuple[int, int] | None = None
    normalize_distance: float = 50.0
    identification: bool = False
    max_dist: float = 20.0


def protocol_defaults(protocol: str) -> ProtocolSettings:
    """The settings of a named protocol (see the module docstring)."""
    if protocol == "isbi2015":
        return ProtocolSettings(radii=(2.0, 2.5, 3.0, 4.0), groups="splits", splits=("test1", "test2"))
    if protocol == "hand":
        return ProtocolSettings(
            radii=(2.0, 4.0, 10.0), normalize_pair=tuple(WRIST_WIDTH_PAIR), normalize_distance=float(WRIST_WIDTH_MM)
        )
    if protocol == "csi2014":
        return ProtocolSettings(radii=(20.0,), identification=True, max_dist=20.0)
    if protocol == "generic":
        return ProtocolSettings(radii=DEFAULT_RADII)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")


# ----------------------------------------------------------------------------------------------------------- reading
def _to_ras(points: np.ndarray, coordinate_system: str) -> np.ndarray:
    """LPS or RAS mm -> RAS mm (LPS: the first two coordinates negated, in 2D and 3D alike, as the project writes)."""
    p = np.array(points, dtype=np.float64)
    if coordinate_system == "LPS":
        p[:, :2] *= -1.0
    elif coordinate_system != "RAS":
        raise ValueError(f"expected LPS or RAS coordinates, got {coordinate_system!r}.")
    return p


def read_prediction_file(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """One prediction file (``<id>_landmarks.json`` of :class:`mlm.prediction.SaveLandmarksd`) as RAS mm.

    Returns:
        ``(points (N, D) RAS mm float64, NaN rows = no prediction; names)``.
    """
    from transforms.io.landmark_files import read_landmark_file

    lf = read_landmark_file(path)
    if lf.coordinate_system == "voxel":
        raise ValueError(f"{path}: prediction files must hold world mm (LPS or RAS), this one holds voxel indices.")
    return _to_ras(lf.points, lf.coordinate_system), list(lf.names)


def _prediction_folder(folder: Path) -> Path:
    """``folder`` itself, or its ``predictions/`` subfolder when given a bundle's ``output_dir``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder {folder} does not exist.")
    if not any(folder.glob("*_landmarks.json")) and (folder / "predictions").is_dir():
        return folder / "predictions"
    return folder


def read_predictions(folder: str | os.PathLike) -> dict[str, tuple[np.ndarray, Path]]:
    """All ``<id>_landmarks.json`` of a prediction folder (or of ``<folder>/predictions``).

    Returns:
        ``{id: (points (N, D) RAS mm, file)}`` sorted by id.

    Raises:
        FileNotFoundError: no folder or no prediction file in it.
    """
    folder = _prediction_folder(Path(folder))
    files = sorted(folder.glob("*_landmarks.json"))
    if not files:
        raise FileNotFoundError(
            f"{folder}: no <id>_landmarks.json prediction files (run the bundle's configs/inference.yaml; it writes "
            "them to <output_dir>/predictions)."
        )
    out: dict[str, tuple[np.ndarray, Path]] = {}
    for f in files:
        if f.name.startswith("."):
            continue  # temporary file of an interrupted write
        out[f.name[: -len("_landmarks.json")]] = (read_prediction_file(f)[0], f)
    return out


def _image_affine(image: str, spatial_dims: int, spacing: Sequence[float] | None) -> np.ndarray:
    """Voxel-to-RAS affine ``(D+1, D+1)`` of an image as the bundles load it (``LoadImage`` + ``SetSpacing``)."""
    from transforms.landmarks.array import spatial_affine

    if spacing is not None:
        # pixel-only images: MONAI's identity affine scaled by SetSpacing (origin at pixel 0)
        sp = [float(s) for s in spacing]
        if len(sp) != spatial_dims:
            raise ValueError(f"{image}: 'spacing' {sp} does not have {spatial_dims} values.")
        a = np.eye(spatial_dims + 1)
        a[:spatial_dims, :spatial_dims] = np.diag(sp)
        return a
    name = str(image).lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return spatial_affine(nib.load(image).affine, spatial_dims)
    from monai.transforms import LoadImage

    img = LoadImage(image_only=True, ensure_channel_first=True)(image)
    return spatial_affine(img.affine, spatial_dims)


def ground_truth_world(item: dict, num_landmarks: int, spatial_dims: int) -> tuple[np.ndarray, str]:
    """An item's ground-truth landmarks in RAS mm (or px), as the bundles see them.

    LPS/RAS files are converted directly; voxel files (and inline lists) go through the image affine: the item's
    ``spacing`` for pixel-only images, else the image header (NIfTI header, or the image loaded by MONAI).

    Args:
        item: a datalist item with absolute paths (:func:`mlm.data.load_datalist`).
        num_landmarks: expected rows.
        spatial_dims: expected coordinates per row.

    Returns:
        ``(points (N, D) float64, unit)``: unit ``"mm"``, or ``"px"`` for voxel landmarks of a pixel-only image
        (PNG, BMP, JPEG) without ``spacing``.
    """
    from transforms.io.landmark_files import read_landmark_file

    where = f"item {item.get('id')!r} ({item.get('image')})"
    if "landmarks" not in item:
        raise ValueError(f"{where}: no 'landmarks' (ground truth) in the datalist item.")
    lm = item["landmarks"]
    if isinstance(lm, str):
        lf = read_landmark_file(lm)
        points, cs, source = lf.points, lf.coordinate_system, lm
    else:
        dim = max((len(p) for p in lm if p is not None), default=spatial_dims)
        points = np.array([[np.nan] * dim if p is None else p for p in lm], dtype=np.float64)
        cs, source = "voxel", f"{where} inline landmarks"
    if points.shape != (num_landmarks, spatial_dims):
        raise ValueError(
            f"{source}: landmarks of shape {points.shape}, expected ({num_landmarks}, {spatial_dims}) ({where})."
        )
    if cs != "voxel":
        return _to_ras(points, cs), "mm"
    image = item["image"][0] if isinstance(item["image"], list) else item["image"]
    spacing = item.get("spacing")
    unit = "px" if spacing is None and str(image).lower().endswith(PIXEL_ONLY_SUFFIXES) else "mm"
    a = _image_affine(image, spatial_dims, spacing)
    return points @ a[:-1, :-1].T + a[:-1, -1], unit


# -------------------------------------------------------------------------------------------------------- evaluation
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


# ----------------------------------------------------------------------------------------------------------- tables
def _f(v: float, digits: int = 2) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _pm(mean: float, sd: float) -> str:
    """``mean ± SD`` with two decimals, ``n/a`` when there is nothing to average."""
    return "n/a" if mean is None or not math.isfinite(mean) else f"{mean:.2f} ± {_f(sd)}"


def _pct(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _r(r: float) -> str:
    return f"{r:g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table (first column left-aligned, the others right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _outliers(summary: dict, r: float) -> str:
    key = _r(r)
    return f"{summary['outliers'][key]} ({_pct(summary['outlier_rate'][key])})"


def protocol_table(result: dict) -> tuple[list[str], list[list[str]], list[dict]]:
    """The main table of a result: Markdown header, Markdown rows, and numeric rows for ``table.csv``."""
    protocol, method, radii = result["protocol"], result["method"], result["settings"]["radii"]
    unit = result["units"].split(" ")[0]
    md_rows, csv_rows = [], []
    if protocol == "isbi2015":
        header = ["Test set", "Method", "Images", f"MRE ± SD ({unit})"] + [f"SDR {_r(r)} {unit}" for r in radii]
        for g in result["groups"]:
            s = g["summary"]
            md_rows.append(
                [g["name"], method, str(s["num_images"]), _pm(s["pe_mean"], s["pe_std"])]
                + [_pct(s["sdr"][_r(r)]) for r in radii]
            )
    elif protocol == "hand":
        header = ["Method", "Images", f"PE median ({unit})", f"PE mean ± SD ({unit})"] + [
            f"#O_{_r(r)} {unit}" for r in radii
        ]
        for g in result["groups"]:
            s = g["summary"]
            md_rows.append(
                [
                    f"{method}, {g['name']}",
                    str(s["num_images"]),
                    _f(s["pe_median"]),
                    _pm(s["pe_mean"], s["pe_std"]),
                ]
                + [_outliers(s, r) for r in radii]
            )
    elif protocol == "csi2014":
        header = ["Method", "Images", f"PE median ({unit})", f"PE mean ± SD ({unit})"]
        header += [f"#O_{_r(r)} {unit}" for r in radii]
        header += [f"ID rate ({_r(result['settings']['max_dist'])} mm)"] if result["settings"]["identification"] else []
        for g in result["groups"]:
            s = g["summary"]
            row = [
                f"{method}, {g['name']}",
                str(s["num_images"]),
                _f(s["pe_median"]),
                _pm(s["pe_mean"], s["pe_std"]),
            ]
            row += [_outliers(s, r) for r in radii]
            row += [_pct(s["id_rate"])] if result["settings"]["identification"] else []
            md_rows.append(row)
    else:
        header = ["Group", "Method", "Images", "Landmarks", f"MRE ± SD ({unit})", f"median ({unit})"]
        header += [f"SDR {_r(r)} {unit}" for r in radii]
        header += [f"ID rate ({_r(result['settings']['max_dist'])} mm)"] if result["settings"]["identification"] else []
        for g in result["groups"]:
            s = g["summary"]
            row = [g["name"], method, str(s["num_images"]), str(s["count"]), _pm(s["pe_mean"], s["pe_std"])]
            row += [_f(s["pe_median"])] + [_pct(s["sdr"][_r(r)]) for r in radii]
            row += [_pct(s["id_rate"])] if result["settings"]["identification"] else []
            md_rows.append(row)
    for g in result["groups"]:
        s = g["summary"]
        row = {
            "group": g["name"],
            "method": method,
            "units": result["units"],
            "images": s["num_images"],
            "landmarks": s["count"],
            "missing_predictions": s["num_missing_predictions"],
            "pe_mean": s["pe_mean"],
            "pe_std": s["pe_std"],
            "pe_median": s["pe_median"],
            "pe_max": s["pe_max"],
        }
        row.update({f"sdr_{_r(r)}": s["sdr"][_r(r)] for r in radii})
        row.update({f"outliers_{_r(r)}": s["outliers"][_r(r)] for r in radii})
        if "id_rate" in s:
            row["id_rate"] = s["id_rate"]
        csv_rows.append(row)
    return header, md_rows, csv_rows


def format_markdown(result: dict) -> str:
    """The protocol's tables as Markdown: the main table (per test set / fold), CSI regions and per-vertebra table."""
    protocol, unit = result["protocol"], result["units"]
    titles = {
        "isbi2015": "ISBI 2015 cephalometric landmarks: MRE and SDR per test set",
        "hand": "Hand X-ray, cross-validation: point error (PE) and outliers #O_r (error > r)",
        "csi2014": "CSI 2014 spine CT: point error, outliers (error > r) and identification rate",
        "generic": "Landmark errors",
    }
    header, rows, _ = protocol_table(result)
    parts = [f"### {titles[protocol]}", "", markdown_table(header, rows), ""]
    settings = result["settings"]
    foot = [f"Errors in {unit}; SD is the population SD (ddof 0) of the point errors."]
    if settings["normalize_pair"] is not None:
        foot.append(
            f"Each image's errors are scaled so that landmarks {settings['normalize_pair'][0]} and "
            f"{settings['normalize_pair'][1]} (zero-based) are {settings['normalize_distance']:g} mm apart."
        )
    missing = sum(g["summary"]["num_missing_predictions"] for g in result["groups"] if "(all)" not in g["name"])
    if missing:
        foot.append(
            f"{missing} landmarks with ground truth have no prediction: failures for SDR/#O/ID, left out of the "
            "mean/SD/median."
        )
    skipped = [
        i
        for g in result["groups"]
        if "(all)" not in g["name"]
        for i in g["summary"].get("normalization_skipped_ids", [])
    ]
    if skipped:
        foot.append(
            f"{len(skipped)} images without ground truth for a normalisation landmark left out ({skipped[:5]})."
        )
    foot += [f"Note: {n}." for n in result["notes"]]
    parts += [" ".join(foot), ""]
    if protocol == "csi2014":
        last = result["groups"][-1]
        if "regions" in last:
            hdr = ["Region", "Landmarks", f"PE median ({unit})", f"PE mean ± SD ({unit})"]
            hdr += [f"#O_{_r(r)}" for r in settings["radii"]] + [f"ID rate ({_r(settings['max_dist'])} mm)"]
            reg_rows = [
                [r["region"], str(r["count"]), _f(r["pe_median"]), _pm(r["pe_mean"], r["pe_std"])]
                + [str(r["outliers"][_r(x)]) for x in settings["radii"]]
                + [_pct(r["id_rate"])]
                for r in last["regions"]
            ]
            parts += [f"#### Per region ({last['name']})", "", markdown_table(hdr, reg_rows), ""]
        hdr = ["Vertebra", "Landmarks", f"PE median ({unit})", f"PE mean ± SD ({unit})"]
        hdr += [f"#O_{_r(r)}" for r in settings["radii"]]
        hdr += [f"ID rate ({_r(settings['max_dist'])} mm)"] if settings["identification"] else []
        vrows = []
        for row in last["per_landmark"]:
            if row["count"] == 0:
                continue
            vr = [row["name"], str(row["count"]), _f(row["pe_median"]), _pm(row["pe_mean"], row["pe_std"])]
            vr += [str(row[f"outliers_{_r(x)}"]) for x in settings["radii"]]
            vr += [_pct(row["id_rate"])] if settings["identification"] else []
            vrows.append(vr)
        parts += [f"#### Per vertebra ({last['name']})", "", markdown_table(hdr, vrows), ""]
    return "\n".join(parts)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "group"


def write_protocol_report(result: dict, output_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
    """Write a result of :func:`evaluate_protocol` to ``output_dir`` (created), every file atomically.

    Files: ``table.md`` (:func:`format_markdown`), ``table.csv`` (numbers of the main table), ``summary.json``
    (settings, summaries per group, CSI regions), ``per_landmark_<group>.csv``, ``errors_per_image.csv`` (one row
    per image and group, empty = no ground truth, ``inf`` = no prediction) and ``cumulative_ipe.png`` (one curve
    per group).

    Returns:
        ``{kind: path}`` of the files written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["table.md"] = atomic_write_text(out / "table.md", format_markdown(result))
    written["table.csv"] = write_metrics_csv(out / "table.csv", protocol_table(result)[2])
    summary = {k: v for k, v in result.items() if k != "groups"}
    summary["groups"] = [{k: v for k, v in g.items() if k not in ("errors", "per_landmark")} for g in result["groups"]]
    written["summary.json"] = write_metrics_json(out / "summary.json", summary)
    rows = []
    for g in result["groups"]:
        written[f"per_landmark_{_slug(g['name'])}.csv"] = write_metrics_csv(
            out / f"per_landmark_{_slug(g['name'])}.csv",
            g["per_landmark"],
        )
        if "(all)" in g["name"]:
            continue
        for i, err in zip(g["summary"]["ids"], g["errors"]):
            rows.append(
                {
                    "group": g["name"],
                    "id": i,
                    **{n: ("" if np.isnan(e) else float(e)) for n, e in zip(result["names"], err)},
                }
            )
    written["errors_per_image.csv"] = write_metrics_csv(out / "errors_per_image.csv", rows)
    if plot:
        from mlm.visualize import plot_cumulative_ipe

        unit = result["units"].split(" ")[0]
        curves = {f"{result['method']}, {g['name']}": g["errors"] for g in result["groups"]}
        written["cumulative_ipe.png"] = plot_cumulative_ipe(
            curves,
            out / "cumulative_ipe.png",
            radii=result["settings"]["radii"],
            unit=unit,
            title=f"{result['protocol']}: cumulative image mean error",
        )
    return written
