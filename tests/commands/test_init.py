"""`forgather init DIR`: a project anywhere, on the user's --data, that trains with `forgather train --init-model`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import WORDS


def cli(*args: str, cwd: Path, timeout: int = 60) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter; stderr ends with whether torch was imported."""
    code = ("import sys; from forgather.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_FREE', file=sys.stderr); sys.exit(rc)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORGATHER_DATA_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=timeout)


def my_files(root: Path) -> None:
    """A user's documents: a jsonl file and a markdown file holding several documents (3+ blank lines apart)."""
    (root / "mine").mkdir()
    lines = [json.dumps({"text": f"Row {i}: " + " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(30))})
             for i in range(40)]
    (root / "mine" / "rows.jsonl").write_text("\n".join(lines) + "\n")
    notes = "\n\n\n\n".join(f"# Note {i}\n\n" + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40))
                            for i in range(20))
    (root / "mine" / "notes.md").write_text(notes)


def test_init_writes_a_project_on_the_given_data_without_importing_torch(tmp_path):
    my_files(tmp_path)
    result = cli("init", "proj", "--data", "mine/rows.jsonl", "mine/notes.md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("TORCH_FREE")
    tree = yaml.safe_load((tmp_path / "proj" / "project.yaml").read_text())
    assert tree["extends"] == "base.yaml" and tree["model"]["project"] == "llama"
    assert tree["data"]["sources"] == [{"path": str(tmp_path / "mine" / "rows.jsonl")},
                                       {"path": str(tmp_path / "mine" / "notes.md")}]
    assert "data.sources" in (tmp_path / "proj" / "README.md").read_text()


def test_init_refuses_a_non_empty_directory_in_one_line(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = cli("init", "taken", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].startswith("forgather: error: taken exists and is not empty")
    assert len(result.stderr.splitlines()) == 2  # the error line and the torch marker
    assert cli("init", "taken", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine" and (tmp_path / "taken" / "project.yaml").is_file()


def test_init_refuses_an_unknown_model_and_a_missing_data_path(tmp_path):
    assert "available: deepone, llama, qwen3" in cli("init", "a", "--model", "lama", cwd=tmp_path).stderr
    assert "--data nope.txt: no such file" in cli("init", "b", "--data", "nope.txt", cwd=tmp_path).stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_created_project_trains(tmp_path):
    my_files(tmp_path)
    assert cli("init", "proj", "--data", "mine/rows.jsonl", "mine/*.md", "--vocab-size", "300", "--block-size", "64",
               cwd=tmp_path).returncode == 0
    project = tmp_path / "proj"
    result = cli("train", "--init-model", "--no-accelerator", "--max-steps", "2", "--batch-size", "2",
                 cwd=project, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run_config = yaml.safe_load((project / "output" / "config.yaml").read_text())
    assert run_config["model"]["arch"]["max_position_embeddings"] == 64
    assert list((project / "output" / "checkpoints").iterdir())


def test_init_refuses_options_that_make_a_project_that_cannot_run_and_writes_nothing(tmp_path):
    my_files(tmp_path)
    (tmp_path / "mine" / "more.txt").write_text("a third format")  # beside rows.jsonl: a source reads one format
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "project.yaml").write_text("mine\n")
    cases = {("--block-size", "1"): "data.block_size must be at least 2",
             ("--model-config", "7B"): "no model config '7B'",
             ("--vocab-size", "10"): "use at least 300",
             ("--data", "mine"): "mixes file formats (1 .jsonl, 1 .md, 1 .txt files)"}
    for options, reason in cases.items():
        result = cli("init", "new", *options, cwd=tmp_path)
        assert result.returncode == 2 and reason in result.stderr and "nothing was written" in result.stderr, options
        assert len(result.stderr.splitlines()) == 2 and not (tmp_path / "new").exists()
    nested = cli("init", "deep/er/new", "--vocab-size", "10", cwd=tmp_path)  # the parents it made go too
    assert nested.returncode == 2 and not (tmp_path / "deep").exists()
    assert "project.yaml:" not in nested.stderr  # no line of a file that is gone again
    refused = cli("init", "kept", "--force", "--block-size", "1", cwd=tmp_path)  # --force over an old project
    assert refused.returncode == 2 and (tmp_path / "kept" / "project.yaml").read_text() == "mine\n"
    assert not (tmp_path / "kept" / "README.md").exists()


def test_an_init_project_takes_a_tokenizer_path_by_set(tmp_path):
    my_files(tmp_path)
    assert cli("init", "proj", "--data", "mine/rows.jsonl", cwd=tmp_path).returncode == 0
    shown = cli("config", "show", "--set", "data.tokenizer.path=/elsewhere/tokenizer.json", cwd=tmp_path / "proj")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["data"]["tokenizer"]["path"] == "/elsewhere/tokenizer.json"


def test_an_init_that_fails_unexpectedly_also_leaves_nothing_behind(tmp_path, monkeypatch):
    import argparse

    from forgather.commands import init

    def broken(directory):
        raise RuntimeError("an unexpected failure while checking")

    monkeypatch.setattr(init, "check_new_project", broken)
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(directory="a/b", force=False, model="llama", data_paths=None, model_config="4M",
                              vocab_size=8192, block_size=512)
    with pytest.raises(RuntimeError, match="unexpected"):
        init.run(args, None)
    assert list(tmp_path.iterdir()) == []


def test_a_project_on_a_few_documents_fits_its_shards_and_holdout_to_them(tmp_path):
    words = " ".join(WORDS * 20)
    (tmp_path / "note.md").write_text(words)  # one document: 8 shards and a 5% holdout failed the first train
    (tmp_path / "three.md").write_text("\n\n\n\n".join([words] * 3))
    result = cli("init", "one", "--data", "note.md", "--vocab-size", "300", "--block-size", "64", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr.strip().endswith("TORCH_FREE"), result.stderr
    data = yaml.safe_load((tmp_path / "one" / "project.yaml").read_text())["data"]
    assert data["shards"] == 1 and data["validation_fraction"] == 0
    assert cli("init", "three", "--data", "three.md", cwd=tmp_path).returncode == 0
    data = yaml.safe_load((tmp_path / "three" / "project.yaml").read_text())["data"]
    assert data["shards"] == 2 and data["validation_fraction"] == 0.05  # one of the three is held out
    trained = cli("train", "--init-model", "--no-accelerator", "--max-steps", "1", "--batch-size", "2",
                  cwd=tmp_path / "one", timeout=300)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]


def test_init_takes_vocab_size_auto_and_refuses_a_vocabulary_no_tokenizer_needs(tmp_path):
    (tmp_path / "note.md").write_text("a few words\n")
    assert cli("init", "auto", "--data", "note.md", "--vocab-size", "auto", cwd=tmp_path).returncode == 0
    assert yaml.safe_load((tmp_path / "auto" / "project.yaml").read_text())["data"]["tokenizer"]["vocab_size"] == "auto"
    huge = cli("init", "huge", "--data", "note.md", "--vocab-size", "100000000", cwd=tmp_path)  # a 12.8B model
    assert huge.returncode == 2 and "is past 4,194,304" in huge.stderr and not (tmp_path / "huge").exists()


def test_a_parquet_without_the_text_column_is_refused_before_anything_runs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["words of a document"] * 20}), tmp_path / "body.parquet")
    refused = cli("init", "proj", "--data", "body.parquet", cwd=tmp_path)  # it wrote a project that could not train
    assert refused.returncode == 2 and "has no column 'text'; columns found: body" in refused.stderr
    assert not (tmp_path / "proj").exists()
    assert cli("init", "proj", cwd=tmp_path).returncode == 0
    train = cli("train", "--no-accelerator", "--data", str(tmp_path / "body.parquet"), cwd=tmp_path / "proj")
    assert train.returncode == 2 and "has no column 'text'" in train.stderr and "forgather.run" not in train.stdout


def test_the_next_step_init_prints_can_be_pasted_with_spaces_in_the_path(tmp_path):
    made = cli("init", "my project", cwd=tmp_path)
    assert made.returncode == 0 and "next: cd 'my project' && forgather train" in made.stdout  # was unquoted
