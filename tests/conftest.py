"""Shared fixtures: isolated temp dirs for caches, and a tiny project on disk."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Keep every test's caches and temp files out of the user's home and each other's way."""
    base = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(base / "inductor"))
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(base / "hf" / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TMPDIR", str(base / "tmp"))
    (base / "tmp").mkdir()


def write(path: Path, text: str) -> Path:
    """Write dedented text, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A project extending templates/base.yaml with its own tiny model project and two flags."""
    write(tmp_path / "models" / "toy" / "base.yaml", """
        architecture: llama
        hidden_size: 64
        num_layers: 2
    """)
    write(tmp_path / "models" / "toy" / "tiny.yaml", """
        extends: base.yaml
        num_layers: 1
    """)
    project = tmp_path / "proj"
    write(project / "project.yaml", """
        extends: base.yaml
        name: tiny
        model:
          project: ../models/toy
          config: tiny
        flags:
          batch-size:
            key: train.batch_size
            type: int
            help: per-rank batch
          compile:
            key: train.compile
            action: negatable
    """)
    return project
