"""The block stream of a set of sources: shards of packed chunks, read cached (O(1) seek) or packed on the fly.

The contract (what a block is a function of, how positions map to shards and ranks) is written in
shards.py; chunk packing and the cache files in chunks.py. This module puts them together: which
documents a shard holds, how a chunk is obtained (cache hit, verified; or packed and, in cached mode,
written), and the per-shard reader that walks chunks and epochs from a cursor.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from .arrow_values import value_bytes
from .chunks import ChunkDamaged, PackedChunk, ShardPacker, chunk_dir, read_chunk, write_chunk
from .fingerprint import digest
from .interleave import InterleaveSchedule
from .shards import Cursor, ShardLayout, keyed_rng
from .sources import DocSource
from .tokenizer import Tokenizer

STREAM_FORMAT = "sharded-v1"  # names the stream construction, so caches and states of another scheme never match


class BlockStream:
    """The endless, sharded block stream of some sources (training: S shards; validation/eval: one)."""

    def __init__(self, sources: list[DocSource], tokenizer: Tokenizer, block_size: int, window: int, seed: int,
                 mode: str = "cached", cache_root: Path | None = None, shards: int = 1,
                 chunk_tokens: int = 1 << 22, shuffle: bool = True, rebuild: bool = True) -> None:
        if mode == "cached" and cache_root is None:
            raise DataError("cached data mode needs a cache_dir")
        self.sources, self.tokenizer, self.mode = sources, tokenizer, mode
        self.block_size, self.window, self.seed = block_size, window, seed
        self.chunk_tokens, self.shuffle, self.rebuild = chunk_tokens, shuffle, rebuild
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.counts = [len(s) for s in sources]
        self.layout = ShardLayout(shards, sum(self.counts))
        self.schedule = InterleaveSchedule(self.counts, seed)
        # What a chunk's bytes depend on (the cache key), and what the order of blocks depends on (the stream's
        # fingerprint, kept in checkpoints): the shuffle is applied when reading, so caches don't depend on it.
        self.settings = {"block_size": block_size, "pack_window": window, "seed": seed, "shards": shards,
                         "chunk_tokens": chunk_tokens, "format": STREAM_FORMAT}
        self.cache_key = digest({"sources": [s.identity() for s in sources], "tokenizer": tokenizer.settings(),
                                 "settings": self.settings})
        self.fingerprint = digest({"cache_key": self.cache_key, "shuffle": shuffle})
        self.documents_tokenized = 0  # by this process: each rank tokenizes only its own shards' documents

    @property
    def shards(self) -> int:
        return self.layout.shards

    # -- documents ---------------------------------------------------------------------------------------
    def shard_texts(self, shard: int, start: int, stop: int) -> list[str]:
        """Texts of a shard's local documents start..stop, in order."""
        stop = min(stop, self.layout.shard_documents(shard))
        if start >= stop:
            return []
        first, last = self.layout.global_document(shard, start), self.layout.global_document(shard, stop - 1)
        labels, local = self.schedule.slice(first, last + 1)
        labels, local = labels[::self.shards], local[::self.shards]
        out: list[str | None] = [None] * len(labels)
        for s in np.unique(labels):
            where = np.flatnonzero(labels == s)
            for w, text in zip(where, self.sources[s].texts_at(local[where])):
                out[w] = text
        return out  # type: ignore[return-value]

    def shard_text_bytes(self) -> list[int] | None:
        """UTF-8 bytes of each shard's documents (about the work of packing it), or None when a source is read
        lazily (streaming parquet) and its texts are not at hand."""
        if not all(isinstance(source, DocSource) for source in self.sources):
            return None
        lengths = [value_bytes(source.column) for source in self.sources]
        labels, local = self.schedule.slice(0, self.layout.documents)
        document_bytes = np.zeros(len(labels))
        for s, source_lengths in enumerate(lengths):
            mine = labels == s
            document_bytes[mine] = source_lengths[local[mine]]
        # Global document d belongs to shard d mod S (ShardLayout).
        per_shard = np.bincount(np.arange(len(labels)) % self.shards, weights=document_bytes, minlength=self.shards)
        return [int(b) for b in per_shard]

    def tokenize_shard(self, shard: int, start: int, stop: int) -> list[np.ndarray]:
        """Token arrays of a shard's local documents start..stop (blank documents give empty arrays)."""
        docs = self.tokenizer.encode_docs(self.shard_texts(shard, start, stop))
        self.documents_tokenized += len(docs)
        return docs

    # -- chunks ------------------------------------------------------------------------------------------
    def chunk_path(self, shard: int, index: int) -> Path:
        """The cache directory of a chunk (cached mode)."""
        assert self.cache_root is not None
        return chunk_dir(self.cache_root, self.cache_key, shard, self.shards, index)

    def cached_chunk(self, shard: int, index: int, first_doc: int) -> PackedChunk | None:
        """The verified cached chunk, or None when it is absent or damaged (a damaged one is reported)."""
        path = self.chunk_path(shard, index)
        try:
            return read_chunk(path, self.cache_key, first_doc, self.block_size)
        except ChunkDamaged as exc:
            if not self.rebuild:
                raise DataError(f"data cache chunk damaged: {exc}; rebuild it with `forgather data prepare`") from None
            print(f"forgather: data cache chunk damaged: {exc}; rebuilding it", file=sys.stderr, flush=True)
            return None

    def chunk(self, shard: int, index: int, first_doc: int, packer: ShardPacker | None = None
              ) -> tuple[PackedChunk, ShardPacker | None]:
        """Chunk `index` of a shard (which starts at local document first_doc), and the packer left after it.

        Cached mode reads it from the cache or packs and writes it; streaming mode packs it. A packer positioned
        at this chunk is reused, so a sequential walk tokenizes each document once.
        """
        if self.mode == "cached":
            chunk = self.cached_chunk(shard, index, first_doc)
            if chunk is not None:
                return chunk, None
            if not self.rebuild:
                raise DataError(f"data cache chunk {self.chunk_path(shard, index)} is missing; build the cache with "
                                "`forgather data prepare`")
        if packer is None or (packer.index, packer.next_doc) != (index, first_doc):
            packer = ShardPacker(self, shard, index, first_doc)
        chunk = packer.next_chunk()
        if chunk is None:
            raise DataError(f"shard {shard} has no chunk {index} starting at document {first_doc}")
        if self.mode == "cached":
            write_chunk(self.chunk_path(shard, index), chunk, self.cache_key)
        return chunk, packer

    def chunks(self, shard: int) -> Iterator[PackedChunk]:
        """Every chunk of a shard in order (building missing ones in cached mode)."""
        index, first, packer = 0, 0, None
        while first < self.layout.shard_documents(shard):
            chunk, packer = self.chunk(shard, index, first, packer)
            yield chunk
            index, first = index + 1, chunk.end_doc

    def order(self, shard: int, index: int, epoch: int, num_blocks: int) -> np.ndarray:
        """The order epoch `epoch` reads a chunk's blocks in: a seeded permutation, or packing order."""
        if not self.shuffle:
            return np.arange(num_blocks)
        return keyed_rng(self.seed, epoch, shard, index, 2).permutation(num_blocks)

    # -- reading -----------------------------------------------------------------------------------------
    def reader(self, shard: int, cursor: Cursor | None = None) -> "ShardReader":
        """A reader of a shard's endless block sequence from `cursor` (default: its start)."""
        return ShardReader(self, shard, cursor or Cursor())

    def epoch_blocks(self, shard: int = 0, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every block of one epoch of one shard, in read order (a one-shard stream: the whole data once)."""
        for chunk in self.chunks(shard):
            for i in self.order(shard, chunk.index, epoch, chunk.num_blocks):
                yield chunk.block(int(i))

    def block(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The block at global position k, within every shard's first epoch (walks its shard: for inspection)."""
        shard = self.layout.shard_of(position)
        reader = self.reader(shard)
        for index in range(position // self.shards + 1):
            block = reader.next_block()
            if reader.cursor.epoch > 0 and index < position // self.shards:
                raise IndexError(f"block {position} is past the first epoch of shard {shard}, which has {index + 1} "
                                 f"blocks (about {(index + 1) * self.shards:,} global positions)")
        return block


class ShardReader:
    """Walks one shard's blocks from a cursor: chunk after chunk, epoch after epoch."""

    def __init__(self, stream: BlockStream, shard: int, cursor: Cursor) -> None:
        self.stream, self.shard, self.cursor = stream, shard, cursor
        self.documents = stream.layout.shard_documents(shard)
        self._chunk: PackedChunk | None = None
        self._order: np.ndarray | None = None
        self._packer: ShardPacker | None = None
        # Counts toward "this shard holds no text" (an endless loop otherwise); a cursor past an epoch's very start
        # was saved after some block of the epoch.
        self._blocks_this_epoch = 0 if cursor == Cursor(cursor.epoch) else 1

    def next_block(self) -> tuple[np.ndarray, np.ndarray]:
        """The shard's next block (tokens, segments); advances the cursor."""
        while True:
            c = self.cursor
            if self._chunk is None:
                self._chunk, self._packer = self.stream.chunk(self.shard, c.chunk, c.first_doc, self._packer)
                self._order = self.stream.order(self.shard, c.chunk, c.epoch, self._chunk.num_blocks)
            if c.offset < self._chunk.num_blocks:
                block = self._chunk.block(int(self._order[c.offset]))
                self.cursor = replace(c, offset=c.offset + 1)
                self._blocks_this_epoch += 1
                if self.cursor.offset == self._chunk.num_blocks:
                    self._next_chunk()  # one cursor per position: an exhausted chunk is never where we are
                return block
            self._next_chunk()

    def _next_chunk(self) -> None:
        c, chunk = self.cursor, self._chunk
        assert chunk is not None
        if chunk.end_doc < self.documents:
            self.cursor = Cursor(c.epoch, c.chunk + 1, chunk.end_doc, 0)
        else:
            if self._blocks_this_epoch == 0:
                raise DataError(f"data shard {self.shard} of {self.stream.shards} holds no text (its "
                                f"{self.documents} documents are blank); lower data.shards")
            self.cursor, self._blocks_this_epoch, self._packer = Cursor(c.epoch + 1), 0, None
        self._chunk = None


def describe_stream(stream: BlockStream) -> dict:
    """Per-shard chunk and block counts, fill and chunk-end padding (packs or reads every chunk)."""
    shards, used, padding, blocks, long_docs = [], 0, 0, 0, 0
    for s in range(stream.shards):
        chunks = list(stream.chunks(s))
        n = sum(c.num_blocks for c in chunks)
        shards.append({"shard": s, "chunks": len(chunks), "blocks": n, "documents": stream.layout.shard_documents(s)})
        blocks += n
        used += sum(c.used for c in chunks)
        padding += sum(c.flush_padding for c in chunks)
        long_docs += sum(c.long_docs for c in chunks)
    capacity = max(1, blocks * stream.block_size)
    return {"shards": shards, "blocks": blocks, "tokens": used, "fill": used / capacity,
            "chunk_end_padding": padding / capacity, "long_docs": long_docs}
