"""save_checkpoint: a collective, atomic write of weights, optimizer, RNG and progress into step-NNNNNN/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
from torch.distributed.tensor import DTensor

from ..errors import CheckpointError
from . import layout, sync
from .manifest import fsync_dir, write_manifest
from .rng import save_rng

WriteModelFiles = Callable[[dict[str, Tensor], Path], None]
_FULL_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter is a DTensor (FSDP2 / tensor parallel), which selects DCP for the optimizer."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def _prepare(root: Path, tmp: Path) -> None:
    # Leftovers of a crashed save or deletion are safe to drop: nothing ever loads a *.tmp dir.
    root.mkdir(parents=True, exist_ok=True)
    for leftover in layout.list_tmp_dirs(root):
        shutil.rmtree(leftover)
    (tmp / layout.RNG_DIR).mkdir(parents=True)


def _write_json(path: Path, value: Any, what: str) -> None:
    try:
        text = json.dumps(value, indent=1, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable for {path.name}: {exc}") from None
    path.write_text(text + "\n", encoding="utf-8")


def _save_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, tmp: Path) -> BaseException | None:
    """Collective. DCP shards when sharded, else one full state dict from rank 0."""
    if is_sharded(model):
        import torch.distributed.checkpoint as dcp

        osd = get_optimizer_state_dict(model, optimizer)
        # Only tensors go through DCP: its loader unpickles non-tensor entries with weights_only=False,
        # so param_groups travel in a weights_only file instead.
        dcp.save({"state": osd["state"]}, checkpoint_id=tmp / layout.OPTIMIZER_DIR)
        if sync.rank() == 0:
            return sync.capture(lambda: torch.save(osd["param_groups"],
                                                   tmp / layout.OPTIMIZER_DIR / layout.OPTIMIZER_GROUPS_FILE))
        return None
    osd = get_optimizer_state_dict(model, optimizer, options=_FULL_CPU)
    if sync.rank() == 0:
        return sync.capture(lambda: torch.save(osd, tmp / layout.OPTIMIZER_FILE))
    return None


def _publish(root: Path, tmp: Path, final: Path, step: int, world: int, optimizer_format: str) -> None:
    """Rank 0: seal the temp dir with a manifest and rename it into place (the commit point)."""
    write_manifest(tmp, step, world_size=world, optimizer_format=optimizer_format)
    retired = None
    if final.exists():  # saving a step again (e.g. after a resume): retire the old copy under an ignored name
        retired = layout.tmp_dir(root, step, "old")
        final.rename(retired)
    tmp.rename(final)
    fsync_dir(root)
    if retired is not None:
        shutil.rmtree(retired)


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                    trainer_state: dict, data_state: dict, config_text: str,
                    write_model_files: WriteModelFiles) -> Path:
    """Collective: write step-NNNNNN under root atomically and return its path (same on every rank)."""
    root = Path(root)
    final, tmp = layout.step_dir(root, step), layout.tmp_dir(root, step)
    try:
        _write_and_publish(root, step, model, optimizer, trainer_state, data_state, config_text, write_model_files)
    except (OSError, RuntimeError, CheckpointError, SafetensorError) as exc:  # I/O: disk full, quota, permissions
        if sync.rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial save is never left behind, nor ever loaded
        raise CheckpointError(f"saving the step-{step} checkpoint failed: {describe_failure(exc)}; nothing was "
                              "published, so the previous checkpoint is still the latest: fix that and resume "
                              "with `forgather train`") from None
    return final


def describe_failure(exc: BaseException) -> str:
    """One line for an I/O failure: the OS's words and the file (disk full, quota, permissions)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    return " ".join(str(exc).split())


def _write_and_publish(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                       trainer_state: dict, data_state: dict, config_text: str,
                       write_model_files: WriteModelFiles) -> None:
    final, tmp = layout.step_dir(root, step), layout.tmp_dir(root, step)
    rank = sync.rank()
    sync.from_rank0(lambda: _prepare(root, tmp))  # doubles as the barrier before anyone writes into tmp

    # FSDP2 all-gathers here, so every rank takes part; only rank 0 receives the tensors (cpu_offload).
    model_sd = get_model_state_dict(model, options=_FULL_CPU)
    errors = [sync.capture(lambda: write_model_files(model_sd, tmp))] if rank == 0 else []
    del model_sd
    errors.append(_save_optimizer(model, optimizer, tmp))
    errors.append(sync.capture(lambda: save_rng(tmp / layout.rng_file(rank))))
    if rank == 0:
        errors.append(sync.capture(lambda: _write_json(tmp / layout.TRAINER_STATE_FILE, trainer_state, "trainer_state")))
        errors.append(sync.capture(lambda: _write_json(tmp / layout.DATA_STATE_FILE, data_state, "data_state")))
        errors.append(sync.capture(lambda: (tmp / layout.CONFIG_FILE).write_text(config_text, encoding="utf-8")))
    sync.agree(next((e for e in errors if e is not None), None))  # every rank's files are on disk past here

    optimizer_format = "dcp" if is_sharded(model) else "full"
    sync.from_rank0(lambda: _publish(root, tmp, final, step, sync.world_size(), optimizer_format))
