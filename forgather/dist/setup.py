"""Process-group setup under torchrun: backend, device and rank facts for this process."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from ..config import DistSection
from ..devices import gpu_for_local_rank
from ..errors import UserError
from ..lifeline import STATUS_DIR_ENV


@dataclass(frozen=True)
class DistInfo:
    """Who this process is in the job and which device it computes on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def choose_backend(section: DistSection, use_cuda: bool) -> str:
    """nccl for GPUs, gloo for CPU, unless the config names one."""
    if section.backend != "auto":
        return section.backend
    return "nccl" if use_cuda else "gloo"


def setup(section: DistSection) -> DistInfo:
    """Join the torchrun job (env:// rendezvous) and pin this rank's device."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = section.accelerator and torch.cuda.is_available()
    if use_cuda:
        index = gpu_for_local_rank(local_rank, torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES"))
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = choose_backend(section, use_cuda)
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(minutes=section.init_timeout_minutes),
            device_id=device if use_cuda else None,
        )
    return DistInfo(rank, local_rank, world_size, device, backend)


def use_step_timeout(section: DistSection) -> None:
    """After the first step: collectives time out after step_timeout_minutes instead of the (longer) init timeout,
    so a hung rank fails the job in minutes, while startup (data, compile) had all the time it needed."""
    if dist.is_initialized():
        from torch.distributed.distributed_c10d import _set_pg_timeout  # no public API; torchtitan does the same

        _set_pg_timeout(datetime.timedelta(minutes=section.step_timeout_minutes), dist.group.WORLD)


def teardown() -> None:
    """Leave the process group cleanly so torchrun sees a normal exit."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _leave_status(name: str, text: str) -> bool:
    """A file in the status dir forgather.agent reads after the ranks exit; False when run without the agent
    or the file could not be written."""
    status_dir = os.environ.get(STATUS_DIR_ENV)
    if not status_dir:
        return False
    try:
        (Path(status_dir) / name).write_text(text, encoding="utf-8")
        return True
    except OSError:
        return False


def status_files(rank: int) -> tuple[str, ...]:
    """The names rank `rank` may leave in the status dir."""
    return f"rank-{rank}.txt", f"rank-{rank}.stopped"


def forget_earlier_status(rank: int) -> None:
    """Remove what this rank left in an earlier attempt (torchrun --max-restarts restarts ranks under the same
    agent): its error or stop there is not this attempt's outcome."""
    status_dir = os.environ.get(STATUS_DIR_ENV)
    for name in status_files(rank) if status_dir else ():
        (Path(status_dir) / name).unlink(missing_ok=True)


def report_failure(line: str, rank: int) -> bool:
    """Leave this rank's one-line error for forgather.agent, which prints it once, last, after the other ranks'
    output; False when the rank must print it itself."""
    return _leave_status(status_files(rank)[0], line + "\n")


def report_stopped(rank: int) -> None:
    """Leave word that this rank stopped on a signal after saving, so the job exits PREEMPTED also when the
    signal reached the ranks only (a scheduler or a user signalling the rank processes), not the agent."""
    _leave_status(status_files(rank)[1], "")


def run_rank(label: str, section: DistSection, body: Callable[[DistInfo], int]) -> int:
    """A torchrun entry point's life: join the job, run body(info), leave; returns the exit status.

    A UserError becomes one line on stderr naming the rank (torchrun prints every rank's output).
    """
    info = None
    forget_earlier_status(int(os.environ.get("RANK", 0)))
    try:
        info = setup(section)
        status = body(info)
        # Every rank done with every collective before any tears gloo down: a rank destroying its group while
        # a peer's receive is still pending aborted that peer ("terminate called without an active exception",
        # exit -6 after a finished run). Only on success: after a one-rank failure a barrier would just hang.
        if info.world_size > 1:
            dist.barrier()
        return status
    except UserError as exc:
        rank = f"[rank {info.rank}] " if info is not None else ""
        line = f"{label}: {rank}error: {exc}"
        left = report_failure(line, info.rank if info is not None else int(os.environ.get("RANK", 0)))
        # With restarts, an attempt's failure may be followed by a success the agent reports instead: say it now.
        if not left or int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0:
            print(line, file=sys.stderr, flush=True)
        return exc.exit_code
    except RuntimeError as exc:
        if info is None or info.world_size == 1 or not lost_a_peer(exc):
            raise
        # Another rank died (its own error, a kill, the OOM killer) while this one waited on it in a collective:
        # that rank's line says why; this one's traceback would only bury it.
        print(f"{label}: [rank {info.rank}] stopping: another rank of the job is gone", file=sys.stderr, flush=True)
        return LOST_PEER
    finally:
        teardown()


LOST_PEER = 1
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket closed",
              "NCCL communicator was aborted")


def lost_a_peer(exc: BaseException) -> bool:
    """Whether a collective failed because another rank of the job is gone (gloo and NCCL say it in the message)."""
    return any(marker in str(exc) for marker in _PEER_GONE)
