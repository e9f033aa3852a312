"""Saving a checkpoint in two halves: stage (the training loop waits) and write (in the background).

stage_checkpoint (collective, on the training thread): every rank copies its own rows of the weights and
of the optimizer moments to host memory, and its RNG state; rank 0 also takes the progress, the data
position and the config. Training may go on changing the tensors afterwards.

write_staged (collective on a group of its own, may run on a background thread): every rank writes its
own files into step-NNNNNN.tmp and hashes them as it writes them (each file hashed once, all ranks in
parallel); rank 0 gathers every rank's file list and hashes, writes the layouts, the model's HF files
and manifest.json, and renames the directory into place: the commit point. Until then the previous
checkpoint is the latest; a crash or a full disk leaves at most a *.tmp directory, which nothing loads.

Layout of step-NNNNNN/ (nothing in it is ever unpickled without a restricted loader):
  model.safetensors + config.json + tokenizer files   weights of an unsharded model, HF names and format
  model/shard-R-of-W.safetensors + model/layout.json   weights of an FSDP2 model: each rank's rows
  optimizer/shard-R-of-W.safetensors, layout.json, param_groups.json   optimizer moments, the same way
  trainer_state.json  data_state.json  config.yaml  rng/rank-N.pt (weights_only)  manifest.json
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
from torch.distributed.tensor import DTensor

from ..errors import CheckpointError
from ..dist import sync
from . import layout
from .manifest import fsync_path, write_manifest_entries
from .rng import capture_rng
from .tensorstore import LAYOUT_FILE, RankPart, layout_of, stage, write_rank_file

# rank 0's hook for the model's HF-format extras (config.json with token ids, generation_config.json,
# tokenizer files) and, for an unsharded model, model.safetensors itself: (full state or None, directory).
WriteModelFiles = Callable[[dict[str, torch.Tensor] | None, Path], None]
OPTIMIZER_GROUPS_JSON = "param_groups.json"


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter is a DTensor (FSDP2): then every rank writes its own rows."""
    return any(isinstance(p, DTensor) for p in model.parameters())


@dataclass
class StagingBuffers:
    """Host tensors that async saves copy this rank's rows into, reused by every save of a run (see stage)."""

    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class StagedSave:
    """One rank's copy of everything a checkpoint holds, ready to be written without the live tensors."""

    root: Path
    step: int
    rank: int
    world: int
    sharded: bool
    model: tuple[dict, dict]  # (host rows, metadata) of this rank's weights
    optimizer: tuple[dict, dict]
    rng: dict[str, Any]
    rank0: dict[str, Any] = field(default_factory=dict)  # progress, data position, config, param groups, hooks

    @property
    def tmp(self) -> Path:
        return layout.tmp_dir(self.root, self.step)

    @property
    def final(self) -> Path:
        return layout.step_dir(self.root, self.step)


def _prepare(root: Path, tmp: Path) -> None:
    # Leftovers of a crashed save or deletion are safe to drop: nothing ever loads a *.tmp dir.
    root.mkdir(parents=True, exist_ok=True)
    for leftover in layout.list_tmp_dirs(root):
        shutil.rmtree(leftover)


def _optimizer_tensors(osd: dict) -> list[tuple[str, torch.Tensor]]:
    return [(f"{fqn}.{key}", value) for fqn, state in osd["state"].items() for key, value in state.items()
            if torch.is_tensor(value)]


def stage_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                     trainer_state: dict, data_state: dict, config_text: str, write_model_files: WriteModelFiles,
                     pin_memory: bool = False, copy: bool = True,
                     buffers: StagingBuffers | None = None) -> StagedSave:
    """Collective: copy this rank's part of the checkpoint to host memory (the only part training waits for).

    copy=False (a save written at once, on this thread, while the loop waits) keeps references to the live
    tensors instead: writing then streams them to disk without a second copy of the rank's state in memory.
    `buffers` are the previous save's host copies, to copy into; its write must have finished.
    """
    from ..models.hf import to_hf_key

    root = Path(root)
    rank, world, sharded = sync.rank(), sync.world_size(), is_sharded(model)
    sync.from_rank0(lambda: _prepare(root, layout.tmp_dir(root, step)))  # doubles as the barrier before writes
    weights = get_model_state_dict(model)  # this rank's shards under FSDP2, no gather
    named = [(to_hf_key(k), v) for k, v in weights.items()]
    model_part = (stage(named, pin_memory, copy, buffers.model if buffers else None)
                  if (sharded or rank == 0) else ({}, {}))
    osd = get_optimizer_state_dict(model, optimizer)
    opt_part = (stage(_optimizer_tensors(osd), pin_memory, copy, buffers.optimizer if buffers else None)
                if (sharded or rank == 0) else ({}, {}))
    staged = StagedSave(root, step, rank, world, sharded, model_part, opt_part, capture_rng())
    if rank == 0:
        staged.rank0 = {"trainer_state": _json_text(trainer_state, "trainer_state"),
                        "data_state": _json_text(data_state, "data_state"), "config_text": config_text,
                        "param_groups": _json_text(osd["param_groups"], "optimizer param_groups"),
                        "write_model_files": write_model_files}
    return staged


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, indent=1, sort_keys=True) + "\n"
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable: {exc}") from None


