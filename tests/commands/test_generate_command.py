"""`forgather generate` on a checkpoint from a real (tiny, 2-step) training run, and its one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..checkpoint.test_manifest import flip_byte
from ..conftest import tiny_project
from . import forgather, one_line_error

PROMPT = "the quick brown"


_TRAINED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The tiny project after `forgather train --init-model --max-steps 2` (checkpoint step-000002).

    test_eval_command imports this fixture, and pytest would then run it once per module; the run is
    only read, so it is trained once per session and shared.
    """
    if "project" not in _TRAINED:
        _TRAINED["project"] = _train_tiny_project(tmp_path_factory.mktemp("trained"))
    return _TRAINED["project"]


def _train_tiny_project(base: Path) -> Path:
    project = tiny_project.__wrapped__(base)  # the conftest fixture's body: fixtures cannot be called directly
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(base / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(base / "hf" / "datasets")}
    result = subprocess.run([sys.executable, "-m", "forgather.cli", "train", "--init-model", "--no-accelerator",
                             "--max-steps", "2"], cwd=project, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (project / "output" / "checkpoints" / "step-000002" / "model.safetensors").is_file()
    return project


def checkpoint_of(project: Path) -> Path:
    return project / "output" / "checkpoints" / "step-000002"


def test_seeded_samples_repeat_exactly_from_project_or_checkpoint_with_or_without_cache(trained_run):
    sampling = ("--prompt", PROMPT, "--num-samples", "2", "--seed", "5", "--max-new-tokens", "10",
                "--temperature", "1.2", "--top-p", "0.95")
    from_project = forgather("generate", *sampling, cwd=trained_run)
    assert from_project.returncode == 0, from_project.stderr
    assert "step-000002" in from_project.stderr and "seed 5" in from_project.stderr
    samples = from_project.stdout.split("=== sample 2/2 ===")
    assert samples[0].startswith("=== sample 1/2 ===\n" + PROMPT) and samples[1].startswith("\n" + PROMPT)
    assert len(samples[0]) > len("=== sample 1/2 ===\n" + PROMPT) + 2  # something was generated
    uncached = forgather("generate", str(checkpoint_of(trained_run)), *sampling, "--no-kv-cache",
                         cwd=trained_run.parent)
    assert uncached.returncode == 0, uncached.stderr
    assert uncached.stdout == from_project.stdout


def test_a_request_past_the_models_context_says_where_it_stops(trained_run):
    long = forgather("generate", "--prompt", PROMPT, "--max-new-tokens", "100000", "--temperature", "0",
                     cwd=trained_run)  # it stopped at the model's positions without a word
    assert long.returncode == 0, long.stderr
    assert re.search(r"at most \d+ new tokens, as the model takes 64 positions and the prompt is \d+", long.stderr)


def test_a_corrupted_checkpoint_is_a_one_line_error(trained_run, tmp_path):
    copy = tmp_path / "step-000002"
    shutil.copytree(checkpoint_of(trained_run), copy)
    flip_byte(copy / "model.safetensors")
    line = one_line_error(forgather("generate", str(copy), "--prompt", PROMPT, cwd=tmp_path))
    assert "model.safetensors" in line and "sha256 mismatch" in line


@pytest.mark.parametrize("args, message", [
    (("nowhere/step-000010", "--prompt", "hi"), "no such file or directory"),
    ((".", "--prompt", "hi", "--temperature", "-0.5"), "--temperature: -0.5 must be >= 0"),
    ((".", "--prompt", "hi", "--top-p", "0"), "--top-p: 0 must be in (0, 1]"),
    ((".", "--prompt", "hi", "--top-p", "1.5"), "--top-p: 1.5 must be in (0, 1]"),
    ((".", "--prompt", "hi", "--max-new-tokens", "0"), "--max-new-tokens: 0 must be at least 1"),
])
def test_bad_input_is_a_one_line_error(tmp_path, args, message):
    assert message in one_line_error(forgather("generate", *args, cwd=tmp_path))


def test_a_project_without_checkpoints_says_to_train_first(tiny_project):
    line = one_line_error(forgather("generate", "--prompt", "hi", cwd=tiny_project))
    assert "holds none" in line and "forgather train" in line


def test_help_shows_an_example_without_importing_torch(tmp_path):
    probe = ("import sys\nfrom forgather.cli import main\ntry:\n    main(['generate', '--help'])\n"
             "except SystemExit:\n    pass\nprint('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_FREE')")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "examples:" in result.stdout and "forgather generate --prompt" in result.stdout
    assert result.stdout.strip().endswith("TORCH_FREE"), result.stderr


def test_a_model_dir_without_tokenizer_json_finds_the_bpe_its_run_trained(trained_run, tmp_path):
    from forgather.eval_target import find_tokenizer_file, resolve_target

    model = tmp_path / "run" / "initial_model"  # as saved before model dirs carried their tokenizer
    model.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(trained_run / "output" / "initial_model" / name, model / name)
    shutil.copy(trained_run / "output" / "config.yaml", tmp_path / "run" / "config.yaml")
    found = find_tokenizer_file(resolve_target(str(model)))
    assert found is not None and found.parent.name == "tokenizers"  # under the run's data cache
    assert found.read_bytes() == (checkpoint_of(trained_run) / "tokenizer.json").read_bytes()
