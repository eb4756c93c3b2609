"""Dataset checks for bundles: a missing or mismatched ``dataset_dir`` fails early with a message that says how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

from mlm.data.datalist import (
    check_item_spacing,
    datalist_split_names,
    load_datalist,
    read_datalist_json,
    read_item_landmarks,
)

__all__ = ["check_dataset_dir", "load_split", "PREPARE_HINTS"]

#: how to get each bundle's data: phantom name for ``scripts/generate_phantoms.py`` and the
#: ``scripts/prepare_dataset.py`` converter of the real dataset (None: no public dataset, use the generic format).
PREPARE_HINTS: dict[str, tuple[str, str | None]] = {
    "spine_ct": ("spine_ct", "csi2014"),
    "ceph": ("ceph", "isbi2015"),
    "hand_xray": ("hand_xray", "hand_xray"),
    "hand_mri": ("hand_mri", None),
    "spine_ap": ("spine_ap", "aasce"),
    "chest": ("chest", "chest"),
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
    check_landmarks: bool = True,
    landmark_names: list[str] | None = None,
) -> list[dict]:
    """Items of one split of ``dataset_dir``'s datalist, with absolute paths, after checking it fits the bundle.

    Cheap checks run here, before any engine starts, so that a bad datalist fails with one sentence naming the
    file: the landmark count and dimensionality against the bundle, the ids (safe file names, unique; see
    :func:`mlm.data.check_datalist_ids`), each item's ``spacing`` (positive), and, with ``check_landmarks``,
    every landmark file of the items used (:func:`mlm.data.datalist.read_item_landmarks`: readable, real
    numbers, ``num_landmarks`` rows, the datalist's ``landmark_names`` in order, the item's coordinate
    system agreeing with the file's). Images are not opened here (``python scripts/prepare_dataset.py
    generic-check`` reads their headers too).

    Args:
        dataset_dir: dataset root (see :func:`check_dataset_dir`).
        split: ``"training"``, ``"validation"``, ``"test"`` (or any split of the datalist).
        num_landmarks: the bundle's landmark count; a datalist declaring another count raises ``ValueError``.
        spatial_dims: the bundle's dimensionality; a datalist declaring another raises ``ValueError``.
        dataset: dataset kind for the error message's how-to.
        datalist: datalist file name.
        max_items: keep only the first ``max_items`` items (None: all).
        check_landmarks: read and check the landmark files of the items returned (False: inference on
            images whose landmark files are not needed).
        landmark_names: the bundle's landmark names; a datalist declaring other ``landmark_names`` raises
            (None: not compared).

    Returns:
        a list of item dicts (``id``, ``image``, ``landmarks``, optional ``spacing``, ``coordinate_system``).

    Raises:
        FileNotFoundError: no dataset folder, datalist or landmark file (the message names it).
        ValueError: the datalist does not fit the bundle or holds a bad item; the message starts with the
            file at fault and names the datalist, split and id.
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
    names = header.get("landmark_names")
    if landmark_names is not None and names is not None and [str(n) for n in names] != list(landmark_names):
        raise ValueError(
            f"{path}: the datalist's landmark_names {names} are not the bundle's {list(landmark_names)}; "
            "landmark k of the data must be landmark k of the network (or pass `--landmark_names` to train a new model)."
        )
    available = datalist_split_names(header)
    if split not in available:
        raise ValueError(
            f"{path}: no split '{split}' (available: {available}). Choose one with the bundle's `--train_split` / "
            "`--val_split` (training) or `--infer_split` (inference, evaluation), or add the split to the datalist."
        )
    items = load_datalist(path, split)
    if not items:
        raise ValueError(f"{path}: split '{split}' is empty.")
    items = items if max_items is None else items[: int(max_items)]
    for n, item in enumerate(items):
        if "spacing" in item:
            check_item_spacing(
                item["spacing"], spatial_dims or dims, f"{path} [split '{split}', id {item.get('id', n)!r}]"
            )
    if check_landmarks:
        _check_split_landmarks(path, split, items, num_landmarks or declared, spatial_dims or dims, names)
    return items


def _check_split_landmarks(
    path: str, split: str, items: list[dict], num_landmarks: int | None, spatial_dims: int | None, names: list | None
) -> None:
    """Read every item's landmarks (:func:`read_item_landmarks`) and raise the first problem, counting the others."""
    problems: list[Exception] = []
    names_from = "the datalist's landmark_names"
    for n, item in enumerate(items):
        if "landmarks" not in item:
            continue
        where = f"datalist {path}, split '{split}', id {item.get('id', n)!r}"
        try:
            lf = read_item_landmarks(item, num_landmarks, spatial_dims, names, where, names_from)
        except (ValueError, FileNotFoundError) as e:
            problems.append(e)
            continue
        if names is None and lf.has_names:
            names, names_from = lf.names, f"the names in {item['landmarks']}, the first landmark file with names"
    if problems:
        more = (
            f" ({len(problems) - 1} more problems in this split; `python scripts/prepare_dataset.py generic-check "
            f"{path}` lists them all)"
            if len(problems) > 1
            else ""
        )
        raise type(problems[0])(f"{problems[0]}{more}")
