"""Named tensors split by rows across per-rank safetensors files, read back by any row range (no pickle).

Under FSDP2 every parameter (and its optimizer moments) is a DTensor sharded along dim 0: rank r holds
rows [start, stop) of it. Each rank writes only its own rows, in its own file; `layout.json` says which
file holds which rows of which tensor. Reading rows [a, b) of a tensor opens only the files holding
them, and reads only those rows (safetensors slices the file lazily), so a rank loads its own shard
whatever world size wrote the checkpoint — resharding is a row-range read. A plain (unsharded) tensor
is one piece holding all its rows; a 0-dim tensor (Adam's step) is one piece as well.

    layout.json: {"format": 1, "files": ["shard-00000-of-00002.safetensors", ...],
                  "tensors": {name: {"shape": [...], "dtype": "float32", "pieces": [[file, start, stop], ...]}}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor

from ..dist.rows import local_rows
from ..errors import CheckpointError

LAYOUT_FILE = "layout.json"
LAYOUT_FORMAT = 1


def shard_file_name(rank: int, world: int) -> str:
    """The file rank `rank` of `world` writes its rows into."""
    return f"shard-{rank:05d}-of-{world:05d}.safetensors"


@dataclass
class RankPart:
    """What one rank wrote: its file (maybe none), and the pieces of each tensor in it."""

    file: str | None
    sha256: str | None = None
    size: int = 0
    tensors: dict[str, dict] = field(default_factory=dict)  # name → {"shape", "dtype", "start", "stop"}


def stage(named: Iterable[tuple[str, Tensor]], pin: bool = False, copy: bool = True,
          reuse: dict[str, Tensor] | None = None) -> tuple[dict[str, Tensor], dict[str, dict]]:
    """This rank's rows of every tensor, to write; returns (tensors to write, their metadata). Tensors this rank
    does not write (replicas) are skipped. copy=True snapshots them in host memory now, so training may go on
    changing them (async saves); copy=False keeps the live rows (a save the loop waits for: no second copy).

    `reuse` (name → host tensor, kept by the caller from one save to the next) makes the snapshot copy into
    the previous save's host tensors instead of allocating new ones: allocating (and on GPU pinning) the
    rank's whole state again costs more than the copy, as fresh pages fault in one by one. The caller must
    let the previous save's write finish before staging into them again."""
    host: dict[str, Tensor] = {}
    meta: dict[str, dict] = {}
    for name, tensor in named:
        local, start, stop, writer = local_rows(tensor.detach())
        if not writer:
            continue
        if copy:
            pinned = pin and local.is_cuda
            snapshot = reuse.get(name) if reuse is not None else None
            if snapshot is None or snapshot.shape != local.shape or snapshot.dtype != local.dtype:
                snapshot = torch.empty(local.shape, dtype=local.dtype, pin_memory=pinned)
                if reuse is not None:
                    reuse[name] = snapshot
            snapshot.copy_(local, non_blocking=pinned)
            local = snapshot
        host[name] = local
        meta[name] = {"shape": list(tensor.shape), "dtype": str(local.dtype).removeprefix("torch."),
                      "start": start, "stop": stop}
    if copy and pin and torch.cuda.is_available():
        torch.cuda.synchronize()  # the non_blocking copies above must land before the tensors are used
    return host, meta


# safetensors' dtype names (its format spec); the file is written here tensor by tensor instead of through
# safetensors.torch.save, which builds the whole file as one bytes object: a second copy of the rank's state.
_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3",
                       torch.float8_e5m2: "F8_E5M2"}


def _safetensors_header(host: dict[str, Tensor], names: list[str]) -> bytes:
    entries: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        t = host[name]
        if t.dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"tensor {name}: dtype {t.dtype} cannot be stored in safetensors")
        size = t.numel() * t.element_size()
        entries[name] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                         "data_offsets": [offset, offset + size]}
        offset += size
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # the data that follows starts 8-byte aligned, as safetensors writes it
    return len(header).to_bytes(8, "little") + header


def write_rank_file(directory: Path, rank: int, world: int, host: dict[str, Tensor], meta: dict[str, dict]) -> RankPart:
    """Write this rank's rows into its safetensors file one tensor at a time, hashing the bytes as they are written
    (one pass, no re-read, never the whole file in memory)."""
    if not host:
        return RankPart(file=None, tensors=meta)
    name = shard_file_name(rank, world)
    names = sorted(host)
    header = _safetensors_header(host, names)
    digest, size = hashlib.sha256(header), len(header)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "wb") as out:
        out.write(header)
        for tensor_name in names:
            t = host[tensor_name].detach()
            t = (t if t.device.type == "cpu" else t.cpu()).contiguous()  # one tensor on the host at a time
            data = t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else memoryview(b"")
            out.write(data)
            digest.update(data)
            size += data.nbytes
    return RankPart(file=name, sha256=digest.hexdigest(), size=size, tensors=meta)


