"""load_checkpoint restores exactly what was saved, refuses damaged checkpoints, and crosses DDP/FSDP2/world sizes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from forgather.checkpoint.load import load_checkpoint
from forgather.errors import CheckpointError

from .test_manifest import flip_byte
from .util import adamw, flat_optimizer_state, save, tiny_model, train_steps

HERE = Path(__file__).resolve().parent


def assert_same_model(expected: dict, model: torch.nn.Module) -> None:
    actual = model.state_dict()
    assert expected.keys() == actual.keys()
    for key, tensor in expected.items():
        assert torch.equal(tensor, actual[key]), key


def test_round_trip_restores_model_optimizer_rng_and_state(tmp_path):
    model = tiny_model()
    optimizer = adamw(model)
    train_steps(model, optimizer)
    path = save(tmp_path, 200, model, optimizer, eval_loss=1.25)
    expected_torch, expected_python, expected_numpy = torch.rand(4), random.random(), np.random.rand()

    fresh = tiny_model(seed=5)
    fresh_optimizer = adamw(fresh)
    trainer_state, data_state = load_checkpoint(path, fresh, fresh_optimizer)

    # The RNG streams continue from the save point.
    assert torch.equal(torch.rand(4), expected_torch)
    assert random.random() == expected_python and np.random.rand() == expected_numpy
    assert trainer_state == {"step": 200, "tokens": 6400, "eval_loss": 1.25, "loss": 1.5}
    assert data_state == {"position": 200}
    assert_same_model(model.state_dict(), fresh)
    saved, restored = flat_optimizer_state(optimizer), flat_optimizer_state(fresh_optimizer)
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    # Training continues identically from the restored state.
    train_steps(model, optimizer, seed=9)
    train_steps(fresh, fresh_optimizer, seed=9)
    assert_same_model(model.state_dict(), fresh)



def test_sharded_safetensors_with_an_index_are_read_by_default(tmp_path):
    def sharded_writer(state_dict, directory):
        from safetensors.torch import save_file

        weight_map = {}
        for index, (key, tensor) in enumerate(state_dict.items()):
            shard = f"model-{index % 2 + 1:05d}-of-00002.safetensors"
            weight_map[key] = shard
        for shard in set(weight_map.values()):
            save_file({k: state_dict[k].contiguous() for k, s in weight_map.items() if s == shard}, str(directory / shard))
        (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    model = tiny_model()
    path = save(tmp_path, 100, model, adamw(model), writer=sharded_writer)
    assert not (path / "model.safetensors").exists()
    fresh = tiny_model(seed=4)
    load_checkpoint(path, fresh, adamw(fresh))
    assert_same_model(model.state_dict(), fresh)

def test_loading_a_corrupted_checkpoint_raises_naming_the_file(tmp_path):
    model = tiny_model()
    optimizer = adamw(model)
    path = save(tmp_path, 100, model, optimizer)
    flip_byte(path / "model.safetensors")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 mismatch"):
        load_checkpoint(path, model, optimizer)
    assert_same_model(before, model)  # nothing was loaded


def test_loading_an_unsealed_checkpoint_raises(tmp_path):
    model = tiny_model()
    path = save(tmp_path, 100, model, adamw(model))
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json: missing"):
        load_checkpoint(path, model, adamw(model))


def test_fsdp2_checkpoint_reloads_into_fsdp2_ddp_and_a_single_process(tmp_path):
    """torchrun, 2 gloo ranks: FSDP2 -> FSDP2 (+RNG), FSDP2 -> DDP -> FSDP2; then FSDP2 (2 shards) -> 1 process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(HERE / "dist_roundtrip.py"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "rank 0 OK" in result.stdout and "rank 1 OK" in result.stdout

    expected = torch.load(tmp_path / "expected.pt", weights_only=True)
    model = tiny_model(seed=11)
    optimizer = adamw(model)
    trainer_state, _ = load_checkpoint(tmp_path / "step-000100", model, optimizer)
    assert trainer_state["step"] == 100
    assert_same_model(expected["model"], model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    restored = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
    for fqn, state in expected["optim"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored["state"][fqn][name])), (fqn, name)
    assert restored["param_groups"][0]["lr"] == expected["optim"]["param_groups"][0]["lr"]

    # Saved by 2 ranks, resumed by 1: the RNG is reseeded from (step, rank), not copied from another rank.
    from forgather.checkpoint.rng import reseed_rng

    after_load = torch.rand(4)
    reseed_rng(100, 0)
    assert torch.equal(after_load, torch.rand(4))


def test_a_crafted_pickle_in_a_checkpoint_is_never_unpickled(tmp_path):
    """A DCP-style optimizer/.metadata pickle that would run os.system is ignored: nothing is unpickled."""
    import pickle

    from forgather.checkpoint.manifest import write_manifest

    model = tiny_model()
    optimizer = adamw(model)
    path = save(tmp_path, 100, model, optimizer)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (path / "optimizer" / ".metadata").write_bytes(pickle.dumps(Exploit()))
    (path / "manifest.json").unlink()
    write_manifest(path, 100, world_size=1, optimizer_format="full")  # the crafted file is even listed as valid
    fresh = tiny_model(seed=3)
    load_checkpoint(path, fresh, adamw(fresh))
    assert not marker.exists()
    assert_same_model(model.state_dict(), fresh)


def test_a_crafted_rng_file_is_one_line_naming_it_and_never_unpickled(tmp_path):
    from forgather.checkpoint.layout import rng_file
    from forgather.checkpoint.manifest import write_manifest

    model = tiny_model()
    path = save(tmp_path, 100, model, adamw(model))
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"python": Exploit()}, path / rng_file(0))
    (path / "manifest.json").unlink()
    write_manifest(path, 100, world_size=1, optimizer_format="full")  # hashes that match the crafted file
    fresh = tiny_model(seed=3)
    with pytest.raises(CheckpointError) as caught:  # it was torch's UnpicklingError, advising weights_only=False
        load_checkpoint(path, fresh, adamw(fresh))
    message = str(caught.value)
    assert "rank-0.pt holds objects other than tensors and numbers" in message and "weights_only" not in message
    assert not marker.exists()
