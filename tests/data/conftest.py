"""Fixtures for the data tests: the shared corpus/tokenizer and small specs over them."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CORPUS = SHARED / "corpus"
SMOLLM2 = SHARED / "tokenizers" / "smollm2" / "tokenizer.json"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """/work/shared/data (corpus parquet files and tokenizers); skips when absent."""
    if not (CORPUS / "quotes.parquet").exists() or not SMOLLM2.exists():
        pytest.skip("shared test data not found next to the repo")
    return SHARED.resolve()


def small_spec(cache_dir, block_size: int = 128, mode: str = "cached", seed: int = 7, **kw):
    """A quick spec: 600 quotes, 4 speeches and 3 literature docs (some over 100 blocks at 128) with SmolLM2."""
    from forgather.data.spec import DataSpec

    d = {"sources": [{"path": str(CORPUS / "quotes.parquet"), "max_samples": 600},
                     {"path": str(CORPUS / "speeches.parquet"), "max_samples": 4},
                     {"path": str(CORPUS / "literature.parquet"), "max_samples": 3}],
         "tokenizer": {"path": str(SMOLLM2)}, "block_size": block_size, "pack_window": 16, "seed": seed,
         "mode": mode, "cache_dir": str(cache_dir), "num_workers": 1, "batch_size": 2}
    d.update(kw)
    return DataSpec.from_dict(d)


@pytest.fixture(scope="session")
def small_data(shared_data, tmp_path_factory):
    """Opened small spec (cached mode), shared by the read-only tests of this session."""
    from forgather.data.opening import open_data

    return open_data(small_spec(tmp_path_factory.mktemp("cache")))

