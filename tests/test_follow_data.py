"""The model follows the data: vocab_size from the tokenizer, positions from data.block_size, unless the project
sets them; an explicit value too small is one line before launch."""

from __future__ import annotations

import json

import pytest

from forgather.errors import ConfigError
from forgather.follow_data import AUTO_VOCAB_MAX, tokenizer_json_vocab_size
from forgather.project import compose_project, find_project, resolve

from .conftest import set_in_project


def _arch(project) -> tuple[dict, dict]:
    tree, origins = resolve(compose_project(find_project(project)))
    return tree["model"]["arch"], origins


def test_vocab_and_positions_follow_the_tokenizer_and_block_size(tiny_project):
    set_in_project(tiny_project, "data", "{tokenizer: {vocab_size: 512}, block_size: 96}")
    arch, origins = _arch(tiny_project)
    assert arch["vocab_size"] == 512 and arch["max_position_embeddings"] == 96
    assert "tokenizer" in origins["model.arch.vocab_size"]


def test_vocab_follows_a_tokenizer_file(tiny_project, tmp_path):
    file = tmp_path / "tok.json"
    file.write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1, "c": 2}},
                                "added_tokens": [{"id": 3, "content": "<eos>"}]}))
    set_in_project(tiny_project, "data", f"{{tokenizer: {{path: {file}}}}}")
    assert _arch(tiny_project)[0]["vocab_size"] == 4 == tokenizer_json_vocab_size(file)


def test_auto_vocab_reserves_the_largest_auto_size(tiny_project):
    set_in_project(tiny_project, "data", "{tokenizer: {vocab_size: auto}}")
    assert _arch(tiny_project)[0]["vocab_size"] == AUTO_VOCAB_MAX


def test_explicit_larger_values_are_kept(tiny_project):
    set_in_project(tiny_project, "model", "{arch: {vocab_size: 1000, max_position_embeddings: 256}}")
    arch, _ = _arch(tiny_project)
    assert arch["vocab_size"] == 1000 and arch["max_position_embeddings"] == 256


@pytest.mark.parametrize("arch, message", [
    ("{vocab_size: 100}", "vocab_size is 100 but the tokenizer has 300 ids"),
    ("{max_position_embeddings: 32}", "max_position_embeddings is 32 but data.block_size is 64"),
])
def test_an_explicit_value_too_small_is_one_line(tiny_project, arch, message):
    set_in_project(tiny_project, "model", f"{{arch: {arch}}}")
    with pytest.raises(ConfigError, match=message) as err:
        _arch(tiny_project)
    assert "\n" not in str(err.value) and "project.yaml" in str(err.value)
