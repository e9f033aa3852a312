"""Run under torchrun with 4 gloo ranks. Meta-device init under FSDP2 and HSDP gives the eager init's weights;
HSDP 2×2, FSDP2 with sharded gradient accumulation, and selective activation checkpointing train like DDP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from forgather.dist.parallelize import apply_activation_checkpointing, wrap_ddp, wrap_fsdp2  # noqa: E402
from forgather.dist.setup import DistInfo  # noqa: E402
from forgather.lifeline import exit_rank  # noqa: E402
from forgather.models.spec import ModelSpec  # noqa: E402
from forgather.models.transformer import build_model, materialize  # noqa: E402
from forgather.train.precision import fsdp_mixed_precision, plan_precision  # noqa: E402
from forgather.train.step import train_step  # noqa: E402

SPEC = ModelSpec.from_dict({"architecture": "llama", "vocab_size": 97, "hidden_size": 32, "num_layers": 4,
                            "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64})
FULL = StateDictOptions(full_state_dict=True, cpu_offload=False)
POLICY = fsdp_mixed_precision(plan_precision("fp32", "cpu"))


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def eager():
    torch.manual_seed(5)
    return build_model(SPEC, "sdpa", device="cpu")


def sharded(info: DistInfo, shard_size: int, ac_every: int = 0):
    torch.manual_seed(5)
    model = build_model(SPEC, "sdpa", device="meta")
    if ac_every:
        apply_activation_checkpointing(model, ac_every)
    wrap_fsdp2(model, info, POLICY, shard_size)
    return materialize(model, "cpu")


def full(model) -> dict:
    return get_model_state_dict(model, options=FULL)


def losses(model, accum: int, sync_every: bool, world: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = []
    for step in range(3):
        g = torch.Generator().manual_seed(100 + step * world + dist.get_rank())
        micro = []
        for _ in range(accum):
            ids = torch.randint(0, 97, (2, 16), generator=g)
            micro.append({"input_ids": ids, "labels": ids})
        loss, _ = train_step(model, micro, world, None, sync_every)
        if sync_every and accum > 1 and step == 0:  # after a micro-step the gradients are already sharded
            grads = [p.grad for p in model.parameters()]
            assert all(hasattr(grad, "to_local") for grad in grads), "accumulated gradients should stay sharded"
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out.append(float(loss))
    return out


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    info = DistInfo(rank, rank, world, torch.device("cpu"), "gloo")
    reference = full(eager())
    for name, shard_size in (("fsdp2", 0), ("hsdp", 2)):
        got = full(sharded(info, shard_size))
        for key, value in reference.items():
            assert torch.equal(value, got[key]), f"{name}: meta-device init differs from eager init at {key}"
    baseline = losses(wrap_ddp(eager(), info), accum=2, sync_every=False, world=world)
    runs = {"hsdp 2x2": losses(sharded(info, 2), 2, False, world),
            "fsdp2 sharded grad accum": losses(sharded(info, 0), 2, True, world),
            "fsdp2 ac every 2": losses(sharded(info, 0, ac_every=2), 2, False, world)}
    for name, got in runs.items():
        assert all(abs(a - b) < 1e-5 for a, b in zip(got, baseline)), f"{name}: {got} vs ddp {baseline}"
    say(f"SCALE_OK rank {rank}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    exit_rank(0)  # not the interpreter's teardown, which gloo's threads can abort (see exit_rank)
