"""``configs/metadata.json`` of an exported model-zoo bundle: evaluation figures, required packages, schema check.

The model zoo's CI installs ``monai==<monai_version>``, ``torch==<pytorch_version>``, ``numpy==<numpy_version>`` and
every ``<name>==<version>`` of ``required_packages_version`` (``ci/get_bundle_requirements.py``), then validates the
file against the official metadata schema (``mlm/bundle/metadata_schema.json`` is a verbatim copy of it).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

from mlm.bundle.schema import metadata_schema_path

__all__ = [
    "MetadataError",
    "distribution_names",
    "eval_metrics_from_report",
    "normalize_distribution",
    "required_packages",
    "validate_metadata",
]

#: this project's distribution: an exported bundle carries its code in ``scripts/`` instead
PROJECT_DISTRIBUTION = "monai-landmarks"
#: packages the metadata pins with their own keys (``monai_version``, ``pytorch_version``, ``numpy_version``)
PINNED_BY_KEY = {"monai": "monai_version", "torch": "pytorch_version", "numpy": "numpy_version"}


class MetadataError(ValueError):
    """The exported metadata would be wrong or incomplete."""


def normalize_distribution(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503): ``Pytorch_Ignite`` -> ``pytorch-ignite``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_names(import_names: Iterable[str]) -> dict[str, str]:
    """The installed distribution that provides each top-level import name (``{"PIL": "pillow"}``).

    A name that no installed distribution provides maps to its own normalised name.
    """
    provided = packages_distributions()
    return {n: normalize_distribution((provided.get(n) or [n])[0]) for n in import_names}


def required_packages(
    listed: Mapping[str, str],
    third_party: Mapping[str, Iterable[str]],
    project_packages: Iterable[str] = ("mlm", "transforms"),
) -> dict[str, str]:
    """``required_packages_version`` of the exported bundle.

    Args:
        listed: the source bundle's ``required_packages_version`` (the versions are kept as they are).
        third_party: top-level import names of the vendored code, each with the modules importing it
            (:attr:`mlm.bundle.vendor.VendoredCode.third_party`).
        project_packages: this project's import packages, whose distribution is vendored and so dropped.

    Raises:
        MetadataError: the vendored code imports a package that ``listed`` does not name (the message names the
            importing modules), or a version is not a valid version number.
    """
    from packaging.version import InvalidVersion, Version

    own = {*distribution_names(project_packages).values(), PROJECT_DISTRIBUTION}
    keep = {name: version for name, version in listed.items() if normalize_distribution(name) not in own}
    names = {normalize_distribution(n) for n in keep}
    dists = distribution_names(third_party)
    missing = {
        dist: sorted(third_party[imp])
        for imp, dist in dists.items()
        if dist not in names and dist not in PINNED_BY_KEY and imp not in PINNED_BY_KEY
    }
    if missing:
        lines = "; ".join(f"{d} (imported by {', '.join(m)})" for d, m in sorted(missing.items()))
        raise MetadataError(f"required_packages_version of the bundle's metadata.json does not name: {lines}.")
    for name, version in keep.items():
        try:
            Version(str(version))
        except InvalidVersion:
            raise MetadataError(f"required_packages_version: {name} has no valid version ({version!r}).") from None
    return keep


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def eval_metrics_from_report(report: Mapping[str, Any]) -> dict[str, float | int]:
    """Numeric ``eval_metrics`` from an evaluation report (``<output_dir>/metrics.json`` of ``evaluate.yaml``).

    Keys: ``mean_point_error_mm``, ``point_error_std_mm``, ``median_point_error_mm``, ``max_point_error_mm``,
    ``sdr_<r>mm`` (success detection rate at radius r), ``identification_rate_<d>mm`` when the report has it,
    ``mean_point_error_normalized_mm`` / ``median_point_error_normalized_mm`` for wrist-normalised reports,
    ``num_images`` and ``num_landmarks_evaluated``. A statistic the report could not compute (null) is left out.

    Raises:
        MetadataError: the report has no finite mean point error (not an evaluation report, or nothing evaluated).
    """
    if not _finite(report.get("pe_mean")):
        raise MetadataError(
            "the evaluation report has no finite mean point error ('pe_mean'): pass the metrics.json "
            "that configs/evaluate.yaml wrote."
        )
    units = report.get("units", "mm")
    if units != "mm":
        raise MetadataError(f"the evaluation report's errors are in {units!r}, not mm.")
    out: dict[str, float | int] = {}
    for key, name in (("pe_mean", "mean"), ("pe_std", "std"), ("pe_median", "median"), ("pe_max", "max")):
        if _finite(report.get(key)):
            label = "point_error_std_mm" if name == "std" else f"{name}_point_error_mm"
            out[label] = float(report[key])
    for radius, rate in (report.get("sdr") or {}).items():
        if _finite(rate):
            out[f"sdr_{radius}mm"] = float(rate)
    if _finite(report.get("identification_rate")):
        out[f"identification_rate_{float(report.get('identification_max_dist_mm', 20.0)):g}mm"] = float(
            report["identification_rate"]
        )
    normalized = report.get("normalized")
    if isinstance(normalized, Mapping):
        for key, name in (("pe_mean", "mean"), ("pe_median", "median")):
            if _finite(normalized.get(key)):
                out[f"{name}_point_error_normalized_mm"] = float(normalized[key])
    for key, name in (("num_images", "num_images"), ("count", "num_landmarks_evaluated")):
        if _finite(report.get(key)):
            out[name] = int(report[key])
    return out


def validate_metadata(metadata: Mapping[str, Any], schema: str | os.PathLike | None = None) -> None:
    """Validate ``metadata`` against the official model-zoo schema (default: the project's copy of it).

    Raises:
        MetadataError: the metadata does not validate; the message holds the schema's complaint and its path.
    """
    import jsonschema

    schema_dict = json.loads(Path(schema or metadata_schema_path()).read_text(encoding="utf-8"))
    try:
        jsonschema.validate(copy.deepcopy(dict(metadata)), schema_dict)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise MetadataError(f"metadata.json fails the model-zoo schema at {where}: {e.message}") from None
