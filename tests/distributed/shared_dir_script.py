"""Run under torchrun (gloo): check_shared_directory on one directory (passes) and on a directory per rank,
as node-local disks would look (every rank gets the same one-line error)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch.distributed as dist

from forgather.dist.shared_dir import check_shared_directory
from forgather.errors import UserError
from forgather.lifeline import exit_rank


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write: the two ranks' lines never run into each other


def main() -> None:
    base = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    check_shared_directory(base / "shared")
    try:
        check_shared_directory(base / f"local-{rank}")
    except UserError as exc:
        say(f"REFUSED rank {rank}: {exc}")
    else:
        say(f"ACCEPTED rank {rank}")
    assert not list((base / "shared").iterdir())  # the marker file is removed again
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    exit_rank(0)  # not the interpreter's teardown, which gloo's threads can abort (see exit_rank)
