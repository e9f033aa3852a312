"""Per-rank loaders over the block streams, with a world-size-free state.

Training reads the sharded stream (shards.py): rank r of W takes the positions ≡ r (mod W) of every
global batch, all from its own shards. Batches are assembled (and pinned for the GPU) in a background
thread a few steps ahead; the state that `state_dict()` returns is the one after the last batch handed
out, so prefetching never skews a resume. Why a thread and not torchdata's StatefulDataLoader workers:
the work is tokenization (the tokenizers library releases the GIL and threads internally) and numpy
slicing, and the state must be a global position plus per-shard cursors gathered from every rank —
worker processes would add a pickled copy of the sources per worker and opaque per-worker states.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, TypeVar

import torch
import torch.distributed as dist

from ..errors import DataError
from .collate import collate_blocks, empty_block
from .shards import Cursor, check_world_size, rank_positions
from .stream import BlockStream
from .opening import Data

STATE_FORMAT = 2
PREFETCH_BATCHES = 2
T = TypeVar("T")


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run a generator in a background thread up to `depth` items ahead; its errors re-raise in the consumer."""
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple) -> bool:
        while not stop.is_set():
            try:
                slots.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(("error", exc))

    thread = threading.Thread(target=produce, name="forgather-data", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = slots.get()
            if kind == "item":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        # Wait for the producer to leave (it checks `stop` between items): a thread still inside torch or numpy
        # while the process exits can abort it ("terminate called without an active exception").
        stop.set()
        thread.join(timeout=120)


def _finish(batch: dict[str, torch.Tensor], pin_memory: bool) -> dict[str, torch.Tensor]:
    # Pinned host memory lets the trainer's non_blocking copies overlap the previous step's compute.
    return {k: v.pin_memory() for k, v in batch.items()} if pin_memory else batch


class ShardedLoader:
    """Training batches for rank r of W: the positions ≡ r (mod W) of each global batch [p, p + B·W).

    The state is {position, one cursor per shard}: the same on every rank and for every world size that
    divides data.shards, so a run resumes exactly on another number of ranks.
    """

    def __init__(self, stream: BlockStream, batch_size: int, rank: int = 0, world_size: int = 1,
                 pin_memory: bool = False, prefetch: int = PREFETCH_BATCHES) -> None:
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside world size {world_size}")
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, not {batch_size}")
        check_world_size(stream.shards, world_size)
        self.stream, self.batch, self.rank, self.world = stream, batch_size, rank, world_size
        self.pin_memory, self.prefetch = pin_memory, prefetch
        self.owned = stream.layout.owned(rank, world_size)
        self.position = 0
        self.cursors: dict[int, Cursor] = {s: Cursor() for s in self.owned}

    @property
    def global_batch(self) -> int:
        return self.batch * self.world

    @property
    def epoch(self) -> int:
        """The lowest epoch any of this rank's shards is in (the run's data epoch is the minimum over ranks)."""
        return min(c.epoch for c in self.cursors.values())

    def local_state(self) -> dict[str, Any]:
        """This rank's part of the state: the position and its own shards' cursors."""
        return {"format": STATE_FORMAT, "fingerprint": self.stream.fingerprint, "shards": self.stream.shards,
                "position": self.position, "cursors": {str(s): c.to_list() for s, c in self.cursors.items()}}

    def state_dict(self) -> dict[str, Any]:
        """The whole state, every shard's cursor included (collective when several ranks read data)."""
        state = self.local_state()
        if self.world == 1 or not dist.is_initialized():
            return merge_states([state])
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, state)
        return merge_states(parts)

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Resume at a saved state; DataError when it belongs to another stream."""
        check_resumable(sd, self.stream)
        cursors = sd["cursors"]
        self.position = int(sd["position"])
        self.cursors = {s: Cursor.from_list(cursors[str(s)]) for s in self.owned}

    def _produce(self, position: int, cursors: dict[int, Cursor]) -> Iterator[tuple]:
        readers = {s: self.stream.reader(s, c) for s, c in cursors.items()}
        shards = self.stream.shards
        while True:
            blocks = [readers[k % shards].next_block()
                      for k in rank_positions(position, self.global_batch, self.rank, self.world)]
            position += self.global_batch
            yield (_finish(collate_blocks(blocks), self.pin_memory), position,
                   {s: r.cursor for s, r in readers.items()})

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch, position, cursors in prefetched(self._produce(self.position, dict(self.cursors)), self.prefetch):
            self.position, self.cursors = position, cursors  # the state after the batch handed out
            yield batch


def merge_states(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One state from every rank's local state: the common position, all shards' cursors, the data epoch."""
    positions = {p["position"] for p in parts}
    if len(positions) != 1:
        raise DataError(f"ranks are at different data positions {sorted(positions)}; this is a bug")
    cursors = {k: v for part in parts for k, v in part["cursors"].items()}
    return {**parts[0], "cursors": dict(sorted(cursors.items(), key=lambda kv: int(kv[0]))),
            "epoch": min(c[0] for c in cursors.values())}


