"""The offline default corpus: stdlib / site-packages docstrings, deterministic and bounded."""

from __future__ import annotations

from forgather.data import python_docs
from forgather.data.sources import load_source
from forgather.data.spec import default_sources


def test_stdlib_docs_are_deterministic_english_and_bounded():
    a = python_docs.documents("stdlib", max_documents=40)
    b = python_docs.documents("stdlib", max_documents=40)
    assert a == b and len(a) == 40
    words = " ".join(a).split()
    assert len(words) > 2000 and sum(w.lower() in ("the", "a", "of", "is", "to") for w in words) > 100


def test_default_sources_load_without_network():
    src = [load_source(s) for s in default_sources(max_documents=20)]
    assert [len(s) for s in src] == [20, 20]
    assert src[0].identity() != src[1].identity()
    assert set(src[0].texts(0, 20)).isdisjoint(src[1].texts(0, 20))
