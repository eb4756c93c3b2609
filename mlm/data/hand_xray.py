"""Digital Hand Atlas hand radiographs with Payer et al.'s 37 landmarks (MICCAI 2016, MedIA 2019).

Original layout::

    ROOT/images/*.mha   (Payer's MetaImage copies: 2D stored as W x H x 1, spacing 0.108-0.165 mm)
      or ROOT/*.jpg     (the Digital Hand Atlas JPEGs, no spacing: errors in px)
    SETUP/all.csv       (``id,x1,y1,...,x37,y37`` in px, no header; 910 images)
    SETUP/cv/set{1,2,3}/train.txt, test.txt        (3-fold cross-validation)
    SETUP/cv_reduced/set{k}/..., cv_rand/...        (reduced-training-data experiments)

Loading a ``.mha``: MONAI's ``LoadImage`` gives ``(W, H, 1)``; ``EnsureChannelFirst`` then
``SqueezeDim(dim=-1)`` gives ``(1, W, H)`` with a 2D affine carrying the spacing
(:func:`load_hand_image` does exactly this). Landmarks are px ``(x, y)`` = voxel ``(i, j)``.

Normalised error: Payer reports errors scaled so that the distance between landmarks
``WRIST_WIDTH_PAIR`` (zero-based) is ``WRIST_WIDTH_MM``; GU2Net uses the pair ``(0, 4)``.
The metric applies it on request; the landmark files stay in voxel coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlm.data.datalist import read_coordinate_table, read_id_list, write_coordinate_table, write_landmark_datalist
from mlm.metrics import GU2NET_HAND_NORMALIZE_PAIR, HAND_XRAY_NORMALIZE_PAIR

__all__ = [
    "NUM_LANDMARKS",
    "LANDMARK_NAMES",
    "WRIST_WIDTH_PAIR",
    "WRIST_WIDTH_PAIR_GU2NET",
    "WRIST_WIDTH_MM",
    "read_all_csv",
    "write_all_csv",
    "wrist_width_scale",
    "load_hand_image",
    "find_hand_images",
    "convert_hand_xray",
]

NUM_LANDMARKS = 37
LANDMARK_NAMES = [f"L{k}" for k in range(NUM_LANDMARKS)]
#: zero-based landmark pair whose distance is normalised to ``WRIST_WIDTH_MM`` (Payer's code; one definition,
#: in :mod:`mlm.metrics`).
WRIST_WIDTH_PAIR = HAND_XRAY_NORMALIZE_PAIR
#: the pair GU2Net's code uses instead (zero-based).
WRIST_WIDTH_PAIR_GU2NET = GU2NET_HAND_NORMALIZE_PAIR
#: assumed wrist width, mm.
WRIST_WIDTH_MM = 50.0


def read_all_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read Payer's ``setup/all.csv``: ``{id: (37, 2) px array (x, y)}`` in file order."""
    return read_coordinate_table(path, NUM_LANDMARKS, 2)


def write_all_csv(path: str | os.PathLike, rows: dict[str, np.ndarray], overwrite: bool = True) -> Path:
    """Write ``{id: (37, 2) px array}`` as Payer's ``all.csv`` (``id,x1,y1,...``, no header), atomically."""
    return write_coordinate_table(path, rows, NUM_LANDMARKS, 2, fmt="{:.10g}", overwrite=overwrite)


def wrist_width_scale(points: np.ndarray, pair: tuple[int, int] = WRIST_WIDTH_PAIR) -> float:
    """Factor that turns errors in the units of ``points`` into wrist-width-normalised mm.

    Args:
        points: ``(37, D)`` ground-truth landmarks of one image.
        pair: zero-based landmark pair (default Payer's ``(1, 5)``).

    Returns:
        ``WRIST_WIDTH_MM / |points[pair[0]] - points[pair[1]]|``.
    """
    p = np.asarray(points, dtype=np.float64)
    d = float(np.linalg.norm(p[pair[0]] - p[pair[1]]))
    if not np.isfinite(d) or d <= 0:
        raise ValueError(f"wrist width between landmarks {pair} is {d}: cannot normalise.")
    return WRIST_WIDTH_MM / d


def load_hand_image(path: str | os.PathLike):
    """Load a hand radiograph as a ``(1, W, H)`` MetaTensor (a W x H x 1 ``.mha`` is squeezed to 2D).

    The affine keeps the file's spacing (mm); a JPEG gets unit spacing.
    """
    from monai.transforms import EnsureChannelFirst, LoadImage, SqueezeDim

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found.")
    img = EnsureChannelFirst()(LoadImage(image_only=True)(str(path)))
    if img.ndim == 4 and img.shape[-1] == 1:
        img = SqueezeDim(dim=-1)(img)
    if img.ndim != 3:
        raise ValueError(f"{path}: expected a 2D image, got array shape {tuple(img.shape)} (channel first).")
    return img


