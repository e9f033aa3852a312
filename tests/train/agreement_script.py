"""Run under torchrun with 2 gloo ranks: rank 1 asks to stop at step 3; each rank prints what it agreed on."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from forgather.lifeline import exit_rank  # noqa: E402
from forgather.train.agreement import StepAgreement  # noqa: E402

dist.init_process_group("gloo")
rank = dist.get_rank()
async_flags = []
real_all_reduce = dist.all_reduce


def all_reduce(*args, **kwargs):
    async_flags.append(bool(kwargs.get("async_op", False)))
    return real_all_reduce(*args, **kwargs)


dist.all_reduce = all_reduce
agreement = StepAgreement(("stop", "epoch"), dist.get_world_size())
seen = [agreement.exchange(stop=int(rank == 1 and step == 3), epoch=step if rank == 0 else 0) for step in range(1, 7)]
agreement.close()
# One write per line: the two ranks' lines never run into each other on the shared stdout.
os.write(1, ("AGREED " + json.dumps({"rank": rank, "seen": seen, "async": async_flags}) + "\n").encode())
dist.barrier()
dist.destroy_process_group()
exit_rank(0)  # not the interpreter's teardown, which gloo's threads can abort (see exit_rank)
