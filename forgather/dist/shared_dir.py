"""Check at start that a directory every rank writes to (the run dir) is one filesystem for all nodes."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import torch.distributed as dist

from ..errors import UserError


def check_shared_directory(path: Path, what: str = "the run directory") -> None:
    """Collective: rank 0 writes a random token into `path`; every rank must read it back, else every rank
    raises one line naming a rank and host that cannot see it (checkpoints and the resolved config would
    otherwise silently diverge between nodes)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    path = Path(path)
    rank = dist.get_rank()
    token = [secrets.token_hex(8) if rank == 0 else None, None]
    written = None  # rank 0's marker
    if rank == 0:
        written = path / f".forgather-shared-{token[0]}"
        try:
            path.mkdir(parents=True, exist_ok=True)
            written.write_text(token[0])
        except OSError as exc:
            token[1] = f"rank 0 cannot write into {what} {path}: {exc}"
    try:
        dist.broadcast_object_list(token, src=0)
        try:
            seen = token[1] is None and (path / f".forgather-shared-{token[0]}").read_text() == token[0]
        except OSError:
            seen = False
        views: list = [None] * dist.get_world_size()
        dist.all_gather_object(views, (rank, socket.gethostname(), seen))
    finally:  # also when a peer died during the check: the marker is no file of the run's
        if written is not None:
            written.unlink(missing_ok=True)
    if token[1] is not None:
        raise UserError(token[1])
    blind = [(r, host) for r, host, ok in views if not ok]
    if blind:
        r, host = blind[0]
        raise UserError(f"{what} {path} is not shared by every node: rank {r} on {host} cannot see the file rank 0 "
                        f"on {views[0][1]} wrote there; put output_dir on a filesystem every node mounts (NFS, "
                        "Lustre, ...), since checkpoints and the run's config are read by all ranks")
