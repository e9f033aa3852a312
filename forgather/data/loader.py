"""Per-rank loaders over the global block stream, with a world-size-free state (epoch, global block index)."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from ..errors import DataError
from .cache import Progress
from .collate import collate_blocks, empty_block
from .parquet_source import is_url
from .sources import DocSource, sources_digest, split_sources
from .spec import DataSpec
from .stream import BlockStream, EpochPacker
from .tokenizer import Tokenizer, fetch_tokenizer, load_tokenizer, tokenizer_sample, train_tokenizer, trained_path


@dataclass
class Data:
    """Opened data: the tokenizer and the train / validation block streams."""

    spec: DataSpec
    tokenizer: Tokenizer
    train: BlockStream
    val: BlockStream | None


def get_tokenizer(spec: DataSpec, train_sources: list[DocSource]) -> Tokenizer:
    """spec.tokenizer.path loaded, or a BPE trained on the training sources (saved under the cache dir, reused)."""
    ts = spec.tokenizer
    if ts.path and is_url(ts.path):
        return load_tokenizer(ts, str(fetch_tokenizer(ts.path, spec.resolved_cache_dir())))
    if ts.path:
        return load_tokenizer(ts)
    path = trained_path(spec.resolved_cache_dir(), sources_digest(train_sources), ts.vocab_size)
    if not path.is_file():
        # One-time work that takes a while on a big corpus: say what is happening and where it goes.
        print(f"forgather: training a byte-level BPE tokenizer (vocab {ts.vocab_size}) on the training sources "
              f"-> {path}", file=sys.stderr, flush=True)
        train_tokenizer(tokenizer_sample(train_sources), ts.vocab_size, path)
    return load_tokenizer(ts, str(path))


def open_data(spec: DataSpec, progress: Progress | None = None, rebuild: bool = True) -> Data:
    """Load sources and tokenizer and set up the train/validation streams (caches build lazily)."""
    train, val = split_sources(spec)
    tok = get_tokenizer(spec, train)
    root = spec.resolved_cache_dir()
    # 0/1: tokenize in-process (the tokenizers library already threads over a batch; faster on few cores);
    # N > 1: a pool of N processes over documents, for many-core machines
    workers = max(1, spec.num_workers)

    def stream(sources: list[DocSource]) -> BlockStream:
        return BlockStream(sources, tok, spec.block_size, spec.pack_window, spec.seed, spec.mode, root,
                           workers, progress, rebuild)

    return Data(spec, tok, stream(train), stream(val) if val else None)


class _StepDataset(torch.utils.data.Dataset):
    """Item j = this rank's batch for global step j of one epoch, read from the mmap cache (O(1) seek)."""

    def __init__(self, epoch, start: int, steps: int, batch: int, rank: int, world: int) -> None:
        self.epoch, self.start, self.steps = epoch, start, steps
        self.batch, self.rank, self.world = batch, rank, world

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        first = self.start + j * self.batch * self.world + self.rank * self.batch
        return collate_blocks([self.epoch.block(first + i) for i in range(self.batch)])


