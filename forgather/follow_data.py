"""The model follows the data: vocab_size from the tokenizer, max_position_embeddings from data.block_size.

A model project's sizes (32000 ids, 2048 positions) are defaults for a standalone model; in a run the
embedding must hold every tokenizer id and the positions every token of a block. Values the project (or a
flag) sets itself under model.arch are kept, and a mismatch there is one line before anything launches.
torch-free: a tokenizer.json is read as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .yamlio import Origins

# The largest vocabulary `data.tokenizer.vocab_size: auto` can pick (data/tokenizer.py AUTO_VOCABS): the corpus
# decides the actual size when the tokenizer is trained on the ranks, so the model reserves the most it can be.
AUTO_VOCAB_MAX = 32768


def tokenizer_json_vocab_size(path: Path) -> int | None:
    """Ids in a tokenizer.json (its model vocabulary plus added tokens); None when it cannot be read here."""
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # the ranks load it and report what is wrong with it
    if not isinstance(tree, dict):
        return None
    vocab = (tree.get("model") or {}).get("vocab")
    ids: set[int] = set()
    if isinstance(vocab, dict):
        ids.update(v for v in vocab.values() if isinstance(v, int))
    elif isinstance(vocab, list):  # unigram models list [piece, score] pairs; the id is the position
        ids.update(range(len(vocab)))
    ids.update(t["id"] for t in tree.get("added_tokens") or [] if isinstance(t, dict) and isinstance(t.get("id"), int))
    return max(ids) + 1 if ids else None


def data_vocab_size(data: dict[str, Any], project_dir: Path) -> tuple[int | None, bool]:
    """(ids the run's tokenizer has or may have, whether that number is exact); None when unknown here."""
    tokenizer = data.get("tokenizer") or {}
    path = tokenizer.get("path")
    if path:
        if "://" in str(path):
            return None, False
        file = Path(str(path)).expanduser()
        return tokenizer_json_vocab_size(file if file.is_absolute() else project_dir / file), True
    size = tokenizer.get("vocab_size", "auto")
    if isinstance(size, int) and not isinstance(size, bool):
        return size, True  # a trained BPE has at most this many ids
    return AUTO_VOCAB_MAX, False


def follow_data(tree: dict[str, Any], origins: Origins, explicit: set[str]) -> None:
    """Set model.arch.vocab_size and max_position_embeddings from the data unless in `explicit`; refuse an
    explicit value too small for the tokenizer or the block size."""
    model, data = tree.get("model"), tree.get("data")
    if not isinstance(model, dict) or not isinstance(data, dict) or not isinstance(model.get("arch"), dict):
        return
    arch = model["arch"]
    vocab, exact = data_vocab_size(data, Path(str(tree.get("project_dir", "."))))
    block = data.get("block_size")
    tokenizer_where = origins.get("data.tokenizer.path" if (data.get("tokenizer") or {}).get("path")
                                  else "data.tokenizer.vocab_size", "data.tokenizer")
    if vocab is not None:
        if "vocab_size" not in explicit:
            arch["vocab_size"] = vocab
            origins["model.arch.vocab_size"] = f"the tokenizer ({tokenizer_where})"
        elif exact and isinstance(arch.get("vocab_size"), int) and arch["vocab_size"] < vocab:
            where = origins.get("model.arch.vocab_size", "model.arch")
            raise ConfigError(f"{where}: model.arch.vocab_size is {arch['vocab_size']} but the tokenizer has {vocab} "
                              f"ids ({tokenizer_where}); remove model.arch.vocab_size (it follows the tokenizer) "
                              f"or set it to at least {vocab}")
    if isinstance(block, int) and not isinstance(block, bool):
        if "max_position_embeddings" not in explicit:
            arch["max_position_embeddings"] = block
            origins["model.arch.max_position_embeddings"] = f"data.block_size ({origins.get('data.block_size', '?')})"
        elif isinstance(arch.get("max_position_embeddings"), int) and arch["max_position_embeddings"] < block:
            where = origins.get("model.arch.max_position_embeddings", "model.arch")
            raise ConfigError(f"{where}: model.arch.max_position_embeddings is {arch['max_position_embeddings']} "
                              f"but data.block_size is {block}; remove it (it follows data.block_size) or set it "
                              f"to at least {block}")