def layout_of(parts: list[RankPart]) -> dict:
    """layout.json contents from every rank's part (rank order)."""
    files = [p.file for p in parts if p.file]
    tensors: dict[str, dict] = {}
    for part in parts:
        for name, m in part.tensors.items():
            entry = tensors.setdefault(name, {"shape": m["shape"], "dtype": m["dtype"], "pieces": []})
            entry["pieces"].append([files.index(part.file), m["start"], m["stop"]])
    for name, entry in tensors.items():
        entry["pieces"].sort(key=lambda piece: piece[1])
        covered = 0
        for _, start, stop in entry["pieces"]:
            if start != covered:
                raise CheckpointError(f"tensor {name}: rows {covered}..{start} are in no rank's file")
            covered = stop
        if entry["shape"] and covered != entry["shape"][0]:
            raise CheckpointError(f"tensor {name}: only rows 0..{covered} of {entry['shape'][0]} were written")
    return {"format": LAYOUT_FORMAT, "files": files, "tensors": tensors}


class TensorStore:
    """Read rows of named tensors from a directory written by write_rank_file + layout.json (or one plain
    safetensors file, taken as a store whose every tensor is one piece)."""

    def __init__(self, directory: Path, layout: dict, single: Path | None = None) -> None:
        self.directory, self.layout, self.single = Path(directory), layout, single
        self._handles: dict[int, object] = {}
        self.rows_read = 0  # for tests: how many rows this process read

    @classmethod
    def open(cls, directory: Path) -> "TensorStore":
        """The store in `directory` (layout.json), CheckpointError naming what is missing."""
        directory = Path(directory)
        try:
            layout = json.loads((directory / LAYOUT_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{directory / LAYOUT_FILE}: missing; the checkpoint is incomplete") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{directory / LAYOUT_FILE}: unreadable ({exc})") from None
        if layout.get("format") != LAYOUT_FORMAT:
            raise CheckpointError(f"{directory / LAYOUT_FILE}: layout format {layout.get('format')} is not one this "
                                  "forgather reads")
        return cls(directory, layout)

    @classmethod
    def of_files(cls, paths: list[Path]) -> "TensorStore":
        """Plain safetensors files (one, or an HF index's shards) as a store: every tensor whole, in its file."""
        from safetensors import safe_open

        tensors = {}
        for index, path in enumerate(paths):
            try:
                with safe_open(str(path), framework="pt") as f:
                    for name in f.keys():
                        shape = list(f.get_slice(name).get_shape())
                        tensors[name] = {"shape": shape, "dtype": "", "pieces": [[index, 0, shape[0] if shape else 0]]}
            except Exception as exc:  # noqa: BLE001 - missing, truncated, not safetensors: all one message
                raise CheckpointError(f"{path}: cannot read ({' '.join(str(exc).split())[:200]})") from None
        return cls(Path(paths[0]).parent, {"format": LAYOUT_FORMAT, "files": [Path(p).name for p in paths],
                                           "tensors": tensors})

    def names(self) -> list[str]:
        return list(self.layout["tensors"])

    def shape(self, name: str) -> list[int]:
        return list(self._entry(name)["shape"])

    def _entry(self, name: str) -> dict:
        try:
            return self.layout["tensors"][name]
        except KeyError:
            raise CheckpointError(f"{self.directory}: holds no tensor {name!r}") from None

    def _file(self, index: int):
        if index not in self._handles:
            from safetensors import safe_open

            path = self.directory / self.layout["files"][index]
            try:
                self._handles[index] = safe_open(str(path), framework="pt")
            except Exception as exc:  # noqa: BLE001 - missing, truncated, not safetensors: all one message
                raise CheckpointError(f"{path}: cannot read ({' '.join(str(exc).split())[:200]})") from None
        return self._handles[index]

    def rows(self, name: str, start: int = 0, stop: int | None = None) -> Tensor:
        """Rows [start, stop) of tensor `name` (all when stop is None), read from the pieces that hold them."""
        entry = self._entry(name)
        if not entry["shape"]:  # a 0-dim tensor: one piece, whole
            return self._file(entry["pieces"][0][0]).get_tensor(name)
        stop = entry["shape"][0] if stop is None else stop
        out = []
        for file_index, piece_start, piece_stop in entry["pieces"]:
            a, b = max(start, piece_start), min(stop, piece_stop)
            if a < b:
                out.append(self._file(file_index).get_slice(name)[a - piece_start:b - piece_start])
        self.rows_read += stop - start
        if not out:  # an empty range (a rank whose chunk of a short tensor is empty)
            return torch.empty([0, *entry["shape"][1:]], dtype=getattr(torch, entry["dtype"] or "float32"))
        return out[0] if len(out) == 1 else torch.cat(out)

    def close(self) -> None:
        self._handles.clear()


def model_store(path: Path) -> TensorStore:
    """The weights of a checkpoint or HF model dir as a row store: model/ (sharded), model.safetensors, or an
    HF index's files. The one reader of every weights layout: resume, export and load_hf all go through it."""
    from .layout import MODEL_FILE

    path = Path(path)
    if (path / "model").is_dir():
        return TensorStore.open(path / "model")
    single, index = path / MODEL_FILE, path / f"{MODEL_FILE}.index.json"
    if single.is_file():
        return TensorStore.of_files([single])
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{index}: unreadable ({exc})") from None
        return TensorStore.of_files([path / shard for shard in shards])
    raise CheckpointError(f"{single}: no model weights in checkpoint")
