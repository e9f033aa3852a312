"""Seeded interleaving of sources with draw probability proportional to each source's remaining documents.

Drawing a source with probability remaining_s / remaining_total at every step, without replacement, is
exactly a uniformly random permutation of the multiset of source labels. Such a permutation can be made
chunk by chunk: the first K labels hold a multivariate-hypergeometric number of each source, in uniformly
random order, and the rest is again a uniform permutation of what remains. So the schedule is built in
chunks of CHUNK documents: per chunk one hypergeometric draw (its composition) and one shuffle (its order),
each from its own generator keyed by (seed, epoch, chunk). All compositions are drawn up front (a few
integers per chunk); a chunk's order is made when it is read. Memory stays O(CHUNK) however many
documents the sources hold, and any position is reached without replaying the ones before it.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 16


def _rng(seed: int, epoch: int, chunk: int, purpose: int) -> np.random.Generator:
    """An independent generator per (seed, epoch, chunk, purpose), stable across numpy versions."""
    return np.random.Generator(np.random.PCG64([int(seed), int(epoch), int(chunk), int(purpose)]))


class InterleaveSchedule:
    """The stream order of one epoch: for global document position i, (source, index within source).

    Documents of a source keep their order (sequential reads, streaming-friendly); all sources run out
    together.
    """

    def __init__(self, counts: list[int], seed: int, epoch: int = 0, chunk: int = CHUNK) -> None:
        self.counts = np.asarray([int(c) for c in counts], dtype=np.int64)
        self.seed, self.epoch, self.chunk = int(seed), int(epoch), int(chunk)
        self.total = int(self.counts.sum())
        num_chunks = -(-self.total // self.chunk)
        self.composition = np.zeros((num_chunks, len(self.counts)), dtype=np.int64)
        remaining = self.counts.copy()
        for c in range(num_chunks):
            size = min(self.chunk, int(remaining.sum()))
            self.composition[c] = _rng(self.seed, self.epoch, c, 0).multivariate_hypergeometric(remaining, size)
            remaining -= self.composition[c]
        # first index within each source of each chunk's documents
        self.source_start = np.cumsum(self.composition, axis=0) - self.composition
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.total

    def _chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is not None and self._cached[0] == c:
            return self._cached[1], self._cached[2]
        labels = np.repeat(np.arange(len(self.counts), dtype=np.int32), self.composition[c])
        _rng(self.seed, self.epoch, c, 1).shuffle(labels)
        local = np.empty(len(labels), dtype=np.int64)
        for s in range(len(self.counts)):
            where = labels == s
            local[where] = self.source_start[c, s] + np.arange(int(self.composition[c, s]), dtype=np.int64)
        self._cached = (c, labels, local)
        return labels, local

    def slice(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(source labels, indices within sources) of the documents at stream positions start..stop."""
        start, stop = max(0, start), min(stop, self.total)
        labels, local = [], []
        for c in range(start // self.chunk, -(-stop // self.chunk)):
            lab, loc = self._chunk(c)
            a, b = max(start - c * self.chunk, 0), min(stop - c * self.chunk, len(lab))
            labels.append(lab[a:b])
            local.append(loc[a:b])
        if not labels:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        return np.concatenate(labels), np.concatenate(local)


def interleave_order(counts: list[int], seed: int, epoch: int = 0, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(source index, document index within source) for every document of the epoch, in stream order."""
    schedule = InterleaveSchedule(counts, seed, epoch, chunk)
    return schedule.slice(0, len(schedule))
