"""Packed training batches for the GPU bench, from text every Python installation has.

The device machine has torch, transformers and tokenizers but no torchdata/datasets, and no ../shared, so
this builds its own batches: docstrings of the standard library and site-packages (parsed, never imported,
in a process pool), a byte-level BPE trained on the spot with `tokenizers`, and forgather's best-fit packer
(numpy only). Only blocks holding several documents and no padding are kept, so document masks do real work.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from forgather.data import python_docs
from forgather.data.packing import Packer, block_arrays

EOS = "<|endoftext|>"


@dataclass
class Corpus:
    """Collated packed blocks ([n, T] tensors) and how they were made."""

    blocks: dict[str, torch.Tensor]
    vocab_size: int
    documents: int
    seconds: float

    def batch(self, index: int, size: int) -> dict[str, torch.Tensor]:
        """Batch `index` of `size` blocks, cycling through the blocks (CPU tensors, pinned when CUDA exists)."""
        n = self.blocks["input_ids"].shape[0]
        start = (index * size) % n
        if start + size <= n:  # a slice stays in pinned memory, so the copy to the GPU is asynchronous
            return {k: v[start:start + size] for k, v in self.blocks.items()}
        rows = [(start + r) % n for r in range(size)]
        return {k: v[rows] for k, v in self.blocks.items()}


def documents(max_chars: int, workers: int) -> list[str]:
    """Docstring documents of stdlib, then site-packages, until about `max_chars` characters."""
    docs: list[str] = []
    total = 0
    files = python_docs.python_files("stdlib") + python_docs.python_files("site-packages")
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for text in pool.map(python_docs.file_docstrings, files, chunksize=16):
            if text.strip():
                docs.append(text)
                total += len(text)
                if total >= max_chars:
                    break
    return docs


def train_tokenizer(docs: list[str], vocab_size: int):
    """A byte-level BPE with EOS id 0, trained on `docs`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(docs, trainer=trainer)
    return tokenizer


def build_corpus(block_size: int, vocab_size: int, max_chars: int, min_blocks: int) -> Corpus:
    """Tokenize and pack the docs; keep full blocks with >= 2 documents; at least `min_blocks` of them."""
    started = time.perf_counter()
    workers = min(16, os.cpu_count() or 1)
    docs = documents(max_chars, workers)
    tokenizer = train_tokenizer(docs, vocab_size)
    eos = tokenizer.token_to_id(EOS)
    packer = Packer(block_size, window=64, pad_id=eos)
    for doc, encoding in enumerate(tokenizer.encode_batch(docs)):
        packer.add(np.asarray(encoding.ids + [eos], dtype=np.int32), doc)
    packer.flush()
    kept = [block_arrays(b.tokens, b.segments) for b in packer.ready
            if len(b.segments) >= 2 and b.used == block_size]
    if len(kept) < min_blocks:
        raise SystemExit(f"only {len(kept)} full multi-document blocks of {block_size} tokens from {len(docs)} "
                         f"documents; raise --max-chars")
    blocks = {key: torch.from_numpy(np.stack([k[key] for k in kept])) for key in kept[0]}
    if torch.cuda.is_available():
        blocks = {k: v.pin_memory() for k, v in blocks.items()}  # so non_blocking copies overlap compute
    return Corpus(blocks, tokenizer.get_vocab_size(), len(docs), time.perf_counter() - started)
