"""`forgather data prepare`: pack every chunk of every shard into the cache ahead of training.

Three ways, one result (a chunk's bytes do not depend on who builds it):
- in this process (data.num_workers ≤ 1);
- in data.num_workers processes (this one and spawned helpers), each building whole shards as it is free;
- under torchrun (`forgather data prepare --nproc-per-node N [--nnodes ...]`): rank r of W builds the
  shards s ≡ r (mod W), the ones it will read when training on W ranks; rank 0 also builds the
  validation stream and prints progress and the summary.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from ..console import duration
from ..errors import DataError
from .spec import DataSpec

Progress = Callable[[int, int], None]  # (documents, tokens) just packed


def build_shards(stream: Any, shards: list[int], progress: Progress | None = None) -> list[dict]:
    """Pack (or verify) every chunk of the given shards in order; per-shard counts."""
    out = []
    for s in shards:
        row = {"shard": s, "chunks": 0, "blocks": 0, "tokens": 0, "padding": 0, "documents": 0}
        for chunk in stream.chunks(s):
            docs = chunk.end_doc - chunk.first_doc
            row["chunks"] += 1
            row["blocks"] += chunk.num_blocks
            row["tokens"] += chunk.used
            row["padding"] += chunk.flush_padding
            row["documents"] += docs
            if progress is not None:
                progress(docs, chunk.used)
        out.append(row)
    return out


class RateReporter:
    """Progress lines: documents done of a total, tokens/s and ETA (a line every few seconds when not a TTY)."""

    def __init__(self, label: str, total_documents: int, out: TextIO | None = None, every: float = 2.0) -> None:
        self.label, self.total, self.out, self.every = label, max(1, total_documents), out or sys.stderr, every
        self.documents = self.tokens = 0
        self.start = self.last = time.monotonic()

    def __call__(self, documents: int, tokens: int) -> None:
        self.documents += documents
        self.tokens += tokens
        now = time.monotonic()
        if now - self.last < self.every and self.documents < self.total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        fraction = self.documents / self.total
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("inf")
        self.out.write(f"{self.label}: {self.documents:,}/{self.total:,} documents ({fraction:.0%}), "
                       f"{self.tokens / elapsed:,.0f} tokens/s, ETA {duration(eta)}\n")
        self.out.flush()


def summarise(label: str, rows: list[dict], block_size: int) -> str:
    """One line per stream: shards, chunks, blocks, tokens, fill and the padding left at chunk ends."""
    blocks = sum(r["blocks"] for r in rows)
    capacity = max(1, blocks * block_size)
    tokens, padding = sum(r["tokens"] for r in rows), sum(r["padding"] for r in rows)
    sizes = [r["blocks"] for r in rows]
    spread = f", shard sizes {min(sizes):,}–{max(sizes):,} blocks" if len(rows) > 1 else ""
    return (f"{label}: {len(rows)} shard(s), {sum(r['chunks'] for r in rows):,} chunk(s), {blocks:,} blocks × "
            f"{block_size} = {tokens:,} tokens, fill {tokens / capacity:.2%} (chunk ends pad {padding / capacity:.2%})"
            f"{spread}")


# -- this process and helper processes, whole shards each ------------------------------------------------------


def largest_first(stream: Any) -> list[int]:
    """The order builders take shards in: the most text first, so that the last shard taken is a small one and
    no builder is left alone with a big one at the end. A pure function of the stream: each builder computes it."""
    sizes = stream.shard_text_bytes()
    order = list(range(stream.shards))
    return sorted(order, key=lambda s: -sizes[s]) if sizes is not None else order


def _claim(counter: Any, order: list[int]) -> int | None:
    """The next unbuilt shard in `order`, or None when every shard is taken (shared by all builders)."""
    with counter.get_lock():
        i = counter.value
        counter.value += 1
    return order[i] if i < len(order) else None


def _helper(spec: DataSpec, counter: Any, results: Any, opened: Any | None) -> None:
    """A helper process: open the data itself (after this process did, if `opened` is given), then build shards
    until none is left, sending progress and rows."""
    try:
        from .opening import open_data

        if opened is not None:
            opened.wait()
        train = open_data(spec).train
        order = largest_first(train)
        while (shard := _claim(counter, order)) is not None:
            rows = build_shards(train, [shard], lambda d, t: results.put(("progress", d, t)))
            results.put(("rows", rows))
    except BaseException as exc:  # reaches the parent, which raises it
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        results.put(("error", exc))


class ShardBuilders:
    """This process and processes−1 spawned helpers, each building the next unbuilt shard (largest first) when free.

    Helpers start when the pool is made, before this process opens the data: their interpreter start and
    imports (about a second each) overlap this process's opening, and they open the data alongside it when the
    tokenizer is a local file. A tokenizer this process must train or fetch first is made once: the helpers
    wait until it exists. Spawned, not forked: a fresh interpreter inherits no threads (pyarrow's, the
    tokenizer's) or the locks they held.
    """

    def __init__(self, spec: DataSpec, processes: int) -> None:
        from .parquet_source import is_url

        ctx = mp.get_context("spawn")
        self.shards = spec.shards
        self.counter, self.results = ctx.Value("i", 0), ctx.Queue()
        tokenizer_exists = bool(spec.tokenizer.path) and not is_url(spec.tokenizer.path)
        self.opened = None if tokenizer_exists else ctx.Event()
        self.helpers = [ctx.Process(target=_helper, args=(spec, self.counter, self.results, self.opened),
                                    daemon=True) for _ in range(min(processes, spec.shards) - 1)]
        try:
            for helper in self.helpers:
                helper.start()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "ShardBuilders":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self, train: Any, report: Progress) -> list[dict]:
        """Every shard of `train` (this process's opened stream), built here and by the helpers; rows by shard."""
        assert train.shards == self.shards, "the pool was made for another shard count"
        if self.opened is not None:
            self.opened.set()
        rows: list[dict] = []

        def drain(timeout: float | None = None) -> None:
            while True:
                try:
                    kind, *payload = self.results.get(timeout=timeout) if timeout else self.results.get_nowait()
                except queue.Empty:
                    return
                if kind == "error":
                    raise payload[0]
                if kind == "progress":
                    report(*payload)
                else:
                    rows.extend(payload[0])
                timeout = None

        def progress(documents: int, tokens: int) -> None:
            report(documents, tokens)
            drain()

        order = largest_first(train)
        while (shard := _claim(self.counter, order)) is not None:
            rows.extend(build_shards(train, [shard], progress))
        while len(rows) < train.shards:
            drain(timeout=0.5)
            dead = [h.exitcode for h in self.helpers if h.exitcode not in (None, 0)]
            if dead and len(rows) < train.shards:
                drain()
                if len(rows) < train.shards:
                    raise DataError(f"a data prepare helper process died (exit status {dead[0]}; -9 is often the "
                                    "out-of-memory killer); rerun with a smaller data.num_workers")
        return sorted(rows, key=lambda r: r["shard"])

    def close(self) -> None:
        for helper in (h for h in self.helpers if h.pid is not None):  # started ones (a start can fail)
            if helper.is_alive():
                helper.terminate()
            helper.join()


def prepare_in_process(spec: DataSpec, out: TextIO | None = None) -> str:
    """Build every chunk here, with data.num_workers − 1 helper processes; returns the summary."""
    from .opening import open_data

    start = time.monotonic()
    with ShardBuilders(spec, max(1, spec.num_workers)) as builders:  # helpers first: they start while we open
        data = open_data(spec)  # trains the tokenizer first if needed; the helpers then only load it
        train = data.train
        rows = builders.build(train, RateReporter("prepare", sum(train.counts), out))
    lines = [summarise("train", rows, spec.block_size)]
    if data.val is not None:
        lines.append(summarise("validation", build_shards(data.val, [0]), spec.block_size))
    lines.append(f"cache: {Path(train.chunk_path(0, 0)).parents[1]} — done in {time.monotonic() - start:.1f}s")
    return "\n".join(lines)


# -- torchrun: one rank per share of the shards -------------------------------------------------------------


def prepare_rank(spec: DataSpec, rank: int, world: int, out: TextIO | None = None) -> str | None:
    """Build the shards rank r of W owns (and, on rank 0, the validation stream); the summary on rank 0."""
    import torch.distributed as dist

    from .opening import open_data
    from .shards import check_world_size

    check_world_size(spec.shards, world)
    start = time.monotonic()
    data = open_data(spec) if rank == 0 else None  # rank 0 trains the tokenizer, if one must be trained
    dist.barrier()
    data = data or open_data(spec)
    owned = data.train.layout.owned(rank, world)
    total = sum(data.train.layout.shard_documents(s) for s in owned)
    report = RateReporter(f"prepare (rank 0's {len(owned)} of {data.train.shards} shards)", total, out) \
        if rank == 0 else None
    rows = build_shards(data.train, owned, report)
    val = build_shards(data.val, [0]) if rank == 0 and data.val is not None else None
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, rows)
    if rank != 0:
        return None
    lines = [summarise("train", sorted((r for p in parts for r in p), key=lambda r: r["shard"]), spec.block_size)]
    if val is not None:
        lines.append(summarise("validation", val, spec.block_size))
    lines.append(f"built by {world} ranks in {time.monotonic() - start:.1f}s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: `python -m forgather.data.prepare RUN_DIR/data-prepare.yaml`."""
    from dataclasses import replace

    from ..config import read_config
    from ..dist.setup import DistInfo, run_rank
    from ..errors import UserError

    argv = sys.argv[1:] if argv is None else argv
    try:
        config = read_config(Path(argv[0]))
    except UserError as exc:
        print(f"forgather data prepare: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    spec = DataSpec.from_dict(config.data, base_dir=config.project_dir)

    def body(info: DistInfo) -> int:
        summary = prepare_rank(spec, info.rank, info.world_size)
        if summary is not None:
            print(summary, flush=True)
        return 0

    # Packing is CPU work: gloo, even on GPU nodes; a long timeout, since ranks meet only when all are done.
    section = replace(config.dist, backend="gloo", accelerator=False,
                      init_timeout_minutes=config.dist.data_timeout_minutes)
    return run_rank("forgather data prepare", section, body)


if __name__ == "__main__":
    from ..lifeline import exit_rank  # a finished rank leaves with its own status

    exit_rank(main())
