"""Dataset readers, writers and converters to the project's generic datalist (see ``docs/datasets.md``).

One module per dataset (``isbi2015``, ``hand_xray``, ``csi2014``, ``verse``, ``afids``, ``chest``)
plus ``datalist`` (the generic format) and ``phantoms`` (generated data in the same layouts).
"""

from __future__ import annotations

from mlm.data.datalist import load_datalist, validate_datalist, write_datalist

__all__ = ["load_datalist", "validate_datalist", "write_datalist"]
