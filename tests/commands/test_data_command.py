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
    assert "block_size 32" in result.stdout and "block 3 (shard 3):" in result.stdout


def test_prepare_builds_every_shard_and_validation_with_progress(tiny_project):
    result = forgather("data", "prepare", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "train: 8 shard(s)," in out and "validation: 1 shard(s)," in out and "chunk ends pad" in out
    assert "done in" in out
    assert "prepare: " in result.stderr and "tokens/s, ETA" in result.stderr


def _chunk_files(cache):
    return {p.relative_to(cache): p.read_bytes() for p in sorted(cache.rglob("chunk-*/*"))
            if p.name != "meta.json"}


def test_prepare_under_torchrun_equals_one_process_byte_for_byte(tiny_project, tmp_path):
    set_in_project(tiny_project, "data", "cache_dir: ../cache-one")
    assert forgather("data", "prepare", cwd=tiny_project).returncode == 0
    set_in_project(tiny_project, "data", "cache_dir: ../cache-two")
    two = forgather("data", "prepare", "--nproc-per-node", "2", "--no-accelerator", cwd=tiny_project)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "built by 2 ranks" in two.stdout and "prepare (rank 0's 4 of 8 shards)" in two.stderr
    one = _chunk_files(tiny_project.parent / "cache-one")
    assert one and one == _chunk_files(tiny_project.parent / "cache-two")


def test_prepare_on_a_world_size_that_cannot_split_the_shards_is_one_line(tiny_project):
    line = one_line_error(forgather("data", "prepare", "--nproc-per-node", "3", "--no-accelerator",
                                    cwd=tiny_project))
    assert "data.shards is 8, which 3 ranks reading data cannot split evenly; use 1, 2, 4, 8 ranks" in line


def test_block_past_the_first_epoch_names_the_block_count(tiny_project):
    # In-process (torch is already loaded here): the same handler the CLI dispatches to.
    args = argparse.Namespace(project=str(tiny_project), config=None, data_action="show", block=100000, max_chars=10)
    with pytest.raises(DataError, match=r"--block 100000: block 100000 is past the first epoch of shard 0, which "
                                        r"has \d+ blocks"):
        data_command.run(args, load_composed(args))


def test_outside_a_project_is_a_one_line_error_but_help_works(tmp_path):
    assert "no project.yaml" in one_line_error(forgather("data", "show", cwd=tmp_path))
    result = forgather("data", "show", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--max-chars" in result.stdout and "examples:" in result.stdout


def test_a_data_cache_that_cannot_be_written_is_one_line(tiny_project, tmp_path):
    (tmp_path / "a-file").write_text("")  # as a read-only or full cache would refuse (root ignores permissions)
    result = forgather("data", "show", "--set", f"data.cache_dir={tmp_path / 'a-file' / 'cache'}", cwd=tiny_project)
    line = one_line_error(result)
    assert result.returncode == 2 and "cannot write" in line and "data.cache_dir" in line
