"""`forgather logs summary`: exact figures from a run's metrics.jsonl, found like `checkpoint list` finds a run."""

from __future__ import annotations

import json
from pathlib import Path

from . import forgather, one_line_error


def _write_metrics(run_dir: Path, *records: dict) -> Path:
    """Append records to RUN_DIR/runs/metrics.jsonl the way the trainer's MetricsSink writes them."""
    path = run_dir / "runs" / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    return path


RUN = [{"step": 1, "loss": 5.123456789, "tokens": 1000.0, "tps": 12345.678},
       {"step": 2, "loss": 4.0, "tokens": 2000.0, "tps": 20000.5, "eval/loss": 4.25},
       {"step": 3, "loss": 4.5, "tokens": 3000.0, "tps": 503.0},
       {"step": 4, "eval/loss": 4.75}]


def test_summary_of_a_run_dir_keeps_exact_values_in_json(tmp_path):
    _write_metrics(tmp_path / "run", *RUN)
    result = forgather("logs", "summary", str(tmp_path / "run"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and summary["final_loss"] == 4.5 and summary["best_loss"] == 4.0
    assert summary["tokens"] == 3000 and summary["tokens_per_s_median"] == 12345.678
    assert summary["best_eval_loss"] == 4.25 and summary["best_eval_step"] == 2 and summary["final_eval_loss"] == 4.75


def test_summary_text_rounds_to_four_significant_digits(tmp_path):
    _write_metrics(tmp_path / "run", *RUN[:1])
    result = forgather("logs", "summary", str(tmp_path / "run" / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert rows["final_loss"] == "5.123" and rows["tokens"] == "1,000" and rows["tokens_per_s_median"] == "12,346"


def test_summary_keeps_the_last_write_of_a_repeated_step_and_skips_a_torn_last_line(tmp_path):
    path = _write_metrics(tmp_path, {"step": 1, "loss": 5.0}, {"step": 2, "loss": 9.0})
    _write_metrics(tmp_path, {"step": 2, "loss": 3.0})  # a resumed run logs step 2 again
    with open(path, "a", encoding="utf-8") as out:
        out.write('{"step": 3, "lo')  # killed mid-write
    summary = json.loads(forgather("logs", "summary", str(tmp_path), "--json", cwd=tmp_path).stdout)
    assert summary["final_loss"] == 3.0 and summary["best_loss"] == 3.0 and summary["steps"] == 2


def test_summary_defaults_to_the_project_run_dir_without_importing_torch(tiny_project):
    line = one_line_error(forgather("logs", "summary", cwd=tiny_project))
    assert "no metrics yet" in line and str(tiny_project / "output") in line
    _write_metrics(tiny_project / "output", *RUN)
    result = forgather("logs", "summary", "--json", cwd=tiny_project, probe_torch=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["final_loss"] == 4.5 and result.stderr.strip().endswith("TORCH_FREE")


def test_summary_errors_are_one_line(tmp_path):
    assert "no such file or directory" in one_line_error(forgather("logs", "summary", str(tmp_path / "nope"),
                                                                   cwd=tmp_path))
    path = _write_metrics(tmp_path, {"step": 1, "loss": 5.0})
    path.write_text("not json\n" + path.read_text())
    assert f"{path}:1: not a metrics record" in one_line_error(forgather("logs", "summary", str(tmp_path),
                                                                         cwd=tmp_path))


def test_summary_of_a_path_refuses_a_set_it_would_ignore(tmp_path):
    _write_metrics(tmp_path / "run", *RUN)
    line = one_line_error(forgather("logs", "summary", str(tmp_path / "run"), "--set", "train.lr=1", cwd=tmp_path))
    assert "--set train.lr: " in line and "is read without the project's config" in line
