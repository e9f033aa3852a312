"""Run under torchrun (gloo): dispatched batches must equal sharded batches on every rank, across a resume."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from forgather.data.loader import BlockLoader, open_data, prepare
from forgather.data.spec import DataSpec
from forgather.dist.dispatch import build_dispatch_loader


def take(loader, n):
    out = []
    for b in loader:
        out.append(b)
        if len(out) == n:
            break
    return out


def main() -> None:
    corpus, tok, cache = sys.argv[1:4]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    spec = DataSpec.from_dict({"sources": [{"path": f"{corpus}/quotes.parquet", "max_samples": 400},
                                           {"path": f"{corpus}/speeches.parquet", "max_samples": 3}],
                               "tokenizer": {"path": tok}, "block_size": 64, "cache_dir": cache, "batch_size": 2})
    data = open_data(spec)
    if rank == 0:
        prepare(data)  # local rank 0 builds; the others wait, then only open the finished cache
    dist.barrier()
    sharded = take(BlockLoader(data.train, 2, rank, world), 12)
    disp = build_dispatch_loader(spec, data if rank == 0 else None)
    got = take(disp, 5)
    sd = disp.state_dict()
    disp2 = build_dispatch_loader(spec, data if rank == 0 else None)
    disp2.load_state_dict(sd)
    got += take(disp2, 7)
    assert len(got) == len(sharded) == 12
    for i, (a, b) in enumerate(zip(got, sharded)):
        for k in a:
            assert torch.equal(a[k], b[k]), (rank, i, k)
    assert sd["block"] == 5 * 2 * world
    print(f"DISPATCH_OK rank {rank}/{world}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
