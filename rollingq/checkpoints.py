"""Saving and resuming a run's whole state, atomically.

A checkpoint holds the model (with its rotation buffers: R and the rotation count), the
optimizer, the scheduler, every RNG the run draws from, the epoch history and the best-epoch
bookkeeping, and the config it was made with. Resuming from it continues bit-exactly on CPU.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # the selected model (best validation epoch): {"model", "epoch", "config"}
PREVIOUS_BEST = ".best-previous.pt"  # the best.pt a newer selection replaced, until a checkpoint


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Writes ``state`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a checkpoint written by ``save_checkpoint`` onto the CPU.

    Raises:
        ValueError: When the file is not a readable checkpoint.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise ValueError(f"{path} is not a RollingQ checkpoint (no model/epoch entries)")
    return state


def rng_state() -> dict[str, Any]:
    """Every global RNG state a run draws from (torch CPU, and CUDA once the process uses it:
    asking earlier would start a CUDA context, GPU memory included, in a CPU run)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
