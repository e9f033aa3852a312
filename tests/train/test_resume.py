"""Resume through `forgather train`: exact losses after a clean stop, a kill -9, or a world-size change."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from forgather.agent import PREEMPTED

from ..conftest import set_in_project
from .processes import Training
from .test_distributed_training import TOL, losses, train


@pytest.fixture
def project(tiny_project: Path) -> Path:
    """Constant LR (so a run cut short follows the same schedule), a loss every step, checkpoints every 2."""
    for line in ("max_steps: 6", "log_every: 1", "eval_every: 0", "lr_schedule: constant", "warmup_steps: 0",
                 "learning_rate: 0.01", "batch_size: 2"):
        set_in_project(tiny_project, "train", line)
    set_in_project(tiny_project, "checkpoint", "save_every: 2")
    set_in_project(tiny_project, "checkpoint", "keep_last: 10")
    return tiny_project


def _fresh_metrics(project: Path) -> None:
    path = project / "output" / "runs" / "metrics.jsonl"
    if path.exists():
        path.unlink()


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_stopping_and_resuming_twice_gives_bit_identical_losses(project, mode):
    set_in_project(project, "dist", f"mode: {mode}")
    train(project, "--init-model", nproc=2)
    straight = losses(project)
    _fresh_metrics(project)
    train(project, "--init-model", "--overwrite", "--max-steps", "2", nproc=2)
    assert "training steps 2→4" in train(project, "--max-steps", "4", nproc=2).stdout
    assert "training steps 4→6" in train(project, "--max-steps", "6", nproc=2).stdout  # the run keeps its 4 otherwise
    resumed = losses(project)
    assert resumed == straight  # exact float equality, not a tolerance
    # FSDP2 checkpoints hold each rank's rows; the run ends with an export transformers loads, in every mode
    weights = "model" if mode == "fsdp2" else "model.safetensors"
    assert (project / "output" / "checkpoints" / "step-000006" / weights).exists()
    assert (project / "output" / "exports" / "step-000006" / "model.safetensors").is_file()


def test_two_ranks_then_one_rank_continue_the_same_stream(project):
    set_in_project(project, "train", "batch_size: 4")
    train(project, "--init-model")
    single = losses(project)
    _fresh_metrics(project)
    set_in_project(project, "train", "batch_size: 2")
    train(project, "--init-model", "--overwrite", "--max-steps", "3", nproc=2)
    # the same global batch on one rank; the run keeps --max-steps 3 from its last launch unless told otherwise
    assert "training steps 3→6" in train(project, "--batch-size", "4", "--max-steps", "6").stdout
    mixed = losses(project)
    assert sorted(mixed) == list(range(1, 7))
    for step in single:
        assert abs(mixed[step] - single[step]) <= TOL, (step, mixed[step], single[step])


def test_init_model_refuses_to_replace_checkpoints_without_overwrite(project):
    train(project, "--init-model", "--max-steps", "2")
    saved_config = (project / "output" / "config.yaml").read_bytes()
    refused = train(project, "--init-model", "--lr", "0.5", "--max-steps", "9", check=False)
    assert refused.returncode == 2
    assert "already holds checkpoints" in refused.stderr and "--overwrite" in refused.stderr
    assert "forgather.run" not in refused.stdout + refused.stderr  # refused before torchrun
    assert (project / "output" / "checkpoints" / "step-000002").is_dir()
    # the refused launch's settings were not written over the run's: a resume must not train with them
    assert (project / "output" / "config.yaml").read_bytes() == saved_config


def _straight_losses_then_kill_a_rank_after_step_4(project: Path, *args: str) -> tuple[dict, Training]:
    """40 uninterrupted steps' losses; then the same run started fresh (with `args`), one rank killed -9 as
    soon as the step-4 checkpoint is saved. Returns (losses, the killed run)."""
    set_in_project(project, "train", "max_steps: 400")
    train(project, "--init-model", "--max-steps", "40", "--save-strategy", "no", nproc=2)
    straight = losses(project)
    _fresh_metrics(project)
    run = Training(project, "--init-model", "--overwrite", "--max-steps", "40", *args, nproc=2)
    run.wait_for(r"saved checkpoint .*step-000004")
    ranks = run.ranks()
    assert len(ranks) == 2, "rank processes not found"
    ranks[-1].kill()
    return straight, run


def test_kill_9_of_a_rank_then_train_resumes_with_identical_losses(project):
    straight, run = _straight_losses_then_kill_a_rank_after_step_4(project)
    assert run.finish(timeout=120) != 0  # the failed rank's status, not success

    output = train(project, "--max-steps", "40", nproc=2).stdout
    started = re.search(r"training steps (\d+)→40", output)
    assert started and int(started.group(1)) >= 4, output[-2000:]
    resumed = losses(project)
    assert {s: resumed[s] for s in straight} == straight


def test_sigterm_saves_a_checkpoint_at_the_current_step_and_exits_preempted(project):
    set_in_project(project, "train", "max_steps: 100000")
    set_in_project(project, "checkpoint", "save_every: 1000")
    run = Training(project, "--init-model", nproc=2)
    run.wait_for(r"^step 3/")
    run.proc.send_signal(signal.SIGTERM)  # the launcher (torchrun's agent) passes it to the ranks
    assert run.finish(timeout=120) == PREEMPTED, run.output[-3000:]
    stopped = re.search(r"stopped by signal at step (\d+)", run.output)
    assert stopped, run.output[-3000:]
    step = int(stopped.group(1))
    assert (project / "output" / "checkpoints" / f"step-{step:06d}" / "manifest.json").is_file()
    assert f"training steps {step}→" in train(project, "--max-steps", str(step + 1), nproc=2).stdout


def test_sigterm_to_one_rank_only_also_exits_preempted(project):
    """A scheduler or a user may signal a rank process, not the launcher: the job stopped early all the same,
    and must not report success (a requeueing scheduler would drop it)."""
    set_in_project(project, "train", "max_steps: 100000")
    set_in_project(project, "checkpoint", "save_every: 1000")
    run = Training(project, "--init-model", nproc=2)
    run.wait_for(r"^step 3/")
    run.ranks()[-1].send_signal(signal.SIGTERM)
    assert run.finish(timeout=120) == PREEMPTED, run.output[-3000:]
    assert re.search(r"stopped by signal at step \d+", run.output) and "exit status 75" in run.output


def test_elastic_restart_after_kill_9_resumes_from_the_latest_checkpoint_and_finishes(project):
    # --init-model --overwrite on the first attempt must not wipe what it saved when torchrun restarts it.
    straight, run = _straight_losses_then_kill_a_rank_after_step_4(project, "--", "--max-restarts", "1")
    assert run.finish(timeout=180) == 0, run.output[-3000:]  # the restarted workers finished the job
    output = run.output
    assert "worker restart 1 after a failure" in output
    started = re.findall(r"training steps (\d+)→40", output)
    assert len(started) == 2 and started[0] == "0" and int(started[1]) >= 4, output[-3000:]
    resumed = losses(project)
    assert {s: resumed[s] for s in straight} == straight


def test_a_token_budget_counts_the_tokens_already_trained_when_the_batch_changes(project):
    from .test_distributed_training import metrics

    train(project, "--init-model", "--max-tokens", "512")  # 4 steps of 2 x 64 tokens
    resumed = train(project, "--max-tokens", "1024", "--batch-size", "4")  # 512 left, 256 a step: 2 more steps
    assert "training steps 4→6" in resumed.stdout  # it said 4→4: 1024 / 256, as if nothing had been trained
    assert metrics(project)[6]["tokens"] == 1024
