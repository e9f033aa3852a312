"""The contract of the training block stream: S virtual shards, dealt documents, global block positions.

Documents
    The sources are interleaved into one document order (interleave.py: draws ∝ remaining documents,
    a pure function of the sources' sizes and the seed). Global document i goes to shard i mod S.
    S (`data.shards`) is part of the data settings, not of the job: it never changes with the world size.

Blocks of a shard
    A shard cuts its own document sequence into chunks of about `data.chunk_tokens` tokens (a chunk
    closes after the document that reaches the budget) and packs each chunk on its own (chunks.py).
    Chunk c of shard s is therefore a pure function of (sources, tokenizer, settings, s, c): packed once,
    cached or re-packed on demand, the same bytes either way. In epoch e the chunk's blocks are read in a
    seeded permutation keyed by (seed, e, s, c) (`data.shuffle`), so every epoch reads every block of the
    shard exactly once, in a new order. A shard's sequence is endless: epoch e+1 starts right after epoch e
    ends; no block is dropped or repeated to align shards whose lengths differ.

Global positions
    Global block position k is block k // S of shard k mod S. A global batch of G blocks is the positions
    [p, p + G); rank r of W reads the positions ≡ r (mod W), which all lie in its own shards
    {s : s ≡ r (mod W)} when W divides S. So rank r tokenizes and reads only 1/W of the data, and the
    blocks of a step, as a set, do not depend on W: the loss of every step is the same for any W dividing S.

State
    The position p and a cursor per shard (epoch, chunk, first document of the chunk, blocks read in it):
    identical for every W, so a run resumes exactly on any world size dividing S. Seeking is O(1): a cursor
    names the chunk to open (cached) or to re-pack (streaming, bounded work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError


def keyed_rng(*key: int) -> np.random.Generator:
    """An independent generator per integer key tuple, stable across numpy versions."""
    return np.random.Generator(np.random.PCG64([int(k) for k in key]))


@dataclass(frozen=True)
class Cursor:
    """Where a shard's next block is: epoch, chunk index, the chunk's first (shard-local) document, offset."""

    epoch: int = 0
    chunk: int = 0
    first_doc: int = 0
    offset: int = 0

    def to_list(self) -> list[int]:
        return [self.epoch, self.chunk, self.first_doc, self.offset]

    @classmethod
    def from_list(cls, values: list[int]) -> "Cursor":
        epoch, chunk, first_doc, offset = (int(v) for v in values)
        return cls(epoch, chunk, first_doc, offset)


def valid_world_sizes(shards: int) -> list[int]:
    """The world sizes that can read a stream of `shards` shards: the divisors of S."""
    return [w for w in range(1, shards + 1) if shards % w == 0]


def check_world_size(shards: int, world_size: int, what: str = "ranks reading data") -> None:
    """DataError naming the valid sizes when world_size does not divide the shard count."""
    if world_size >= 1 and shards % world_size == 0:
        return
    valid = valid_world_sizes(shards)
    raise DataError(f"data.shards is {shards}, which {world_size} {what} cannot split evenly; use "
                    f"{', '.join(map(str, valid))} ranks, or set data.shards to a multiple of {world_size} (e.g. "
                    f"{math.lcm(shards, world_size)}) — a new data.shards is a new data stream: a run that resumes "
                    "on it needs --no-restore-dataset-state")


@dataclass(frozen=True)
class ShardLayout:
    """How `documents` global documents are dealt to `shards` shards, and block positions to ranks."""

    shards: int
    documents: int

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise DataError(f"data.shards must be at least 1, not {self.shards}")
        if self.documents < self.shards:
            raise DataError(f"data.shards is {self.shards} but the sources hold only {self.documents} document(s); "
                            f"every shard needs documents: set data.shards to at most {max(1, self.documents)}")

    def shard_documents(self, shard: int) -> int:
        """Documents dealt to `shard` (global documents shard, shard + S, ...)."""
        return (self.documents - shard + self.shards - 1) // self.shards

    def global_document(self, shard: int, local: int) -> int:
        """The global document ordinal of a shard's local document."""
        return shard + local * self.shards

    def shard_of(self, position: int) -> int:
        """The shard that global block position `position` reads from."""
        return position % self.shards

    def owned(self, rank: int, world_size: int) -> list[int]:
        """The shards rank r of W reads: s ≡ r (mod W)."""
        check_world_size(self.shards, world_size)
        return list(range(rank, self.shards, world_size))

    def consumed(self, shard: int, position: int) -> int:
        """Blocks of `shard` read before global position `position` (positions < p with k ≡ shard mod S)."""
        return max(0, (position - shard + self.shards - 1) // self.shards)


def rank_positions(position: int, global_batch: int, rank: int, world_size: int) -> range:
    """The positions of the global batch [position, position + global_batch) that rank r of W reads (≡ r mod W)."""
    first = position + (rank - position) % world_size
    return range(first, position + global_batch, world_size)
