"""The CLI as a user meets it: help, dry-run, config show, ls, and one-line errors for bad input."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import set_in_project, write


def forgather(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "forgather.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=60,
    )


def test_top_level_help_lists_commands(tmp_path):
    result = forgather("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("train", "config", "ls"):
        assert command in result.stdout


def test_train_help_shows_project_flags_inside_a_project(tiny_project):
    result = forgather("train", "--help", cwd=tiny_project)
    assert result.returncode == 0
    assert "--batch-size" in result.stdout and "--no-compile" in result.stdout and "--dry-run" in result.stdout


def test_dry_run_prints_pasteable_torchrun_command_without_importing_torch(tiny_project):
    code = (
        "import sys; from forgather.cli import main; rc = main(sys.argv[1:]); "
        "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_FREE'); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "train", "--dry-run", "-d", "0,1", "--batch-size", "2", "--", "--max-restarts", "3"],
        cwd=tiny_project, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "TORCH_FREE"
    words = shlex.split(lines[-2])
    env = [w for w in words if "=" in w and not w.startswith("-")]
    command = words[len(env):]
    assert env == ["CUDA_VISIBLE_DEVICES=0,1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"]  # the latter for restarts
    assert command[0:3] == [sys.executable, "-m", "forgather.agent"]  # torchrun's own run(), in our process
    assert command[command.index("--nproc-per-node") + 1] == "2"
    assert command[-3:-1] == ["-m", "forgather.run"]
    assert "--max-restarts" in command and command[command.index("--max-restarts") + 1] == "3"
    config_path = Path(command[-1])
    assert config_path.is_file() and "batch_size: 2" in config_path.read_text()


def test_config_show_origins_names_files_and_flags(tiny_project):
    result = forgather("config", "show", "--origins", "--batch-size", "5", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("batch_size:"))
    assert "batch_size: 5" in line and line.endswith("# flag --batch-size")
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("num_layers:"))
    assert "tiny.yaml:2" in line


def test_ls_lists_projects_and_configs(tiny_project):
    write(tiny_project / "configs" / "long.yaml", "extends: ../project.yaml\n")
    result = forgather("ls", str(tiny_project.parent), cwd=tiny_project)
    assert result.returncode == 0
    assert "proj" in result.stdout and "-c long" in result.stdout


def _break(project: Path, how: str) -> list[str]:
    """Damage a project in one way; return the CLI arguments that should then fail."""
    project_file = project / "project.yaml"
    if how == "malformed":
        project_file.write_text(project_file.read_text() + "train: [oops\n")
    elif how == "unknown_key":
        set_in_project(project, "train", "lerning_rate: 0.1")
    elif how == "cycle":
        write(project / "a.yaml", "extends: b.yaml\n")
        write(project / "b.yaml", "extends: a.yaml\n")
        project_file.write_text(project_file.read_text().replace("extends: base.yaml", "extends: [base.yaml, a.yaml]"))
    elif how == "missing_template":
        project_file.write_text(project_file.read_text().replace("extends: base.yaml", "extends: basis.yaml"))
    elif how == "missing_interpolation":
        project_file.write_text(project_file.read_text() + "description: ${train.bach_size}\n")
    elif how == "empty":
        project_file.write_text("")
    elif how == "flag_type":
        return ["train", "--dry-run", "--batch-size", "many"]
    elif how == "bad_devices":
        return ["train", "--dry-run", "-d", "0,x"]
    return ["config", "show"]


@pytest.mark.parametrize("how, expected", [
    ("malformed", r"project.yaml:\d+:\d+: malformed YAML"),
    ("unknown_key", r"project.yaml:\d+: unknown key 'train.lerning_rate' \(did you mean 'learning_rate'\?\)"),
    ("cycle", r"extends cycle: project.yaml -> a.yaml -> b.yaml -> a.yaml"),
    ("missing_template", r"template 'basis.yaml' not found"),
    ("missing_interpolation", r"refers to a missing key 'train.bach_size' \(did you mean 'train.batch_size'\?\)"),
    ("empty", r"missing required key 'name'; set it in the project \(a project starts with `extends: base.yaml`"),
    ("flag_type", r"argument --batch-size: invalid int value: 'many'"),
    ("bad_devices", r"-d/--devices '0,x': expected distinct GPU indices"),
])
def test_bad_input_gives_one_clear_line_and_nonzero_exit(tiny_project, how, expected):
    import re

    result = forgather(*_break(tiny_project, how), cwd=tiny_project)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert re.search(expected, lines[0]), lines[0]


def test_no_project_found_is_one_line_error(tmp_path):
    result = forgather("train", "--dry-run", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "no project.yaml found" in result.stderr


def _one_line_before_torchrun(result: subprocess.CompletedProcess) -> str:
    """The single error line of a run the CLI refused before starting torchrun or preparing data."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "torchrun" not in result.stderr and "tokenize" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forgather: error: "), result.stderr
    return lines[0]


