"""DataSpec parsing and the torch/datasets-free import path the CLI relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forgather.data.spec import DataSpec, SourceSpec, default_sources
from forgather.errors import DataError


def test_spec_module_imports_without_torch_or_datasets():
    code = ("import sys, forgather.data.spec, forgather.data, forgather.dist; "
            "bad = [m for m in ('torch', 'datasets', 'numpy', 'tokenizers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_from_dict_resolves_paths_and_kinds(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.parquet").write_bytes(b"")
    spec = DataSpec.from_dict({"sources": ["d/a.parquet", {"path": "d/*.jsonl", "name": "j"}, "HuggingFaceFW/fineweb"],
                               "tokenizer": {"path": "tok.json"}, "cache_dir": "cache", "block_size": 512},
                              base_dir=tmp_path)
    assert spec.sources[0].path == str(tmp_path / "d" / "a.parquet")
    assert spec.sources[0].resolved_kind() == "parquet" and spec.sources[0].name == "a"
    assert spec.sources[1].resolved_kind() == "jsonl"
    assert spec.sources[2].resolved_kind() == "hub"
    assert spec.tokenizer.path == str(tmp_path / "tok.json")
    assert spec.resolved_cache_dir() == tmp_path / "cache"
    assert [s.resolved_kind() for s in default_sources()] == ["python_docs"]


@pytest.mark.parametrize("bad, match", [
    ({"sources": []}, "empty"),
    ({"sources": ["x.parquet"], "mode": "fast"}, "mode"),
    ({"sources": ["x.parquet"], "blocksize": 3}, "unknown key"),
    ({"sources": ["x.parquet"], "validation_fraction": 1.5}, "validation_fraction"),
    ({"sources": [{"name": "a"}]}, "path"),
])
def test_bad_specs_raise_data_error(bad, match):
    with pytest.raises(DataError, match=match):
        DataSpec.from_dict(bad)


def test_unknown_extension_and_missing_path(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(b"x")
    with pytest.raises(DataError, match="set kind"):
        SourceSpec("x", str(f)).resolved_kind()
    with pytest.raises(DataError, match="does not exist"):
        SourceSpec("x", str(tmp_path / "nope")).resolved_kind()


def test_data_max_samples_caps_every_training_source_keeping_smaller_own_caps(tmp_path):
    spec = DataSpec.from_dict({"sources": [{"name": "a", "path": "stdlib"},
                                           {"name": "b", "path": "site-packages", "max_samples": 5}],
                               "max_samples": 20})
    assert [s.max_samples for s in spec.sources] == [20, 5]
    with pytest.raises(DataError, match="data.max_samples must be at least 1"):
        DataSpec.from_dict({"sources": [{"path": "stdlib"}], "max_samples": 0})


def test_parsing_a_spec_never_touches_the_filesystem(tmp_path, monkeypatch):  # the data is opened later
    import os

    def no_stat(*args, **kwargs):
        raise AssertionError(f"parsing stat'ed {args[0]!r}")

    sources = [{"path": "data/wiki"}, {"path": "corpus.jsonl"}, {"path": "user/dataset"},
               {"path": "./more/*.parquet"}, {"path": "stdlib"}]
    with monkeypatch.context() as patched:
        for name in ("stat", "lstat", "scandir"):
            patched.setattr(os, name, no_stat)
        try:
            spec = DataSpec.from_dict({"sources": sources}, base_dir=tmp_path)
        except AssertionError as exc:
            message = str(exc)  # raised with os.stat still patched: report it once it is restored
        else:
            message = ""
    assert not message
    assert [s.path for s in spec.sources] == ["data/wiki", str(tmp_path / "corpus.jsonl"), "user/dataset",
                                              str(tmp_path / "more/*.parquet"), "stdlib"]


def test_a_one_slash_path_is_the_project_directory_when_it_exists_else_a_hub_id(tmp_path):
    (tmp_path / "data" / "wiki").mkdir(parents=True)
    (tmp_path / "data" / "wiki" / "a.jsonl").write_text('{"text": "x"}\n')
    spec = DataSpec.from_dict({"sources": [{"path": "data/wiki"}, {"path": "user/dataset"}]}, base_dir=tmp_path)
    local, hub = (s.located() for s in spec.sources)
    assert local.path == str(tmp_path / "data" / "wiki") and local.resolved_kind() == "jsonl"
    assert hub.path == "user/dataset" and hub.resolved_kind() == "hub"
    from forgather.data.sources import load_source

    assert load_source(spec.sources[0]).texts(0, 1) == ["x"]  # opening the data settles the path


def test_a_source_cannot_set_the_internal_project_path(tmp_path):
    with pytest.raises(DataError, match="unknown key"):
        DataSpec.from_dict({"sources": [{"path": "a.jsonl", "project_path": "/etc"}]}, base_dir=tmp_path)


def test_source_names_are_derived_from_paths_and_unique():
    from forgather.data.spec import named_sources

    named = named_sources(["a/books.txt", {"path": "b/books.txt"}, {"path": "data/*.jsonl"},
                          {"name": "stdlib", "path": "x"}, {"path": "stdlib", "kind": "python_docs"}])
    assert [e["name"] for e in named] == ["books", "books_2", "data", "stdlib", "stdlib_2"]


def test_data_spec_accepts_sources_without_a_name(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    spec = DataSpec.from_dict({"sources": [{"path": "notes.txt"}, "notes.txt"]}, base_dir=tmp_path)
    assert [s.name for s in spec.sources] == ["notes", "notes_2"]


def test_a_directory_or_glob_of_mixed_formats_is_refused_not_partly_read(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("a.txt", "b.txt", "c.jsonl"):
        (tmp_path / "d" / name).write_text("x")
    for path in ("d", "d/*"):
        with pytest.raises(DataError, match=r"mixes file formats \(1 .jsonl, 2 .txt files\).*'.*/d/\*\*/\*.jsonl'"):
            DataSpec.from_dict({"sources": [path]}, base_dir=tmp_path).sources[0].resolved_kind()
    (tmp_path / "d" / "c.jsonl").unlink()
    (tmp_path / "d" / "README.md").write_text("about")
    (tmp_path / "d" / "e.parquet").write_bytes(b"")
    (tmp_path / "d" / "a.txt").unlink()
    (tmp_path / "d" / "b.txt").unlink()
    spec = DataSpec.from_dict({"sources": ["d", "d/*"]}, base_dir=tmp_path)  # a README beside the data is no data
    assert [s.resolved_kind() for s in spec.sources] == ["parquet", "parquet"]
    from forgather.data.source_files import resolve_files

    assert [p.rsplit("/", 1)[1] for p in resolve_files(spec.sources[1], "parquet")] == ["e.parquet"]


def test_a_hub_dataset_folder_reads_its_data_files_only(tmp_path):
    # As `huggingface-cli download` leaves one: a card, a license, metadata and a hidden cache beside the data.
    hub = tmp_path / "ds"
    for name in ("README.md", "README_zh.md", "LICENSE-MIT.txt", "dataset_infos.json", ".cache/huggingface/x.json",
                 ".gitattributes", "data/train-00000.parquet", "data/train-00001.parquet"):
        (hub / name).parent.mkdir(parents=True, exist_ok=True)
        (hub / name).write_text("x")
    from forgather.data.source_files import resolve_files

    spec = DataSpec.from_dict({"sources": ["ds", "ds/*", "ds/**"]}, base_dir=tmp_path)
    assert [spec.sources[0].resolved_kind(), spec.sources[2].resolved_kind()] == ["parquet", "parquet"]
    assert [Path(f).name for f in resolve_files(spec.sources[0], "parquet")] == ["train-00000.parquet",
                                                                                "train-00001.parquet"]
    with pytest.raises(DataError, match=r"ds/\* holds no .parquet/.jsonl/.txt/.md data files \(a README"):
        spec.sources[1].resolved_kind()  # only a card and a license at the top: not text to train on
    named = DataSpec.from_dict({"sources": ["ds/*.md"]}, base_dir=tmp_path).sources[0]  # picked by name: read
    assert [Path(f).name for f in resolve_files(named, named.resolved_kind())] == ["README.md", "README_zh.md"]
    (hub / "readmes.md").write_text("a document")  # a name that only begins like one is data
    with pytest.raises(DataError, match=r"mixes file formats \(1 .md, 2 .parquet files\)"):
        spec.sources[0].resolved_kind()


def test_the_globs_suggested_for_mixed_formats_search_under_the_globs_directory(tmp_path):
    (tmp_path / "corpus").mkdir()
    for name in ("part-1.txt", "part-2.jsonl"):
        (tmp_path / "corpus" / name).write_text("x")
    source = DataSpec.from_dict({"sources": ["corpus/part-*"]}, base_dir=tmp_path).sources[0]
    with pytest.raises(DataError, match=r"--data '[^ ]*/corpus/\*\*/\*.jsonl' '[^ ]*/corpus/\*\*/\*.txt'\)"):
        source.resolved_kind()


def test_a_glob_without_an_extension_takes_the_format_of_its_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    assert DataSpec.from_dict({"sources": ["d/*"]}, base_dir=tmp_path).sources[0].resolved_kind() == "text"


def test_a_tokenizer_to_train_needs_a_vocabulary_of_at_least_300():
    with pytest.raises(DataError, match="data.tokenizer.vocab_size 10 is too small.*at least 300"):
        DataSpec.from_dict({"sources": ["stdlib"], "tokenizer": {"vocab_size": 10}})
    assert DataSpec.from_dict({"sources": ["stdlib"], "tokenizer": {"vocab_size": 10, "path": "t.json"}})
