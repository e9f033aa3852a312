"""The offline default corpus: the standard library's docstrings, deterministic, and independent of installs."""

from __future__ import annotations

import platform

from forgather.data import python_docs
from forgather.data.sources import load_source
from forgather.data.spec import default_sources


def test_stdlib_docs_are_deterministic_english_and_bounded():
    a = python_docs.documents("stdlib", max_documents=40)
    b = python_docs.documents("stdlib", max_documents=40)
    assert a == b and len(a) == 40
    words = " ".join(a).split()
    assert len(words) > 2000 and sum(w.lower() in ("the", "a", "of", "is", "to") for w in words) > 100


def test_the_default_data_is_the_standard_library_identified_by_content_and_python_version(tmp_path):
    assert [(s.name, s.path) for s in default_sources()] == [("stdlib_docs", "stdlib")]
    first = load_source(default_sources(max_documents=20)[0], tmp_path / "a")
    again = load_source(default_sources(max_documents=20)[0], tmp_path / "b")
    ident = first.identity()
    assert ident == again.identity() and ident["python"] == platform.python_version()
    # no file paths or times: installing packages, or another install of this Python, keeps the fingerprint
    assert "site-packages" not in str(ident) and "roots" not in ident and "files" not in ident
    assert "standard library" in python_docs.describe("stdlib")


def test_the_stdlib_corpus_never_reads_site_packages():
    roots = [str(r) for r in python_docs.root_for("site-packages")]
    assert not any(str(p).startswith(r) for p in python_docs.python_files("stdlib") for r in roots)
