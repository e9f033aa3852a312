"""Shared fixtures: isolated temp dirs for caches, and a tiny project on disk."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

# huggingface_hub and datasets read these once, at import, and test modules import them at collection time,
# before any fixture runs: set here, every test is offline (no retries against an unreachable hub).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches "
         "in old towns near rivers and mountains where people trade bread cheese and stories").split()


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


def set_in_project(project: Path, section: str, line: str) -> None:
    """Set one key (given as a YAML line, e.g. 'max_steps: 3') in a top-level section of project.yaml."""
    path = project / "project.yaml"
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    tree.setdefault(section, {}).update(yaml.safe_load(line))
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A project extending base.yaml with its own tiny model project and two flags."""
    return make_tiny_project(tmp_path)


def make_tiny_project(tmp_path: Path) -> Path:
    """Write the tiny project (model project, 120-document corpus, project.yaml) under tmp_path."""
    write(tmp_path / "models" / "toy" / "base.yaml", """
        architecture: llama
        vocab_size: 300
        hidden_size: 64
        num_layers: 2
        num_heads: 4
        num_kv_heads: 2
        intermediate_size: 128
    """)
    lines = [json.dumps({"text": f"Document {i}: " + " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(40 + i % 50))})
             for i in range(120)]
    write(tmp_path / "corpus" / "docs.jsonl", "\n".join(lines) + "\n")
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
        data:
          sources:
            - {name: docs, path: ../corpus/docs.jsonl}
          validation_fraction: 0.1
          tokenizer: {vocab_size: 300}
          block_size: 64
          cache_dir: ../cache
        train:
          batch_size: 2
          max_steps: 4
          warmup_steps: 1
          log_every: 1
          eval_every: 2
          eval_batches: 2
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


def _words(rng, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Our own small corpus (no ../shared needed): 300 short documents and 8 long ones (thousands of tokens,
    dozens of 64-token blocks each) in docs.jsonl, and a 512-id BPE trained on it in tokenizer.json."""
    import json
    import random

    from forgather.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("tiny_corpus")
    rng = random.Random(0)
    docs = [f"Note {i}: " + _words(rng, rng.randint(8, 60)) for i in range(300)]
    for i in range(8):
        docs.insert(rng.randrange(len(docs)), f"Book {i}. " + _words(rng, rng.randint(1500, 3000)))
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    train_tokenizer(docs, 512, root / "tokenizer.json")
    return root


def tiny_spec(corpus: Path, cache_dir, **overrides):
    """A DataSpec over the tiny corpus: 64-token blocks, 4 shards of ~2k-token chunks, validation off."""
    from forgather.data.spec import DataSpec

    d = {"sources": [{"path": str(corpus / "docs.jsonl")}], "tokenizer": {"path": str(corpus / "tokenizer.json")},
         "block_size": 64, "pack_window": 8, "seed": 7, "shards": 4, "chunk_tokens": 2048, "mode": "cached",
         "cache_dir": str(cache_dir), "batch_size": 2}
    d.update(overrides)
    return DataSpec.from_dict(d)


# Every test file pytest collected an item from, before -k/-m deselection (tests/test_collection.py reads it).
COLLECTED_FILES: set[Path] = set()


def pytest_itemcollected(item) -> None:
    COLLECTED_FILES.add(Path(item.path).resolve())
