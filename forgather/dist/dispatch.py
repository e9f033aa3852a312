"""Dispatched batches: rank 0 reads each global batch and scatters one slice to every rank."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist

KEYS = ("input_ids", "labels", "position_ids", "document_ids")


class DispatchLoader:
    """Same per-rank batches as sharded loading, but only rank 0 touches the data.

    Rank 0 wraps a loader built for rank 0 of world size 1 with batch B*W (the global batch); each step it
    broadcasts a 'more data' flag, then scatters to rank r the rows r, r + W, ... of the global batch: the
    positions ≡ r (mod W) that a rank reading its own shards would read (data/shards.py).
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
                rows = batch[k].to(self.device) if self.rank == 0 else None
                chunks = [rows[r::self.world] for r in range(self.world)] if rows is not None else None
                dist.scatter(recv, scatter_list=[c.contiguous() for c in chunks] if chunks else None, src=0,
                             group=self.group)
                out[k] = recv
            yield out

    @property
    def epoch(self) -> int | None:
        """The data epoch, on rank 0 (the only reader); None elsewhere."""
        return getattr(self.loader, "epoch", None) if self.loader is not None else None

    def state_dict(self) -> dict:
        """Rank 0's position, broadcast so every rank saves the same state."""
        obj = [self.loader.state_dict() if self.loader is not None else None]
        dist.broadcast_object_list(obj, src=0, group=self.group)
        return obj[0]

    def load_state_dict(self, sd: dict) -> None:
        """Only rank 0 reads data, so only its loader needs the position."""
        if self.loader is not None:
            self.loader.load_state_dict(sd)

