"""Seeded interleaving of sources with draw probability proportional to each source's remaining documents."""

from __future__ import annotations

import numpy as np


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator for one epoch: independent streams per (seed, epoch), stable across numpy versions."""
    return np.random.Generator(np.random.PCG64([int(seed), int(epoch)]))


def interleave_order(counts: list[int], seed: int, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(source index, document index within source) for every document of the epoch, in stream order.

    Drawing a source with probability remaining_s / remaining_total at every step, without replacement,
    gives exactly the distribution of a uniformly shuffled multiset of source labels; shuffling the labels
    is that process vectorised, so all sources run out together and the order is O(N) to build.
    Documents within a source keep their order (sequential reads; streaming-friendly).
    """
    counts = [int(c) for c in counts]
    labels = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    epoch_rng(seed, epoch).shuffle(labels)
    local = np.empty(len(labels), dtype=np.int64)
    for s in range(len(counts)):
        where = labels == s
        local[where] = np.arange(counts[s], dtype=np.int64)
    return labels, local
