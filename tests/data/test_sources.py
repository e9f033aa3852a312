"""Sources: every bad input gives a DataError naming the problem; empties skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forgather.data.sources import load_source, split_validation
from forgather.data.spec import SourceSpec
from forgather.errors import DataError


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_parquet_subset_and_virtual_split(shared_data):
    q = str(shared_data / "corpus" / "quotes.parquet")
    s = load_source(SourceSpec("q", q, max_samples=100))
    assert len(s) + s.stats.skipped_empty == 100
    assert all(isinstance(t, str) and t.strip() for t in s.texts(0, 5))
    tail = load_source(SourceSpec("q", q, split="train[15000:]"))
    assert tail.stats.total == 218
    pct = load_source(SourceSpec("q", q, split="train[:1%]"))
    assert pct.stats.total == 152


def test_jsonl_glob_text_dir_and_arrow_dir(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"text": "alpha beta"}, {"text": "gamma"}])
    _jsonl(tmp_path / "b.jsonl", [{"text": "delta"}])
    s = load_source(SourceSpec("j", str(tmp_path / "*.jsonl")))
    assert s.texts(0, 3) == ["alpha beta", "gamma", "delta"]
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "1.txt").write_text("one doc\nwith two lines")
    (tmp_path / "txt" / "2.txt").write_text("second")
    t = load_source(SourceSpec("t", str(tmp_path / "txt")))
    assert t.texts(0, 2) == ["one doc\nwith two lines", "second"]
    import datasets
    datasets.Dataset.from_dict({"body": ["x y", " ", "z"]}).save_to_disk(str(tmp_path / "saved"))
    a = load_source(SourceSpec("a", str(tmp_path / "saved"), text_column="body"))
    assert a.texts(0, 3) == ["x y", " ", "z"] and a.stats.skipped_empty == 1


def test_empty_and_whitespace_documents_are_skipped_and_counted(tmp_path):
    pq.write_table(pa.table({"text": ["real text", "", "   \n\t ", "more text", "\u3000"]}), tmp_path / "d.parquet")
    for lazy in (False, True):  # read whole (cached mode) or by row group (streaming mode): the same documents
        s = load_source(SourceSpec("d", str(tmp_path / "d.parquet")), lazy=lazy)
        assert len(s) == 5 and s.stats.total == 5
        texts = s.texts(0, 5)
        assert texts[0] == "real text" and texts[3] == "more text" and s.stats.skipped_empty == 3
    # blank documents keep their place but tokenize to nothing (no lone EOS)
    from forgather.data.spec import TokenizerSpec
    from forgather.data.tokenizer import train_tokenizer, load_tokenizer

    tok = load_tokenizer(TokenizerSpec(), str(train_tokenizer(["real text more text"] * 50, 300, tmp_path / "t.json")))
    assert [len(t) for t in tok.encode_docs(texts)][1:3] == [0, 0] and len(tok.encode_docs(texts)[0]) > 1


def test_non_utf8_text_is_replaced_and_counted(tmp_path):
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 \xff\xfe bytes")
    s = load_source(SourceSpec("t", str(tmp_path / "*.txt")))
    assert s.stats.replaced_utf8 == 1
    assert "\ufffd" in s.texts(0, 2)[0]


def test_non_utf8_jsonl_is_a_clear_error_or_replaced(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    try:
        s = load_source(SourceSpec("j", str(tmp_path / "bad.jsonl")))
    except DataError as e:
        assert "bad.jsonl" in str(e)
    else:
        assert len(s) == 1


def test_a_malformed_jsonl_line_is_named_by_file_and_line_once(tmp_path, capfd):
    (tmp_path / "rows.jsonl").write_text('{"text": "one"}\n\n{"text": "two"} trailing\n{"text": "three"}\n')
    with pytest.raises(DataError, match=r"rows.jsonl line 3: not JSON \(Extra data"):
        load_source(SourceSpec("j", str(tmp_path / "rows.jsonl")))
    assert "Failed to load JSON" not in capfd.readouterr().err  # datasets' own log line would repeat it


def test_the_bad_line_search_is_bounded_and_leaves_the_loggers_as_it_found_them(tmp_path, monkeypatch):
    import logging

    import forgather.data.sources as sources

    (tmp_path / "rows.jsonl").write_text('{"text": "one"}\n' * 50 + '{"text": "two"} trailing\n')
    monkeypatch.setattr(sources, "_DIAGNOSIS_BYTES", 100)  # a bad line past the bound is not searched for
    logger = logging.getLogger("datasets.packaged_modules")
    monkeypatch.setattr(logger, "level", logging.INFO)
    with pytest.raises(DataError, match=r"cannot read .*rows.jsonl as jsonl: ValueError"):
        load_source(SourceSpec("j", str(tmp_path / "rows.jsonl")))
    assert logger.level == logging.INFO  # quiet only while datasets loads


def test_a_bad_line_in_json_lines_named_dot_json_is_named_too(tmp_path):
    (tmp_path / "train.json").write_text('{"text": "a"}\n{"text": "b"\n')
    with pytest.raises(DataError, match=r"train.json line 2: not JSON"):
        load_source(SourceSpec("j", str(tmp_path / "train.json")))


def test_a_json_array_file_without_the_text_column_is_one_line(tmp_path):
    (tmp_path / "rows.json").write_text('[\n {"body": "x"},\n {"body": "y"}\n]\n')
    with pytest.raises(DataError, match=r"rows.json has no column 'text'; columns found: body"):
        load_source(SourceSpec("j", str(tmp_path / "rows.json")))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found.*nope.parquet"):
        load_source(SourceSpec("m", str(tmp_path / "nope.parquet"), kind="parquet"))
    with pytest.raises(DataError, match="no jsonl files match"):
        load_source(SourceSpec("m", str(tmp_path / "*.jsonl")))


def test_empty_dataset(tmp_path):
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "e.parquet")
    with pytest.raises(DataError, match="no documents"):
        load_source(SourceSpec("e", str(tmp_path / "e.parquet")))
    pq.write_table(pa.table({"text": [" ", ""]}), tmp_path / "w.parquet")
    with pytest.raises(DataError, match="only empty/whitespace"):
        load_source(SourceSpec("w", str(tmp_path / "w.parquet")))


def test_record_without_text_column_names_file_column_and_columns(tmp_path):
    pq.write_table(pa.table({"body": ["a"], "id": [1]}), tmp_path / "c.parquet")
    with pytest.raises(DataError, match=r"c\.parquet has no column 'text'; columns found: body, id"):
        load_source(SourceSpec("c", str(tmp_path / "c.parquet")))
    _jsonl(tmp_path / "r.jsonl", [{"text": "ok"}, {"content": "no text here", "id": 2}])
    with pytest.raises(DataError) as e:
        load_source(SourceSpec("r", str(tmp_path / "r.jsonl")))
    msg = str(e.value)
    assert "r.jsonl line 2" in msg and "'text'" in msg and "content" in msg


def test_hub_unreachable_says_how_to_use_local_files():
    with pytest.raises(DataError, match="point 'path' at local"):
        load_source(SourceSpec("h", "no-such-org/no-such-dataset", kind="hub"))


def test_a_missing_local_directory_read_as_a_hub_id_says_so(tmp_path, monkeypatch):
    from forgather.data.spec import DataSpec

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = DataSpec.from_dict({"sources": ["corpus/books"]}, base_dir=tmp_path).sources[0].located()
    with pytest.raises(DataError, match=rf"nor is there a directory {tmp_path}/corpus/books \(a path in "
                                        r"project.yaml is relative to the project\)"):
        load_source(source)


def test_validation_fraction_holds_out_tail(shared_data):
    s = load_source(SourceSpec("q", str(shared_data / "corpus" / "quotes.parquet"), max_samples=100))
    train, val = split_validation([s], 0.1)
    assert len(train[0]) + len(val[0]) == len(s) and len(val[0]) == 10
    assert val[0].texts(0, 10) == s.texts(len(s) - 10, len(s))
    assert train[0].identity() != val[0].identity()


def test_a_source_too_small_to_hold_out_validation_trains_whole(tmp_path):
    (tmp_path / "notes.md").write_text("one document: no form feed, no three blank lines")
    (tmp_path / "docs.jsonl").write_text("".join(f'{{"text": "document {i}"}}\n' for i in range(40)))
    notes, docs = (load_source(SourceSpec(n, str(tmp_path / f)))
                   for n, f in (("notes", "notes.md"), ("docs", "docs.jsonl")))
    train, val = split_validation([notes, docs], 0.05)
    assert [len(s) for s in train] == [1, 38] and [(s.name, len(s)) for s in val] == [("docs:val", 2)]
    with pytest.raises(DataError, match=r"every source is too small to hold out validation_fraction=0.05 "
                                        r"\(documents: 'notes' 1\); add data.validation sources"):
        split_validation([notes], 0.05)


def test_a_rewrite_with_the_same_size_and_time_changes_the_fingerprint(tmp_path):
    import os

    from forgather.data.sources import file_identity

    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "alpha beta"}\n')
    st = os.stat(path)
    before = file_identity([str(path)])
    path.write_text('{"text": "alpha gamm"}\n')  # same length
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert file_identity([str(path)]) != before


def test_text_files_split_at_form_feed_lines_and_three_blank_lines(tmp_path):
    (tmp_path / "a.md").write_text("# One\n\n\ntwo blank lines stay inside\n\f\n# Two\nbody\n\n\n\n# Three\n")
    (tmp_path / "b.txt").write_text("a file without separators\n\nis one document\n")
    s = load_source(SourceSpec("t", str(tmp_path)))
    assert s.texts(0, 10) == ["# One\n\n\ntwo blank lines stay inside", "# Two\nbody", "# Three",
                              "a file without separators\n\nis one document"]
    assert s.ident["documents"] == "formfeed-or-3-blank-lines"  # the rule is part of the cache fingerprint


def test_split_text_documents_keeps_a_blank_file_as_one_blank_document():
    from forgather.data.sources import split_text_documents

    assert split_text_documents("  \n") == ["  \n"]
    assert split_text_documents("\f\nonly\n\f\n") == ["only"]
    assert split_text_documents("\fnot a separator line") == ["\fnot a separator line"]


def test_a_failed_data_write_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from forgather.data.written import write_whole

    def full_disk(self, data):  # as a full disk fails part-way through a write
        with open(self, "wb") as fh:
            fh.write(data[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(DataError, match=r"cannot write .*counts.json \(No space left on device\); free space"):
        write_whole(tmp_path / "cache" / "counts.json", b"[1, 2, 3]")
    assert list((tmp_path / "cache").iterdir()) == []
