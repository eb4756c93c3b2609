"""The process's global random number generators (python, numpy, torch CPU and CUDA) as a checkpoint entry."""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

__all__ = ["GlobalRandomStates"]

logger = logging.getLogger(__name__)


class GlobalRandomStates:
    """``state_dict``/``load_state_dict`` of the global generators that training draws from (dropout: torch).

    The state is made of tensors and plain numbers only, so checkpoints holding it load with
    ``torch.load(weights_only=True)``. CUDA generators are saved when CUDA has been initialised and restored when
    the same number of devices is visible (else a warning says the CUDA draws will differ).
    """

    def state_dict(self) -> dict[str, Any]:
        version, py_state, gauss = random.getstate()
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        state: dict[str, Any] = {
            "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss_next": gauss},
            "numpy": {
                "name": str(np_name),
                "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                "pos": int(np_pos),
                "has_gauss": int(np_has_gauss),
                "cached_gaussian": float(np_gauss),
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        py = state["python"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
        npy = state["numpy"]
        keys = npy["keys"].numpy().astype(np.uint32)
        np.random.set_state((npy["name"], keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"])))
        torch.set_rng_state(state["torch"])
        cuda = state.get("cuda")
        if cuda is not None and torch.cuda.is_available():
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
            else:
                logger.warning(
                    f"the checkpoint holds {len(cuda)} CUDA random states and {torch.cuda.device_count()} devices are "
                    "visible: CUDA random draws (dropout on the GPU) differ from an uninterrupted run."
                )
