"""The per-rank entry point that torchrun starts: `python -m forgather.run RUN_DIR/config.launch-ID.yaml`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .checkpoint.layout import CONFIG_FILE, LAUNCH_CONFIG_PREFIX, LAUNCHED_CONFIG_ENV
from .config import read_config
from .errors import UserError, without_environment_values


def config_to_read(launched: Path) -> Path:
    """The file a rank reads its config from: its launch file (layout.launch_config_path), or, once rank 0 has
    adopted that as the run's config.yaml (a restarted attempt comes after that), config.yaml."""
    if launched.name.startswith(LAUNCH_CONFIG_PREFIX) and not launched.exists():
        return launched.with_name(CONFIG_FILE)
    return launched


def main(argv: list[str] | None = None) -> int:
    """Read the resolved config, join the job, build everything and train; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m forgather.run RUN_DIR/config.yaml (started by `forgather train`)", file=sys.stderr)
        return 2
    from .lifeline import hold_stop_requests, watch_parent

    hold_stop_requests()  # first: a preemption while the rank starts is a stop request, not a kill
    from .allocator import tune_host_allocator
    from .dist.setup import DistInfo, run_rank

    os.environ[LAUNCHED_CONFIG_ENV] = str(Path(argv[0]).absolute())  # where restarts and rank 0 look for it
    watch_parent()  # a rank whose launcher was killed stops (after saving) instead of training on, unwatched
    try:
        config = read_config(config_to_read(Path(argv[0])))
    except UserError as exc:
        print(f"forgather.run: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code

    def train_rank(info: DistInfo) -> int:
        tune_host_allocator(info.device)  # before the first big tensor; CPU steps then reuse freed memory
        print(f"forgather.run: rank {info.rank}/{info.world_size} local_rank {info.local_rank} "
              f"device {info.device} backend {info.backend} project {without_environment_values(config.name)}",
              flush=True)
        from .train.assemble import train

        return train(config, info)

    return run_rank("forgather.run", config.dist, train_rank)


if __name__ == "__main__":
    from .lifeline import exit_rank  # a finished rank leaves with its own status

    exit_rank(main())