def test_dash_d_on_a_machine_without_gpus_is_one_line(tiny_project):
    # This machine has no NVIDIA GPU: before, -d silently ran CPU processes.
    line = _one_line_before_torchrun(forgather("train", "-d", "0", cwd=tiny_project))
    assert "-d 0: no NVIDIA GPU on this machine" in line and "leave out -d" in line


def test_dry_run_warns_about_devices_instead_of_refusing(tiny_project):
    result = forgather("train", "--dry-run", "-d", "0,1", cwd=tiny_project)
    assert result.returncode == 0
    assert "# warning: -d 0,1: no NVIDIA GPU on this machine" in result.stdout


@pytest.mark.parametrize("backend, message", [
    ("flex_attention", "flex_attention trains only on CUDA GPUs"),
    ("flash_attention_2", "flash"),
])
def test_attention_backend_that_cannot_train_here_is_one_line_naming_the_key(tiny_project, backend, message):
    set_in_project(tiny_project, "model", f"attn_implementation: {backend}")
    line = _one_line_before_torchrun(forgather("train", "--init-model", cwd=tiny_project))
    assert "project.yaml" in line and f"model.attn_implementation={backend}" in line and message in line


@pytest.mark.parametrize("args, expected", [
    (["train", "--dry-run", "--lerning-rate", "1"], "forgather train: unknown option --lerning-rate; did you mean --learning-rate?"),
    (["config", "show", "--orgins"], "forgather config show: unknown option --orgins; did you mean --origins?"),
    (["data", "show", "--max-sampels=3"], "forgather data show: unknown option --max-sampels; did you mean --max-samples?"),
    (["checkpoint", "list", "--bogus"], "forgather checkpoint list: unknown option --bogus (see forgather checkpoint list --help)"),
    (["ls", ".", "--jsn"], "forgather ls: unknown option --jsn (see forgather ls --help)"),
    (["--verzion"], "forgather: unknown option --verzion; did you mean --version?"),
    (["config", "show", "stray"], "forgather config show: unexpected argument 'stray'"),
])
def test_unknown_option_is_one_line_with_the_nearest_option_of_that_command(tiny_project, args, expected):
    result = forgather(*args, cwd=tiny_project)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forgather: error: " + expected), result.stderr


def test_config_show_origins_marks_a_set_value(tiny_project):
    result = forgather("config", "show", "--origins", "--set", "train.clip_grad_norm=0.5", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("clip_grad_norm:"))
    assert "clip_grad_norm: 0.5" in line and line.endswith("# --set train.clip_grad_norm")


@pytest.mark.parametrize("command", [["tb"], ["tokenizer", "train"]])
def test_commands_without_project_settings_list_only_their_own_flags(tiny_project, command):
    result = forgather(*command, "--help", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert "--batch-size" not in result.stdout and "--set" not in result.stdout and "config flags" not in result.stdout
    train_help = forgather("train", "--help", cwd=tiny_project).stdout
    assert "--batch-size" in train_help and "--set KEY=VALUE" in train_help and "config flags" in train_help


@pytest.mark.parametrize("command", [["eval"], ["init"], ["model", "show"], ["train"], ["data", "show"]])
def test_the_block_size_is_max_length_on_every_command(tiny_project, command):
    # README: "--max-length (or --max_length) on any command"; eval said "unknown option --max-length".
    shown = forgather(*command, "--help", cwd=tiny_project)
    assert shown.returncode == 0 and "--max-length" in shown.stdout and "--max_length" in shown.stdout