def find_hand_images(root: str | os.PathLike) -> dict[str, Path]:
    """``{id: image path}`` for ``root/images/*.mha`` or ``root/*.jpg`` (``.mha`` preferred)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found.")
    found: dict[str, Path] = {}
    for folder in (root / "images", root):
        for p in sorted(folder.glob("*")):
            if p.suffix.lower() in (".mha", ".mhd", ".nii", ".gz", ".jpg", ".jpeg", ".png"):
                stem = p.name.split(".")[0]
                if stem in found and found[stem].suffix.lower() != ".mha" and p.suffix.lower() == ".mha":
                    found[stem] = p
                found.setdefault(stem, p)
    if not found:
        raise FileNotFoundError(f"{root}: no hand images (*.mha under images/ or *.jpg).")
    return found


def convert_hand_xray(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    all_csv: str | os.PathLike | None = None,
    cv_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    allow_missing_images: bool = False,
) -> list[Path]:
    """Convert the hand X-ray layout into the project's datalist format.

    Writes ``output_dir/landmarks/<id>.json`` (voxel ``(x, y)``), ``datalist.json`` (all images
    with annotations in ``training``; when split files ``train.txt``, ``valid.txt`` (or ``val.txt``) and
    ``test.txt`` lie beside the annotation table, its splits ``training``, ``validation`` and ``test``) and, for
    each ``cv_dir/set{k}/train.txt, test.txt``,
    ``datalist_cv{k}.json`` (``training``/``test``); other ``*.txt`` in a set folder (e.g.
    ``train_10.txt``) become extra splits named after the file.

    Args:
        root: folder with ``images/*.mha`` or ``*.jpg``.
        output_dir: output folder.
        all_csv: annotation table (default ``root/setup/all.csv``).
        cv_dir: folder with ``set*/`` split files (default ``root/setup/cv`` when it exists).
        overwrite: replace existing datalists.
        allow_missing_images: drop split ids whose image is absent instead of raising (useful
            with Payer's 9-image sample of a 910-image annotation table).
    """
    root = Path(root)
    all_csv = Path(all_csv) if all_csv is not None else root / "setup" / "all.csv"
    ann = read_all_csv(all_csv)
    images = find_hand_images(root)
    unannotated = sorted(set(images) - set(ann))
    if unannotated:
        raise ValueError(f"{images[unannotated[0]]}: image has no row in {all_csv}.")
    present = sorted(i for i in ann if i in images)
    if not present:
        raise FileNotFoundError(f"{all_csv}: none of its ids has an image under {root}.")
    items = {}
    for i in present:
        item = {"image": str(images[i]), "points": ann[i]}
        if images[i].suffix.lower() in (".jpg", ".jpeg", ".png"):
            item["units"] = "px"
        items[i] = item

    def keep(ids: list[str], where: Path) -> list[str]:
        missing = [i for i in ids if i not in images]
        if missing and not allow_missing_images:
            raise FileNotFoundError(
                f"{where}: ids without an image under {root}: {missing[:5]} ({len(missing)} in all)."
            )
        return [i for i in ids if i in images]

    split_sets = {"datalist.json": {"training": present}}
    # a layout with its own split files beside all.csv (e.g. the 112-image half-resolution set: train.txt, valid.txt)
    direct = {}
    for stem, name in (("train", "training"), ("valid", "validation"), ("val", "validation"), ("test", "test")):
        f = all_csv.parent / f"{stem}.txt"
        if f.is_file() and name not in direct:
            direct[name] = keep(read_id_list(f), f)
    if direct:
        split_sets["datalist.json"] = direct
    if cv_dir is None and (root / "setup" / "cv").is_dir():
        cv_dir = root / "setup" / "cv"
    if cv_dir is not None:
        cv_dir = Path(cv_dir)
        sets = sorted(p for p in cv_dir.glob("set*") if p.is_dir())
        if not sets:
            raise FileNotFoundError(f"{cv_dir}: no set*/ folders with train.txt/test.txt.")
        for s in sets:
            splits = {}
            for f in sorted(s.glob("*.txt")):
                name = {"train": "training", "test": "test", "val": "validation"}.get(f.stem, f.stem)
                splits[name] = keep(read_id_list(f), f)
            split_sets[f"datalist_cv{s.name[3:]}.json"] = splits
    header = {
        "name": "hand_xray_dha",
        "description": "Digital Hand Atlas, 37 landmarks (Payer et al.), voxel (x, y)",
        "spatial_dims": 2,
        "num_landmarks": NUM_LANDMARKS,
        "landmark_names": LANDMARK_NAMES,
    }
    return write_landmark_datalist(output_dir, header, items, split_sets, "voxel", overwrite=overwrite)
