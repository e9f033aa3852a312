"""Collectives that also work without a process group (a plain single process): rank, barrier, sums, agreement.

The one home of these helpers for checkpoints, training and evaluation alike."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch.distributed as dist

from ..errors import CheckpointError

T = TypeVar("T")


def distributed() -> bool:
    """Whether a process group is up (torchrun); False for a plain single process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if distributed() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if distributed() else 1


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if distributed():
        dist.barrier()


def all_reduce_sum(value: Any) -> Any:
    """Sum a tensor across ranks in place (identity without a process group); returns it."""
    if distributed() and world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def agree(error: BaseException | None) -> None:
    """Raise on every rank if any rank failed, so no rank waits forever in the next collective."""
    if not distributed():
        if error is not None:
            raise error
        return
    messages: list[Any] = [None] * world_size()
    dist.all_gather_object(messages, None if error is None else f"rank {rank()}: {error}")
    if error is not None:
        raise error
    failed = [m for m in messages if m]
    if failed:
        raise CheckpointError(f"checkpoint failed on another rank: {failed[0]}")


def capture(fn: Callable[[], Any]) -> BaseException | None:
    """Run fn, returning its exception instead of raising, for a later `agree`."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - every failure must reach the other ranks
        return exc
    return None


def from_rank0(fn: Callable[[], T]) -> T:
    """Run fn on rank 0 only and hand its result (or its failure) to every rank."""
    result: T | None = None
    error: BaseException | None = None
    if rank() == 0:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001
            error = exc
    if not distributed():
        if error is not None:
            raise error
        return result  # type: ignore[return-value]
    payload = [(result, None if error is None else str(error))]
    dist.broadcast_object_list(payload, src=0)
    if error is not None:
        raise error
    value, message = payload[0]
    if message is not None:
        raise CheckpointError(message)
    return value


def gather_objects(obj: Any, group: Any = None) -> list[Any]:
    """Every rank's `obj` on every rank (of `group`), in rank order; [obj] without a process group."""
    if not distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def broadcast_object(obj: Any, group: Any = None) -> Any:
    """Rank 0's `obj` on every rank (of `group`)."""
    if not distributed():
        return obj
    payload = [obj]
    dist.broadcast_object_list(payload, src=0, group=group)
    return payload[0]
