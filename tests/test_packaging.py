"""The wheel carries everything a project needs: installed outside the repo, `config show` resolves base.yaml
and the bundled model projects, and `forgather init` writes a project that resolves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory) -> Path:
    """The package built as a wheel (from a copy of the sources, so no build/ lands in the repo) and installed
    with pip --target into a fresh directory."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "forgather", src / "forgather", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(root / "dist")],
                   check=True, capture_output=True, timeout=300)
    wheel = next((root / "dist").glob("forgather-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(root / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return root / "site"


def installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the installed copy's CLI in `cwd` (outside the repo), reporting where forgather was imported from."""
    code = ("import sys, forgather; from forgather.cli import main; rc = main(sys.argv[1:]); "
            "print('FROM', forgather.__file__, file=sys.stderr); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_installed_wheel_resolves_base_yaml_and_a_model_project_by_name(installed_site, tmp_path):
    project = tmp_path / "elsewhere"
    project.mkdir()
    (project / "project.yaml").write_text("extends: base.yaml\nmodel: {project: qwen3, config: 4M}\n"
                                          "data:\n  sources: [{path: stdlib, kind: python_docs}]\n")
    result = installed(installed_site, project, "config", "show")
    assert result.returncode == 0, result.stderr
    assert f"FROM {installed_site}" in result.stderr
    assert "architecture: qwen3" in result.stdout


def test_installed_wheel_inits_a_project_that_resolves(installed_site, tmp_path):
    (tmp_path / "notes.md").write_text("# one\n\n\n\n# two\n")
    result = installed(installed_site, tmp_path, "init", "mine", "--data", "notes.md")
    assert result.returncode == 0, result.stderr
    shown = installed(installed_site, tmp_path / "mine", "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"path: {tmp_path / 'notes.md'}" in shown.stdout and "architecture: llama" in shown.stdout
