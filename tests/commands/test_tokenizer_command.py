"""`forgather tokenizer train` on a project's sources: where it saves, the vocab, and how to use it."""

from __future__ import annotations

import argparse

import pytest

from forgather.commands.common import load_composed, resolve_config
from forgather.data.spec import DataSpec, TokenizerSpec
from forgather.data.tokenizer import load_tokenizer

from ..conftest import set_in_project
from . import forgather, one_line_error


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGATHER_DATA_CACHE", str(tmp_path / "data-cache"))


def test_train_saves_to_the_run_dir_with_the_projects_vocab(tiny_project):
    result = forgather("tokenizer", "train", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    path = tiny_project / "output" / "tokenizer.json"
    assert f"saved {path}" in result.stdout and "vocab size 300 " in result.stdout
    assert "data: {tokenizer: {path: output/tokenizer.json}}" in result.stdout
    tok = load_tokenizer(TokenizerSpec(), str(path))
    assert tok.vocab_size == 300 and tok.eos_id == 0  # <|endoftext|>

    # The printed setting works: the project's data spec now points at this file.
    set_in_project(tiny_project, "data", "tokenizer: {path: output/tokenizer.json}")
    config, _ = resolve_config(load_composed(argparse.Namespace(project=str(tiny_project), config=None)),
                               argparse.Namespace())
    assert DataSpec.from_dict(config.data, base_dir=config.project_dir).tokenizer.path == str(path)


def test_train_with_vocab_size_and_output_notes_a_too_small_model_vocab(tiny_project, tmp_path):
    out = tmp_path / "toks" / "bpe.json"
    result = forgather("tokenizer", "train", "--vocab-size", "320", "--output", str(out), cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "vocab size 320 " in result.stdout and f"path: {out}" in result.stdout
    assert "set model.arch.vocab_size" not in result.stdout  # the model's follows the tokenizer: nothing to set
    set_in_project(tiny_project, "model", "arch: {vocab_size: 300}")  # a vocab the project fixes itself
    fixed = forgather("tokenizer", "train", "--vocab-size", "320", "--output", str(out), "--force",
                      cwd=tiny_project)
    assert "the model's vocab_size is 300; set model.arch.vocab_size: 320" in fixed.stdout, fixed.stderr


def test_a_tokenizer_that_cannot_be_written_is_one_line(tiny_project, tmp_path):
    (tmp_path / "a-file").write_text("")  # a place nothing can be written under (root ignores permissions)
    line = one_line_error(forgather("tokenizer", "train", "--output", str(tmp_path / "a-file" / "t.json"),
                                    cwd=tiny_project))
    assert f"cannot write {tmp_path / 'a-file' / 't.json'}" in line and "--output" in line


@pytest.mark.parametrize("args, needle", [
    (["--vocab-size", "300", "--auto-vocab-size"], "not allowed with argument"),
    (["--vocab-size", "100"], "--vocab-size 100 is too small for byte-level BPE"),
])
def test_user_mistakes_are_one_line_errors(tiny_project, args, needle):
    assert needle in one_line_error(forgather("tokenizer", "train", *args, cwd=tiny_project))


def test_help_names_the_config_key(tmp_path):
    result = forgather("tokenizer", "train", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "tokenizer: {path:" in result.stdout and "--auto-vocab-size" in result.stdout


def test_train_never_replaces_a_file_unasked_nor_writes_into_a_checkpoint(tiny_project, tmp_path):
    precious = tmp_path / "config.yaml"
    precious.write_text("a run's settings\n")  # it was replaced by tokenizer JSON, exit 0
    line = one_line_error(forgather("tokenizer", "train", "--output", str(precious), cwd=tiny_project))
    assert "exists; pass --force to replace it" in line and precious.read_text() == "a run's settings\n"
    inside = tmp_path / "run" / "checkpoints" / "step-000004"
    inside.mkdir(parents=True)
    line = one_line_error(forgather("tokenizer", "train", "--output", str(inside / "tokenizer.json"), "--force",
                                    cwd=tiny_project))
    assert "is inside a run's checkpoints" in line and not (inside / "tokenizer.json").exists()
