"""Dataset checks for bundles: a missing or mismatched ``dataset_dir`` fails early with a message that says how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

from mlm.data.datalist import datalist_split_names, load_datalist, read_datalist_json

__all__ = ["check_dataset_dir", "load_split", "PREPARE_HINTS"]

#: how to get each bundle's data: phantom name for ``scripts/generate_phantoms.py`` and the
#: ``scripts/prepare_dataset.py`` converter of the real dataset (None: no public dataset, use the generic format).
PREPARE_HINTS: dict[str, tuple[str, str | None]] = {
    "spine_ct": ("spine_ct", "csi2014"),
    "ceph": ("ceph", "isbi2015"),
    "hand_xray": ("hand_xray", "hand_xray"),
    "hand_mri": ("hand_mri", None),
}


def _hint(dataset_dir: Path, dataset: str) -> str:
    phantom, real = PREPARE_HINTS.get(dataset, (dataset, None))
    if real is None:
        real_data = (
            "or write a generic datalist for your own data (docs/datasets.md) and check it with "
            "`python scripts/prepare_dataset.py generic-check <datalist.json>`"
        )
    else:
        real_data = (
            f"or convert the real dataset with `python scripts/prepare_dataset.py {real} <original data folder> "
            f"{dataset_dir}` (docs/datasets.md)"
        )
    return (
        f"Generate the phantom data with `python scripts/generate_phantoms.py {phantom} --out {dataset_dir}` "
        f"(add `--num-images N --seed S` as needed), {real_data}; or pass another folder with "
        f"`--dataset_dir <folder holding datalist.json>`."
    )


def check_dataset_dir(
    dataset_dir: str | os.PathLike, dataset: str = "spine_ct", datalist: str = "datalist.json"
) -> str:
    """Check that ``dataset_dir`` holds a datalist and return the datalist's path.

    Args:
        dataset_dir: the dataset root (the folder holding ``datalist``).
        dataset: the dataset kind (``"spine_ct"``, ``"ceph"``, ...), used for the how-to in the error message.
        datalist: datalist file name inside ``dataset_dir`` (or an absolute path).

    Raises:
        FileNotFoundError: the folder or the datalist is missing; the message says how to generate or prepare it.
    """
    root = Path(dataset_dir).expanduser()
    path = Path(datalist) if Path(datalist).is_absolute() else root / datalist
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {root} does not exist. {_hint(root, dataset)}")
    if not path.is_file():
        raise FileNotFoundError(f"dataset_dir {root} has no {path.name}. {_hint(root, dataset)}")
    return str(path)


def load_split(
    dataset_dir: str | os.PathLike,
    split: str = "training",
    num_landmarks: int | None = None,
    spatial_dims: int | None = None,
    dataset: str = "spine_ct",
    datalist: str = "datalist.json",
    max_items: int | None = None,
) -> list[dict]:
    """Items of one split of ``dataset_dir``'s datalist, with absolute paths, after checking it fits the bundle.

    Args:
        dataset_dir: dataset root (see :func:`check_dataset_dir`).
        split: ``"training"``, ``"validation"``, ``"test"`` (or any split of the datalist).
        num_landmarks: the bundle's landmark count; a datalist declaring another count raises ``ValueError``.
        spatial_dims: the bundle's dimensionality; a datalist declaring another raises ``ValueError``.
        dataset: dataset kind for the error message's how-to.
        datalist: datalist file name.
        max_items: keep only the first ``max_items`` items (None: all).

    Returns:
        a list of item dicts (``id``, ``image``, ``landmarks``, optional ``spacing``).
    """
    path = check_dataset_dir(dataset_dir, dataset, datalist)
    header = read_datalist_json(path)
    declared = header.get("num_landmarks")
    if num_landmarks is not None and declared is not None and int(declared) != int(num_landmarks):
        raise ValueError(
            f"{path}: the datalist has {declared} landmarks per image but the bundle's network predicts "
            f"{num_landmarks}; use a dataset with {num_landmarks} landmarks or set `--num_landmarks {declared}` "
            "to train a new model."
        )
    dims = header.get("spatial_dims")
    if spatial_dims is not None and dims is not None and int(dims) != int(spatial_dims):
        raise ValueError(f"{path}: the datalist is {dims}D but the bundle is {spatial_dims}D.")
    available = datalist_split_names(header)
    if split not in available:
        raise ValueError(
            f"{path}: no split '{split}' (available: {available}). Choose one with the bundle's `--train_split` / "
            "`--val_split` (training) or `--infer_split` (inference, evaluation), or add the split to the datalist."
        )
    items = load_datalist(path, split)
    if not items:
        raise ValueError(f"{path}: split '{split}' is empty.")
    return items if max_items is None else items[: int(max_items)]
