"""3D Slicer markups JSON (``.mrk.json``): a fiducial list that Slicer opens on the image it belongs to.

The format is Slicer's markups schema v1.0.3 (``Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json``
in Slicer's repository; Slicer >= 4.11 reads it and accepts any ``markups-schema-v1.x.y`` id), as Slicer's own
writer (``vtkMRMLMarkupsJsonStorageNode``) lays it out::

    {"@schema": ".../markups-schema-v1.0.3.json#",
     "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm",
                  "controlPoints": [{"id": "1", "label": "sella", "position": [x, y, z],
                                     "positionStatus": "defined", ...}, ...],
                  "display": {...}}]}

Positions are always 3D physical coordinates (mm) in the stated system; a 2D image's points lie in its plane (the
caller gives the third coordinate, 0 for a plain 2D file). A missing landmark (NaN row) is written as a control
point with ``"positionStatus": "undefined"`` and no ``position``: Slicer lists it, unplaced, so that row ``k`` stays
landmark ``k`` and the user can place it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write

__all__ = ["MARKUPS_SCHEMA_ID", "markups_fiducials", "write_markups_json"]

#: the ``@schema`` id Slicer writes (and expects, any v1.x.y accepted)
MARKUPS_SCHEMA_ID = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)

#: a control point's orientation matrix: the identity in RAS, written in LPS as Slicer does (first 6 entries negated)
_ORIENTATION = {
    "LPS": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
    "RAS": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
}


def markups_fiducials(
    points: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    coordinate_system: str = "LPS",
    name: str | None = None,
    descriptions: Sequence[str] | None = None,
    fixed_number_of_points: bool = True,
) -> dict[str, Any]:
    """The content of a Slicer markups fiducial file (schema v1.0.3) holding ``points``.

    Args:
        points: ``(N, 3)`` physical coordinates in mm in ``coordinate_system`` (``(N, 2)`` gets z = 0); a NaN row is
            a missing landmark (an unplaced control point).
        labels: ``N`` control-point labels (the landmark names), shown next to the points in Slicer.
        coordinate_system: ``"LPS"`` (what ITK, DICOM and Slicer's own files use) or ``"RAS"``.
        name: the markups node's name in Slicer (default: Slicer names it after the file).
        descriptions: optional ``N`` control-point descriptions.
        fixed_number_of_points: lock the number of control points (landmark ``k`` stays point ``k``; points can
            still be moved, placed or unset in Slicer).

    Raises:
        ValueError: wrong shapes, label count, partly missing points, infinite coordinates or an unknown system.
    """
    if coordinate_system not in _ORIENTATION:
        raise ValueError(f"markups: coordinate_system must be 'LPS' or 'RAS', got {coordinate_system!r}.")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"markups: points must have shape (N, 2) or (N, 3), got {pts.shape}.")
    if pts.shape[1] == 2:
        pts = np.concatenate([pts, np.where(np.isnan(pts[:, :1]), np.nan, 0.0)], axis=1)
    labels = [str(s) for s in labels]
    if len(labels) != len(pts):
        raise ValueError(f"markups: {len(labels)} labels for {len(pts)} points.")
    if descriptions is not None and len(descriptions) != len(pts):
        raise ValueError(f"markups: {len(descriptions)} descriptions for {len(pts)} points.")
    nan = np.isnan(pts)
    partial = np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1))
    if partial.size:
        raise ValueError(f"markups: point {int(partial[0])} is missing only some coordinates ({pts[partial[0]]}).")
    if np.isinf(pts).any():
        raise ValueError(f"markups: point {int(np.flatnonzero(np.isinf(pts).any(axis=1))[0])} is infinite.")
    control_points = []
    for k, (p, label) in enumerate(zip(pts, labels)):
        cp: dict[str, Any] = {
            "id": str(k + 1),
            "label": label,
            "description": "" if descriptions is None else str(descriptions[k]),
            "associatedNodeID": "",
        }
        if not np.isnan(p).any():
            cp["position"] = [float(c) for c in p]
        cp.update(
            {
                "orientation": list(_ORIENTATION[coordinate_system]),
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "undefined" if np.isnan(p).any() else "defined",
            }
        )
        control_points.append(cp)
    markup: dict[str, Any] = {"type": "Fiducial"}
    if name is not None:
        markup["name"] = str(name)
    markup.update(
        {
            "coordinateSystem": coordinate_system,
            "coordinateUnits": "mm",
            "locked": False,
            "fixedNumberOfControlPoints": bool(fixed_number_of_points),
            "labelFormat": "%N-%d",
            "lastUsedControlPointNumber": len(control_points),
            "controlPoints": control_points,
            "measurements": [],
            "display": {"visibility": True, "pointLabelsVisibility": True},
        }
    )
    return {"@schema": MARKUPS_SCHEMA_ID, "markups": [markup]}


def write_markups_json(
    path: str | os.PathLike,
    points: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    coordinate_system: str = "LPS",
    name: str | None = None,
    descriptions: Sequence[str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write :func:`markups_fiducials` to ``path`` (``<name>.mrk.json``) atomically; returns the path.

    Raises:
        ValueError: see :func:`markups_fiducials`.
        FileExistsError: ``overwrite`` is False and ``path`` exists.
    """
    content = markups_fiducials(points, labels, coordinate_system, name, descriptions)
    return atomic_write(path, json.dumps(content, indent=2) + "\n", overwrite=overwrite)
