"""Run under `torchrun --nproc-per-node 2` (gloo, CPU): save under FSDP2, reload into FSDP2 and DDP, and back.

Writes ROOT/expected.pt (full weights + optimizer state at save time) for the single-process half of the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from forgather.checkpoint.load import load_checkpoint  # noqa: E402
from forgather.lifeline import exit_rank  # noqa: E402
from tests.checkpoint.util import adamw, save, tiny_model, train_steps  # noqa: E402

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def fsdp_model(mesh, seed: int):
    model = tiny_model(seed)
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def full_state(model, optimizer) -> dict:
    """Full weights and optimizer state (collective; populated on rank 0)."""
    return {"model": get_model_state_dict(model, options=FULL), "optim": get_optimizer_state_dict(model, optimizer, options=FULL)}


def assert_same(expected: dict, actual: dict, what: str) -> None:
    if dist.get_rank() != 0:
        return
    for key, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][key]), f"{what}: weight {key} differs"
    for fqn, state in expected["optim"]["state"].items():
        for name, value in state.items():
            got = actual["optim"]["state"][fqn][name]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(got)), f"{what}: optimizer {fqn}.{name} differs"
    assert [g["lr"] for g in expected["optim"]["param_groups"]] == [g["lr"] for g in actual["optim"]["param_groups"]]


def main(root: Path) -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = fsdp_model(mesh, 0)
    optimizer = adamw(model)
    train_steps(model, optimizer)
    torch.manual_seed(100 + dist.get_rank())
    path = save(root, 100, model, optimizer, eval_loss=1.0)
    after_save = torch.rand(3)
    expected = full_state(model, optimizer)
    if dist.get_rank() == 0:
        torch.save(expected, root / "expected.pt")
        for part in ("model", "optimizer"):  # each rank's own rows, no gather, no pickle
            files = sorted(p.name for p in (path / part).iterdir())
            assert files[-2:] == ["shard-00000-of-00002.safetensors", "shard-00001-of-00002.safetensors"], files

    # (a) FSDP2 -> FSDP2, same world size: exact weights, optimizer and this rank's RNG stream; each rank reads
    # only its own rows of every tensor.
    model_a = fsdp_model(mesh, 7)
    optimizer_a = adamw(model_a)
    from forgather.checkpoint.tensorstore import TensorStore

    requested, rows = [], TensorStore.rows
    TensorStore.rows = lambda self, name, start=0, stop=None: requested.append((name, start, stop)) or rows(
        self, name, start, stop)
    load_checkpoint(path, model_a, optimizer_a)
    TensorStore.rows = rows
    for name, start, stop in requested:
        if stop is not None:
            assert stop - start <= 8, f"rank {dist.get_rank()} read rows {start}..{stop} of {name}, more than its half"
    assert torch.equal(torch.rand(3), after_save), "RNG stream not restored"
    assert_same(expected, full_state(model_a, optimizer_a), "fsdp2->fsdp2")

    # (b) FSDP2 -> DDP, then DDP (one full file of each) -> FSDP2.
    ddp = DistributedDataParallel(tiny_model(8))
    optimizer_b = adamw(ddp)
    load_checkpoint(path, ddp, optimizer_b)
    assert_same(expected, full_state(ddp, optimizer_b), "fsdp2->ddp")
    path_b = save(root, 200, ddp, optimizer_b)
    if dist.get_rank() == 0:
        assert (path_b / "optimizer" / "shard-00000-of-00001.safetensors").is_file(), "DDP: one full file"
    model_c = fsdp_model(mesh, 9)
    optimizer_c = adamw(model_c)
    load_checkpoint(path_b, model_c, optimizer_c)
    assert_same(expected, full_state(model_c, optimizer_c), "ddp->fsdp2")
    print(f"rank {dist.get_rank()} OK", flush=True)
    # Both ranks done with every collective before either tears gloo down: a rank destroying its group while
    # the peer's last op is in flight was seen to abort ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    exit_rank(0)  # not the interpreter's teardown, which gloo's threads can abort (see exit_rank)
