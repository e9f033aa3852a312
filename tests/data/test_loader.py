"""Loaders: exact resume (twice, with workers, across world sizes) in cached and streaming modes."""

from __future__ import annotations

import random

import pytest
import torch

from forgather.data.collate import KEYS
from forgather.data.loader import BlockLoader, build_train_loader, build_val_loader, open_data
from forgather.errors import DataError

from .conftest import small_spec


def _take(loader, n):
    out = []
    for b in loader:
        out.append(b)
        if len(out) == n:
            break
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in KEYS:
            assert torch.equal(x[k], y[k]), k


def _global(batches_per_rank):
    """Concatenate rank slices of each step into the global batch."""
    return [{k: torch.cat([r[i][k] for r in batches_per_rank]) for k in KEYS} for i in range(len(batches_per_rank[0]))]


@pytest.fixture(scope="module")
def streaming_data(shared_data, tmp_path_factory):
    return open_data(small_spec(tmp_path_factory.mktemp("s"), mode="streaming"))


def test_batches_have_the_contract_shapes(small_data):
    b = next(iter(build_train_loader(small_data, 0, 1)))
    assert set(b) == set(KEYS)
    for k in KEYS:
        assert b[k].shape == (2, 128) and b[k].dtype == torch.long


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_at_random_points_equals_uninterrupted_twice(small_data, workers):
    n_steps = small_data.train.epoch(0).num_blocks // 2 + 30  # crosses into epoch 1
    full = _take(BlockLoader(small_data.train, 2, 0, 1, workers), n_steps)
    rng = random.Random(workers)
    a = rng.randrange(1, n_steps // 2)
    b = rng.randrange(a + 1, n_steps - 1)
    l1 = BlockLoader(small_data.train, 2, 0, 1, workers)
    got = _take(l1, a)
    sd = l1.state_dict()
    l2 = BlockLoader(small_data.train, 2, 0, 1, workers)
    l2.load_state_dict(sd)
    got += _take(l2, b - a)
    l3 = BlockLoader(small_data.train, 2, 0, 1, workers)
    l3.load_state_dict(l2.state_dict())
    got += _take(l3, n_steps - b)
    _same(got, full)


def _ranks(stream, world, batch, state, steps, workers=0):
    loaders = [BlockLoader(stream, batch, r, world, workers) for r in range(world)]
    for ld in loaders:
        if state is not None:
            ld.load_state_dict(state)
    outs = [_take(ld, steps) for ld in loaders]
    states = [ld.state_dict() for ld in loaders]
    assert all(s == states[0] for s in states)  # identical on every rank
    return _global(outs), states[0]


@pytest.mark.parametrize("mode", ["cached", "streaming"])
def test_resume_after_changing_world_size_2_1_2(small_data, streaming_data, mode):
    stream = small_data.train if mode == "cached" else streaming_data.train
    full = _take(BlockLoader(stream, 4, 0, 1), 40)  # the global batch (4 blocks) of every step
    g1, s = _ranks(stream, 2, 2, None, 13)
    g2, s = _ranks(stream, 1, 4, s, 14)
    g3, _ = _ranks(stream, 2, 2, s, 13)
    _same(g1 + g2 + g3, full)


def test_streaming_resume_equals_uninterrupted_and_matches_cached(small_data, streaming_data):
    full = _take(BlockLoader(streaming_data.train, 2, 0, 1), 50)
    _same(full, _take(BlockLoader(small_data.train, 2, 0, 1), 50))
    l1 = BlockLoader(streaming_data.train, 2, 0, 1)
    got = _take(l1, 17)
    l2 = BlockLoader(streaming_data.train, 2, 0, 1)
    l2.load_state_dict(l1.state_dict())
    got += _take(l2, 16)
    l3 = BlockLoader(streaming_data.train, 2, 0, 1)
    sd = l2.state_dict()
    sd.pop("stream")  # a cached-mode state: streaming replays to the position
    l3.load_state_dict(sd)
    got += _take(l3, 17)
    _same(got, full)


def test_changed_data_refuses_old_state(small_data):
    ld = BlockLoader(small_data.train, 2)
    with pytest.raises(DataError, match="changed since this checkpoint"):
        ld.load_state_dict({"epoch": 0, "block": 4, "fingerprint": "f" * 64})


def test_validation_loader_covers_every_block_once_with_masked_padding(shared_data, tmp_path):
    data = open_data(small_spec(tmp_path, validation_fraction=0.05))
    n = data.val.epoch(0).num_blocks
    per_rank = [list(build_val_loader(data, r, 2, batch_size=3)) for r in range(2)]
    glob = _global(per_rank)
    assert len(glob) == -(-n // 6)
    ids = torch.cat([g["input_ids"] for g in glob])
    labels = torch.cat([g["labels"] for g in glob])
    assert (labels[n:] == -100).all() and (labels[:n] != -100).any()
    expected = torch.stack([torch.from_numpy(data.val.block(k)[0]).long() for k in range(n)])
    assert torch.equal(ids[:n], expected)
