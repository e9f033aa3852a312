"""`--data PATH [PATH ...]`: the user's own files replace data.sources in any project, named after the paths."""

from __future__ import annotations

import pytest
import yaml

from forgather.cli import main
from forgather.commands.common import data_sources_from_paths
from forgather.errors import DataError


def _files(tmp_path):
    (tmp_path / "mine" / "sub").mkdir(parents=True)
    (tmp_path / "mine" / "notes.md").write_text("# notes\n")
    (tmp_path / "mine" / "sub" / "notes.txt").write_text("more notes\n")
    (tmp_path / "mine" / "rows.jsonl").write_text('{"text": "a row"}\n')


def test_data_paths_become_absolute_named_sources(tmp_path):
    _files(tmp_path)
    entries = data_sources_from_paths(["mine/notes.md", "mine/sub/notes.txt", "mine/*.jsonl", "mine"], cwd=tmp_path)
    assert [e["name"] for e in entries] == ["notes", "notes_2", "mine", "mine_2"]
    assert entries[0]["path"] == str(tmp_path / "mine" / "notes.md")
    assert entries[2]["path"] == str(tmp_path / "mine" / "*.jsonl")


@pytest.mark.parametrize("path, message", [("mine/nope.txt", "no such file"), ("mine/*.parquet", "matches no file")])
def test_a_data_path_that_names_nothing_is_refused(tmp_path, path, message):
    _files(tmp_path)
    with pytest.raises(DataError, match=message):
        data_sources_from_paths([path], cwd=tmp_path)


def test_a_data_path_holding_a_config_reference_is_refused_not_interpolated(tmp_path, tiny_project, capsys):
    (tmp_path / "a${output_dir}.md").write_text("# a note\n")  # a literal name; the config would read 'aoutput.md'
    with pytest.raises(DataError, match=r"config reference"):
        data_sources_from_paths(["a${output_dir}.md"], cwd=tmp_path)
    assert main(["train", "--dry-run", "-p", str(tiny_project), "--data", str(tmp_path / "a${output_dir}.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read as a config reference" in err


def test_config_show_data_replaces_the_projects_sources(tiny_project, tmp_path, capsys, monkeypatch):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)  # --data paths are relative to where the user is, not to the project
    assert main(["config", "show", "-p", str(tiny_project), "--data", "mine/notes.md", "mine/rows.jsonl"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert [(s["name"], s["path"]) for s in shown["data"]["sources"]] == [
            ("notes", str(tmp_path / "mine" / "notes.md")), ("rows", str(tmp_path / "mine" / "rows.jsonl"))]


def test_missing_data_path_is_one_line_from_the_cli(tiny_project, tmp_path, capsys):
    assert main(["config", "show", "-p", str(tiny_project), "--data", str(tmp_path / "absent.txt")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data" in err and "absent.txt" in err
