"""A run is never lost, mixed or silently changed: damaged checkpoints, a changed tokenizer, two writers,
preemption, a killed launcher."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import psutil
import pytest

from forgather.agent import PREEMPTED

from ..conftest import set_in_project
from .processes import Training
from .test_distributed_training import losses, train


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
    assert refused.returncode == 2, refused.stdout[-2000:]  # the rank's own status, not torchrun's 1
    line = refused.stderr.strip().splitlines()[-1]  # the rank's line last, no torchrun report after it
    assert "ChildFailedError" not in refused.stderr and "Traceback" not in refused.stderr
    assert "no checkpoint in" in line and "step-000004:" in line and "step-000002:" in line
    assert "sha256 mismatch" in line and "--init-model --overwrite" in line
    assert sorted(p.name for p in root.iterdir()) == before  # nothing deleted, nothing new
    assert "starting from initialised weights" not in refused.stdout


def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_resumed(project):
    train(project, "--init-model")
    _flip_a_byte(project / "output" / "checkpoints" / "step-000004" / "model.safetensors")
    resumed = train(project, "--max-steps", "5")
    assert "skipping damaged checkpoint step-000004" in resumed.stdout and "training steps 2→5" in resumed.stdout


def test_a_damaged_checkpoint_never_counts_as_one_of_the_last_kept(project):
    set_in_project(project, "checkpoint", "keep_last: 2")
    train(project, "--init-model", "--max-steps", "3")  # step-000002, and step-000003 at the end
    _flip_a_byte(project / "output" / "checkpoints" / "step-000003" / "model.safetensors")
    resumed = train(project, "--max-steps", "4")  # resumes from step 2 and saves step 4
    assert "skipping damaged checkpoint step-000003" in resumed.stdout
    kept = sorted(p.name for p in (project / "output" / "checkpoints").iterdir())
    assert kept == ["step-000002", "step-000003", "step-000004"]  # two sound ones, and the damaged one, untouched


def _tokenizer_files(project: Path) -> list[Path]:
    return sorted((project.parent / "cache" / "tokenizers").glob("bpe-*.json"))


def test_a_resumed_run_keeps_its_checkpoints_tokenizer_when_the_data_changes(project):
    train(project, "--init-model", "--max-steps", "2")
    first = (project / "output" / "checkpoints" / "step-000002" / "tokenizer.json").read_bytes()
    corpus = project.parent / "corpus" / "docs.jsonl"
    corpus.write_text(corpus.read_text() + "".join(json.dumps({"text": f"brand new words zebra{i} quokka{i}"}) + "\n"
                                                    for i in range(60)))
    trained = _tokenizer_files(project)
    resumed = train(project, "--no-restore-dataset-state", "--max-steps", "4")
    assert "the data stream starts again from its beginning" in resumed.stdout  # said nowhere before
    assert _tokenizer_files(project) == trained  # no tokenizer trained on the new data
    assert (project / "output" / "checkpoints" / "step-000004" / "tokenizer.json").read_bytes() == first


def test_a_different_configured_tokenizer_on_resume_is_refused_unless_allowed(project, tmp_path):
    train(project, "--init-model", "--max-steps", "2")
    other = tmp_path / "other.json"
    from forgather.data.tokenizer import train_tokenizer

    train_tokenizer([f"some other corpus line {i} with words" for i in range(200)], 300, other)
    set_in_project(project, "flags", "tokenizer: {key: data.tokenizer.path, type: path}")
    refused = train(project, "--max-steps", "4", "--no-restore-dataset-state", "--tokenizer", str(other), check=False)
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert "is not the tokenizer step-000002 was trained with" in line and "--allow-tokenizer-change" in line
    allowed = train(project, "--max-steps", "4", "--no-restore-dataset-state", "--tokenizer", str(other),
                    "--allow-tokenizer-change")
    assert "continuing with a different tokenizer" in allowed.stdout


@pytest.fixture
def long_run(project: Path) -> Path:
    set_in_project(project, "train", "max_steps: 100000")
    set_in_project(project, "checkpoint", "save_every: 1000")
    return project


def test_a_second_run_on_the_same_run_dir_is_refused_naming_the_holder(long_run):
    first = Training(long_run, "--init-model")
    first.wait_for(r"^step 2/")
    second = train(long_run, "--max-steps", "3", check=False)
    assert second.returncode == 2
    line = second.stderr.strip().splitlines()[-1]
    assert "is in use by pid" in line and "wait for that run to end" in line
    assert not (long_run / "output" / "checkpoints").exists()  # the second run touched nothing
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == PREEMPTED, first.output[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_the_current_step_and_exits_with_the_preempted_status(long_run, sig):
    run = Training(long_run, "--init-model", nproc=2)
    run.wait_for(r"^step 3/")
    run.proc.send_signal(sig)
    assert run.finish() == PREEMPTED, run.output[-3000:]
    step = int(re.search(r"stopped by signal at step (\d+)", run.output).group(1))
    assert (long_run / "output" / "checkpoints" / f"step-{step:06d}" / "manifest.json").is_file()
    assert "Traceback" not in run.output and "SignalException" not in run.output
    assert f"exit status {PREEMPTED}" in run.output.strip().splitlines()[-1]


def test_a_stop_signal_while_the_ranks_start_stops_the_run_at_once_not_at_its_end(long_run):
    run = Training(long_run, "--init-model")
    run.wait_for(r"forgather\.run: rank 0/1 ")  # the rank is up; its trainer does not yet take signals
    run.proc.send_signal(signal.SIGTERM)
    # It was killed by the default action (143, nothing said), or the request was lost and the run trained on.
    assert run.finish() == PREEMPTED, run.output[-3000:]
    step = int(re.search(r"stopped by signal at step (\d+)", run.output).group(1))
    assert step <= 2 and "Traceback" not in run.output


def test_a_save_slower_than_torchruns_grace_still_completes_after_a_stop_signal(long_run, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_SAVE)  # every save of the ranks takes 35 s: > torchrun's 30 s
    run = Training(long_run, "--init-model", env={"PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    run.wait_for(r"^step 2/")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(timeout=240) == PREEMPTED, run.output[-3000:]
    step = int(re.search(r"stopped by signal at step (\d+)", run.output).group(1))
    assert (long_run / "output" / "checkpoints" / f"step-{step:06d}" / "manifest.json").is_file()


SLOW_SAVE = """
import time
import forgather.checkpoint.save as save

