"""One writer per run dir: an exclusive lock that rank 0 holds for the whole job (torch-free).

Two trainings on one run dir would delete each other's in-progress saves and interleave their checkpoints.
The lock is an flock on RUN_DIR/.forgather.lock: the kernel releases it when the holder dies however it dies,
so a lock left by a dead process is never an obstacle (its file still names the old holder; that is just
overwritten). flock works across nodes on NFS; Lustre needs the `flock` mount option. `forgather train`
probes the lock before it writes anything into the run dir, so a second run stops with one line at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from .errors import UserError

LOCK_FILE = ".forgather.lock"
_HELD: list[IO[str]] = []  # locks this process holds until it exits


class RunDirBusy(UserError):
    """Another process holds the run dir's lock."""


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except ValueError:
        info = {}
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["started"])) if "started" in info else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} (since {since})"


def _open(run_dir: Path) -> IO[str]:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return open(Path(run_dir) / LOCK_FILE, "a+", encoding="utf-8")


def _lock(run_dir: Path) -> IO[str]:
    handle = _open(run_dir)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(handle)
        handle.close()
        raise RunDirBusy(f"run dir {run_dir} is in use by {holder}; wait for that run to end or stop it, or use "
                         "another --output-dir") from None
    return handle


def acquire(run_dir: Path, what: str = "training") -> IO[str]:
    """Take the run dir's lock for the rest of this process's life; RunDirBusy naming the holder."""
    handle = _lock(run_dir)
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                             "what": what}))
    handle.flush()
    _HELD.append(handle)
    return handle


def probe(run_dir: Path) -> None:
    """RunDirBusy when another process holds the lock now (a quick check; rank 0 takes the lock for real)."""
    if (Path(run_dir) / LOCK_FILE).exists() and not _HELD:
        _lock(run_dir).close()
