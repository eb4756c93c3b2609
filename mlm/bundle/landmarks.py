"""A bundle's landmark count and names: its datalist's header by default, the bundle's declared names otherwise.

Datalists written by ``scripts/prepare_dataset.py`` and the phantoms carry ``num_landmarks`` and ``landmark_names``
(:mod:`mlm.data.datalist`); a bundle trains and predicts as many landmarks as its data has, named as the data names
them. The names a bundle declares (its ``configs/facts.yaml``: the paper's landmarks) are the fallback for a datalist
without them, and for a ``dataset_dir`` without a datalist yet (``verify_net_in_out``, a model built before the data
exists): the data's own problems are reported later, by :func:`mlm.bundle.load_split`. A model trained for another
count stops when its checkpoint is loaded (:func:`mlm.bundle.check_checkpoint_compatible`, naming both counts).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mlm.data.datalist import read_datalist_json

__all__ = ["datalist_landmark_names", "datalist_num_landmarks"]


def _header(dataset_dir: str | os.PathLike, datalist: str) -> tuple[dict, Path]:
    """The datalist's JSON object (``{}`` when there is no datalist file) and its path."""
    path = Path(dataset_dir).expanduser() / datalist
    return (read_datalist_json(path) if path.is_file() else {}), path


def _declared_count(header: dict, path: Path) -> int | None:
    """``num_landmarks`` of the header (else the length of its ``landmark_names``), checked; None if neither."""
    count = header.get("num_landmarks")
    if count is None:
        names = header.get("landmark_names")
        return len(names) if isinstance(names, list) and names else None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{path}: 'num_landmarks' must be a positive integer, got {count!r}.")
    return count


def datalist_num_landmarks(
    dataset_dir: str | os.PathLike, default_names: Sequence[str], datalist: str = "datalist.json"
) -> int:
    """The landmarks per image of ``dataset_dir``'s datalist: its ``num_landmarks`` (else the length of its
    ``landmark_names``), or ``len(default_names)`` when it declares neither or there is no datalist.

    Args:
        dataset_dir: the dataset root (the folder holding ``datalist``).
        default_names: the bundle's landmark names (its paper's), used without a declaration in the datalist.
        datalist: datalist file name inside ``dataset_dir``.

    Raises:
        ValueError: the datalist is not valid JSON or declares a count that is not a positive integer.
    """
    header, path = _header(dataset_dir, datalist)
    declared = _declared_count(header, path)
    return declared if declared is not None else len(default_names)


def datalist_landmark_names(
    dataset_dir: str | os.PathLike,
    num_landmarks: int,
    default_names: Sequence[str],
    datalist: str = "datalist.json",
) -> list[str]:
    """The names of the ``num_landmarks`` landmarks: the datalist's ``landmark_names``, else ``default_names`` when
    they are as many, else ``landmark_00``, ``landmark_01``, ... (a datalist of another count that names none).

    Args:
        dataset_dir: the dataset root (the folder holding ``datalist``).
        num_landmarks: the bundle's landmark count (:func:`datalist_num_landmarks`, or ``--num_landmarks``).
        default_names: the bundle's landmark names (its paper's).
        datalist: datalist file name inside ``dataset_dir``.

    Raises:
        ValueError: the datalist names another number of landmarks than ``num_landmarks`` (the message says how to
            make them agree), or its ``landmark_names`` is not a list of strings.
    """
    header, path = _header(dataset_dir, datalist)
    names = header.get("landmark_names")
    num_landmarks = int(num_landmarks)
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: 'landmark_names' must be a list of strings, got {names!r}.")
        if len(names) != num_landmarks:
            raise ValueError(
                f"{path}: the datalist names {len(names)} landmarks but the bundle predicts {num_landmarks}; leave "
                "`--num_landmarks` to the datalist, or give as many `--landmark_names`."
            )
        return list(names)
    if len(default_names) == num_landmarks:
        return [str(n) for n in default_names]
    return [f"landmark_{k:02d}" for k in range(num_landmarks)]
