"""The official MONAI model-zoo metadata schema (``meta_schema_20240725.json``), shipped because its URL cannot be reached offline."""

from __future__ import annotations

from pathlib import Path

__all__ = ["metadata_schema_path"]


def metadata_schema_path() -> str:
    """Absolute path of ``mlm/bundle/metadata_schema.json`` (a verbatim copy of the official schema that model-zoo
    bundles name in their ``metadata.json``), for ``monai.bundle verify_metadata --filepath``."""
    return str(Path(__file__).with_name("metadata_schema.json"))
