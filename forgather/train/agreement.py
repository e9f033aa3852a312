"""Ranks agree on a few host integers, one step late, without a blocking collective each step.

Every step each rank posts its values (a stop request, ...) and gets back the previous step's MAX over all
ranks. The all-reduce is asynchronous on a gloo group of CPU tensors, so it never waits on the GPU stream,
and its result is read a whole step after it was issued, when it has long completed. Every rank reads the
same result at the same step, so all act on it together.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class StepAgreement:
    """post(values) at every step → the MAX over ranks of what was posted at the step before."""

    def __init__(self, fields: tuple[str, ...], world_size: int) -> None:
        self.fields = fields
        # A group of its own: its traffic never queues behind the training collectives (nccl or gloo).
        self.group = dist.new_group(backend="gloo") if world_size > 1 and dist.is_initialized() else None
        self.posted = torch.zeros(len(fields), dtype=torch.int64)
        self.work: dist.Work | None = None

    def exchange(self, **values: int) -> dict[str, int]:
        """Post this step's values (every field, every step, on every rank); return the previous step's MAX."""
        if set(values) != set(self.fields):
            raise ValueError(f"StepAgreement.exchange needs exactly {self.fields}, got {tuple(values)}")
        if self.work is not None:
            self.work.wait()  # issued a step ago: already complete unless a peer is a whole step behind
            self.work = None
        agreed = dict(zip(self.fields, self.posted.tolist()))
        self.posted = torch.tensor([int(values[name]) for name in self.fields], dtype=torch.int64)
        if self.group is not None:
            self.work = dist.all_reduce(self.posted, op=dist.ReduceOp.MAX, group=self.group, async_op=True)
        return agreed

    def close(self) -> None:
        """Finish the last posted exchange (every rank must, before the process group goes away)."""
        if self.work is not None:
            self.work.wait()
            self.work = None
