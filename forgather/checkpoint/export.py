"""HF model directories from checkpoints: what stock transformers (and its `generate`) loads fully.

A checkpoint of an FSDP2 run holds each rank's rows of every weight; the export reads them tensor by tensor
(never the whole model at once) and writes config.json with the tokenizer's bos/eos/pad ids,
generation_config.json, safetensors (several files and an index above a size threshold) and the tokenizer.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from ..errors import CheckpointError
from ..filemodes import as_created
from .manifest import verify_manifest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _token_ids(checkpoint: Path):
    from ..models.hf import TokenIds

    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return TokenIds(config.get("bos_token_id"), config.get("eos_token_id"), config.get("pad_token_id"))


def _weights(checkpoint: Path, tie_embeddings: bool) -> Iterator[tuple[str, torch.Tensor]]:
    from .tensorstore import model_store

    store = model_store(checkpoint)
    try:
        for name in store.names():
            if tie_embeddings and name == "lm_head.weight":
                continue
            yield name, store.rows(name)
    finally:
        store.close()


def _replaceable(out: Path, checkpoint: Path) -> bool:
    """Whether --force may delete `out`: an earlier export (or an empty dir), never a run dir, a project, or a
    directory holding the checkpoint being exported."""
    if out.is_file() or out.resolve() in (checkpoint.resolve(), *checkpoint.resolve().parents):
        return False
    entries = list(out.iterdir())
    return not entries or ((out / "config.json").is_file() and not any(p.is_dir() for p in entries))


def export_checkpoint(checkpoint: Path, out: Path, force: bool = False, max_shard_bytes: int | None = None,
                      verify: bool = False) -> Path:
    """Write an HF model dir for `checkpoint` at `out` (atomically); an existing `out` is refused unless `force`."""
    from ..models.hf import DEFAULT_MAX_SHARD_BYTES, spec_from_hf_config, write_hf_config, write_hf_weights

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not force:
        raise CheckpointError(f"{out} already exists; pick another --output or add --force to replace it")
    if out.exists() and not _replaceable(out, checkpoint):
        raise CheckpointError(f"{out} is not an exported model dir (one with config.json and no subdirectories, "
                              "outside the checkpoint); --force replaces only those: pick another --output")
    if verify:
        verify_manifest(checkpoint)
    config_file = checkpoint / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{config_file}: missing; {checkpoint} is not a forgather checkpoint")
    spec = spec_from_hf_config(json.loads(config_file.read_text(encoding="utf-8")), str(config_file))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:  # a file where a directory must be, a read-only or pseudo file system
        raise CheckpointError(f"cannot write {out} ({exc.strerror or exc}); choose another --output") from None
    try:
        dtype = write_hf_weights(_weights(checkpoint, spec.tie_embeddings), tmp, max_shard_bytes or DEFAULT_MAX_SHARD_BYTES)
        write_hf_config(spec, tmp, dtype, _token_ids(checkpoint))
        for name in TOKENIZER_FILES:
            if (checkpoint / name).is_file():
                shutil.copyfile(checkpoint / name, tmp / name)
        as_created(tmp)  # mkdtemp made it 0700
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out

