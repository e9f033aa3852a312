"""`forgather data show`: sources, shard layout, fill, documents per batch, a decoded block with boundaries."""

from __future__ import annotations

from forgather.data.inspect import render_block, show
from forgather.data.opening import open_data

from ..conftest import tiny_spec


def test_show_lists_sources_layout_documents_per_batch_and_marks_document_boundaries(tiny_corpus, tmp_path):
    text = show(tiny_spec(tiny_corpus, tmp_path), block=0, max_chars=800, batch_size=4, batches=20)
    assert "| train: docs | 308 |" in text and "vocab 512" in text
    assert "shards 4 (77–77 documents each)" in text and "chunk_tokens 2,048" in text and "shuffle True" in text
    assert "first chunk of each shard:" in text and "chunk ends pad" in text
    assert "documents per batch of 4 blocks (first 20 batches): mean" in text
    assert "⟦doc " in text
    data = open_data(tiny_spec(tiny_corpus, tmp_path))
    k = next(k for k in range(100) if len(data.train.block(k)[1]) >= 3)
    sample = render_block(data, k, max_chars=100_000)
    assert sample.count("⟦doc ") == len(data.train.block(k)[1])
    assert sample.count("<|endoftext|>") >= 2  # EOS visible at the document ends
