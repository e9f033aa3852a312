"""`data prepare` in one process or with helper processes: no torch to import, and the same cache either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PREPARE_WITHOUT_TORCH = """
import json, sys
from forgather.data.prepare import prepare_in_process
from forgather.data.spec import DataSpec
prepare_in_process(DataSpec.from_dict(json.loads(sys.argv[1])), out=sys.stderr)
print(json.dumps(sorted(name for name in sys.modules if name == "torch" or name.startswith("torch."))))
"""


def _spec_dict(corpus: Path, cache: Path, workers: int) -> dict:
    return {"sources": [{"path": str(corpus / "docs.jsonl")}], "tokenizer": {"path": str(corpus / "tokenizer.json")},
            "block_size": 64, "pack_window": 8, "seed": 7, "shards": 4, "chunk_tokens": 2048, "mode": "cached",
            "cache_dir": str(cache), "num_workers": workers}


def _cache_files(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*.npy"))}


def test_prepare_and_its_helpers_never_import_torch_and_build_the_same_cache(tiny_corpus, tmp_path):
    # Every helper is a fresh interpreter: importing torch there cost ~2 s per process for nothing.
    caches = {}
    for workers in (1, 2):
        cache = tmp_path / f"cache{workers}"
        done = subprocess.run([sys.executable, "-c", PREPARE_WITHOUT_TORCH,
                               json.dumps(_spec_dict(tiny_corpus, cache, workers))],
                              capture_output=True, text=True, timeout=300, check=True)
        assert json.loads(done.stdout.strip().splitlines()[-1]) == [], done.stdout
        caches[workers] = _cache_files(cache)
    assert caches[1] and caches[1] == caches[2]


def test_a_helper_process_failure_reaches_the_caller(tiny_corpus, tmp_path):
    # The helpers open the data themselves: give them a spec whose tokenizer is missing, this process a good
    # stream, and hold this process's own building until the helper has exited, so its error must be reported.
    import multiprocessing
    import time

    import pytest

    from forgather.data.opening import open_data
    from forgather.data.prepare import ShardBuilders
    from forgather.data.spec import DataSpec
    from forgather.errors import DataError

    good = _spec_dict(tiny_corpus, tmp_path / "cache", 2)
    train = open_data(DataSpec.from_dict(good)).train
    bad = DataSpec.from_dict({**good, "tokenizer": {"path": str(tmp_path / "missing.json")}})

    def wait_for_helpers(documents: int, tokens: int) -> None:
        deadline = time.monotonic() + 120
        while multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.05)

    with pytest.raises(DataError, match="missing.json"):
        with ShardBuilders(bad, 2) as builders:
            builders.build(train, wait_for_helpers)


def test_helpers_wait_for_a_tokenizer_this_process_trains_and_it_is_trained_once(tiny_corpus, tmp_path, capfd):
    # Helpers start before this process opens the data; with no tokenizer file, they must not train their own
    # (or race this process for the file) while it has not opened the data.
    import os
    import time

    from forgather.data.opening import open_data
    from forgather.data.prepare import ShardBuilders, prepare_in_process
    from forgather.data.spec import DataSpec

    def trained_tokenizer_spec(cache: Path, workers: int) -> DataSpec:
        return DataSpec.from_dict({**_spec_dict(tiny_corpus, cache, workers), "tokenizer": {"vocab_size": 320}})

    spec = trained_tokenizer_spec(tmp_path / "cache", 2)
    with ShardBuilders(spec, 2) as builders:
        time.sleep(5)  # ample for a helper to start, open the data and train a tokenizer, had it not waited
        assert not list((tmp_path / "cache").rglob("*tokenizer*")), "a helper made a tokenizer before this process"
        train = open_data(spec).train
        rows = builders.build(train, lambda documents, tokens: None)
    assert capfd.readouterr().err.count("training a byte-level BPE tokenizer") == 1
    assert [r["shard"] for r in rows] == [0, 1, 2, 3]
    with open(os.devnull, "w") as quiet:
        prepare_in_process(trained_tokenizer_spec(tmp_path / "alone", 1), out=quiet)
    assert _cache_files(tmp_path / "cache") == _cache_files(tmp_path / "alone")


def test_builders_take_the_shards_with_the_most_text_first(tiny_corpus, tmp_path):
    # The tail of a prepare is the last shard taken: a small one leaves no builder working alone for long.
    from forgather.data.opening import open_data
    from forgather.data.prepare import largest_first
    from forgather.data.spec import DataSpec

    train = open_data(DataSpec.from_dict(_spec_dict(tiny_corpus, tmp_path / "cache", 2))).train
    sizes = [sum(len(text.encode()) for text in train.shard_texts(s, 0, train.layout.shard_documents(s)))
             for s in range(train.shards)]
    assert train.shard_text_bytes() == sizes
    assert len(set(sizes)) > 1  # the long "books" make the shards unequal
    order = largest_first(train)
    assert sorted(order) == list(range(train.shards))
    assert [sizes[s] for s in order] == sorted(sizes, reverse=True)