_original = save.write_staged


def slow(*args, **kwargs):
    time.sleep(35)
    return _original(*args, **kwargs)


save.write_staged = slow
"""


def test_ranks_whose_launcher_is_killed_stop_after_saving_and_free_the_run_dir(long_run):
    run = Training(long_run, "--init-model", nproc=2)
    run.wait_for(r"^step 2/")
    ranks = run.ranks()
    assert len(ranks) == 2
    run.proc.kill()  # kill -9 of `forgather train` (the agent: the ranks' parent)
    gone, alive = psutil.wait_procs(ranks, timeout=90)
    assert not alive, "ranks kept running after their launcher died"
    saved = sorted((long_run / "output" / "checkpoints").glob("step-*"))
    assert saved and (saved[-1] / "manifest.json").is_file()  # they stopped like on SIGTERM: a checkpoint first
    # the lock the dead job held is no obstacle: a new run resumes from that checkpoint
    resumed = train(long_run, "--max-steps", str(int(saved[-1].name.split("-")[1]) + 1))
    assert "resuming from" in resumed.stdout


def _config(project: Path, step: int | None = None) -> dict:
    import yaml

    where = project / "output" / ("config.yaml" if step is None else f"checkpoints/step-{step:06d}/config.yaml")
    return yaml.safe_load(where.read_text())


def test_on_resume_the_runs_own_config_rules_and_flags_change_it_visibly(project):
    from .test_distributed_training import metrics

    set_in_project(project, "train", "lr_schedule: constant")
    train(project, "--init-model", "--max-steps", "2", "--batch-size", "4", "--lr", "0.01")
    set_in_project(project, "train", "weight_decay: 0.5")  # an edit of the project file after the start
    resumed = train(project, "--max-steps", "4", "--lr", "0.001")
    assert "resuming with train.learning_rate changed from 0.01 to 0.001 (--learning-rate)" in resumed.stderr
    assert "the run keeps its own settings where the project's files now say otherwise: train.batch_size 4 " \
           "(project: 2), train.weight_decay 0.1 (project: 0.5)" in resumed.stderr
    assert "256 tokens/step" in resumed.stdout  # --batch-size 4 from the first launch still holds (4 × 64)
    lrs = {step: r["lr"] for step, r in metrics(project).items() if "lr" in r}
    assert lrs[2] == pytest.approx(0.01) and lrs[3] == pytest.approx(0.001) and lrs[4] == pytest.approx(0.001)
    recorded = _config(project, 4)["train"]
    assert recorded["learning_rate"] == 0.001 and recorded["batch_size"] == 4 and recorded["weight_decay"] == 0.1


def test_flags_that_cannot_apply_to_a_run_are_one_line_before_torchrun(project):
    train(project, "--init-model", "--max-steps", "2")
    set_in_project(project, "flags", "model-config: {key: model.config, help: size}")
    (project.parent / "models" / "toy" / "wide.yaml").write_text("extends: base.yaml\nhidden_size: 128\n")
    model = train(project, "--model-config", "wide", check=False)
    assert model.returncode == 2 and "--model-config would change the model (hidden_size 64 → 128" in model.stderr
    set_in_project(project, "flags", "max-length: {key: data.block_size, type: int}")
    data = train(project, "--max-length", "32", check=False)
    assert data.returncode == 2 and "changes the data stream (data.block_size 64 → 32)" in data.stderr
    assert "--no-restore-dataset-state" in data.stderr.strip().splitlines()[-1]
    assert "forgather.run" not in model.stdout + data.stdout  # no rank was started


def _hooked_pythonpath(tmp_path: Path, code: str) -> str:
    """A PYTHONPATH whose sitecustomize.py runs `code` first in every Python process of a run (launcher, ranks)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(code)
    return f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"


