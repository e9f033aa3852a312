"""Interleaving: draws proportional to remaining documents, all sources end together, seeded and per-epoch."""

from __future__ import annotations

import numpy as np

from forgather.data.interleave import interleave_order


def test_proportions_match_remaining_counts():
    counts = [1000, 3000, 6000]
    labels, local = interleave_order(counts, seed=11)
    N = sum(counts)
    assert len(labels) == N
    # every prefix holds each source in proportion to its size (the draw is ∝ remaining, so ∝ size throughout)
    for frac in (0.1, 0.25, 0.5, 0.75):
        prefix = labels[: int(N * frac)]
        for s, c in enumerate(counts):
            expected = c / N
            got = (prefix == s).mean()
            sd = np.sqrt(expected * (1 - expected) / len(prefix))
            assert abs(got - expected) < 5 * sd, (frac, s, got, expected)
    # each source's documents appear in their own order, each exactly once
    for s, c in enumerate(counts):
        np.testing.assert_array_equal(local[labels == s], np.arange(c))


def test_sources_run_out_together():
    counts = [200, 5000, 800]
    N = sum(counts)
    lasts = []
    for seed in range(20):
        labels, _ = interleave_order(counts, seed)
        lasts.append([np.flatnonzero(labels == s)[-1] for s in range(3)])
    lasts = np.array(lasts)
    # expected last position of a source with c docs is N - N/(c+1): all within the final ~1% of the stream
    assert (lasts.mean(axis=0) > 0.99 * N - 5).all(), lasts.mean(axis=0)


def test_conditional_draw_is_proportional_to_remaining():
    # after seeing the first k draws, the next draw follows the remaining counts (checked in aggregate)
    counts = [30, 70]
    hits, trials = 0, 0
    expected = []
    for seed in range(2000):
        labels, _ = interleave_order(counts, seed)
        rem0 = counts[0] - (labels[:50] == 0).sum()
        expected.append(rem0 / (sum(counts) - 50))
        hits += labels[50] == 0
        trials += 1
    exp = float(np.mean(expected))
    assert abs(hits / trials - exp) < 4 * np.sqrt(exp * (1 - exp) / trials)


def test_seeded_and_epochs_reshuffle():
    a, _ = interleave_order([50, 50], seed=1, epoch=0)
    b, _ = interleave_order([50, 50], seed=1, epoch=0)
    c, _ = interleave_order([50, 50], seed=1, epoch=1)
    d, _ = interleave_order([50, 50], seed=2, epoch=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_chunked_schedule_reads_the_same_order_in_any_slices():
    from forgather.data.interleave import InterleaveSchedule

    counts = [37, 500, 91]
    schedule = InterleaveSchedule(counts, seed=3, epoch=2, chunk=64)
    labels, local = interleave_order(counts, seed=3, epoch=2, chunk=64)
    for start, stop in ((0, 1), (63, 65), (100, 400), (600, 628), (0, 628)):
        got = schedule.slice(start, stop)
        np.testing.assert_array_equal(got[0], labels[start:stop])
        np.testing.assert_array_equal(got[1], local[start:stop])
    for s, c in enumerate(counts):  # chunking keeps every source's documents in order, each exactly once
        np.testing.assert_array_equal(local[labels == s], np.arange(c))


def test_small_chunks_still_draw_in_proportion_to_remaining():
    # chunking is exact (a uniform permutation, chunk by chunk), so small chunks pass the same statistics
    counts = [30, 70]
    hits, expected = 0, []
    for seed in range(2000):
        labels, _ = interleave_order(counts, seed, chunk=16)
        expected.append((counts[0] - (labels[:50] == 0).sum()) / (sum(counts) - 50))
        hits += labels[50] == 0
    exp = float(np.mean(expected))
    assert abs(hits / 2000 - exp) < 4 * np.sqrt(exp * (1 - exp) / 2000)
