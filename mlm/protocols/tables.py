"""The protocols' tables: Markdown (as printed and in ``table.md``) and the numeric rows of ``table.csv``."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["markdown_table", "protocol_table", "format_markdown"]


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
