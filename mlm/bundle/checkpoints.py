"""Checkpoint files: atomic writing, discovery (newest first), loading, and checks that a checkpoint fits a bundle."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transforms.io.atomic import atomic_write

__all__ = [
    "atomic_torch_save",
    "check_checkpoint_compatible",
    "checkpoint_candidates",
    "checkpoint_landmark_count",
    "latest_checkpoint",
    "load_checkpoint",
    "temporary_file_target",
]

# the temporary files of transforms.io.atomic.atomic_write: ".<target>.<hex>.tmp" plus the target's suffixes
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9a-f]+\.tmp(?:\.[^.]+){0,2}")


def temporary_file_target(name: str) -> str | None:
    """The file that a temporary file named ``name`` of an atomic write (:func:`atomic_torch_save`) was to become,
    or None when ``name`` is not such a file."""
    match = _TEMPORARY.fullmatch(name)
    return match.group("target") if match else None


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`transforms.io.atomic.atomic_write`): ``path`` holds either its
    old content or the complete new file, with the umask's permissions; a failed write leaves no temporary file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def checkpoint_candidates(
    ckpt_dir: str | os.PathLike, patterns: Sequence[str] = ("checkpoint*.pt", "model.pt")
) -> list[str]:
    """The checkpoint files in ``ckpt_dir`` matching ``patterns``, newest (last modified) first.

    Hidden files (the temporary files of an interrupted save, :func:`temporary_file_target`) are left out. Equal
    modification times are ordered by name (descending), so the order is reproducible.
    """
    found = []
    for f in {f for p in patterns for f in glob.glob(os.path.join(glob.escape(str(ckpt_dir)), p))}:
        if os.path.basename(f).startswith("."):  # hidden: e.g. the temporary files of atomic writes
            continue
        try:
            found.append((os.stat(f).st_mtime_ns, f))
        except FileNotFoundError:  # removed meanwhile (a saver rotating its files)
            continue
    return [f for _, f in sorted(found, reverse=True)]


def latest_checkpoint(
    ckpt_dir: str | os.PathLike, patterns: Sequence[str] = ("checkpoint*.pt", "model.pt")
) -> str | None:
    """The most recently written checkpoint in ``ckpt_dir`` matching ``patterns`` (None if there is none).

    Temporary files of an interrupted save are ignored, so a resume never picks a partial file; whether the file
    can be read is not checked here (:class:`mlm.handlers.ResumeFromCheckpoint` falls back to older ones).
    """
    files = checkpoint_candidates(ckpt_dir, patterns)
    return files[0] if files else None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """``torch.load`` with a clear error naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found: train the bundle first (configs/train.yaml writes models/model.pt) or pass "
            "`--ckpt_path <file>`."
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}).") from e
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"checkpoint {path} is not a state dict (got {type(ckpt).__name__}).")
    return dict(ckpt)


def _landmarks_of_module(module: nn.Module) -> int | None:
    module = getattr(module, "module", module)  # DistributedDataParallel
    n = getattr(module, "num_landmarks", None)
    if isinstance(n, tuple | list):  # a universal model: one count per domain
        return int(n[0]) if len(n) == 1 else None
    return int(n) if n is not None else None


def checkpoint_landmark_count(checkpoint: Mapping[str, Any], model_key: str = "model") -> int | None:
    """Landmarks predicted by the model in ``checkpoint``: the loss's ``sigmas`` length or the output channels of the
    last heatmap layer (None if it cannot be told)."""
    loss = checkpoint.get("loss")
    if isinstance(loss, Mapping) and "sigmas" in loss:
        return int(torch.as_tensor(loss["sigmas"]).numel())
    model = checkpoint.get(model_key, checkpoint)
    if isinstance(model, Mapping):
        heads = [k for k in model if "heatmap" in k and k.endswith("weight")]
        if heads:
            return int(model[heads[-1]].shape[0])
    return None


def check_checkpoint_compatible(
    path: str | os.PathLike, load_dict: Mapping[str, Any], checkpoint: Mapping[str, Any] | None = None
) -> dict:
    """Check that the modules of ``load_dict`` can load ``path`` (same keys and shapes); return the checkpoint.

    Args:
        path: the checkpoint file (for messages, and loaded when ``checkpoint`` is None).
        load_dict: ``{name: object}`` as given to MONAI's ``CheckpointLoader`` (``{"model": network, ...}``).
        checkpoint: the already loaded checkpoint, if any.

    Raises:
        ValueError: a module's parameters do not match: the message names the checkpoint and, when the
            mismatch is the landmark count, both counts (checkpoint vs this bundle's network).
    """
    ckpt = dict(checkpoint) if checkpoint is not None else load_checkpoint(path)
    single = len(load_dict) == 1 and next(iter(load_dict)) not in ckpt
    for name, obj in load_dict.items():
        if not isinstance(obj, nn.Module):
            continue
        state = ckpt if single else ckpt.get(name)
        if state is None:
            raise ValueError(f"checkpoint {path} has no '{name}' entry (it holds {sorted(ckpt)}).")
        own = getattr(obj, "module", obj).state_dict()
        missing = sorted(set(own) - set(state))
        mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(torch.as_tensor(state[k]).shape)]
        if not missing and not mismatched:
            continue
        ckpt_n = checkpoint_landmark_count(ckpt if not single else {"model": ckpt})
        net_n = _landmarks_of_module(obj)
        if name == "loss" and hasattr(obj, "num_landmarks"):
            net_n = int(obj.num_landmarks)
        if ckpt_n is not None and net_n is not None and ckpt_n != net_n:
            raise ValueError(
                f"checkpoint {path} was trained for {ckpt_n} landmarks but this bundle's {name} has {net_n}: it "
                "comes from another bundle or configuration, or the data has another landmark count (a bundle takes "
                "its count from the datalist's header, num_landmarks, else from its configs/facts.yaml landmark_names; "
                f"use data with {ckpt_n} landmarks for this model)."
            )
        detail = (
            f"parameter '{mismatched[0]}' has shape {tuple(torch.as_tensor(state[mismatched[0]]).shape)} in the "
            f"checkpoint and {tuple(own[mismatched[0]].shape)} in the network"
            if mismatched
            else f"{len(missing)} parameters are missing from it (e.g. '{missing[0]}')"
        )
        raise ValueError(
            f"checkpoint {path} does not fit this bundle's {name}: {detail}; it comes from another network "
            "configuration (num_filters, num_levels, network_def, ...)."
        )
    return ckpt
