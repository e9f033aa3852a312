"""The shard layout: documents dealt once, positions read by the ranks that own their shards, clear refusals."""

from __future__ import annotations

import pytest

from forgather.data.shards import ShardLayout, check_world_size, rank_positions, valid_world_sizes
from forgather.errors import DataError


def test_every_document_goes_to_exactly_one_shard():
    layout = ShardLayout(shards=4, documents=103)
    dealt = sorted(layout.global_document(s, j) for s in range(4) for j in range(layout.shard_documents(s)))
    assert dealt == list(range(103))
    assert [layout.shard_documents(s) for s in range(4)] == [26, 26, 26, 25]


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_a_rank_reads_only_positions_of_its_own_shards_and_every_position_once(world):
    layout = ShardLayout(shards=8, documents=1000)
    for position in (0, 5, 37):  # a resumed position need not be a multiple of the new global batch
        batch = 3 * world
        seen = []
        for rank in range(world):
            mine = list(rank_positions(position, batch, rank, world))
            assert len(mine) == 3
            assert {layout.shard_of(k) for k in mine} <= set(layout.owned(rank, world))
            seen += mine
        assert sorted(seen) == list(range(position, position + batch))


def test_consumed_blocks_per_shard_add_up_to_the_position():
    layout = ShardLayout(shards=4, documents=100)
    for p in range(30):
        assert sum(layout.consumed(s, p) for s in range(4)) == p


def test_a_world_size_that_does_not_divide_the_shards_names_the_valid_sizes():
    assert valid_world_sizes(12) == [1, 2, 3, 4, 6, 12]
    with pytest.raises(DataError) as e:
        check_world_size(8, 3)
    assert "1, 2, 4, 8 ranks" in str(e.value) and "multiple of 3 (e.g. 24)" in str(e.value)


def test_more_shards_than_documents_is_refused():
    with pytest.raises(DataError, match="at most 3"):
        ShardLayout(shards=4, documents=3)


def test_too_few_documents_for_the_shards_is_refused_before_a_tokenizer_is_trained(tmp_path):
    from forgather.data.opening import open_data
    from forgather.data.spec import DataSpec

    (tmp_path / "notes.md").write_text("first note\n\n\n\nsecond note\n")
    spec = DataSpec.from_dict({"sources": [str(tmp_path / "notes.md")], "shards": 8,
                               "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(DataError, match=r"data.shards is 8 but the sources hold only 2 document\(s\).*at most 2"):
        open_data(spec)
    assert not list(tmp_path.rglob("bpe-*.json"))  # refused first, not after training a tokenizer for nothing
