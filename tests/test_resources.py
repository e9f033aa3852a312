"""Bundled model projects: `model.project` takes a name (llama) as well as a path relative to the project."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from forgather.errors import ConfigError
from forgather.project import compose_project, find_project, resolve
from forgather.resources import MODELS_DIR, TEMPLATES_DIR, model_project_dir, model_project_names

from .conftest import set_in_project


def test_templates_and_model_projects_live_inside_the_package():
    assert (TEMPLATES_DIR / "base.yaml").is_file()
    assert {"llama", "qwen3", "deepone"} <= set(model_project_names())
    assert MODELS_DIR.parent.name == "resources" and MODELS_DIR.parent.parent.name == "forgather"


def _resolved(project):
    composed = compose_project(find_project(project))
    return resolve(composed)[0]


def test_model_project_by_name_resolves_to_the_bundled_one(tiny_project):
    set_in_project(tiny_project, "model", "{project: qwen3, config: 4M}")
    tree = _resolved(tiny_project)
    assert tree["model"]["arch"]["architecture"] == "qwen3"


def test_model_project_by_relative_path_still_works(tiny_project):
    tree = _resolved(tiny_project)  # the tiny project names ../models/toy
    assert tree["model"]["arch"]["hidden_size"] == 64


def test_unknown_model_name_is_one_line_listing_the_names(tiny_project):
    set_in_project(tiny_project, "model", "{project: lama}")
    with pytest.raises(ConfigError) as err:
        _resolved(tiny_project)
    message = str(err.value)
    assert "\n" not in message and "'lama'" in message and "llama, qwen3" in message.replace("deepone, ", "")


def test_a_bare_name_never_silently_means_a_local_directory(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x.yaml").write_text("architecture: llama\n")
    with pytest.raises(ConfigError, match=r"write \./model"):
        model_project_dir("model", tmp_path, "project.yaml:3")
    assert model_project_dir("./model", tmp_path, "project.yaml:3") == (tmp_path / "model").resolve()


def test_a_missing_directory_names_the_path_and_the_bundled_names(tmp_path):
    with pytest.raises(ConfigError, match=r"not a directory .*llama"):
        model_project_dir("../nowhere", tmp_path, "project.yaml:3")


def test_forgather_templates_points_extends_at_another_templates_directory(tiny_project, tmp_path):
    site = tmp_path / "site_templates"
    site.mkdir()
    (site / "base.yaml").write_text((TEMPLATES_DIR / "base.yaml").read_text().replace("seed: 1234", "seed: 777"))
    env = {**os.environ, "FORGATHER_TEMPLATES": str(site)}
    shown = subprocess.run([sys.executable, "-m", "forgather.cli", "config", "show", "--origins"], cwd=tiny_project,
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "seed: 777" in shown.stdout and str(site / "base.yaml") in shown.stdout