class BlockLoader:
    """Rank r of W gets blocks [p + r*B, p + (r+1)*B) of each global batch starting at global position p.

    The state is {epoch, block} (+ the packer state in streaming mode): identical on every rank and
    independent of the world size, so a run can resume on a different number of ranks. A final global batch
    that does not fill B*W blocks is dropped (train) or padded with fully masked blocks (validation).
    """

    def __init__(self, stream: BlockStream, batch_size: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, epochs: int | None = None, pad_last: bool = False) -> None:
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside world size {world_size}")
        self.stream, self.batch, self.rank, self.world = stream, batch_size, rank, world_size
        self.num_workers, self.epochs, self.pad_last = num_workers, epochs, pad_last
        self.epoch, self.block = 0, 0
        self._packer: EpochPacker | None = None
        self._packer_state: dict | None = None

    @property
    def global_batch(self) -> int:
        return self.batch * self.world

    def state_dict(self) -> dict:
        """World-size-free position: {epoch, block, fingerprint[, stream]}."""
        sd = {"epoch": self.epoch, "block": self.block, "fingerprint": self.stream.fingerprint}
        if self.stream.mode == "streaming" and self._packer is not None:
            sd["stream"] = self._packer.state_dict()
        elif self._packer_state is not None:
            sd["stream"] = self._packer_state
        return sd

    def load_state_dict(self, sd: dict) -> None:
        """Resume at a saved position; DataError if the data changed since it was saved."""
        if sd.get("fingerprint") not in (None, self.stream.fingerprint):
            raise DataError("the data (sources, tokenizer or packing settings) changed since this checkpoint was "
                            "saved; resuming would not continue the same stream. Restore the old data or start "
                            "a fresh run (or skip restoring the data state)")
        self.epoch, self.block = int(sd["epoch"]), int(sd["block"])
        self._packer = None
        self._packer_state = sd.get("stream")

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while self.epochs is None or self.epoch < self.epochs:
            if self.stream.mode == "cached":
                yield from self._cached_epoch()
            else:
                yield from self._streaming_epoch()
            self.epoch, self.block = self.epoch + 1, 0
            self._packer, self._packer_state = None, None

    def _cached_epoch(self) -> Iterator[dict[str, torch.Tensor]]:
        ep = self.stream.epoch(self.epoch)
        gb = self.global_batch
        steps = (ep.num_blocks - self.block) // gb
        if steps > 0:
            ds = _StepDataset(ep, self.block, steps, self.batch, self.rank, self.world)
            with warnings.catch_warnings():  # torchdata 0.11 calls a deprecated torch API in __init__
                warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
                dl = StatefulDataLoader(ds, batch_size=None, shuffle=False, num_workers=self.num_workers,
                                        multiprocessing_context="fork" if self.num_workers else None)
            for batch in dl:
                self.block += gb  # advanced before yield: a state taken now resumes after this batch
                yield batch
        rest = ep.num_blocks - self.block
        if self.pad_last and 0 < rest:
            self.block = ep.num_blocks
            yield self._padded([ep.block(k) for k in range(ep.num_blocks - rest, ep.num_blocks)])

    def _padded(self, blocks: list) -> dict[str, torch.Tensor]:
        blocks = blocks + [empty_block(self.stream.block_size, self.stream.tokenizer.pad_id)] * (
            self.global_batch - len(blocks))
        return collate_blocks(blocks[self.rank * self.batch:(self.rank + 1) * self.batch])

    def _streaming_epoch(self) -> Iterator[dict[str, torch.Tensor]]:
        # Every rank packs the whole stream (cheap next to training) and keeps its slice: no coordination.
        if self._packer_state is not None:
            self._packer = self.stream.packer(self.epoch, self._packer_state)
        else:
            self._packer = self.stream.packer(self.epoch)
            for _ in range(self.block):  # a cached-mode state: replay to the position
                if self._packer.next_block() is None:
                    break
        self._packer_state = None
        gb = self.global_batch
        while True:
            blocks = []
            while len(blocks) < gb and (b := self._packer.next_block()) is not None:
                blocks.append((b.tokens, b.segments))
            if len(blocks) < gb:
                if self.pad_last and blocks:
                    self.block += len(blocks)
                    yield self._padded(blocks)
                self._packer.close()
                return
            self.block += gb
            yield collate_blocks(blocks[self.rank * self.batch:(self.rank + 1) * self.batch])


def build_train_loader(data: Data, rank: int = 0, world_size: int = 1, batch_size: int | None = None,
                       epochs: int | None = None) -> BlockLoader:
    """The training loader for rank r of W (batch_size per rank defaults to spec.batch_size)."""
    return BlockLoader(data.train, batch_size or data.spec.batch_size, rank, world_size,
                       _loader_workers(data), epochs=epochs)


def build_val_loader(data: Data, rank: int = 0, world_size: int = 1, batch_size: int | None = None) -> BlockLoader:
    """One pass over the validation stream; the last batch is padded with fully masked blocks."""
    if data.val is None:
        raise DataError("no validation data: set data.validation sources or data.validation_fraction")
    return BlockLoader(data.val, batch_size or data.spec.batch_size, rank, world_size, _loader_workers(data),
                       epochs=1, pad_last=True)


def _loader_workers(data: Data) -> int:
    return data.spec.num_workers if data.spec.mode == "cached" else 0


def prepare(data: Data, epochs: int = 1) -> None:
    """Build the caches for the first `epochs` epochs and the validation stream (call on local rank 0 first)."""
    if data.spec.mode != "cached":
        return
    for e in range(epochs):
        data.train.epoch(e)
    if data.val is not None:
        data.val.epoch(0)
