"""Apply activation checkpointing, torch.compile and DDP / FSDP2 to a model from the outside.

The model only promises a `layers` ModuleList of transformer blocks; it never knows how it is
parallelised (the torchtitan split between model.py and parallelize.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .setup import DistInfo


def apply_activation_checkpointing(model: nn.Module, every: int = 1) -> None:
    """Recompute the activations of every `every`-th block in backward instead of storing them (1: all blocks;
    2: half of them, trading half the memory saved for half the recompute)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for index, block in enumerate(model.layers):
        if index % every == 0:
            model.layers[index] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_compile(model: nn.Module, fullgraph: bool) -> None:
    """Compile each block separately: identical blocks share one graph, and compile time stays flat in depth.

    fullgraph=True where the block is known to compile whole: a graph break is then an error at the first
    step instead of a silent split into several graphs with Python in between.
    """
    for index, block in enumerate(model.layers):
        model.layers[index] = torch.compile(block, fullgraph=fullgraph)


def graph_breaks() -> dict[str, int]:
    """Graph breaks torch.compile has met in this process so far, by reason (empty when none)."""
    from torch._dynamo.utils import counters

    return dict(counters["graph_break"])


def describe_graph_breaks(breaks: dict[str, int]) -> str:
    """One line: how many graph breaks, and the most frequent reason."""
    if not breaks:
        return "compile: 0 graph breaks"
    reason, count = max(breaks.items(), key=lambda item: item[1])
    first_line = reason.strip().splitlines()[0][:200]
    return f"compile: {sum(breaks.values())} graph break(s); most often ({count}x): {first_line}"


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel over all ranks (a no-op wrapper is skipped for one process)."""
    if info.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def fsdp_mesh(info: DistInfo, shard_size: int) -> Any:
    """The device mesh FSDP2 shards over: 1-D over all ranks, or (replicas, shard_size) for HSDP, where each
    group of shard_size consecutive ranks (one node's GPUs) shards and the groups replicate."""
    from torch.distributed.device_mesh import init_device_mesh

    from ..errors import UserError

    world = info.world_size
    if shard_size in (0, world):
        return init_device_mesh(info.device.type, (world,))
    if world % shard_size:
        raise UserError(f"dist.fsdp_shard_size {shard_size} does not divide the {world} ranks; use a divisor "
                        "(the GPUs of a node, typically) or 0 to shard over all ranks")
    return init_device_mesh(info.device.type, (world // shard_size, shard_size), mesh_dim_names=("replicate", "shard"))


def wrap_fsdp2(model: nn.Module, info: DistInfo, policy: Any, shard_size: int = 0) -> nn.Module:
    """fully_shard each block, then the root, with `policy` (a MixedPrecisionPolicy), on any world size; a 2-D
    mesh (shard_size) makes it HSDP: all-gathers stay within a shard group, gradients are all-reduced across.

    One process shards too: `--dist-mode fsdp2` then runs the same code path and precision as on many.
    Built on the meta device, the model is sharded before any weight exists (materialize it after).
    """
    from torch.distributed.fsdp import fully_shard

    mesh = fsdp_mesh(info, shard_size)
    for block in model.layers:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under a DDP wrapper (FSDP2 shards in place, so nothing to strip)."""
    return getattr(model, "module", model)