def _launch_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("config.launch-*.yaml"))


def test_a_resume_refused_by_its_ranks_leaves_the_runs_settings_as_they_were(project):
    train(project, "--init-model", "--max-steps", "4")
    settings = (project / "output" / "config.yaml").read_bytes()
    (project / "junk.jsonl").write_text("{not json\n")  # passes the launcher's checks; the ranks cannot read it
    refused = train(project, "--max-steps", "6", "--lr", "0.5", "--no-restore-dataset-state", "--data",
                    str(project / "junk.jsonl"), check=False)
    assert refused.returncode == 2 and "[rank 0] error" in refused.stderr.strip().splitlines()[-1]
    assert (project / "output" / "config.yaml").read_bytes() == settings  # it wrote max_steps 3 and lr 0.5 there
    resumed = train(project, "--max-steps", "5")
    assert "training steps 4→5" in resumed.stdout and "learning_rate: 0.5" not in resumed.stdout


HOLD_THE_RANKS = """
import os, time
import forgather.config as config

_read = config.read_config

def held_read(path):  # a rank (torchrun sets LOCAL_RANK) waits before it reads its config
    gate = os.environ.get("TEST_RANKS_WAIT_FOR")
    if gate and "LOCAL_RANK" in os.environ:
        while not os.path.exists(gate):
            time.sleep(0.05)
    if os.environ.get("TEST_RANKS_FAIL") and "LOCAL_RANK" in os.environ:
        os._exit(9)
    return _read(path)

config.read_config = held_read
"""


def test_two_launches_at_once_never_train_each_others_settings(project, tmp_path):
    train(project, "--init-model", "--max-steps", "2")
    gate = tmp_path / "gate"
    path = _hooked_pythonpath(tmp_path, HOLD_THE_RANKS)
    first = Training(project, "--max-steps", "3", env={"PYTHONPATH": path, "TEST_RANKS_WAIT_FOR": str(gate)})
    first.wait_for(r"^forgather: .*forgather\.agent")  # launched: its ranks wait before they read their config
    # A second launch writes its settings while the first one's ranks are starting (its own ranks then fail).
    second = Training(project, "--max-steps", "3", "--lr", "0.5", env={"PYTHONPATH": path, "TEST_RANKS_FAIL": "1"})
    assert second.finish() != 0
    gate.touch()
    assert first.finish() == 0, first.output[-3000:]
    assert "learning_rate: 0.5" not in (project / "output" / "config.yaml").read_text()
    assert "lr 5.000e-01" not in first.output  # it trained on the first launch's settings


