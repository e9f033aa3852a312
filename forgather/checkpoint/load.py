"""load_checkpoint: a collective, verified restore of weights, optimizer, RNG and progress."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)

from ..errors import CheckpointError
from . import layout, sync
from .manifest import read_manifest, verify_manifest
from .rng import load_rng, reseed_rng, restore_rng

log = logging.getLogger("forgather.checkpoint")
ReadModelFiles = Callable[[Path], dict[str, Tensor]]


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The full state dict from model.safetensors, or from every shard its index names."""
    from safetensors.torch import load_file

    index = path / layout.MODEL_INDEX_FILE
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(load_file(path / shard))
        return state
    single = path / layout.MODEL_FILE
    if not single.is_file():
        raise CheckpointError(f"{single}: no model weights in checkpoint")
    return load_file(single)


def _load_optimizer(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Collective; either saved format restores into any layout (plain, DDP, FSDP2, other world size)."""
    sharded = path / layout.OPTIMIZER_DIR
    if sharded.is_dir():
        import torch.distributed.checkpoint as dcp

        # The target's own (initialised) state dict tells DCP which slices this rank needs: resharding.
        target = get_optimizer_state_dict(model, optimizer)
        state = {"state": target["state"]}
        with warnings.catch_warnings():
            # Single-process resume of a sharded save is intended; DCP warns about it unconditionally.
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            dcp.load(state, checkpoint_id=sharded, no_dist=not sync.distributed())
        groups = torch.load(sharded / layout.OPTIMIZER_GROUPS_FILE, map_location="cpu", weights_only=True)
        set_optimizer_state_dict(model, optimizer, {"state": state["state"], "param_groups": groups})
        return
    full = path / layout.OPTIMIZER_FILE
    if not full.is_file():
        raise CheckpointError(f"{path}: neither {layout.OPTIMIZER_FILE} nor {layout.OPTIMIZER_DIR}/ present")
    osd = torch.load(full, map_location="cpu", weights_only=True)
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))


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
                    read_model_files: ReadModelFiles | None = None, verified: bool = False) -> tuple[dict, dict]:
    """Collective: verify (unless rank 0 just did), then restore model, optimizer and this rank's RNG; returns
    (trainer_state, data_state)."""
    path = Path(path)
    # One rank hashes (the files are shared); a bad checkpoint raises the same one-line error everywhere.
    manifest = sync.from_rank0(lambda: read_manifest(path) if verified else verify_manifest(path))
    trainer_state = _read_json(path / layout.TRAINER_STATE_FILE)
    data_state = _read_json(path / layout.DATA_STATE_FILE)

    # Every rank reads the full weights itself (no broadcast): works the same on gloo and NCCL, and
    # set_model_state_dict shards them locally for FSDP2.
    state = (read_model_files or read_safetensors)(path)
    try:
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    except (RuntimeError, KeyError, ValueError) as exc:  # other shapes or names: a different model
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path} holds a different model than this run builds ({detail}); resume with the "
                              "run's own model settings, or start a new run (--output-dir DIR, or --init-model "
                              "--overwrite)") from None
    del state
    _load_optimizer(path, model, optimizer)
    _restore_rng(path, manifest)  # last, so nothing above draws from the restored streams
    sync.barrier()
    return trainer_state, data_state
