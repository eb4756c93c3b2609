"""The bundle metadata JSON schema shipped with the project (MONAI's official one is downloaded from a URL)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["metadata_schema_path"]


def metadata_schema_path() -> str:
    """Absolute path of ``mlm/bundle/metadata_schema.json``, for ``monai.bundle verify_metadata --filepath``."""
    return str(Path(__file__).with_name("metadata_schema.json"))
