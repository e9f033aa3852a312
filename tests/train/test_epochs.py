"""save_strategy epoch: every rank agrees (one step late, without a blocking collective) that the data's slowest
shard finished an epoch, and all save together, once per epoch."""

from __future__ import annotations

import re

from ..conftest import set_in_project
from .test_distributed_training import train


def test_two_ranks_save_once_at_the_end_of_each_data_epoch(tiny_project):
    for line in ("max_steps: 110", "batch_size: 4", "log_every: 50", "eval_every: 0", "warmup_steps: 0"):
        set_in_project(tiny_project, "train", line)
    set_in_project(tiny_project, "checkpoint", "save_strategy: epoch")
    set_in_project(tiny_project, "checkpoint", "keep_last: 10")
    out = train(tiny_project, "--init-model", nproc=2).stdout
    saves = re.findall(r"saved checkpoint .*step-(\d+) \(epoch (\d+) done\)", out)
    assert [epoch for _, epoch in saves] == ["0", "1"], out[-3000:]
    steps = [int(step) for step, _ in saves]
    assert 40 < steps[0] < steps[1] < 110  # ~48 blocks a shard, 8 shards, 8 blocks a step
    assert "(final)" in out
