"""A run is never lost, mixed or silently changed: damaged checkpoints, a changed tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import set_in_project
from .test_distributed_training import train


@pytest.fixture
def project(tiny_project: Path) -> Path:
    for line in ("max_steps: 4", "log_every: 1", "eval_every: 0", "warmup_steps: 0"):
        set_in_project(tiny_project, "train", line)
    set_in_project(tiny_project, "checkpoint", "save_every: 2")
    set_in_project(tiny_project, "checkpoint", "keep_last: 5")
    return tiny_project


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_run_whose_checkpoints_all_fail_to_verify_is_refused_not_restarted(project):
    train(project, "--init-model")
    root = project / "output" / "checkpoints"
    for step in ("step-000002", "step-000004"):
        _flip_a_byte(root / step / "model.safetensors")
    before = sorted(p.name for p in root.iterdir())
    refused = train(project, "--max-steps", "6", check=False)
    assert refused.returncode != 0, refused.stdout[-2000:]
    line = [ln for ln in refused.stderr.splitlines() if "error:" in ln][-1]
    assert "no checkpoint in" in line and "step-000004:" in line and "step-000002:" in line
    assert "sha256 mismatch" in line and "--init-model --overwrite" in line
    assert sorted(p.name for p in root.iterdir()) == before  # nothing deleted, nothing new
    assert "starting from initialised weights" not in refused.stdout


def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_resumed(project):
    train(project, "--init-model")
    _flip_a_byte(project / "output" / "checkpoints" / "step-000004" / "model.safetensors")
    resumed = train(project, "--max-steps", "5")
    assert "skipping damaged checkpoint step-000004" in resumed.stdout and "training steps 2→5" in resumed.stdout


def _tokenizer_files(project: Path) -> list[Path]:
    return sorted((project.parent / "cache" / "tokenizers").glob("bpe-*.json"))


def test_a_resumed_run_keeps_its_checkpoints_tokenizer_when_the_data_changes(project):
    train(project, "--init-model", "--max-steps", "2")
    first = (project / "output" / "checkpoints" / "step-000002" / "tokenizer.json").read_bytes()
    corpus = project.parent / "corpus" / "docs.jsonl"
    corpus.write_text(corpus.read_text() + "".join(json.dumps({"text": f"brand new words zebra{i} quokka{i}"}) + "\n"
                                                    for i in range(60)))
    trained = _tokenizer_files(project)
    train(project, "--no-restore-dataset-state", "--max-steps", "4")
    assert _tokenizer_files(project) == trained  # no tokenizer trained on the new data
    assert (project / "output" / "checkpoints" / "step-000004" / "tokenizer.json").read_bytes() == first


def test_a_different_configured_tokenizer_on_resume_is_refused_unless_allowed(project, tmp_path):
    train(project, "--init-model", "--max-steps", "2")
    other = tmp_path / "other.json"
    from forgather.data.tokenizer import train_tokenizer

    train_tokenizer([f"some other corpus line {i} with words" for i in range(200)], 300, other)
    set_in_project(project, "data", "{tokenizer: {path: %s, vocab_size: 300}}" % other)
    refused = train(project, "--max-steps", "4", "--no-restore-dataset-state", check=False)
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert "is not the tokenizer step-000002 was trained with" in line and "--allow-tokenizer-change" in line
    allowed = train(project, "--max-steps", "4", "--no-restore-dataset-state", "--allow-tokenizer-change")
    assert "continuing with a different tokenizer" in allowed.stdout
