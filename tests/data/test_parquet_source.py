"""Lazily read parquet (streaming mode, remote URLs): same documents as a full read, O(1) seeks, clear errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forgather.data import parquet_source
from forgather.data.parquet_source import open_parquet_source
from forgather.data.sources import load_source, split_validation
from forgather.data.spec import DataSpec, SourceSpec
from forgather.errors import DataError

DOCS = [f"document {i} " + "word " * (i % 7) for i in range(230)]


@pytest.fixture
def shards(tmp_path):
    """230 documents over three files of several row groups each (row groups of 20 rows)."""
    for n, (a, b) in enumerate(((0, 70), (70, 150), (150, 230))):
        pq.write_table(pa.table({"id": list(range(a, b)), "text": DOCS[a:b]}), tmp_path / f"part-{n}.parquet",
                       row_group_size=20)
    return tmp_path


def test_lazy_reads_equal_a_full_read_across_row_groups_and_files(shards):
    spec = SourceSpec("s", str(shards / "part-*.parquet"))
    lazy, full = load_source(spec, lazy=True), load_source(spec)
    assert len(lazy) == len(full) == 230 and lazy.identity() == full.identity()
    for start, stop in ((0, 5), (15, 45), (60, 160), (199, 230), (0, 230)):
        assert lazy.texts(start, stop) == full.texts(start, stop) == DOCS[start:stop]


def test_virtual_splits_max_samples_and_held_out_tail(shards):
    def lazy(**kw):
        return open_parquet_source(SourceSpec("s", str(shards), kind="parquet", **kw))

    assert lazy(split="train[100:]").texts(0, 3) == DOCS[100:103] and len(lazy(split="train[100:]")) == 130
    assert len(lazy(split="train[:10%]")) == 23
    assert len(lazy(max_samples=50)) == 50
    train, val = split_validation([lazy(split="train[10:110]")], 0.1)
    assert len(train[0]) == 90 and val[0].texts(0, 10) == DOCS[100:110]


def test_seeking_to_the_end_reads_one_row_group(shards):
    source = open_parquet_source(SourceSpec("s", str(shards / "part-*.parquet")))
    assert source.texts(228, 230) == DOCS[228:230]
    assert source._counted == {len(source.groups) - 1}  # no earlier row group was read to get there


def test_fsspec_urls_read_like_local_files(shards):
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in sorted(shards.glob("part-*.parquet")):
        memory.pipe(f"/corpus/{path.name}", path.read_bytes())
    spec = DataSpec.from_dict({"sources": [{"path": "memory://corpus/*.parquet"}]}, base_dir=shards)
    assert spec.sources[0].path == "memory://corpus/*.parquet"  # a URL is never made project-relative
    source = load_source(spec.sources[0])  # remote parquet is read lazily even in cached mode
    assert len(source) == 230 and source.texts(65, 75) == DOCS[65:75]


def test_row_group_index_is_remembered_under_the_cache(shards, tmp_path, monkeypatch):
    spec = SourceSpec("s", str(shards / "part-*.parquet"))
    first = open_parquet_source(spec, tmp_path / "cache")
    monkeypatch.setattr(parquet_source, "_open", lambda *a: (_ for _ in ()).throw(AssertionError("footer re-read")))
    again = open_parquet_source(spec, tmp_path / "cache")
    assert len(again) == len(first) == 230


def test_bad_inputs_are_one_clear_data_error(shards, tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nocol.parquet")
    cases = [
        (SourceSpec("c", str(tmp_path / "nocol.parquet")), r"nocol\.parquet has no column 'text'; columns found: body"),
        (SourceSpec("v", str(shards / "part-0.parquet"), split="validation"), "one split, 'train'"),
        (SourceSpec("m", "memory://nothing-here/*.parquet"), "no parquet files match"),
        (SourceSpec("e", str(shards / "part-0.parquet"), split="train[70:]"), "has no documents"),
        (SourceSpec("h", "hf://datasets/HuggingFaceTB/smollm-corpus/cosmopedia-v2/*.parquet"), "cannot list"),
    ]
    for spec, message in cases:
        with pytest.raises(DataError, match=message):
            open_parquet_source(spec)
