"""Tokenizer: load tokenizer.json with explicit BOS/EOS, train a BPE (auto vocab), vocab vs embedding check."""

from __future__ import annotations

import numpy as np
import pytest

from forgather.data.spec import TokenizerSpec
from forgather.data.tokenizer import auto_vocab_size, check_vocab, load_tokenizer, train_tokenizer
from forgather.errors import DataError


def test_load_smollm2_with_eos(shared_data):
    tok = load_tokenizer(TokenizerSpec(path=str(shared_data / "tokenizers" / "smollm2" / "tokenizer.json")))
    assert tok.vocab_size == 49152 and tok.eos_id == 0 and tok.pad_id == 0
    ids = tok.encode_docs(["Hello world"])[0]
    assert ids[-1] == 0 and 0 not in ids[:-1] and ids.dtype == np.int32
    assert tok.decode(ids[:-1]) == "Hello world"
    bos = load_tokenizer(TokenizerSpec(path=tok.path, add_bos=True, bos_token="<|im_start|>"))
    assert bos.encode_docs(["x"])[0][0] == bos.bos_id == bos.tok.token_to_id("<|im_start|>")


def test_bad_tokenizer_inputs(tmp_path, shared_data):
    with pytest.raises(DataError, match="not found"):
        load_tokenizer(TokenizerSpec(path=str(tmp_path / "none.json")))
    with pytest.raises(DataError, match="no token"):
        load_tokenizer(TokenizerSpec(path=str(shared_data / "tokenizers" / "smollm2"), eos_token="<nope>"))


def test_train_bpe_auto_vocab(tmp_path):
    texts = [f"document number {i} talks about topic {i % 17} and words like alpha beta gamma" for i in range(300)]
    path = train_tokenizer(texts, "auto", tmp_path / "tok.json")
    tok = load_tokenizer(TokenizerSpec(), str(path))
    assert tok.eos_id == 0  # <|endoftext|> is the trained special token
    assert tok.vocab_size <= 4096
    ids = tok.encode_docs(["document number 5 talks"])[0]
    assert tok.decode(ids[:-1]) == "document number 5 talks"


def test_auto_vocab_heuristic():
    assert auto_vocab_size(100) == 4096
    assert auto_vocab_size(20_000) == 8192
    assert auto_vocab_size(50_000) == 16384
    assert auto_vocab_size(10**7) == 32768


def test_vocab_larger_than_embedding():
    check_vocab(49152, 49152)
    with pytest.raises(DataError, match=r"vocab \(49152 ids\) is larger than the model's embedding \(32000"):
        check_vocab(49152, 32000)


def test_open_data_trains_saves_and_reuses_a_tokenizer_on_python_docs(tmp_path):
    from forgather.data.loader import build_train_loader
    from forgather.data.opening import open_data
    from forgather.data.spec import DataSpec, default_sources

    spec = DataSpec(sources=default_sources(max_documents=15), block_size=64, cache_dir=str(tmp_path),
                    tokenizer=TokenizerSpec(vocab_size=512))
    data = open_data(spec)
    assert data.tokenizer.vocab_size == 512 and data.tokenizer.path.startswith(str(tmp_path / "tokenizers"))
    again = open_data(spec)
    assert again.tokenizer.file_hash == data.tokenizer.file_hash  # reused, not retrained
    batch = next(iter(build_train_loader(data)))
    assert int(batch["input_ids"].max()) < data.tokenizer.vocab_size
    check_vocab(data.tokenizer.vocab_size, 512)


def test_a_tokenizer_url_is_fetched_once_into_the_cache(shared_data, tmp_path):
    import fsspec

    from forgather.data.tokenizer import fetch_tokenizer

    memory = fsspec.filesystem("memory")
    memory.pipe("/hub/model/tokenizer.json", (shared_data / "tokenizers" / "smollm2" / "tokenizer.json").read_bytes())
    first = fetch_tokenizer("memory://hub/model/tokenizer.json", tmp_path)
    memory.rm("/hub/model/tokenizer.json")  # gone upstream: the cached copy still serves
    assert fetch_tokenizer("memory://hub/model/tokenizer.json", tmp_path) == first
    assert load_tokenizer(TokenizerSpec(), str(first)).vocab_size == 49152
    with pytest.raises(DataError, match="cannot fetch it .*point data.tokenizer.path at the file"):
        fetch_tokenizer("hf://HuggingFaceTB/SmolLM2-135M/tokenizer.json", tmp_path)  # offline in tests
