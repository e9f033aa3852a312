"""`forgather data show` / `prepare` output: sources, probabilities, fill, a decoded block with boundaries."""

from __future__ import annotations

import io

from forgather.data.inspect import prepare, progress_printer, render_block, show
from forgather.data.loader import open_data

from .conftest import small_spec


def test_show_lists_sources_and_marks_document_boundaries(shared_data, tmp_path):
    text = show(small_spec(tmp_path), block=0, max_chars=800, out=io.StringIO())
    assert "| train: quotes |" in text and "| train: literature | 3 |" in text
    assert "vocab 49,152" in text and "fill" in text
    assert "⟦doc " in text
    data = open_data(small_spec(tmp_path))
    k = next(k for k in range(100) if len(data.train.block(k)[1]) >= 3)
    sample = render_block(data, k, max_chars=100_000)
    assert sample.count("⟦doc ") == len(data.train.block(k)[1])
    assert sample.count("<|endoftext|>") >= 2  # EOS visible at the document ends


def test_prepare_builds_with_plain_progress(shared_data, tmp_path):
    out = io.StringIO()
    summary = prepare(small_spec(tmp_path, validation_fraction=0.1), out=out)
    assert "train epoch 0:" in summary and "validation epoch 0:" in summary and "fill" in summary
    assert "tokenize+pack [" in out.getvalue() and "docs/s" in out.getvalue()


def test_progress_printer_non_tty_prints_lines():
    out = io.StringIO()
    p = progress_printer("x", out)
    p(10, 10)
    assert out.getvalue().startswith("x [") and out.getvalue().endswith("\n")
