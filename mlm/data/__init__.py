"""Dataset readers, writers and converters to the project's generic datalist (see ``docs/datasets.md``).

One module per dataset (``isbi2015``, ``hand_xray``, ``csi2014``, ``verse``, ``afids``, ``chest``)
plus ``datalist`` (the generic format and its checks), ``image_header`` (image geometry without the
pixels) and ``phantoms`` (generated data in the same layouts).
"""

from __future__ import annotations

from mlm.data.datalist import (
    DatalistCheck,
    check_datalist,
    check_datalist_ids,
    check_safe_id,
    load_datalist,
    validate_datalist,
    write_datalist,
)
from mlm.data.image_header import ImageHeader, header_image, read_image_header

__all__ = [
    "DatalistCheck",
    "ImageHeader",
    "header_image",
    "check_datalist",
    "check_datalist_ids",
    "check_safe_id",
    "load_datalist",
    "read_image_header",
    "validate_datalist",
    "write_datalist",
]
