"""`forgather train` refuses data layouts the ranks could not read, in one line, before torchrun starts."""

from __future__ import annotations

import json

from . import forgather, one_line_error


def test_a_world_size_that_cannot_split_the_shards_is_refused_before_torchrun(tiny_project):
    result = forgather("train", "--nproc-per-node", "3", "--no-accelerator", "--dry-run", cwd=tiny_project,
                       probe_torch=True)
    assert result.stderr.strip().endswith("TORCH_FREE")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[-2].startswith("forgather: error: data.shards is 8, which 3 ranks")
    assert "use 1, 2, 4, 8 ranks, or set data.shards to a multiple of 3 (e.g. 24)" in lines[-2]
    assert not (tiny_project / "output" / "config.yaml").exists()
    ok = forgather("train", "--nproc-per-node", "3", "--dist-mode", "dispatch", "--no-accelerator", "--dry-run",
                   cwd=tiny_project)
    assert ok.returncode == 0, ok.stderr  # dispatch: rank 0 alone reads the data


def test_resuming_with_another_shard_count_is_refused_before_torchrun(tiny_project):
    step = tiny_project / "output" / "checkpoints" / "step-000004"
    step.mkdir(parents=True)
    (step / "data_state.json").write_text(json.dumps({"format": 2, "shards": 4, "position": 8, "cursors": {}}))
    line = one_line_error(forgather("train", "--no-accelerator", cwd=tiny_project))
    assert "data.shards is 8 but" in line and "was saved with 4 shards" in line
    assert "--no-restore-dataset-state" in line
    assert forgather("train", "--no-accelerator", "--dry-run", "--no-restore-dataset-state",
                     cwd=tiny_project).returncode == 0
