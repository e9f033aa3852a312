"""The global block stream: block k of epoch e is a pure function of (sources, tokenizer, settings, seed, e, k)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from . import cache as cache_mod
from .interleave import InterleaveSchedule
from .packing import Block, Packer
from .sources import DocSource
from .tokenizer import Tokenizer

TOKENIZE_BATCH = 256


def doc_text_batches(sources: list[DocSource], order: InterleaveSchedule, start: int,
                     batch: int = TOKENIZE_BATCH) -> Iterator[list[str]]:
    """Texts of documents start.. in stream order, `batch` at a time (each source read as contiguous runs)."""
    for a in range(start, len(order), batch):
        lab, loc = order.slice(a, a + batch)
        out: list[str | None] = [None] * len(lab)
        for s in np.unique(lab):
            where = np.flatnonzero(lab == s)
            # local indices of one source are increasing and contiguous within a batch window
            texts = sources[s].texts(int(loc[where[0]]), int(loc[where[-1]]) + 1)
            for w, t in zip(where, texts):
                out[w] = t
        yield out  # type: ignore[misc]


_WORKER_TOK: Tokenizer | None = None


def _init_worker(tok: Tokenizer) -> None:
    global _WORKER_TOK
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _WORKER_TOK = tok


def _encode(texts: list[str]) -> list[np.ndarray]:
    return _WORKER_TOK.encode_docs(texts)  # type: ignore[union-attr]


def tokenized_batches(tok: Tokenizer, text_batches: Iterator[list[str]], num_workers: int) -> Iterator[list[np.ndarray]]:
    """Token arrays per batch, in order; a process pool over documents when num_workers > 1."""
    if num_workers <= 1:
        for texts in text_batches:
            yield tok.encode_docs(texts)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(num_workers, initializer=_init_worker, initargs=(tok,)) as pool:
        yield from pool.imap(_encode, text_batches, chunksize=1)


class EpochPacker:
    """Produces one epoch's blocks in order; its state (next document, packer buffers) resumes exactly."""

    def __init__(self, stream: "BlockStream", epoch: int, num_workers: int = 1, state: dict | None = None,
                 progress: cache_mod.Progress | None = None) -> None:
        self.stream, self.epoch = stream, epoch
        self.order = InterleaveSchedule(stream.counts, stream.seed, epoch)
        self.packer = Packer(stream.block_size, stream.window, stream.tokenizer.pad_id)
        self.pos = 0  # documents handed to the packer so far (= the stream's global document ordinal)
        self.flushed = False
        self.num_workers = num_workers
        self.progress = progress
        if state is not None:
            if state["epoch"] != epoch:
                raise DataError(f"stream state is for epoch {state['epoch']}, not {epoch}")
            self.pos, self.flushed = int(state["pos"]), bool(state["flushed"])
            self.packer.load_state_dict(state["packer"])
        self._docs: Iterator[np.ndarray] | None = None

    def _doc_iter(self) -> Iterator[np.ndarray]:
        texts = doc_text_batches(self.stream.sources, self.order, self.pos)
        for batch in tokenized_batches(self.stream.tokenizer, texts, self.num_workers):
            yield from batch

    def next_block(self) -> Block | None:
        """The next block of the epoch, or None when the epoch is exhausted."""
        total = len(self.order)
        while not self.packer.ready:
            if self.pos >= total:
                if self.flushed:
                    return None
                self.packer.flush()
                self.flushed = True
                continue
            if self._docs is None:
                self._docs = self._doc_iter()
            self.packer.add(next(self._docs), self.pos)
            self.pos += 1
            if self.progress is not None and (self.pos % 1000 == 0 or self.pos == total):
                self.progress(self.pos, total)
        return self.packer.ready.popleft()

    def __iter__(self) -> Iterator[Block]:
        while (b := self.next_block()) is not None:
            yield b

    def close(self) -> None:
        """Stop the tokenizer pool, if any."""
        if self._docs is not None:
            self._docs.close()  # type: ignore[attr-defined]
            self._docs = None

    def state_dict(self) -> dict:
        """Position and buffers; documents tokenized ahead but not packed are simply re-read on resume."""
        return {"epoch": self.epoch, "pos": self.pos, "flushed": self.flushed, "packer": self.packer.state_dict()}


class BlockStream:
    """All epochs of the block stream, cached (O(1) seek) or packed on the fly (streaming)."""

    def __init__(self, sources: list[DocSource], tokenizer: Tokenizer, block_size: int, window: int, seed: int,
                 mode: str = "cached", cache_root: Path | None = None, num_workers: int = 1,
                 progress: cache_mod.Progress | None = None, rebuild: bool = True) -> None:
        self.sources, self.tokenizer = sources, tokenizer
        self.block_size, self.window, self.seed, self.mode = block_size, window, seed, mode
        self.counts = [len(s) for s in sources]
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.num_workers = max(1, num_workers)
        self.progress = progress
        self.rebuild = rebuild
        # "order" names the interleaving scheme, so caches built by another scheme are never reused.
        self.settings = {"block_size": block_size, "pack_window": window, "seed": seed, "order": "chunked-v1"}
        self.fingerprint = cache_mod.fingerprint([s.identity() for s in sources], tokenizer.settings(), self.settings)
        self._epochs: dict[int, cache_mod.CachedEpoch] = {}
        if mode == "cached" and self.cache_root is None:
            raise DataError("cached data mode needs a cache_dir")

    def epoch(self, e: int) -> cache_mod.CachedEpoch:
        """The cached epoch e, built on first use (cached mode only)."""
        if self.mode != "cached":
            raise DataError("random access to blocks needs mode: cached (streaming mode reads sequentially)")
        if e not in self._epochs:
            self._epochs[e] = cache_mod.open_or_build(self.cache_root, self.fingerprint, e, self._build(e),
                                                      self.rebuild)
        return self._epochs[e]

    def _build(self, e: int):
        def build(path: Path) -> cache_mod.CachedEpoch:
            packer = EpochPacker(self, e, self.num_workers, progress=self.progress)
            manifest = {"fingerprint": self.fingerprint, "epoch": e, "block_size": self.block_size,
                        "settings": {**self.settings, "tokenizer": os.path.basename(self.tokenizer.path),
                                     "sources": [s.name for s in self.sources]},
                        "sources": [{"name": s.name, "documents": len(s), "skipped_empty": s.stats.skipped_empty,
                                     "replaced_utf8": s.stats.replaced_utf8} for s in self.sources]}
            try:
                return cache_mod.write_epoch(path, iter(packer), manifest, self.tokenizer.vocab_size,
                                             lambda: {"long_docs": packer.packer.long_docs, "documents": packer.pos})
            finally:
                packer.close()
        return build

    def num_blocks(self, e: int = 0) -> int:
        """Blocks in epoch e (cached: from the manifest; streaming: by packing the epoch once)."""
        if self.mode == "cached":
            return self.epoch(e).num_blocks
        return sum(1 for _ in self.packer(e))

    def block(self, k: int, e: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, segments) of block k of epoch e."""
        if self.mode == "cached":
            return self.epoch(e).block(k)
        for i, b in enumerate(self.packer(e)):
            if i == k:
                return b.tokens, b.segments
        raise IndexError(f"block {k} out of range for epoch {e}")

    def packer(self, e: int, state: dict | None = None) -> EpochPacker:
        """A sequential producer for epoch e, optionally resumed from a saved state."""
        return EpochPacker(self, e, self.num_workers if self.mode == "cached" else 1, state=state)