def test_a_dry_run_changes_nothing_in_an_existing_run(project):
    train(project, "--init-model", "--max-steps", "2")
    before = (project / "output" / "config.yaml").read_bytes()
    dry = train(project, "--dry-run", "--lr", "5", "--batch-size", "7")
    assert "left as it is" in dry.stdout
    over = train(project, "--dry-run", "--init-model", "--overwrite", "--lr", "5")  # a start-over's command
    assert "which only `forgather train` without --dry-run writes" in over.stdout
    assert (project / "output" / "config.yaml").read_bytes() == before
    assert not _launch_files(project / "output")


def test_starting_over_archives_the_old_runs_logs(project):
    from .test_distributed_training import metrics

    train(project, "--init-model", "--max-steps", "4")
    train(project, "--init-model", "--overwrite", "--max-steps", "2")
    assert sorted(metrics(project)) == [1, 2]  # only the new run's steps
    archived = list((project / "output" / "archive").glob("runs-*/metrics.jsonl"))
    assert len(archived) == 1 and '"step": 4' in archived[0].read_text()
    exports = project / "output" / "exports"  # the new run's export only; the old one is archived beside its logs
    assert sorted(p.name for p in exports.iterdir()) == ["step-000002"]
    assert [p.name for p in (project / "output" / "archive").glob("exports-*/*")] == ["step-000004"]


def test_a_start_over_that_fails_to_start_leaves_the_old_run_whole(project):
    train(project, "--init-model", "--max-steps", "4")
    out = project / "output"
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    settings = (out / "config.yaml").read_bytes()
    (project / "empty.jsonl").write_text("")
    failed = train(project, "--init-model", "--overwrite", "--data", str(project / "empty.jsonl"), nproc=2,
                   check=False)
    assert failed.returncode == 2 and "has no documents" in failed.stderr.strip().splitlines()[-1]
    assert failed.stderr.count("has no documents") == 1  # both ranks fail alike: one line, not one per rank
    assert "Traceback" not in failed.stderr  # a rank left waiting on the failed one printed gloo's traceback
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # nothing deleted
    assert not (out / "archive").exists() and (out / "runs").is_dir() and (out / "exports" / "step-000004").is_dir()
    assert (out / "config.yaml").read_bytes() == settings  # the refused start's settings are not the run's
    resumed = train(project, "--max-steps", "6", nproc=2)  # reads the old run's data, not the empty file
    assert "resuming from" in resumed.stdout and sorted(losses(project)) == [1, 2, 3, 4, 5, 6]
    assert not _launch_files(out)  # the failed start's file went when the resume's settings became the run's


FAIL_BEFORE_REPLACING = """
import os

if os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":  # the first attempt only
    from forgather.train.checkpointing import RunCheckpointer

    def failing(self):
        raise RuntimeError("injected: the first attempt fails before it replaces the previous run")

    RunCheckpointer.clear_previous_run = failing
"""


def test_a_restarted_start_over_starts_over_when_the_first_attempt_failed_before_replacing(project, tmp_path,
                                                                                          monkeypatch):
    train(project, "--init-model", "--max-steps", "4")
    (tmp_path / "sitecustomize.py").write_text(FAIL_BEFORE_REPLACING)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    run = train(project, "--init-model", "--overwrite", "--max-steps", "2", "--lr", "0.002",
                "--", "--max-restarts", "1")
    assert "injected" in run.stderr and "starting over again" in run.stdout
    out = project / "output"  # the restart was the start-over, not a resume of the run it replaces
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]
    assert sorted(losses(project)) == [1, 2] and len(list((out / "archive").glob("runs-*"))) == 1
    assert "learning_rate: 0.002" in (out / "config.yaml").read_text() and not _launch_files(out)


FULL_DISK = """
import resource, signal
import forgather.checkpoint.save as save

_original = save.write_staged
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so an oversized write fails with an error, not a dead process


def full(*args, **kwargs):  # from the first checkpoint on, no file may grow past 64 KiB: as a full disk refuses
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return _original(*args, **kwargs)


save.write_staged = full
"""


