"""`forgather tb` (logs summary: test_logs.py)."""

from __future__ import annotations

from . import forgather, one_line_error


def test_tb_points_tensorboard_at_the_run_logs(tiny_project):
    assert "no TensorBoard logs yet" in one_line_error(forgather("tb", "--dry-run", cwd=tiny_project))
    (tiny_project / "output" / "runs").mkdir(parents=True)
    result = forgather("tb", "--dry-run", "--port", "6123", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert f"--logdir {tiny_project / 'output' / 'runs'}" in result.stdout and "--port 6123" in result.stdout
