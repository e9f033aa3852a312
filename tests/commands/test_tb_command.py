"""`forgather tb`: TensorBoard on a run directory, given or the project's."""

from __future__ import annotations

from . import forgather, one_line_error


def test_tb_takes_a_run_dir_outside_any_project(tmp_path):
    (tmp_path / "run" / "runs").mkdir(parents=True)
    result = forgather("tb", str(tmp_path / "run"), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"--logdir {tmp_path / 'run' / 'runs'}" in result.stdout


def test_tb_on_a_missing_run_dir_is_one_line(tmp_path):
    assert "not a directory" in one_line_error(forgather("tb", str(tmp_path / "nope"), "--dry-run", cwd=tmp_path))
