"""Ground truth of a datalist item in world mm, by the bundles' own path.

The bundles' evaluation loads an item's landmarks into voxels of the loaded image (``transforms.LoadLandmarksd``:
landmark file or inline list, the item's ``coordinate_system``, LPS/RAS flip, inverse image affine), tracks them
through the preprocessing and maps them to world mm with the preprocessed image's affine
(``transforms.post.LandmarksToWorldd``); tracking changes the grid, not the world point. The protocols call the same
two transforms on the image as the bundles load it, built from its header (:func:`mlm.data.header_image`: shape and
affine of ``LoadImage`` + ``EnsureSpatialDims``, the item's ``spacing`` as ``SetSpacingd`` gives it), so that both
paths agree to float64 rounding (``tests/mlm/test_protocols.py`` checks it against the bundle pipeline on phantoms).
"""

from __future__ import annotations

import numpy as np

from mlm.data.image_header import header_image, read_image_header
from transforms.landmarks.array import LoadLandmarks
from transforms.post.array import LandmarksToWorld

__all__ = ["PIXEL_ONLY_SUFFIXES", "ground_truth_world"]

#: image files without physical metadata: voxel landmarks of such an image without ``"spacing"`` are in px.
PIXEL_ONLY_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif")


def ground_truth_world(item: dict, num_landmarks: int, spatial_dims: int) -> tuple[np.ndarray, str]:
    """An item's ground-truth landmarks in RAS mm (or px), as the bundles' evaluation sees them.

    Args:
        item: a datalist item with absolute paths (:func:`mlm.data.load_datalist`): ``image`` (its header is read,
            not its pixels), ``landmarks`` (a landmark file or an inline list of voxel coordinates), optionally
            ``spacing`` (pixel-only images) and ``coordinate_system``.
        num_landmarks: expected rows.
        spatial_dims: expected coordinates per row.

    Returns:
        ``(points (N, D) float64, unit)``: unit ``"mm"``, or ``"px"`` for a pixel-only image (PNG, BMP, JPEG)
        without ``spacing`` (its affine is the identity: world coordinates are pixel indices). NaN rows missing.

    Raises:
        ValueError: no ``landmarks`` in the item, a landmark count or dimension that does not match, an
            unreadable landmark file or image header (the message names the file and the item).
        FileNotFoundError: the image or the landmark file does not exist.
    """
    where = f"item {item.get('id')!r} ({item.get('image')})"
    if "landmarks" not in item:
        raise ValueError(f"{where}: no 'landmarks' (ground truth) in the datalist item.")
    path = item["image"][0] if isinstance(item["image"], list) else item["image"]
    spacing = item.get("spacing")
    try:
        image = header_image(read_image_header(path, verify_data=False), spatial_dims, spacing)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"{e} [{where}; the ground truth reaches world mm through the image's geometry]") from None
    load = LoadLandmarks(num_landmarks=num_landmarks, outside="keep")
    landmarks = load(item["landmarks"], image, item.get("coordinate_system"))
    world = LandmarksToWorld()(landmarks, image)
    unit = "px" if spacing is None and str(path).lower().endswith(PIXEL_ONLY_SUFFIXES) else "mm"
    return np.asarray(world, dtype=np.float64), unit
