"""load_checkpoint: a collective, verified restore of weights, optimizer, RNG and progress.

Each rank reads only the rows of each tensor it holds (its FSDP2 shard, or everything for an unsharded
model), whatever world size and mode wrote the checkpoint: DDP ↔ FSDP2 and 2 ↔ 1 ↔ 4 ranks are row-range
reads of the same files. Nothing is unpickled but the per-rank RNG files (weights_only).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from ..errors import CheckpointError
from ..dist import sync
from . import layout
from .manifest import read_manifest, verify_manifest
from .rng import load_rng, reseed_rng, restore_rng
from .save import OPTIMIZER_GROUPS_JSON
from ..dist.rows import local_rows
from .tensorstore import TensorStore, model_store

log = logging.getLogger("forgather.checkpoint")


def _filled(target: torch.Tensor, store: TensorStore, name: str) -> torch.Tensor:
    """`target`'s own rows read from the store, shaped and placed like it (a DTensor stays a DTensor)."""
    local, start, stop, _ = local_rows(target)
    if list(target.shape) != store.shape(name):
        raise CheckpointError(f"{store.directory}: {name} has shape {store.shape(name)}, this run's is "
                              f"{list(target.shape)}")
    rows = store.rows(name, start, stop).to(device=local.device, dtype=local.dtype)
    if hasattr(target, "to_local"):
        from torch.distributed.tensor import DTensor

        return DTensor.from_local(rows, device_mesh=target.device_mesh, placements=target.placements,
                                  shape=target.shape, stride=target.stride())
    return rows


def load_weights(path: Path, model: nn.Module) -> None:
    """Collective under FSDP2: this rank's rows of every weight, read from the checkpoint into `model`."""
    from ..models.hf import to_hf_key

    store = model_store(path)
    current = get_model_state_dict(model)
    tied = {k for k in current if k == "lm_head.weight" and to_hf_key(k) not in store.layout["tensors"]}
    try:
        state = {k: _filled(v, store, to_hf_key(k)) for k, v in current.items() if k not in tied}
        if tied:
            state["lm_head.weight"] = state["embed_tokens.weight"]
        set_model_state_dict(model, state, options=StateDictOptions(strict=True))
    except (RuntimeError, KeyError, ValueError, CheckpointError) as exc:  # other shapes or names: another model
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path} holds a different model than this run builds ({detail}); resume with the "
                              "run's own model settings, or start a new run (--output-dir DIR, or --init-model "
                              "--overwrite)") from None
    finally:
        store.close()


def load_optimizer(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Collective: the optimizer's moments (this rank's rows) and param groups, into any layout."""
    directory = Path(path) / layout.OPTIMIZER_DIR
    store = TensorStore.open(directory)
    try:
        groups = json.loads((directory / OPTIMIZER_GROUPS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory / OPTIMIZER_GROUPS_JSON}: unreadable ({exc})") from None
    # The target's own (initialised) state says which rows this rank needs and where they live.
    target = get_optimizer_state_dict(model, optimizer)
    try:
        state = {fqn: {key: _filled(value, store, f"{fqn}.{key}") if torch.is_tensor(value) else value
                       for key, value in entry.items()} for fqn, entry in target["state"].items()}
        set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups})
    finally:
        store.close()


def _restore_rng(path: Path, manifest: dict[str, Any]) -> None:
    rank, world = sync.rank(), sync.world_size()
    saved_world = int(manifest.get("world_size", 1))
    if saved_world == world:
        restore_rng(load_rng(path / layout.rng_file(rank)))
        return
    # Reusing rank r % saved would give two ranks the same stream (identical dropout masks); fresh,
    # distinct, reproducible streams are the lesser evil.
    if rank == 0:
        log.warning("checkpoint %s was saved by %d ranks, resuming on %d: RNG reseeded from (step, rank)",
                    path.name, saved_world, world)
    reseed_rng(int(manifest["step"]), rank)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                    verified: bool = False) -> tuple[dict, dict]:
    """Collective: verify (unless rank 0 just did), then restore model, optimizer and this rank's RNG; returns
    (trainer_state, data_state)."""
    path = Path(path)
    # One rank hashes (the files are shared); a bad checkpoint raises the same one-line error everywhere.
    manifest = sync.from_rank0(lambda: read_manifest(path) if verified else verify_manifest(path))
    if manifest.get("format_version", 1) < 2:
        raise CheckpointError(f"{path} was written by an older forgather (checkpoint format 1), whose optimizer "
                              "state this version does not unpickle; continue from its weights with "
                              f"train.init_from: {path} and --init-model")
    trainer_state = _read_json(path / layout.TRAINER_STATE_FILE)
    data_state = _read_json(path / layout.DATA_STATE_FILE)
    load_weights(path, model)
    load_optimizer(path, model, optimizer)
    _restore_rng(path, manifest)  # last, so nothing above draws from the restored streams
    sync.barrier()
    return trainer_state, data_state
