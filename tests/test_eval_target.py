"""What eval points at, torch-free: --data row slices, and the block size and EOS a model dir or run uses."""

from __future__ import annotations

import json

import pytest

from forgather.errors import DataError
from forgather.eval_target import eval_settings, parse_data_argument


@pytest.mark.parametrize("suffix, split", [("", "train"), ("[1000:]", "train[1000:]"), ("[:500]", "train[:500]"),
                                           ("[10%:-5]", "train[10%:-5]")])
def test_data_argument_takes_a_row_slice(tmp_path, suffix, split):
    (tmp_path / "f.parquet").write_bytes(b"")
    assert parse_data_argument(f"{tmp_path / 'f.parquet'}{suffix}") == (str(tmp_path / "f.parquet"), split)


@pytest.mark.parametrize("name, argument, message", [
    ("f.jsonl", "f.jsonl[a:b]", "a row slice is [START:STOP] of row numbers or percentages"),
    ("f.jsonl", "f.jsonl[:150%]", "a row slice is [START:STOP]"),
    ("notes.txt", "notes.txt[:5]", "a row slice applies to .parquet and .jsonl files"),
    ("f.jsonl", "g.jsonl[:5]", "g.jsonl: no such file or directory"),
    ("f.jsonl", "f.jsonl[abc]", "a row slice is [START:STOP]"),  # it said the file did not exist
])
def test_a_bad_data_argument_is_one_line_naming_it(tmp_path, name, argument, message):
    (tmp_path / name).write_text("x")
    with pytest.raises(DataError, match=r"^--data .*") as caught:
        parse_data_argument(str(tmp_path / argument))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_file_whose_name_ends_in_brackets_is_that_file(tmp_path):
    (tmp_path / "odd[1:2]").write_text("x")
    assert parse_data_argument(str(tmp_path / "odd[1:2]")) == (str(tmp_path / "odd[1:2]"), "train")


def _model_dir(tmp_path, **config):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1, "<|endoftext|>": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_a_bare_model_dir_blocks_at_its_positions_up_to_2048_with_its_declared_eos(tmp_path):
    model = _model_dir(tmp_path, max_position_embeddings=4096, eos_token_id=2)
    settings = eval_settings(None, model, model / "tokenizer.json")
    assert (settings.block_size, settings.add_eos, settings.eos_token) == (2048, True, "<|endoftext|>")
    short = _model_dir(tmp_path, max_position_embeddings=128)
    settings = eval_settings(None, short, short / "tokenizer.json", block_size=None)
    assert (settings.block_size, settings.add_eos) == (128, False)
    assert "config.json names no EOS" in settings.describe()
    assert eval_settings(None, short, None, block_size=64).block_size == 64


def test_a_block_size_past_the_models_positions_is_refused_naming_both(tmp_path):
    import pytest

    from forgather.errors import UserError

    short = _model_dir(tmp_path, max_position_embeddings=128)
    assert eval_settings(None, short, None, block_size=128).block_size == 128
    with pytest.raises(UserError, match=r"--block-size 1024 is past the model's max_position_embeddings 128 .*"
                                        r"config.json\); use at most 128"):
        eval_settings(None, short, None, block_size=1024)
