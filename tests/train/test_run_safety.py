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
from .test_distributed_training import train


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


def _tokenizer_files(project: Path) -> list[Path]:
    return sorted((project.parent / "cache" / "tokenizers").glob("bpe-*.json"))


def test_a_resumed_run_keeps_its_checkpoints_tokenizer_when_the_data_changes(project):
    train(project, "--init-model", "--max-steps", "2")
    first = (project / "output" / "checkpoints" / "step-000002" / "tokenizer.json").read_bytes()
    corpus = project.parent / "corpus" / "docs.jsonl"
    corpus.write_text(corpus.read_text() + "".join(json.dumps({"text": f"brand new words zebra{i} quokka{i}"}) + "\n"
                                                    for i in range(60)))
    trained = _tokenizer_files(project)
    train(project, "--no-restore-dataset-state", "--max-steps", "4")
    assert _tokenizer_files(project) == trained  # no tokenizer trained on the new data
    assert (project / "output" / "checkpoints" / "step-000004" / "tokenizer.json").read_bytes() == first


def test_a_different_configured_tokenizer_on_resume_is_refused_unless_allowed(project, tmp_path):
    train(project, "--init-model", "--max-steps", "2")
    other = tmp_path / "other.json"
    from forgather.data.tokenizer import train_tokenizer

    train_tokenizer([f"some other corpus line {i} with words" for i in range(200)], 300, other)
    set_in_project(project, "data", "{tokenizer: {path: %s, vocab_size: 300}}" % other)
    refused = train(project, "--max-steps", "4", "--no-restore-dataset-state", check=False)
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert "is not the tokenizer step-000002 was trained with" in line and "--allow-tokenizer-change" in line
    allowed = train(project, "--max-steps", "4", "--no-restore-dataset-state", "--allow-tokenizer-change")
    assert "continuing with a different tokenizer" in allowed.stdout


@pytest.fixture
def long_run(project: Path) -> Path:
    set_in_project(project, "train", "max_steps: 100000")
    set_in_project(project, "checkpoint", "save_every: 1000")
    return project


def test_a_second_run_on_the_same_run_dir_is_refused_naming_the_holder(long_run):
    first = Training(long_run, "--init-model")
    first.wait_for(r"^step 2 ")
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
    run.wait_for(r"^step 3 ")
    run.proc.send_signal(sig)
    assert run.finish() == PREEMPTED, run.output[-3000:]
    step = int(re.search(r"stopped by signal at step (\d+)", run.output).group(1))
    assert (long_run / "output" / "checkpoints" / f"step-{step:06d}" / "manifest.json").is_file()
    assert "Traceback" not in run.output and "SignalException" not in run.output
    assert f"exit status {PREEMPTED}" in run.output.strip().splitlines()[-1]


def test_a_save_slower_than_torchruns_grace_still_completes_after_a_stop_signal(long_run, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_SAVE)  # every save of the ranks takes 35 s: > torchrun's 30 s
    run = Training(long_run, "--init-model", env={"PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    run.wait_for(r"^step 2 ")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(timeout=240) == PREEMPTED, run.output[-3000:]
    step = int(re.search(r"stopped by signal at step (\d+)", run.output).group(1))
    assert (long_run / "output" / "checkpoints" / f"step-{step:06d}" / "manifest.json").is_file()


SLOW_SAVE = """
import time
import forgather.checkpoint.save as save

_original = save.save_checkpoint


def slow(*args, **kwargs):
    time.sleep(35)
    return _original(*args, **kwargs)


save.save_checkpoint = slow
"""


def test_ranks_whose_launcher_is_killed_stop_after_saving_and_free_the_run_dir(long_run):
    run = Training(long_run, "--init-model", nproc=2)
    run.wait_for(r"^step 2 ")
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
