"""The global block stream: every token once per epoch, cached == streaming, epochs reshuffle."""

from __future__ import annotations

import numpy as np

from forgather.data.interleave import interleave_order
from forgather.data.loader import open_data

from .conftest import small_spec


def _expected_docs(data, epoch):
    labels, local = interleave_order(data.train.counts, data.spec.seed, epoch)
    texts = [data.train.sources[s].texts(int(i), int(i) + 1)[0] for s, i in zip(labels, local)]
    return data.tokenizer.encode_docs(texts)


def _reassemble(stream, epoch, n):
    pieces: dict[int, list] = {}
    for k in range(n):
        tokens, segs = stream.block(k, epoch)
        for start, length, doc, off in segs.tolist():
            pieces.setdefault(doc, []).append((off, tokens[start:start + length]))
    return pieces


def test_every_token_of_every_document_exactly_once_per_epoch(small_data):
    for epoch in (0, 1):
        ep = small_data.train.epoch(epoch)
        expected = _expected_docs(small_data, epoch)
        pieces = _reassemble(small_data.train, epoch, ep.num_blocks)
        assert sorted(pieces) == list(range(len(expected)))
        for d, exp in enumerate(expected):
            parts = sorted(pieces[d], key=lambda p: p[0])
            offs = [o for o, _ in parts]
            lens = [len(t) for _, t in parts]
            assert offs == list(np.cumsum([0] + lens[:-1]))  # no gap, no overlap, no duplicate chunk
            np.testing.assert_array_equal(np.concatenate([t for _, t in parts]), exp)
        total = sum(len(e) for e in expected)
        assert ep.manifest["tokens"] == total
        assert ep.manifest["fill"] > 0.97


def test_long_documents_are_split_and_counted(small_data):
    m = small_data.train.epoch(0).manifest
    # literature documents are ~30k tokens: over 200 blocks of 128 each
    assert m["long_docs"] >= 3
    assert m["documents"] == sum(small_data.train.counts)


def test_epochs_reshuffle_deterministically(small_data):
    a = [small_data.train.block(k, 0)[0] for k in range(20)]
    b = [small_data.train.block(k, 1)[0] for k in range(20)]
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_streaming_produces_the_same_blocks_as_cached(small_data, tmp_path):
    streaming = open_data(small_spec(tmp_path, mode="streaming")).train
    n = small_data.train.epoch(0).num_blocks
    got = list(streaming.packer(0))
    assert len(got) == n
    for k in (0, 1, n // 2, n - 1):
        t, s = small_data.train.block(k)
        np.testing.assert_array_equal(got[k].tokens, t)
        np.testing.assert_array_equal(got[k].segments, s)
    assert streaming.fingerprint == small_data.train.fingerprint


def test_parallel_build_equals_serial(small_data, tmp_path):
    par = open_data(small_spec(tmp_path, num_workers=2)).train
    ep = par.epoch(0)
    assert ep.path != small_data.train.epoch(0).path  # a different cache root, rebuilt from scratch
    for k in range(0, ep.num_blocks, 37):
        np.testing.assert_array_equal(ep.block(k)[0], small_data.train.block(k)[0])
