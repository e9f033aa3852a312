"""Loaders: exact resume at random points, twice, across world sizes dividing data.shards, in both modes."""

from __future__ import annotations

import random

import pytest
import torch

from forgather.data.collate import KEYS
from forgather.data.loader import (OnePassLoader, ShardedLoader, build_train_loader, build_val_loader, merge_states,
                                   prefetched)
from forgather.data.opening import open_data
from forgather.errors import DataError

from ..conftest import tiny_spec

GLOBAL_BATCH = 4


def _take(loader, n):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def _same(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        for k in KEYS:
            assert torch.equal(x[k], y[k]), (i, k)


def _interleave(per_rank: list[list[dict]], world: int) -> list[dict]:
    """Each step's global batch in position order: rank r holds the positions ≡ r (mod W)."""
    steps = []
    for i in range(len(per_rank[0])):
        rows = {k: [None] * GLOBAL_BATCH for k in KEYS}
        for r, batches in enumerate(per_rank):
            for k in KEYS:
                for j, row in enumerate(batches[i][k]):
                    rows[k][r + j * world] = row
        steps.append({k: torch.stack(v) for k, v in rows.items()})
    return steps


def _run(stream, world, state, steps):
    """`steps` global batches read by `world` ranks from `state`; returns them and the merged state after."""
    loaders = [ShardedLoader(stream, GLOBAL_BATCH // world, r, world) for r in range(world)]
    for loader in loaders:
        if state is not None:
            loader.load_state_dict(state)
    batches = _interleave([_take(loader, steps) for loader in loaders], world)
    return batches, merge_states([loader.local_state() for loader in loaders])


@pytest.fixture(scope="module", params=["cached", "streaming"])
def stream(request, tiny_corpus, tmp_path_factory):
    return open_data(tiny_spec(tiny_corpus, tmp_path_factory.mktemp("loader"), mode=request.param)).train


def test_batches_have_the_contract_shapes(tiny_corpus, tmp_path):
    data = open_data(tiny_spec(tiny_corpus, tmp_path))
    batch = next(iter(build_train_loader(data, 0, 1)))
    assert set(batch) == set(KEYS)
    for k in KEYS:
        assert batch[k].shape == (2, 64) and batch[k].dtype == torch.long


@pytest.mark.parametrize("seed", [0, 1])
def test_resume_on_other_world_sizes_at_random_points_twice_equals_one_uninterrupted_run(stream, seed):
    steps = 200  # 800 blocks: past every shard's first epoch (~150 blocks a shard)
    full, end_state = _run(stream, 1, None, steps)
    assert merge_states([end_state])["epoch"] >= 1
    rng = random.Random(seed)
    a = rng.randrange(1, steps // 2)
    b = rng.randrange(a + 1, steps - 1)
    worlds = rng.sample([1, 2, 4], 3)
    first, state = _run(stream, worlds[0], None, a)
    second, state = _run(stream, worlds[1], state, b - a)
    third, state = _run(stream, worlds[2], state, steps - b)
    _same(first + second + third, full)
    assert state == end_state  # the same state whichever ranks read


def test_each_rank_tokenizes_only_its_own_shards_documents(tiny_corpus, tmp_path):
    for world in (1, 2, 4):
        counts = []
        for rank in range(world):
            data = open_data(tiny_spec(tiny_corpus, tmp_path / f"w{world}", mode="streaming"))
            loader = ShardedLoader(data.train, GLOBAL_BATCH // world, rank, world, prefetch=0)
            _take(loader, 150)  # through every owned shard's first epoch
            layout = data.train.layout
            owned_docs = sum(layout.shard_documents(s) for s in loader.owned)
            assert data.train.documents_tokenized <= owned_docs + 256 * len(loader.owned)  # + one batch read ahead
            counts.append(data.train.documents_tokenized)
        total = sum(data.train.counts)
        assert max(counts) < total / world * 1.2 + 256, (world, counts)


def test_a_state_from_other_shards_settings_or_formats_is_refused_in_one_line(stream):
    loader = ShardedLoader(stream, 2)
    good = loader.state_dict()
    with pytest.raises(DataError, match="data.shards changed from 8 to 4"):
        loader.load_state_dict({**good, "shards": 8})
    with pytest.raises(DataError, match="changed since this checkpoint"):
        loader.load_state_dict({**good, "fingerprint": "f" * 64})
    with pytest.raises(DataError, match="older forgather data stream.*--no-restore-dataset-state"):
        loader.load_state_dict({"epoch": 0, "block": 4, "fingerprint": "f" * 64})
    with pytest.raises(DataError, match="1, 2, 4 ranks"):
        ShardedLoader(stream, 2, 0, 3)


def test_validation_reads_every_block_once_with_masked_padding(tiny_corpus, tmp_path):
    data = open_data(tiny_spec(tiny_corpus, tmp_path, validation_fraction=0.2))
    blocks = list(data.val.epoch_blocks(0, 0))
    per_rank = [list(build_val_loader(data, r, 2, batch_size=3)) for r in range(2)]
    n = len(blocks)
    assert len(per_rank[0]) == -(-n // 6)
    ids = torch.stack([row for step in zip(*per_rank) for pair in zip(step[0]["input_ids"], step[1]["input_ids"])
                       for row in pair])
    labels = torch.stack([row for step in zip(*per_rank) for pair in zip(step[0]["labels"], step[1]["labels"])
                          for row in pair])
    assert (labels[n:] == -100).all() and (labels[:n] != -100).any()
    assert torch.equal(ids[:n], torch.stack([torch.from_numpy(t).long() for t, _ in blocks]))
    with pytest.raises(DataError, match="one-shard"):
        OnePassLoader(data.train, 2)


def test_an_error_while_preparing_batches_ahead_reaches_the_consumer():
    def broken():
        yield 1
        raise DataError("disk vanished")

    got = []
    with pytest.raises(DataError, match="disk vanished"):
        for item in prefetched(broken(), 2):
            got.append(item)
    assert got == [1]
