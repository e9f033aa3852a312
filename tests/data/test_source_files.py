"""What every source reader shares: the UTF-8 decoder that counts replacements, and virtual split rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from forgather.data.parquet_source import open_parquet_source
from forgather.data.source_files import SourceStats, decode_utf8, split_range
from forgather.data.sources import load_source
from forgather.data.spec import SourceSpec


def test_invalid_utf8_is_replaced_and_counted_once_per_document():
    stats = SourceStats()
    assert decode_utf8("café".encode(), stats) == "café" and stats.replaced_utf8 == 0
    assert decode_utf8(b"caf\xe9 \xff", stats) == "caf\ufffd \ufffd" and stats.replaced_utf8 == 1


def test_eager_and_lazy_parquet_readers_decode_alike(tmp_path):
    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"text": pa.array([b"fine", b"caf\xe9", b"ok"], pa.binary())}), path)
    eager = load_source(SourceSpec("p", str(path)))
    lazy = open_parquet_source(SourceSpec("p", str(path)))
    assert eager.texts(0, 3) == lazy.texts(0, 3) == ["fine", "caf\ufffd", "ok"]
    assert eager.stats.replaced_utf8 == lazy.stats.replaced_utf8 == 1


def test_split_rows_take_counts_percentages_and_negative_bounds():
    assert split_range("train[10:]", 100) == range(10, 100)
    assert split_range("train[:5%]", 200) == range(0, 10)
    assert split_range("train[-5:]", 20) == range(15, 20)
