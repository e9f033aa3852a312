"""One chunk of a shard: its documents tokenized and packed on their own, in memory or in the cache.

A chunk holds the shard's documents from `first_doc` up to and including the one that brings its
token count to `chunk_tokens` (or to the shard's end). Packing each chunk on its own is what makes a
chunk a pure function of its inputs (build any chunk anywhere, in any order, on any rank), at the
price of one packer flush per chunk: the flush merges its open blocks first-fit-decreasing, and the
padding it leaves is counted (`flush_padding`) and reported as the chunk-end fill loss.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..filemodes import as_created
from .packing import SEG_FIELDS, Packer
from .written import write_errors

if TYPE_CHECKING:
    from .stream import BlockStream

CHUNK_FORMAT = 1
FIRST_BATCH = 64  # documents tokenized before the chunk's token rate is known
MAX_BATCH = 256


@dataclass
class PackedChunk:
    """The blocks of one chunk in packing order: tokens [m, T], segments [n, 4], offsets [m + 1]."""

    shard: int
    index: int
    first_doc: int
    end_doc: int
    tokens: np.ndarray
    segments: np.ndarray
    offsets: np.ndarray
    long_docs: int = 0
    flush_padding: int = 0

    @property
    def num_blocks(self) -> int:
        return len(self.tokens)

    @property
    def used(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.segments[:, 1].sum()) if len(self.segments) else 0

    def block(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int32 [T], segments int64 [n, 4]) of block i in packing order."""
        return self.tokens[i].astype(np.int32), self.segments[self.offsets[i]:self.offsets[i + 1]]


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id (2 bytes per token for vocabularies up to 65,536)."""
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


class ShardPacker:
    """Packs the chunks of one shard in order, starting at chunk `index` whose first document is `first_doc`.

    Documents are tokenized in batches sized to the chunk's remaining budget; those tokenized past a chunk's
    end are kept for the next chunk rather than tokenized twice.
    """

    def __init__(self, stream: "BlockStream", shard: int, index: int = 0, first_doc: int = 0) -> None:
        self.stream, self.shard = stream, shard
        self.index, self.next_doc = index, first_doc
        self.documents = stream.layout.shard_documents(shard)
        self._carry: deque[np.ndarray] = deque()  # tokenized documents next_doc, next_doc + 1, ...
        self._tokens_per_doc = 0.0

    def _fill_carry(self, budget: int) -> None:
        start = self.next_doc + len(self._carry)
        if start >= self.documents:
            return
        want = FIRST_BATCH if not self._tokens_per_doc else int(1.2 * budget / self._tokens_per_doc) + 1
        stop = min(self.documents, start + max(8, min(MAX_BATCH, want)))
        docs = self.stream.tokenize_shard(self.shard, start, stop)
        self._tokens_per_doc = max(1.0, sum(len(d) for d in docs) / len(docs))
        self._carry.extend(docs)

    def next_chunk(self) -> PackedChunk | None:
        """The next chunk of the shard, or None past its last document."""
        if self.next_doc >= self.documents:
            return None
        stream = self.stream
        packer = Packer(stream.block_size, stream.window, stream.tokenizer.pad_id)
        first, used = self.next_doc, 0
        while used < stream.chunk_tokens and self.next_doc < self.documents:
            if not self._carry:
                self._fill_carry(stream.chunk_tokens - used)
            tokens = self._carry.popleft()
            packer.add(tokens, stream.layout.global_document(self.shard, self.next_doc))
            used += len(tokens)
            self.next_doc += 1
        packer.flush()
        chunk = chunk_from_blocks(self.shard, self.index, first, self.next_doc, list(packer.ready),
                                  token_dtype(stream.tokenizer.vocab_size), stream.block_size)
        chunk.long_docs, chunk.flush_padding = packer.long_docs, packer.flush_padding
        self.index += 1
        return chunk


def chunk_from_blocks(shard: int, index: int, first: int, end: int, blocks: list, dtype: np.dtype,
                      block_size: int) -> PackedChunk:
    """Stack packed Blocks into one chunk."""
    tokens = np.stack([b.tokens for b in blocks]).astype(dtype) if blocks else np.zeros((0, block_size), dtype)
    segments = np.concatenate([b.segments for b in blocks]) if blocks else np.zeros((0, SEG_FIELDS), np.int64)
    offsets = np.cumsum([0] + [len(b.segments) for b in blocks]).astype(np.int64)
    return PackedChunk(shard, index, first, end, tokens, segments, offsets)


# ----------------------------------------------------------------------------------------------- cache files


def chunk_dir(root: Path, key: str, shard: int, shards: int, index: int) -> Path:
    """Where chunk `index` of shard `shard` (of `shards`) of the stream with cache key `key` lives."""
    return Path(root) / key[:16] / f"shard-{shard:04d}-of-{shards:04d}" / f"chunk-{index:06d}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_chunk(path: Path, chunk: PackedChunk, key: str) -> None:
    """Write a chunk into a temp dir beside `path` and rename it into place (readers never see half a chunk)."""
    path = Path(path)
    with write_errors(path):
        _write_chunk(path, chunk, key)


def _write_chunk(path: Path, chunk: PackedChunk, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        raw = np.ascontiguousarray(chunk.tokens).tobytes()
        (tmp / "tokens.bin").write_bytes(raw)
        np.save(tmp / "segments.npy", chunk.segments)
        np.save(tmp / "offsets.npy", chunk.offsets)
        meta = {"format": CHUNK_FORMAT, "key": key, "shard": chunk.shard, "index": chunk.index,
                "first_doc": chunk.first_doc, "end_doc": chunk.end_doc, "num_blocks": chunk.num_blocks,
                "block_size": int(chunk.tokens.shape[1]), "dtype": chunk.tokens.dtype.name, "tokens": chunk.used,
                "long_docs": chunk.long_docs, "flush_padding": chunk.flush_padding, "tokens_sha256": _sha256(raw),
                "created": time.time()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        as_created(tmp)  # mkdtemp made it 0700: a cache shared by a team must be readable by it
        if path.exists():  # a damaged or concurrent copy: replace it (a concurrent build wrote the same bytes)
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "meta.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class ChunkDamaged(DataError):
    """A cached chunk is missing a file, truncated, or does not match its metadata."""


def read_meta(path: Path) -> dict | None:
    """A chunk's meta.json, or None when the chunk was never written."""
    try:
        return json.loads((Path(path) / "meta.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ChunkDamaged(f"{path / 'meta.json'}: unreadable ({exc})") from None


def read_chunk(path: Path, key: str, first_doc: int, block_size: int) -> PackedChunk | None:
    """The cached chunk at `path`, verified against its metadata; None when absent; ChunkDamaged when wrong."""
    path = Path(path)
    meta = read_meta(path)
    if meta is None:
        return None
    if meta.get("key") != key or meta.get("first_doc") != first_doc or meta.get("block_size") != block_size:
        raise ChunkDamaged(f"{path}: built from other data or settings than this stream")
    try:
        raw = (path / "tokens.bin").read_bytes()
        segments = np.load(path / "segments.npy")
        offsets = np.load(path / "offsets.npy")
    except (OSError, ValueError) as exc:
        raise ChunkDamaged(f"{path}: {type(exc).__name__}: {exc}") from None
    dtype = np.dtype(meta["dtype"])
    m = int(meta["num_blocks"])
    if len(raw) != m * block_size * dtype.itemsize:
        raise ChunkDamaged(f"{path / 'tokens.bin'}: {len(raw)} bytes, expected {m * block_size * dtype.itemsize} "
                           "(truncated or replaced)")
    if _sha256(raw) != meta.get("tokens_sha256"):
        raise ChunkDamaged(f"{path / 'tokens.bin'}: sha256 does not match meta.json (corrupted)")
    if len(offsets) != m + 1 or int(offsets[-1]) != len(segments) or segments.shape[1:] != (SEG_FIELDS,):
        raise ChunkDamaged(f"{path}: segments.npy/offsets.npy do not match {m} blocks")
    tokens = np.frombuffer(raw, dtype=dtype).reshape(m, block_size)
    return PackedChunk(int(meta["shard"]), int(meta["index"]), first_doc, int(meta["end_doc"]), tokens, segments,
                       offsets, int(meta.get("long_docs", 0)), int(meta.get("flush_padding", 0)))
