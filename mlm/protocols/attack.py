"""The attack protocol's tables and bars: TI vs ATI at the checkpoints, for each model and eps.

Input: the ``attack_metrics.json`` of the ``attack`` overlay's runs (:class:`mlm.handlers.LandmarkAttackReportHandler`)
grouped as ``{(model, eps_255): {method: report}}``. Output: one long CSV table (a row per model, eps, method and
checkpoint), a Markdown table per model and eps (TI and ATI side by side), and the bars of issue 14:

- ``ati_beats_ti``: at the last checkpoint both attacks share, ATI's targeted MRE is lower than TI's and its targeted
  SDR is at least TI's (Yao et al.: ATI reaches lower targeted error at equal iterations);
- ``stationary_kept_<method>``: the stationary landmarks' SDR at the last checkpoint is at least ``stationary_fraction``
  (90%) of the same landmarks' clean SDR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlm.protocols.tables import markdown_table

__all__ = ["attack_bars", "attack_markdown", "attack_rows", "common_checkpoint"]

_VERDICT = {True: "PASS", False: "FAIL", None: "n/a"}
#: the columns of a checkpoint's metrics in the attack reports
_METRICS = (
    "targeted_mre",
    "targeted_medre",
    "targeted_sdr",
    "stationary_mre",
    "stationary_medre",
    "stationary_sdr",
)


def _f(v: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{scale * v:.{digits}f}"


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _by_iteration(report: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    return {int(row["iteration"]): row for row in report["iterations"]}


def common_checkpoint(reports: Mapping[str, Mapping[str, Any]]) -> int | None:
    """The last checkpoint (> 0) every report has, or None."""
    shared = None
    for report in reports.values():
        ks = {k for k in _by_iteration(report) if k > 0}
        shared = ks if shared is None else shared & ks
    return max(shared) if shared else None


def attack_rows(results: Mapping[tuple[str, float], Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Long table: one row per model, eps (grey levels), method and checkpoint (iteration 0 = clean prediction),
    with the metrics of :func:`mlm.attacks.attack_summary`, the clean stationary SDR, the images and the isolation
    correlation."""
    rows = []
    for (model, eps), reports in results.items():
        for method, report in reports.items():
            for k, row in sorted(_by_iteration(report).items()):
                rows.append(
                    {
                        "model": model,
                        "eps_255": float(eps),
                        "method": method,
                        "iteration": k,
                        **{m: row.get(m) for m in _METRICS},
                        "clean_stationary_sdr": report["clean"].get("stationary_sdr"),
                        "num_images": len(report.get("ids", [])),
                        "units": report.get("units", "mm"),
                        "isolation_pearson_r": (report.get("isolation") or {}).get("pearson_r"),
                    }
                )
    return rows


def attack_bars(reports: Mapping[str, Mapping[str, Any]], stationary_fraction: float = 0.9) -> list[dict[str, Any]]:
    """The issue's bars for one model and eps: ``[{"bar", "passed" (True/False/None: not measurable), "detail"}]``.

    Args:
        reports: ``{method: attack_metrics.json}`` (``"ti"``, ``"ati"``, ...).
        stationary_fraction: the stationary landmarks must keep this fraction of their clean SDR.
    """
    bars = []
    if "ti" in reports and "ati" in reports:
        k = common_checkpoint({m: reports[m] for m in ("ti", "ati")})
        if k is None:
            bars.append({"bar": "ati_beats_ti", "passed": None, "detail": "no common checkpoint"})
        else:
            ti, ati = _by_iteration(reports["ti"])[k], _by_iteration(reports["ati"])[k]
            measurable = all(_finite(r[m]) for r in (ti, ati) for m in ("targeted_mre", "targeted_sdr"))
            passed = (
                (ati["targeted_mre"] < ti["targeted_mre"] and ati["targeted_sdr"] >= ti["targeted_sdr"])
                if (measurable)
                else None
            )
            unit = reports["ati"].get("units", "mm")
            radius = reports["ati"].get("radius", 4.0)
            bars.append(
                {
                    "bar": "ati_beats_ti",
                    "passed": passed,
                    "detail": f"iteration {k}: targeted MRE ATI {_f(ati['targeted_mre'])} vs TI "
                    f"{_f(ti['targeted_mre'])} {unit}, targeted SDR {radius:g} {unit} ATI "
                    f"{_f(ati['targeted_sdr'], 100)}% vs TI {_f(ti['targeted_sdr'], 100)}%",
                }
            )
    for method, report in reports.items():
        rows = _by_iteration(report)
        last = rows[max(rows)]
        clean = report["clean"].get("stationary_sdr")
        now = last.get("stationary_sdr")
        if not (_finite(clean) and _finite(now)):
            passed, detail = None, "no stationary landmark with ground truth"
        else:
            passed = now >= stationary_fraction * clean
            detail = (
                f"iteration {max(rows)}: stationary SDR {_f(now, 100)}% vs clean {_f(clean, 100)}% "
                f"(needs >= {100 * stationary_fraction:g}% of it)"
            )
        bars.append({"bar": f"stationary_kept_{method}", "passed": passed, "detail": detail})
    return bars


def attack_markdown(
    results: Mapping[tuple[str, float], Mapping[str, Mapping[str, Any]]],
    bars: Mapping[tuple[str, float], Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """Markdown: per model and eps, a table of the checkpoints with each method's targeted MRE / MedRE / SDR and
    stationary MRE / SDR side by side, the isolation correlation and the bars (PASS / FAIL / n/a)."""
    parts = []
    for (model, eps), reports in results.items():
        methods = list(reports)
        any_report = next(iter(reports.values()))
        unit, radius = any_report.get("units", "mm"), any_report.get("radius", 4.0)
        per = {m: _by_iteration(r) for m, r in reports.items()}
        ks = sorted(set().union(*(set(p) for p in per.values())))
        header = ["iteration"]
        for what in (
            "targeted MRE",
            "targeted MedRE",
            f"targeted SDR {radius:g}",
            "stationary MRE",
            f"stationary SDR {radius:g}",
        ):
            header += [f"{m.upper()} {what}" for m in methods]
        table = []
        for k in ks:
            cells = [("clean" if k == 0 else str(k))]
            for key, scale in (
                ("targeted_mre", 1),
                ("targeted_medre", 1),
                ("targeted_sdr", 100),
                ("stationary_mre", 1),
                ("stationary_sdr", 100),
            ):
                for m in methods:
                    row = per[m].get(k)
                    cells.append(_f(row.get(key) if row else None, scale))
            table.append(cells)
        n_images = len(any_report.get("ids", []))
        parts.append(
            f"### {model}, eps {eps:g}/255 ({n_images} images; MRE in {unit}, SDR in %)\n\n"
            + markdown_table(header, table)
        )
        iso = ", ".join(
            f"{m.upper()} r = {_f((r.get('isolation') or {}).get('pearson_r'), 1, 3)}" for m, r in reports.items()
        )
        parts.append(f"Degree of isolation vs targeted error (Pearson, over landmarks): {iso}")
        lines = [
            f"- {_VERDICT[bar['passed']]} {bar['bar']}: {bar['detail']}" for bar in (bars or {}).get((model, eps), [])
        ]
        if lines:
            parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
