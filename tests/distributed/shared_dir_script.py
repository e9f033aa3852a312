"""Run under torchrun (gloo): check_shared_directory on one directory (passes) and on a directory per rank,
as node-local disks would look (every rank gets the same one-line error)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from forgather.dist.shared_dir import check_shared_directory
from forgather.errors import UserError


def main() -> None:
    base = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    check_shared_directory(base / "shared")
    try:
        check_shared_directory(base / f"local-{rank}")
    except UserError as exc:
        print(f"REFUSED rank {rank}: {exc}", flush=True)
    else:
        print(f"ACCEPTED rank {rank}", flush=True)
    assert not list((base / "shared").iterdir())  # the marker file is removed again
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
