"""save_checkpoint writes the documented layout atomically; crashes and failures never expose a partial step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from forgather.errors import CheckpointError
import torch

from forgather.checkpoint import layout
from forgather.checkpoint.load import load_checkpoint
from forgather.checkpoint.manifest import find_latest, verify_manifest

from .util import adamw, save, tiny_model, train_steps

HERE = Path(__file__).resolve().parent


@pytest.fixture
def trained():
    model = tiny_model()
    optimizer = adamw(model)
    train_steps(model, optimizer)
    return model, optimizer


def test_single_process_save_writes_the_documented_layout(tmp_path, trained):
    path = save(tmp_path, 200, *trained, eval_loss=2.5)
    assert path == tmp_path / "step-000200"
    names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert names == {"model.safetensors", "config.json", "optimizer/shard-00000-of-00001.safetensors",
                     "optimizer/layout.json", "optimizer/param_groups.json", "trainer_state.json",
                     "data_state.json", "rng/rank-0.pt", "config.yaml", "manifest.json"}
    manifest = verify_manifest(path)
    assert manifest["world_size"] == 1 and manifest["optimizer_format"] == "full"
    assert json.loads((path / "trainer_state.json").read_text())["eval_loss"] == 2.5
    assert (path / "config.yaml").read_text() == "name: tiny\n"
    # Optimizer moments as safetensors keyed by parameter name (no pickle anywhere), groups as JSON.
    from safetensors import safe_open

    with safe_open(str(path / "optimizer" / "shard-00000-of-00001.safetensors"), framework="pt") as f:
        assert {k.rsplit(".", 1)[0] for k in f.keys()} == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert json.loads((path / "optimizer" / "param_groups.json").read_text())[0]["lr"] == 1e-2
    assert not list(tmp_path.glob("*.tmp"))


def test_leftover_temp_dirs_are_removed_by_the_next_save(tmp_path, trained):
    (tmp_path / "step-000300.tmp" / "rng").mkdir(parents=True)
    (tmp_path / "step-000300.tmp" / "model.safetensors").write_bytes(b"partial")
    save(tmp_path, 100, *trained)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000100"]


def test_saving_the_same_step_again_replaces_it(tmp_path, trained):
    save(tmp_path, 100, *trained, eval_loss=3.0)
    path = save(tmp_path, 100, *trained, eval_loss=2.0)
    verify_manifest(path)
    assert json.loads((path / "trainer_state.json").read_text())["eval_loss"] == 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["step-000100"]


def test_a_failing_model_writer_raises_and_publishes_nothing(tmp_path, trained):
    save(tmp_path, 100, *trained)

    def broken(state_dict, directory):
        raise OSError("disk full")

    with pytest.raises(CheckpointError, match="saving the step-200 checkpoint failed: disk full.*previous checkpoint"):
        save(tmp_path, 200, *trained, writer=broken)
    assert find_latest(tmp_path) == tmp_path / "step-000100"
    assert not (tmp_path / "step-000200").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["step-000100"]  # no partial .tmp dir left behind


def test_non_json_trainer_state_is_rejected_before_publishing(tmp_path, trained):
    from forgather.checkpoint.save import save_checkpoint
    from .util import write_model_files

    with pytest.raises(TypeError, match="trainer_state must be JSON-serialisable"):
        save_checkpoint(tmp_path, 100, *trained, trainer_state={"x": torch.zeros(1)}, data_state={},
                        config_text="", write_model_files=write_model_files)
    assert not layout.has_checkpoints(tmp_path)


def test_kill_9_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "kill_during_save.py"), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = []
        for line in proc.stdout:
            output.append(line)
            if line.strip() == "WRITING":
                break
        else:
            pytest.fail("saver exited before the second save:\n" + "".join(output))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert (tmp_path / "step-000200.tmp").is_dir() and not (tmp_path / "step-000200").exists()
    latest = find_latest(tmp_path)
    assert latest == tmp_path / "step-000100"
    model = tiny_model(seed=3)
    trainer_state, data_state = load_checkpoint(latest, model, adamw(model))
    assert trainer_state["step"] == 100 and data_state == {"position": 100}
    # The next save sweeps the partial directory away.
    save(tmp_path, 300, model, adamw(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000100", "step-000300"]


def test_a_background_write_equals_a_synchronous_save_byte_for_byte_while_training_goes_on(tmp_path, trained):
    from forgather.checkpoint.background import BackgroundWriter
    from forgather.checkpoint.save import save_checkpoint, stage_checkpoint, write_staged

    from .util import write_model_files

    model, optimizer = trained
    kwargs = dict(trainer_state={"step": 7}, data_state={"position": 7}, config_text="name: tiny\n",
                  write_model_files=write_model_files)
    sync_path = save_checkpoint(tmp_path / "sync", 7, model, optimizer, **kwargs)
    staged = stage_checkpoint(tmp_path / "async", 7, model, optimizer, **kwargs)
    writer = BackgroundWriter(world_size=1)
    writer.submit(lambda group: write_staged(staged, group))
    train_steps(model, optimizer, steps=3)  # training goes on while the files are written from the staged copy
    writer.wait()
    assert writer.failure() is None
    async_path = tmp_path / "async" / "step-000007"
    files = sorted(p.relative_to(sync_path).as_posix() for p in sync_path.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(async_path).as_posix() for p in async_path.rglob("*") if p.is_file())
    for name in files:
        if name == "manifest.json":  # only its creation time may differ
            a, b = (json.loads((p / name).read_text()) for p in (sync_path, async_path))
            assert a["files"] == b["files"]
        else:
            assert (sync_path / name).read_bytes() == (async_path / name).read_bytes(), name
