"""`forgather checkpoint list|show|verify`, run as a user would, without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgather.checkpoint.manifest import write_manifest

from ..conftest import REPO
from .test_manifest import fake_checkpoint, flip_byte

# Registers the command even before forgather/cli.py lists it, and reports whether torch got imported.
RUNNER = (
    "import sys; import forgather.cli as cli; from forgather.commands import checkpoint; "
    "cli.COMMANDS.append(checkpoint) if checkpoint not in cli.COMMANDS else None; rc = cli.main(sys.argv[1:]); "
    "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_FREE'); sys.exit(rc)"
)


def forgather(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    root = tmp_path / "run" / "checkpoints"
    for step in (100, 200):
        path = fake_checkpoint(root, step)
        (path / "trainer_state.json").write_text(f'{{"step": {step}, "loss": 2.5, "eval_loss": 2.25, "tokens": 6400}}')
        write_manifest(path, step, world_size=1)
    return root


def test_list_shows_steps_loss_tokens_and_verification_without_torch(checkpoints):
    result = forgather("checkpoint", "list", str(checkpoints.parent), cwd=checkpoints)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["step", "loss", "eval_loss", "tokens", "size", "verified"]
    assert lines[1].split()[:4] == ["step-000100", "2.5", "2.25", "6400"] and lines[1].endswith("ok")
    assert lines[2].startswith("step-000200")
    assert lines[-1] == "TORCH_FREE"


def test_verify_passes_then_fails_naming_the_corrupted_file(checkpoints):
    ok = forgather("checkpoint", "verify", str(checkpoints), cwd=checkpoints)
    assert ok.returncode == 0 and "step-000200: ok" in ok.stdout, ok.stderr
    flip_byte(checkpoints / "step-000200" / "model.safetensors")
    bad = forgather("checkpoint", "verify", str(checkpoints), cwd=checkpoints)
    assert bad.returncode == 1
    assert "step-000200: FAILED" in bad.stderr and "model.safetensors: sha256 mismatch" in bad.stderr
    assert bad.stdout.splitlines()[-1] == "TORCH_FREE"


def test_show_prints_manifest_and_trainer_state(checkpoints):
    result = forgather("checkpoint", "show", str(checkpoints / "step-000100"), cwd=checkpoints)
    assert result.returncode == 0, result.stderr
    assert "verified   ok" in result.stdout and "rng/rank-0.pt" in result.stdout and "eval_loss: 2.25" in result.stdout
    assert result.stdout.splitlines()[-1] == "TORCH_FREE"


def test_show_of_a_run_dir_shows_its_newest_checkpoint(checkpoints):
    shown = forgather("checkpoint", "show", str(checkpoints.parent), cwd=checkpoints)  # it said "verified FAILED"
    assert shown.returncode == 0 and "step       200" in shown.stdout and "verified   ok" in shown.stdout, shown.stderr


def test_without_path_uses_the_project_run_dir(tiny_project):
    fake_checkpoint(tiny_project / "output" / "checkpoints", 300)
    listed = forgather("checkpoint", "list", cwd=tiny_project)
    assert listed.returncode == 0, listed.stderr
    assert "step-000300" in listed.stdout
    (tiny_project / "300").mkdir()  # a number is a step of the run, whatever the current directory holds
    shown = forgather("checkpoint", "show", "300", cwd=tiny_project)
    assert shown.returncode == 0 and "step       300" in shown.stdout, shown.stderr
    by_name = forgather("checkpoint", "show", "step-000300", cwd=tiny_project)  # the name `list` prints
    assert by_name.returncode == 0 and "step       300" in by_name.stdout, by_name.stderr
    missing = forgather("checkpoint", "show", "step-000200", cwd=tiny_project)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "step-000200: no such checkpoint (checkpoints in " in missing.stderr and ": step-000300)" in missing.stderr


def test_a_config_override_with_a_path_is_refused_not_ignored(tiny_project):
    step_dir = fake_checkpoint(tiny_project / "output" / "checkpoints", 300)
    for args in (("list", "output", "--set", "output_dir=elsewhere"), ("show", str(step_dir), "--set", "train.learning_rate=0.5"),
                 ("verify", "output", "--set", "train.learning_rate=0.5")):
        refused = forgather("checkpoint", *args, cwd=tiny_project)  # each printed the run at PATH, override unused
        assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr
        assert "is read without the project's config, so this changes nothing" in refused.stderr
    applied = forgather("checkpoint", "show", "300", "--set", "train.learning_rate=0.5", cwd=tiny_project)  # a step reads it
    assert applied.returncode == 0 and "step       300" in applied.stdout, applied.stderr


def test_missing_path_is_a_one_line_error(tmp_path):
    result = forgather("checkpoint", "verify", str(tmp_path / "nope"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope: no such directory" in result.stderr
