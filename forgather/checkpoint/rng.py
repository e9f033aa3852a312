"""Per-rank random state (python, numpy, torch, cuda) as a weights_only-loadable dict."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import torch

try:  # numpy is optional; data pipelines that use it get their stream restored too
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]


def capture_rng() -> dict[str, Any]:
    """This process's RNG states, using only types torch.load(weights_only=True) accepts."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state(), "cuda": []}
    # Only when CUDA is already up: querying it would otherwise initialise a context in CPU runs.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if np is not None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # ndarrays are not weights_only-loadable; a tensor of the keys is.
        state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what capture_rng recorded."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for device, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)
    if np is not None and state.get("numpy") is not None:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def reseed_rng(step: int, rank: int) -> None:
    """Seed every generator from (step, rank): used when the world size changed and saved streams don't map 1:1."""
    seed = int.from_bytes(hashlib.sha256(f"forgather-rng:{step}:{rank}".encode()).digest()[:4], "little")
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if np is not None:
        np.random.seed(seed)


def save_rng(path: Path) -> None:
    """Write this rank's RNG state to path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(capture_rng(), path)


def load_rng(path: Path) -> dict[str, Any]:
    """Read an RNG state written by save_rng (weights_only: never unpickles code); CheckpointError for a file
    that holds anything else (torch's own message goes on to suggest weights_only=False, which must never be)."""
    import pickle

    from ..errors import CheckpointError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        kind = "holds objects other than tensors and numbers" if isinstance(exc, pickle.UnpicklingError) else \
            "is not a readable RNG state"
        raise CheckpointError(f"{path} {kind}, so nothing in it was loaded (a checkpoint never needs code to "
                              f"load); move {path.parent.parent.name} out of the checkpoints to resume from the one "
                              "before it") from None
