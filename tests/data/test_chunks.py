"""Chunks: every token of a shard once, cached == packed on the fly byte for byte, damaged caches rebuilt."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from forgather.data.opening import open_data
from forgather.errors import DataError

from ..conftest import tiny_spec


def _documents(stream, shard):
    n = stream.layout.shard_documents(shard)
    return stream.tokenizer.encode_docs(stream.shard_texts(shard, 0, n))


def test_every_token_of_every_shard_document_exactly_once(tiny_corpus, tmp_path):
    stream = open_data(tiny_spec(tiny_corpus, tmp_path)).train
    for shard in range(stream.shards):
        pieces: dict[int, list] = {}
        chunks = list(stream.chunks(shard))
        assert len(chunks) > 1  # the shard is cut into several chunks
        assert [c.first_doc for c in chunks[1:]] == [c.end_doc for c in chunks[:-1]]
        for chunk in chunks:
            for i in range(chunk.num_blocks):
                tokens, segs = chunk.block(i)
                for start, length, doc, off in segs.tolist():
                    pieces.setdefault(doc, []).append((off, tokens[start:start + length]))
        expected = _documents(stream, shard)
        assert sorted(pieces) == [stream.layout.global_document(shard, j) for j in range(len(expected))]
        for j, exp in enumerate(expected):
            parts = sorted(pieces[stream.layout.global_document(shard, j)], key=lambda p: p[0])
            assert [o for o, _ in parts] == list(np.cumsum([0] + [len(t) for _, t in parts[:-1]]))
            np.testing.assert_array_equal(np.concatenate([t for _, t in parts]), exp)


def test_chunks_close_after_the_document_that_reaches_the_token_budget(tiny_corpus, tmp_path):
    stream = open_data(tiny_spec(tiny_corpus, tmp_path)).train
    docs = _documents(stream, 1)
    for chunk in list(stream.chunks(1))[:-1]:
        lengths = [len(d) for d in docs[chunk.first_doc:chunk.end_doc]]
        assert sum(lengths) >= 2048 > sum(lengths[:-1])


def test_cached_chunks_equal_streamed_ones_byte_for_byte(tiny_corpus, tmp_path):
    cached = open_data(tiny_spec(tiny_corpus, tmp_path / "a")).train
    streamed = open_data(tiny_spec(tiny_corpus, tmp_path / "b", mode="streaming")).train
    assert cached.fingerprint == streamed.fingerprint
    for shard in range(4):
        for a, b in zip(cached.chunks(shard), streamed.chunks(shard), strict=True):
            np.testing.assert_array_equal(a.tokens, b.tokens)
            np.testing.assert_array_equal(a.segments, b.segments)
    assert not list((tmp_path / "b").rglob("chunk-*"))  # streaming writes no cache
    again = open_data(tiny_spec(tiny_corpus, tmp_path / "a")).train
    list(again.chunks(0))
    assert again.documents_tokenized == 0  # a second open reads the cache, tokenizing nothing
    assert not list((tmp_path / "a").rglob("*.tmp-*"))  # atomic writes leave nothing behind


def test_chunk_end_padding_is_small_and_counted(tiny_corpus, tmp_path):
    stream = open_data(tiny_spec(tiny_corpus, tmp_path, pack_window=64)).train
    chunks = [c for s in range(4) for c in stream.chunks(s)]
    capacity = sum(c.num_blocks for c in chunks) * 64
    padding = sum(c.flush_padding for c in chunks)
    assert sum(c.used for c in chunks) + padding == capacity  # a window this wide never fills: only chunk ends pad
    assert padding / capacity < 0.05


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_cached_chunk_is_named_and_rebuilt_never_read(tiny_corpus, tmp_path, capsys, damage):
    spec = tiny_spec(tiny_corpus, tmp_path)
    good = next(open_data(spec).train.chunks(2))
    path = open_data(spec).train.chunk_path(2, 0)
    target = path / ("segments.npy" if damage == "delete" else "tokens.bin")
    if damage == "truncate":
        os.truncate(target, target.stat().st_size - 2)
    elif damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[5] ^= 0xFF
        target.write_bytes(bytes(raw))
    else:
        target.unlink()
    with pytest.raises(DataError, match=f"{path}.*forgather data prepare"):
        next(open_data(spec, rebuild=False).train.chunks(2))
    rebuilt = next(open_data(spec).train.chunks(2))
    assert "data cache chunk damaged" in capsys.readouterr().err
    np.testing.assert_array_equal(rebuilt.tokens, good.tokens)
    assert next(open_data(spec, rebuild=False).train.chunks(2)).num_blocks == good.num_blocks


def test_a_missing_chunk_without_rebuild_points_at_data_prepare(tiny_corpus, tmp_path):
    with pytest.raises(DataError, match="missing; build the cache with `forgather data prepare`"):
        next(open_data(tiny_spec(tiny_corpus, tmp_path), rebuild=False).train.chunks(0))


def test_the_cache_key_follows_every_input_but_the_shuffle(tiny_corpus, tmp_path):
    base = open_data(tiny_spec(tiny_corpus, tmp_path)).train
    for change in ({"shards": 2}, {"chunk_tokens": 4096}, {"block_size": 32}, {"seed": 8}, {"pack_window": 4}):
        other = open_data(tiny_spec(tiny_corpus, tmp_path, **change)).train
        assert other.cache_key != base.cache_key and other.fingerprint != base.fingerprint, change
        assert other.chunk_path(0, 0) != base.chunk_path(0, 0)
    unshuffled = open_data(tiny_spec(tiny_corpus, tmp_path, shuffle=False)).train
    # the shuffle is applied when reading: same chunk bytes, but another stream (resume refuses it)
    assert unshuffled.cache_key == base.cache_key and unshuffled.fingerprint != base.fingerprint


def test_a_chunk_from_other_settings_in_the_same_place_is_not_trusted(tiny_corpus, tmp_path):
    spec = tiny_spec(tiny_corpus, tmp_path)
    stream = open_data(spec).train
    next(stream.chunks(0))
    meta_file = stream.chunk_path(0, 0) / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["key"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="built from other data or settings"):
        next(open_data(spec, rebuild=False).train.chunks(0))
