"""`forgather data show|prepare` on a project: sources, a decoded block with boundaries, the cache built."""

from __future__ import annotations

import argparse

import pytest

from forgather.commands import data as data_command
from forgather.commands.common import load_composed
from forgather.errors import DataError

from ..conftest import set_in_project
from . import forgather, one_line_error


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGATHER_DATA_CACHE", str(tmp_path / "data-cache"))


def test_show_prints_sources_fill_and_a_block_with_document_markers(tiny_project):
    result = forgather("data", "show", "--max-chars", "60", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| train: docs |" in out and "| validation: docs:val |" in out and "probability" in out
    assert "block_size 64" in out and "fill" in out
    assert "⟦doc " in out and "more characters)" in out
    assert (tiny_project.parent / "cache").is_dir()  # data.cache_dir, relative to the project


def test_show_applies_project_flags(tiny_project):
    set_in_project(tiny_project, "flags", "max-length: {key: data.block_size, type: int, help: tokens per block}")
    result = forgather("data", "show", "--max-length", "32", "--block", "3", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert "block_size 32" in result.stdout and "block 3:" in result.stdout


def test_prepare_builds_train_and_validation_epochs_with_progress(tiny_project):
    result = forgather("data", "prepare", "--epochs", "2", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    for line in ("train epoch 0:", "train epoch 1:", "validation epoch 0:", "done in"):
        assert line in result.stdout
    assert "tokenize+pack [" in result.stderr


def test_block_past_the_end_names_the_block_count(tiny_project):
    # In-process (torch is already loaded here): the same handler the CLI dispatches to.
    args = argparse.Namespace(project=str(tiny_project), config=None, data_action="show", block=100000, max_chars=10)
    with pytest.raises(DataError, match=r"--block 100000: block 100000 out of range \(epoch has \d+\)"):
        data_command.run(args, load_composed(args))


def test_outside_a_project_is_a_one_line_error_but_help_works(tmp_path):
    assert "no project.yaml" in one_line_error(forgather("data", "show", cwd=tmp_path))
    result = forgather("data", "show", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--max-chars" in result.stdout and "examples:" in result.stdout
