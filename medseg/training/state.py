"""Resumable training state (``state.pt``): RNG states as tensors/plain types, saved atomically.

``state.pt`` is a dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``. It holds the model weights too, so that it alone (written
atomically) is a consistent resume point even if the job dies while writing ``checkpoints/last``.
"""

from __future__ import annotations

import random
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import CheckpointError
from medseg.utils import atomic_path

__all__ = ["STATE_FILE", "STATE_VERSION", "capture_rng", "restore_rng", "save_state", "load_state"]

STATE_FILE = "state.pt"
STATE_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """torch, numpy, python and CUDA RNG states as tensors and plain values."""
    np_state: Any = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_state(path: str | PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temporary file + rename)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save({"version": STATE_VERSION, **state}, tmp)
    return target


def load_state(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a ``state.pt`` with ``weights_only=True``.

    Raises:
        CheckpointError: missing, unreadable or of another version.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError("no resumable state here", path=p, hint="pass the run folder of an earlier run (it holds state.pt)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt files
        raise CheckpointError(f"cannot read the training state ({type(e).__name__}: {e})", path=p) from e
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(f"unsupported training state (version {state.get('version') if isinstance(state, dict) else '?'})", path=p)
    return state