def test_a_failed_save_is_one_line_leaves_no_partial_checkpoint_and_keeps_the_previous(project, tmp_path):
    env = {**os.environ, "PYTHONPATH": _hooked_pythonpath(tmp_path, FULL_DISK)}
    import subprocess
    import sys

    failed = subprocess.run([sys.executable, "-m", "forgather.cli", "train", "--no-accelerator", "--init-model"],
                            cwd=project, capture_output=True, text=True, timeout=240, env=env)
    assert failed.returncode == 2, failed.stderr[-3000:]
    line = failed.stderr.strip().splitlines()[-1]
    assert "saving the step-2 checkpoint failed:" in line and "File too large" in line
    assert "Traceback" not in failed.stderr
    assert not list((project / "output" / "checkpoints").glob("*"))  # neither step-000002 nor a .tmp dir


NAN_AT_STEP_3 = """
import forgather.train.step as step

_original, calls = step.forward_loss, [0]


def poisoned(model, batch):  # the third step's loss (and so its gradients) is NaN
    calls[0] += 1
    loss = _original(model, batch)
    return loss * float("nan") if calls[0] == 3 else loss


step.forward_loss = poisoned
"""


def test_a_nan_step_never_reaches_a_checkpoint(project, tmp_path):
    import subprocess
    import sys

    set_in_project(project, "train", "log_every: 10")  # the NaN is found by the read before the step-4 save
    (tmp_path / "sitecustomize.py").write_text(NAN_AT_STEP_3)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    failed = subprocess.run([sys.executable, "-m", "forgather.cli", "train", "--no-accelerator", "--init-model",
                             "--max-steps", "8"], cwd=project, capture_output=True, text=True, timeout=240, env=env)
    assert failed.returncode == 3, failed.stderr[-3000:]  # diverged
    assert "is nan at step 3" in failed.stderr.strip().splitlines()[-1]
    saved = sorted(p.name for p in (project / "output" / "checkpoints").iterdir())
    assert saved == ["step-000002"]
    state = json.loads((project / "output" / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert state["weights_finite"] is True


def test_non_finite_weights_are_never_saved():
    import torch

    from forgather.train.checkpointing import weights_are_finite

    model = torch.nn.Linear(4, 4)
    assert weights_are_finite(model)
    with torch.no_grad():
        model.weight[1, 2] = float("inf")
    assert not weights_are_finite(model)


SLOW_PUBLISH = """
import os, time
import forgather.checkpoint.save as save

_original = save._publish


def slow(staged, *args, **kwargs):  # the step-4 save writes its files, then lingers past the test's end
    if staged.step == 4:
        os.write(1, b"WRITING step-4 in the background\\n")
        time.sleep(600)
    return _original(staged, *args, **kwargs)


save._publish = slow
"""


def test_a_kill_during_a_background_write_leaves_the_previous_checkpoint_latest(long_run, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SLOW_PUBLISH)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    set_in_project(long_run, "checkpoint", "save_every: 2")
    run = Training(long_run, "--init-model", env=env)
    try:
        run.wait_for(r"WRITING step-4 in the background")
        # Training goes on while the save is being written: step 5 runs although step 4's save never publishes.
        # (Under load the loop may reach step 5, or block at step 6's save, before the writer prints: either order.)
        if not any(line.startswith("step 5/") for line in run.lines):
            run.wait_for(r"^step 5/")
    finally:  # kill -9 of the launcher and its rank, also when the run did not get that far
        ranks = run.ranks()
        run.proc.kill()
        for rank in ranks:
            rank.kill()
        run.finish()
    root = long_run / "output" / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*") if p.is_dir()) == ["step-000002", "step-000004.tmp"]
    resumed = train(long_run, "--max-steps", "3")
    assert f"resuming from {root / 'step-000002'}" in resumed.stdout
    assert not (root / "step-000004.tmp").exists()  # the next save swept the leftover


FAIL_TWO_WAYS = """
import os

attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
if attempt is not None:  # a rank: the first attempt fails with an error of its own, the restart crashes
    import forgather.train.assemble as assemble
    from forgather.errors import DataError

    def failing(config, info):
        if attempt == "0":
            raise DataError("injected: the first attempt's error")
        raise RuntimeError("injected: the restart's crash")

    assemble.train = failing
"""


def test_a_restarted_ranks_outcome_is_never_an_earlier_attempts(project, tmp_path, monkeypatch):
    (tmp_path / "sitecustomize.py").write_text(FAIL_TWO_WAYS)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    failed = train(project, "--init-model", "--", "--max-restarts", "1", check=False)
    assert failed.returncode == 1 and "injected: the restart's crash" in failed.stderr
    # The first attempt's line was said when it happened (a restart followed), never again as the job's cause.
    assert failed.stderr.count("injected: the first attempt's error") == 1
    assert "first attempt" not in failed.stderr.strip().splitlines()[-1]


def test_a_slurm_requeue_of_a_start_over_resumes_it_once_it_replaced_the_run_and_starts_over_until_then(
        project, monkeypatch):
    out = project / "output"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # a requeued job keeps its id (and its launch file's name)
    train(project, "--init-model", "--overwrite", "--max-steps", "2")  # the job's first start
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the job requeued after it saved: same flags again
    requeued = train(project, "--init-model", "--overwrite", "--max-steps", "4")
    assert "SLURM requeue 1: this job's --init-model already started the run" in requeued.stderr
    assert "resuming from" in requeued.stdout and sorted(losses(project)) == [1, 2, 3, 4]
    assert not (out / "archive").exists()
    (project / "empty.jsonl").write_text("")  # a new job whose first start fails before it replaces the run
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "4243")
    train(project, "--init-model", "--overwrite", "--data", str(project / "empty.jsonl"), check=False)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # its requeue starts over: never resumes the run it replaces
    again = train(project, "--init-model", "--overwrite", "--max-steps", "2")
    assert "SLURM requeue" not in again.stderr and sorted(losses(project)) == [1, 2]
    assert len(list((out / "archive").glob("runs-*"))) == 1


def test_a_resume_at_its_budget_changes_nothing_and_one_past_it_is_refused(project):
    train(project, "--init-model")  # max_steps 4
    saved = project / "output" / "checkpoints" / "step-000004" / "manifest.json"
    before = saved.stat().st_ino, saved.stat().st_mtime_ns
    again = train(project)
    assert "the run is at step 4 of 4: nothing to train" in again.stdout
    assert (saved.stat().st_ino, saved.stat().st_mtime_ns) == before  # not saved (nor exported) again
    behind = train(project, "--max-steps", "2", check=False)
    assert behind.returncode == 2 and "the run is at step 4, past the 2 steps" in behind.stderr.strip().splitlines()[-1]
    assert "forgather.run" not in behind.stdout + behind.stderr  # said before torchrun started
    assert not _launch_files(project / "output")  # refused launches leave no config of their own behind


def test_a_budget_of_no_steps_says_there_is_nothing_to_train(project):
    nothing = train(project, "--init-model", "--max-steps", "0")  # it printed "training steps 0→0" and exited
    assert "the run is at step 0 of 0: nothing to train" in nothing.stdout
    assert not (project / "output" / "checkpoints").exists()


SIGNAL_THE_LAUNCHER = """
import os, signal
import forgather.config as config

_write = config.write_config

def signalled_write(*args, **kwargs):  # the launcher is preempted while it prepares the launch
    if "LOCAL_RANK" not in os.environ:
        os.kill(os.getpid(), signal.SIGTERM)
    return _write(*args, **kwargs)

config.write_config = signalled_write
"""


def test_a_stop_signal_while_the_launcher_prepares_stops_the_launch_before_anything_starts(project, tmp_path):
    run = Training(project, "--init-model", env={"PYTHONPATH": _hooked_pythonpath(tmp_path, SIGNAL_THE_LAUNCHER)})
    assert run.finish() == PREEMPTED, run.output[-3000:]  # it was killed: 143, nothing said
    assert "stopped by SIGTERM before the run started; nothing changed" in run.output
    assert "forgather.run" not in run.output and not _launch_files(project / "output")