def check_resumable(sd: dict[str, Any], stream: BlockStream) -> None:
    """DataError (one line, with the way out) when a saved data state cannot continue this stream."""
    way_out = "restore the old data settings, or resume with --no-restore-dataset-state (weights and optimizer " \
              "continue, the data restarts)"
    if sd.get("format") != STATE_FORMAT:
        raise DataError(f"the checkpoint's data state is from an older forgather data stream; {way_out}")
    if sd.get("shards") != stream.shards:
        raise DataError(f"data.shards changed from {sd.get('shards')} to {stream.shards} since this checkpoint was "
                        f"saved (another shard layout is another stream); {way_out}")
    if sd.get("fingerprint") != stream.fingerprint:
        raise DataError("the data (sources, tokenizer, packing or shuffle settings) changed since this checkpoint was "
                        f"saved; resuming would not continue the same stream: {way_out}")
    missing = [s for s in range(stream.shards) if str(s) not in sd.get("cursors", {})]
    if missing:
        raise DataError(f"the checkpoint's data state lacks the cursors of shards {missing}; {way_out}")


class OnePassLoader:
    """One pass over a one-shard stream (validation, evaluation): rank r of W takes positions ≡ r (mod W) of
    each global batch; the last global batch is padded with fully masked blocks. Every rank reads it all."""

    def __init__(self, stream: BlockStream, batch_size: int, rank: int = 0, world_size: int = 1,
                 pin_memory: bool = False) -> None:
        if stream.shards != 1:
            raise DataError("a one-pass loader reads a one-shard stream")
        self.stream, self.batch, self.rank, self.world, self.pin_memory = stream, batch_size, rank, world_size, pin_memory

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        gb = self.batch * self.world
        window: list = []
        for block in self.stream.epoch_blocks(0, 0):
            window.append(block)
            if len(window) == gb:
                yield self._slice(window)
                window = []
        if window:
            pad = empty_block(self.stream.block_size, self.stream.tokenizer.pad_id)
            yield self._slice(window + [pad] * (gb - len(window)))

    def _slice(self, window: list) -> dict[str, torch.Tensor]:
        return _finish(collate_blocks(window[self.rank::self.world]), self.pin_memory)


def build_train_loader(data: Data, rank: int = 0, world_size: int = 1, batch_size: int | None = None,
                       pin_memory: bool = False) -> ShardedLoader:
    """The training loader for rank r of W (batch_size per rank defaults to spec.batch_size)."""
    return ShardedLoader(data.train, batch_size or data.spec.batch_size, rank, world_size, pin_memory)


def build_val_loader(data: Data, rank: int = 0, world_size: int = 1, batch_size: int | None = None,
                     pin_memory: bool = False) -> OnePassLoader:
    """One pass over the validation stream; the last batch is padded with fully masked blocks."""
    if data.val is None:
        raise DataError("no validation data: set data.validation sources or data.validation_fraction")
    return OnePassLoader(data.val, batch_size or data.spec.batch_size, rank, world_size, pin_memory)

