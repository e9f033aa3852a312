"""What every source reader shares: the UTF-8 decoder that counts replacements, and virtual split rows."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forgather.data.parquet_source import open_parquet_source
from forgather.data.source_files import SourceStats, decode_utf8, split_range
from forgather.data.sources import load_source
from forgather.data.spec import SourceSpec
from forgather.errors import DataError


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


def test_cached_mode_reads_parquet_like_streaming_mode_without_importing_datasets(tmp_path):
    # Files of both string widths, a null (a blank document in either mode), and split slices across the files.
    pq.write_table(pa.table({"text": pa.array(["a one", None, "a three"], pa.string())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": pa.array(["b one", "b two"], pa.large_string())}), tmp_path / "b.parquet")
    for split in ("train", "train[2:4]", "train[:60%]"):
        spec = SourceSpec("p", str(tmp_path / "*.parquet"), split=split)
        eager, lazy = load_source(spec), open_parquet_source(spec)
        n = len(lazy)
        assert len(eager) == n and eager.texts(0, n) == lazy.texts(0, n)
        assert eager.stats.skipped_empty == lazy.stats.skipped_empty
        assert eager.identity() == lazy.identity()  # one cache fingerprint whichever reader built it
    assert load_source(SourceSpec("p", str(tmp_path / "*.parquet"))).texts(0, 5) == [
        "a one", "", "a three", "b one", "b two"]
    # `datasets` costs a process ~1 s to import (each `data prepare` worker opens the sources) and would copy
    # the corpus into its own cache first; pandas, which pyarrow imports to make an array or scalar from Python
    # or numpy values, ~0.2 s.
    code = ("import sys, numpy as np; from forgather.data.sources import load_source; "
            "from forgather.data.spec import SourceSpec; "
            f"source = load_source(SourceSpec('p', {str(tmp_path / 'a.parquet')!r})); "
            "assert source.texts_at(np.array([0, 2])) == ['a one', 'a three']; "
            "assert not {'datasets', 'pandas'} & set(sys.modules), sorted({'datasets', 'pandas'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_parquet_input_is_one_line_each(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"cannot read .*bad\.parquet as parquet"):
        load_source(SourceSpec("p", str(tmp_path / "bad.parquet")))
    pq.write_table(pa.table({"text": pa.array([None, None], pa.null())}), tmp_path / "nulls.parquet")
    with pytest.raises(DataError, match="only empty/whitespace documents"):
        load_source(SourceSpec("n", str(tmp_path / "nulls.parquet")))
    pq.write_table(pa.table({"text": pa.array([1, None], pa.int64())}), tmp_path / "numbers.parquet")
    with pytest.raises(DataError, match="holds int64 values, not text; make each record.s .text. a string"):
        load_source(SourceSpec("n", str(tmp_path / "numbers.parquet")))
