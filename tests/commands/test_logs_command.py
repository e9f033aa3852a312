"""`forgather logs summary` and `forgather tb`."""

from __future__ import annotations

import json

from torch.utils.tensorboard import SummaryWriter

from . import forgather, one_line_error


def _write_run(logdir, losses, evals):
    writer = SummaryWriter(log_dir=str(logdir))
    for step, loss in losses:
        writer.add_scalar("loss", loss, step)
        writer.add_scalar("tokens", step * 1000.0, step)
        writer.add_scalar("tps", 500.0 + step, step)
    for step, loss in evals:
        writer.add_scalar("eval/loss", loss, step)
    writer.close()


def test_summary_reports_final_best_and_throughput(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, [(1, 5.0), (2, 4.0), (3, 4.5)], [(2, 4.25), (3, 4.75)])
    result = forgather("logs", "summary", str(runs), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and summary["final_loss"] == 4.5 and summary["best_loss"] == 4.0
    assert summary["tokens"] == 3000 and summary["tokens_per_s_median"] == 502.0
    assert summary["best_eval_loss"] == 4.25 and summary["best_eval_step"] == 2 and summary["final_eval_loss"] == 4.75


def test_summary_keeps_the_last_write_of_a_repeated_step(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, [(1, 5.0), (2, 9.0)], [])
    _write_run(runs, [(2, 3.0)], [])  # a resumed run logs step 2 again
    summary = json.loads(forgather("logs", "summary", str(runs), "--json", cwd=tmp_path).stdout)
    assert summary["final_loss"] == 3.0 and summary["best_loss"] == 3.0


def test_summary_of_a_missing_dir_is_one_line_error(tmp_path):
    line = one_line_error(forgather("logs", "summary", str(tmp_path / "nope"), cwd=tmp_path))
    assert "not a directory of TensorBoard logs" in line


def test_tb_points_tensorboard_at_the_run_logs(tiny_project):
    assert "no TensorBoard logs yet" in one_line_error(forgather("tb", "--dry-run", cwd=tiny_project))
    (tiny_project / "output" / "runs").mkdir(parents=True)
    result = forgather("tb", "--dry-run", "--port", "6123", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert f"--logdir {tiny_project / 'output' / 'runs'}" in result.stdout and "--port 6123" in result.stdout
