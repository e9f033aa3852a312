"""Run under torchrun (gloo): dispatched batches equal the batches ranks read from their own shards, also across
a resume, through the loaders `forgather train` builds (forgather.train.assemble.build_loaders)."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from forgather.data.opening import open_data
from forgather.data.spec import DataSpec
from forgather.dist.setup import DistInfo
from forgather.lifeline import exit_rank
from forgather.train.assemble import build_loaders


def take(loader, n):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def main() -> None:
    corpus, cache = sys.argv[1:3]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    info = DistInfo(rank, rank, world, torch.device("cpu"), "gloo")
    spec = DataSpec.from_dict({"sources": [{"path": f"{corpus}/docs.jsonl"}], "validation_fraction": 0.1,
                               "tokenizer": {"path": f"{corpus}/tokenizer.json"}, "block_size": 64, "shards": 4,
                               "chunk_tokens": 2048, "cache_dir": cache, "batch_size": 2})
    data = open_data(spec)
    sharded, sharded_val = build_loaders(spec, data, info, dispatch=False)
    own = take(sharded, 12)
    dispatched, dispatched_val = build_loaders(spec, data if rank == 0 else None, info, dispatch=True)
    got = take(dispatched, 5)
    state = dispatched.state_dict()
    assert state == sharded_state_after(spec, data, info, 5)
    resumed, _ = build_loaders(spec, data if rank == 0 else None, info, dispatch=True)
    resumed.load_state_dict(state)
    got += take(resumed, 7)
    for i, (a, b) in enumerate(zip(got, own, strict=True)):
        for k in a:
            assert torch.equal(a[k], b[k]), (rank, i, k)
    val_a, val_b = list(sharded_val()), list(dispatched_val())
    assert len(val_a) == len(val_b) > 0 and all(torch.equal(a[k], b[k]) for a, b in zip(val_a, val_b) for k in a)
    print(f"DISPATCH_OK rank {rank}/{world}", flush=True)
    dist.destroy_process_group()


def sharded_state_after(spec, data, info, steps):
    loader, _ = build_loaders(spec, data, info, dispatch=False)
    take(loader, steps)
    return loader.state_dict()


if __name__ == "__main__":
    main()
    exit_rank(0)  # not the interpreter's teardown, which gloo's threads can abort (see exit_rank)
