"""The per-rank entry point that torchrun starts: `python -m forgather.run RUN_DIR/config.yaml`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .config import read_config
from .errors import UserError

log = logging.getLogger("forgather")


def main(argv: list[str] | None = None) -> int:
    """Read the resolved config, join the job, report who we are."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m forgather.run RUN_DIR/config.yaml (started by `forgather train`)", file=sys.stderr)
        return 2
    from .dist.setup import setup, teardown

    try:
        config = read_config(Path(argv[0]))
        info = setup(config.dist)
    except UserError as exc:
        print(f"forgather.run: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        print(f"forgather.run: rank {info.rank}/{info.world_size} local_rank {info.local_rank} "
              f"device {info.device} backend {info.backend} project {config.name}", flush=True)
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