def _write_bytes(path: Path, data: bytes) -> dict:
    """Write, fsync, and return the manifest entry (hash of the bytes written: no re-read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _write_rank_files(staged: StagedSave) -> tuple[list[dict], RankPart, RankPart]:
    """This rank's files: its weight and optimizer rows, its RNG state. Returns (manifest entries, parts)."""
    tmp, entries = staged.tmp, []
    parts = []
    for sub, (host, meta) in (("model", staged.model), ("optimizer", staged.optimizer)):
        part = RankPart(file=None, tensors=meta)
        if host and (staged.sharded or sub == "optimizer"):
            part = write_rank_file(tmp / sub, staged.rank, staged.world if staged.sharded else 1, host, meta)
            fsync_path(tmp / sub / part.file)
            entries.append({"path": f"{sub}/{part.file}", "size": part.size, "sha256": part.sha256})
        parts.append(part)
    import io

    buffer = io.BytesIO()
    torch.save(staged.rng, buffer)
    rng_path = layout.rng_file(staged.rank)
    entries.append({"path": rng_path, **_write_bytes(tmp / rng_path, buffer.getvalue())})
    return entries, parts[0], parts[1]


def _write_rank0_files(staged: StagedSave, model_parts: list[RankPart], opt_parts: list[RankPart]) -> list[dict]:
    """Rank 0: layouts, progress, data position, config, and the model's HF files."""
    tmp, r0, entries = staged.tmp, staged.rank0, []

    def text(relative: str, content: str) -> None:
        entries.append({"path": relative, **_write_bytes(tmp / relative, content.encode("utf-8"))})

    text(layout.TRAINER_STATE_FILE, r0["trainer_state"])
    text(layout.DATA_STATE_FILE, r0["data_state"])
    text(layout.CONFIG_FILE, r0["config_text"])
    text(f"{layout.OPTIMIZER_DIR}/{OPTIMIZER_GROUPS_JSON}", r0["param_groups"])
    text(f"{layout.OPTIMIZER_DIR}/{LAYOUT_FILE}", json.dumps(layout_of(opt_parts), indent=1) + "\n")
    if staged.sharded:
        text(f"model/{LAYOUT_FILE}", json.dumps(layout_of(model_parts), indent=1) + "\n")
    before = {p for p in tmp.rglob("*") if p.is_file()}
    r0["write_model_files"](None if staged.sharded else staged.model[0], tmp)
    for path in sorted(p for p in tmp.rglob("*") if p.is_file() and p not in before):  # small: hashed once here
        data = path.read_bytes()
        entries.append({"path": path.relative_to(tmp).as_posix(), "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    return entries


def write_staged(staged: StagedSave, group: Any = None) -> Path:
    """Collective on `group`: write every rank's files, then rank 0 publishes (manifest, rename). Safe to run
    on a background thread when `group` is a process group of its own."""
    error: BaseException | None = None
    mine: list[dict] = []
    model_part = opt_part = RankPart(file=None)
    try:
        mine, model_part, opt_part = _write_rank_files(staged)
    except Exception as exc:  # noqa: BLE001 - every rank must learn of it before anyone publishes
        error = exc
    report = (mine, model_part, opt_part, None if error is None else describe_failure(error))
    reports = sync.gather_objects(report, group)
    failures = [f"rank {r}: {rep[3]}" for r, rep in enumerate(reports) if rep[3]] if reports else []
    published: list[Any] = [None]
    if staged.rank == 0:
        published = [_publish(staged, reports, failures)]
    published = sync.broadcast_object(published[0], group)
    if published is not None:
        raise CheckpointError(published)
    return staged.final


def _publish(staged: StagedSave, reports: list, failures: list[str]) -> str | None:
    """Rank 0: seal and rename (the commit point); the failure to report instead, with the temp dir removed."""
    try:
        if failures:
            raise CheckpointError(failures[0])
        entries = [e for rep in reports for e in rep[0]]
        entries += _write_rank0_files(staged, [rep[1] for rep in reports], [rep[2] for rep in reports])
        write_manifest_entries(staged.tmp, staged.step, entries, world_size=staged.world,
                               optimizer_format="sharded" if staged.sharded else "full")
        retired = None
        if staged.final.exists():  # saving a step again (after a resume): retire the old copy under an ignored name
            retired = layout.tmp_dir(staged.root, staged.step, "old")
            staged.final.rename(retired)
        staged.tmp.rename(staged.final)
        fsync_path(staged.root)
        if retired is not None:
            shutil.rmtree(retired)
        return None
    except Exception as exc:  # noqa: BLE001 - reported to every rank as one line
        shutil.rmtree(staged.tmp, ignore_errors=True)  # a partial save is never left behind, nor ever loaded
        return (f"saving the step-{staged.step} checkpoint failed: {describe_failure(exc)}; nothing was published, "
                "so the previous checkpoint is still the latest: fix that and resume with `forgather train`")


def describe_failure(exc: BaseException) -> str:
    """One line for an I/O failure: the OS's words and the file (disk full, quota, permissions)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    return " ".join(str(exc).split())[:300]


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                    trainer_state: dict, data_state: dict, config_text: str,
                    write_model_files: WriteModelFiles) -> Path:
    """Collective: stage and write step-NNNNNN under root, on this thread; its path (the same on every rank)."""
    staged = stage_checkpoint(root, step, model, optimizer, trainer_state=trainer_state, data_state=data_state,
                              config_text=config_text, write_model_files=write_model_files, copy=False)
    return write_staged(staged)
