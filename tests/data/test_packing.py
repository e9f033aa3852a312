"""Packing: boundaries never crossed, labels masked at boundaries, every token exactly once, tight flushes."""

from __future__ import annotations

import numpy as np
import pytest

from forgather.data.collate import collate_blocks
from forgather.data.packing import IGNORE_INDEX, Packer, block_arrays


def _docs(rng, n, lo=1, hi=300):
    return [rng.integers(1, 1000, size=int(rng.integers(lo, hi)), dtype=np.int32) for _ in range(n)]


def _pack(docs, T=64, window=8):
    p = Packer(T, window, pad_id=0)
    out = []
    for i, d in enumerate(docs):
        p.add(d, i)
        while p.ready:
            out.append(p.ready.popleft())
    p.flush()
    out.extend(p.ready)
    return out, p


def _reassemble(blocks):
    pieces: dict[int, list] = {}
    for b in blocks:
        for start, length, doc, off in b.segments.tolist():
            pieces.setdefault(doc, []).append((off, b.tokens[start:start + length]))
    return {d: np.concatenate([t for _, t in sorted(v, key=lambda x: x[0])]) for d, v in pieces.items()}, pieces


def test_every_token_exactly_once_and_in_order():
    rng = np.random.default_rng(0)
    docs = _docs(rng, 400)
    blocks, _ = _pack(docs)
    docs_out, pieces = _reassemble(blocks)
    assert sorted(docs_out) == list(range(len(docs)))
    for i, d in enumerate(docs):
        offs = sorted(o for o, _ in pieces[i])
        # chunks tile the document: offsets are contiguous, no overlap, no gap
        assert offs == sorted({o for o, _ in pieces[i]})
        np.testing.assert_array_equal(docs_out[i], d)
    assert sum(b.used for b in blocks) == sum(len(d) for d in docs)


def test_document_ids_and_labels_respect_boundaries():
    rng = np.random.default_rng(1)
    blocks, _ = _pack(_docs(rng, 200), T=64)
    for b in blocks:
        a = block_arrays(b.tokens, b.segments)
        ids, labels, pos, docs = a["input_ids"], a["labels"], a["position_ids"], a["document_ids"]
        for t in range(len(ids) - 1):
            if labels[t] != IGNORE_INDEX:
                # a supervised position predicts the next token of the same document
                assert docs[t] == docs[t + 1] != -1 and labels[t] == ids[t + 1] and pos[t + 1] == pos[t] + 1
        for start, length, _, off in b.segments.tolist():
            assert labels[start + length - 1] == IGNORE_INDEX  # last token never predicts the next document
            assert (docs[start:start + length] == docs[start]).all()
            np.testing.assert_array_equal(pos[start:start + length], np.arange(off, off + length))
        pad = docs == -1
        assert (labels[pad] == IGNORE_INDEX).all()
        assert labels[-1] == IGNORE_INDEX


def test_mask_from_document_ids_blocks_cross_document_attention():
    rng = np.random.default_rng(2)
    blocks, _ = _pack(_docs(rng, 50, 1, 40), T=64)
    batch = collate_blocks([(b.tokens, b.segments) for b in blocks[:4]])
    d = batch["document_ids"]
    mask = (d[:, :, None] == d[:, None, :]) & (d[:, :, None] >= 0)
    for b in range(mask.shape[0]):
        for s in batch["document_ids"][b].unique().tolist():
            if s < 0:
                continue
            inside = (d[b] == s).nonzero().flatten()
            outside = ((d[b] != s)).nonzero().flatten()
            assert not mask[b][inside][:, outside].any()


def test_long_document_over_100_blocks_is_split_and_counted():
    T = 32
    long = np.arange(1, T * 130 + 8, dtype=np.int32)
    blocks, p = _pack([np.array([5, 6], np.int32), long, np.array([7], np.int32)], T=T)
    assert p.long_docs == 1
    docs, pieces = _reassemble(blocks)
    np.testing.assert_array_equal(docs[1], long)
    assert len(pieces[1]) == 131
    # continuation chunks keep counting positions
    assert sorted(o for o, _ in pieces[1])[1] == T


def test_fill_is_high_with_window_and_window_bounds_open_blocks():
    rng = np.random.default_rng(3)
    docs = _docs(rng, 2000, 1, 100)
    blocks, p = _pack(docs, T=256, window=32)
    used = sum(b.used for b in blocks)
    assert used / (len(blocks) * 256) > 0.98
    blocks1, _ = _pack(docs, T=256, window=1)
    assert len(blocks1) > len(blocks)  # window 1 = greedy next-fit: strictly worse here


def test_a_flush_repacks_open_blocks_so_no_two_of_its_blocks_would_fit_together():
    rng = np.random.default_rng(4)
    p = Packer(64, 64, 0)  # a window this wide never fills: blocks leave when exactly full or at the flush
    docs = _docs(rng, 120, 1, 40)
    for i, d in enumerate(docs):
        p.add(d, i)
    full = [p.ready.popleft() for _ in range(len(p.ready))]
    assert all(b.used == 64 for b in full) and len(p.open) > 4
    p.flush()
    flushed = list(p.ready)
    used = sorted(b.used for b in flushed)
    assert used[0] + used[1] > 64  # first-fit decreasing: any two flushed blocks overflow one
    assert p.flush_padding == len(flushed) * 64 - sum(used)
    assert sum(used) + 64 * len(full) == sum(len(d) for d in docs)


@pytest.mark.parametrize("n", [0])
def test_empty_document_adds_nothing(n):
    p = Packer(16, 2, 0)
    p.add(np.zeros(n, np.int32), 0)
    p.flush()
    assert not p.ready
