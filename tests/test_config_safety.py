"""Hostile or careless configs: alias bombs stop at once, environment values are never written or shown."""

from __future__ import annotations

import time

from forgather.commands.common import load_composed, resolve_config
from forgather.config import read_config, render_config, write_config

from .commands import forgather, one_line_error
from .conftest import set_in_project

BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, c in zip([""] + list("abcdefgh"), "abcdefghi"))


def test_an_alias_bomb_is_one_line_at_once(tiny_project):
    (tiny_project / "project.yaml").write_text((tiny_project / "project.yaml").read_text() + BOMB)
    assert len(BOMB) < 400
    started = time.monotonic()
    line = one_line_error(forgather("config", "show", cwd=tiny_project))
    assert "project.yaml: YAML expands to more than 100,000 values" in line
    assert time.monotonic() - started < 60  # bounded: it used to reach 4 GB and never finish


def test_a_recursive_alias_is_refused(tiny_project):
    (tiny_project / "project.yaml").write_text((tiny_project / "project.yaml").read_text() + "loop: &x [1, *x]\n")
    assert "refers to itself" in one_line_error(forgather("config", "show", cwd=tiny_project))


def test_environment_values_are_typed_like_yaml_scalars(tiny_project, monkeypatch):
    set_in_project(tiny_project, "train", "max_steps: ${env:FG_STEPS,2000}")
    set_in_project(tiny_project, "train", "learning_rate: ${env:FG_LR,3.0e-4}")
    monkeypatch.delenv("FG_STEPS", raising=False)
    config, _ = resolve_config(load_composed(_args(tiny_project)), _args(tiny_project))
    assert config.train.max_steps == 2000 and config.train.learning_rate == 3.0e-4
    monkeypatch.setenv("FG_STEPS", "7")
    config, _ = resolve_config(load_composed(_args(tiny_project)), _args(tiny_project))
    assert config.train.max_steps == 7


def test_a_secret_from_the_environment_is_never_printed_or_written_unless_asked(tiny_project, monkeypatch):
    monkeypatch.setenv("FG_SECRET", "hunter2-token")
    set_in_project(tiny_project, "train", "init_from: /models/${env:FG_SECRET}/weights")
    set_in_project(tiny_project, "checkpoint", "save_every: ${env:FG_EVERY,7}")
    shown = forgather("config", "show", "--origins", cwd=tiny_project)
    assert shown.returncode == 0 and "hunter2" not in shown.stdout
    assert "init_from: /models/${env:FG_SECRET}/weights" in shown.stdout
    assert "hunter2-token" in forgather("config", "show", "--show-env", cwd=tiny_project).stdout
    dry = forgather("train", "--dry-run", "--no-accelerator", cwd=tiny_project)
    assert dry.returncode == 0 and "hunter2" not in dry.stdout + dry.stderr
    written = tiny_project / "output" / "config.yaml"
    assert "hunter2" not in written.read_text() and "${env:FG_SECRET}" in written.read_text()
    config = read_config(written)  # a rank: the environment filled back in, typed
    assert config.train.init_from == "/models/hunter2-token/weights" and config.checkpoint.save_every == 7
    assert "hunter2" not in render_config(config)  # what a checkpoint's config.yaml holds
    write_config(config, tiny_project / "again.yaml")
    assert "hunter2" not in (tiny_project / "again.yaml").read_text()
    monkeypatch.delenv("FG_SECRET")
    assert "FG_SECRET is not set" in str(_error(lambda: read_config(written)))


def _args(project):
    import argparse

    return argparse.Namespace(project=str(project), config=None)


def _error(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("no error")


def test_an_environment_value_inside_a_list_item_resolves_and_stays_out_of_files(tiny_project, monkeypatch):
    text = (tiny_project / "project.yaml").read_text()
    (tiny_project / "project.yaml").write_text(
        text.replace("{name: docs, path: ../corpus/docs.jsonl}",
                     '{name: docs, path: "${env:FG_CORPUS,..}/corpus/docs.jsonl"}'))
    monkeypatch.setenv("FG_CORPUS", "..")  # a data.sources item: config show, train and dry runs crashed (TypeError)
    shown = forgather("config", "show", cwd=tiny_project)
    assert shown.returncode == 0, shown.stderr
    assert "path: ${env:FG_CORPUS,..}/corpus/docs.jsonl" in shown.stdout
    dry = forgather("train", "--dry-run", "--no-accelerator", cwd=tiny_project)
    assert dry.returncode == 0, dry.stderr
    config = read_config(tiny_project / "output" / "config.yaml")  # a rank fills the item back in
    assert config.data["sources"] == [{"name": "docs", "path": "../corpus/docs.jsonl"}]


def test_an_environment_value_is_never_shown_in_an_error(tiny_project, monkeypatch):
    set_in_project(tiny_project, "train", "learning_rate: ${env:FG_LR,1.0e-3}")
    monkeypatch.setenv("FG_LR", "supersecret123")  # wrong type: the message quoted the value
    line = one_line_error(forgather("config", "show", cwd=tiny_project))
    assert "supersecret123" not in line and "expected float, got '${env:FG_LR}'" in line
    text = (tiny_project / "project.yaml").read_text()
    (tiny_project / "project.yaml").write_text(
        text.replace("path: ../corpus/docs.jsonl", 'path: "${env:FG_BUCKET}/docs.jsonl"'))
    monkeypatch.setenv("FG_LR", "1e-3")
    monkeypatch.setenv("FG_BUCKET", "/private-bucket-7")  # a path that does not exist: the message quoted it
    line = one_line_error(forgather("data", "show", cwd=tiny_project))
    assert "private-bucket-7" not in line and "${env:FG_BUCKET}/docs.jsonl" in line


def test_deeply_nested_yaml_is_one_line(tiny_project):
    (tiny_project / "project.yaml").write_text((tiny_project / "project.yaml").read_text()
                                              + "x: " + "[" * 1000 + "]" * 1000 + "\n")  # 2 KB: a RecursionError
    assert "YAML nests deeper than 64 levels" in one_line_error(forgather("config", "show", cwd=tiny_project))


def test_a_run_never_prints_an_environment_value(tiny_project, monkeypatch):
    text = (tiny_project / "project.yaml").read_text()
    (tiny_project / "project.yaml").write_text(text.replace("name: tiny", "name: tiny_${env:FG_TEAM,x}"))
    monkeypatch.setenv("FG_TEAM", "zzTOPSECRETzz")  # the rank's first line said "project tiny_zzTOPSECRETzz"
    run = forgather("train", "--init-model", "--no-accelerator", "--max-steps", "1", cwd=tiny_project)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "zzTOPSECRET" not in run.stdout + run.stderr and "project tiny_${env:FG_TEAM}" in run.stdout
