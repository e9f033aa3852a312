"""Reading the stream: each shard epoch is a seeded permutation of the shard's blocks, new every epoch."""

from __future__ import annotations

import json

import numpy as np

from forgather.data.inspect import documents_per_batch
from forgather.data.opening import open_data
from forgather.data.shards import Cursor
from forgather.errors import DataError

from ..conftest import tiny_spec


def _key(block):
    tokens, segs = block
    return tokens.tobytes() + segs.tobytes()


def _epoch(reader, n):
    return [_key(reader.next_block()) for _ in range(n)]


def test_every_epoch_reads_every_block_of_a_shard_once_in_a_new_deterministic_order(tiny_corpus, tmp_path):
    stream = open_data(tiny_spec(tiny_corpus, tmp_path)).train
    for shard in range(stream.shards):
        packed = [_key(c.block(i)) for c in stream.chunks(shard) for i in range(c.num_blocks)]
        reader = stream.reader(shard)
        epochs = [_epoch(reader, len(packed)) for _ in range(3)]
        assert reader.cursor.epoch == 3 and reader.cursor.chunk == 0 and reader.cursor.offset == 0
        for order in epochs:
            assert sorted(order) == sorted(packed)  # a permutation: every block exactly once
        assert epochs[0] != packed and epochs[0] != epochs[1] != epochs[2]
        again = open_data(tiny_spec(tiny_corpus, tmp_path)).train.reader(shard)
        assert _epoch(again, len(packed)) == epochs[0]  # the same order from another open


def test_without_shuffle_blocks_come_in_packing_order(tiny_corpus, tmp_path):
    stream = open_data(tiny_spec(tiny_corpus, tmp_path, shuffle=False)).train
    packed = [_key(c.block(i)) for c in stream.chunks(0) for i in range(c.num_blocks)]
    reader = stream.reader(0)
    assert _epoch(reader, len(packed)) == packed == _epoch(reader, len(packed))


def test_a_reader_resumes_from_any_cursor_exactly(tiny_corpus, tmp_path):
    for mode in ("cached", "streaming"):
        stream = open_data(tiny_spec(tiny_corpus, tmp_path, mode=mode)).train
        reader = stream.reader(3)
        full, cursors = [], []
        for _ in range(400):  # past the end of the shard's first epoch
            cursors.append(reader.cursor)
            full.append(_key(reader.next_block()))
        for at in (0, 1, 57, 200, 399):
            resumed = stream.reader(3, Cursor.from_list(cursors[at].to_list()))
            assert _epoch(resumed, 400 - at) == full[at:], (mode, at)


def test_a_shuffled_batch_draws_from_many_more_documents(tiny_corpus, tmp_path):
    ordered = open_data(tiny_spec(tiny_corpus, tmp_path, shards=1, shuffle=False, chunk_tokens=1 << 20)).train
    shuffled = open_data(tiny_spec(tiny_corpus, tmp_path, shards=1, chunk_tokens=1 << 20)).train
    before, after = documents_per_batch(ordered, 8, 60), documents_per_batch(shuffled, 8, 60)
    # in stream order a book's pieces are consecutive blocks: many batches come from one document
    assert sum(c == 1 for c in before) >= 10
    assert sum(c == 1 for c in after) <= 2
    assert sum(after) / len(after) > 1.3 * sum(before) / len(before)


def test_shards_of_blank_documents_are_refused(tmp_path, tiny_corpus):
    lines = [json.dumps({"text": "  "}) for _ in range(7)] + [json.dumps({"text": "some words here"})]
    (tmp_path / "blank.jsonl").write_text("\n".join(lines) + "\n")
    spec = tiny_spec(tiny_corpus, tmp_path / "cache", sources=[{"path": str(tmp_path / "blank.jsonl")}], shards=2)
    stream = open_data(spec).train
    refused = []
    for shard in range(2):  # one shard has the one document with text, the other only blanks
        try:
            stream.reader(shard).next_block()
        except DataError as exc:
            refused.append(str(exc))
    assert len(refused) == 1 and "holds no text" in refused[0] and "lower data.shards" in refused[0]


def test_global_position_k_is_block_k_over_s_of_shard_k_mod_s(tiny_corpus, tmp_path):
    stream = open_data(tiny_spec(tiny_corpus, tmp_path)).train
    readers = [stream.reader(s) for s in range(4)]
    blocks = [readers[k % 4].next_block() for k in range(12)]
    for k in (0, 5, 11):
        np.testing.assert_array_equal(stream.block(k)[0], blocks[k][0])
