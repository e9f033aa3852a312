"""Dispatched batches: rank 0 reads each global batch and scatters one slice to every rank."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist

KEYS = ("input_ids", "labels", "position_ids", "document_ids")


class DispatchLoader:
    """Same per-rank batches as sharded loading, but only rank 0 touches the data.

    Rank 0 wraps a loader built for rank 0 of world size 1 with batch B*W (the global batch); each step it
    broadcasts a 'more data' flag, then scatters slice r ([r*B, (r+1)*B) of the global batch) to rank r.
    Works on gloo (CPU tensors) and nccl (pass device). The state is rank 0's loader state (world-size free).
    """

    def __init__(self, global_loader, batch_size: int, block_size: int, device: torch.device | None = None,
                 group=None) -> None:
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.loader = global_loader if self.rank == 0 else None
        self.batch, self.block_size = batch_size, block_size
        self.device = device or torch.device("cpu")
        self.group = group
        if self.rank == 0 and global_loader is None:
            raise ValueError("rank 0 needs the global loader")

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        it = iter(self.loader) if self.loader is not None else None
        while True:
            batch = next(it, None) if it is not None else None
            flag = torch.tensor([0 if (self.rank == 0 and batch is None) else 1], device=self.device)
            dist.broadcast(flag, src=0, group=self.group)
            if int(flag.item()) == 0:
                return
            out = {}
            for k in KEYS:
                recv = torch.empty(self.batch, self.block_size, dtype=torch.long, device=self.device)
                chunks = list(batch[k].to(self.device).split(self.batch)) if self.rank == 0 else None
                dist.scatter(recv, scatter_list=[c.contiguous() for c in chunks] if chunks else None, src=0,
                             group=self.group)
                out[k] = recv
            yield out

    def state_dict(self) -> dict:
        """Rank 0's position, broadcast so every rank saves the same state."""
        obj = [self.loader.state_dict() if self.loader is not None else None]
        dist.broadcast_object_list(obj, src=0, group=self.group)
        return obj[0]

    def load_state_dict(self, sd: dict) -> None:
        """Only rank 0 reads data, so only its loader needs the position."""
        if self.loader is not None:
            self.loader.load_state_dict(sd)


def build_dispatch_loader(spec, data=None, device: torch.device | None = None, epochs: int | None = None,
                          group=None) -> DispatchLoader:
    """A DispatchLoader for spec (DataSpec, on every rank); `data` (an opened Data) is only needed on rank 0."""
    from ..data.loader import BlockLoader

    world = dist.get_world_size(group)
    if dist.get_rank(group) == 0:
        if data is None:
            raise ValueError("rank 0 needs the opened data (forgather.data.loader.open_data)")
        workers = spec.num_workers if spec.mode == "cached" else 0
        glob = BlockLoader(data.train, spec.batch_size * world, 0, 1, workers, epochs=epochs)
        return DispatchLoader(glob, spec.batch_size, spec.block_size, device, group)
    return DispatchLoader(None, spec.batch_size, spec.block_size, device, group)
