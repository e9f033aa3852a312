"""Opening the data: sources, tokenizer and the block streams, without torch.

Kept apart from the loader (which builds torch batches) so that `data prepare` and its worker processes
pay for neither importing torch nor anything else that only batching needs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..console import phase
from .parquet_source import is_url
from .shards import ShardLayout
from .sources import DocSource, sources_digest, split_sources
from .spec import DataSpec
from .stream import BlockStream
from .tokenizer import Tokenizer, fetch_tokenizer, load_tokenizer, tokenizer_sample, train_tokenizer, trained_path


@dataclass
class Data:
    """Opened data: the tokenizer, the sharded training stream and the one-shard validation stream."""

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
        phase(f"data: training a byte-level BPE tokenizer (vocab {ts.vocab_size}) on the training sources -> {path}",
              stream=sys.stderr)  # stderr: commands that print JSON on stdout (data show, eval) train one too
        train_tokenizer(tokenizer_sample(train_sources), ts.vocab_size, path)
    return load_tokenizer(ts, str(path))


def open_data(spec: DataSpec, rebuild: bool = True, train_shards: int | None = None) -> Data:
    """Load sources and tokenizer and set up the streams (chunks are packed or read on first use).

    Validation is one shard, read whole by every rank (it is small, and one pass must see every block);
    `train_shards` overrides data.shards (evaluation reads the training split as one shard too).
    """
    train, val = split_sources(spec)
    # Too few documents for the shards: said before a tokenizer is trained on them for nothing.
    ShardLayout(train_shards or spec.shards, sum(len(s) for s in train))
    tok = get_tokenizer(spec, train)

    def stream(sources: list[DocSource], shards: int) -> BlockStream:
        return BlockStream(sources, tok, spec.block_size, spec.pack_window, spec.seed, spec.mode,
                           spec.resolved_cache_dir(), shards, spec.chunk_tokens, spec.shuffle, rebuild)

    return Data(spec, tok, stream(train, train_shards or spec.shards), stream(val, 1) if val else None)
