"""`forgather tokenizer train`: a byte-level BPE trained on the project's training sources."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import DataError, UserError
from .common import add_data_argument, resolve_config

EXAMPLES = """examples:
  forgather tokenizer train                           vocab from data.tokenizer.vocab_size, to RUN_DIR/tokenizer.json
  forgather tokenizer train --vocab-size 16384 --output tokenizers/bpe16k.json
  forgather tokenizer train --auto-vocab-size         size the vocab from the corpus (4096 .. 32768)
then in project.yaml:  data: {tokenizer: {path: tokenizers/bpe16k.json}}
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "tokenizer", help="train a tokenizer on the project's data", epilog=EXAMPLES,
        description="Train tokenizers on the project's data sources.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="tokenizer_action", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train", help="train a byte-level BPE on the project's training sources", epilog=EXAMPLES,
        description="Train a byte-level BPE (special token <|endoftext|>) on the project's training documents "
                    "(validation held out as training would) and save it as a tokenizer.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = train.add_mutually_exclusive_group()
    size.add_argument("--vocab-size", type=int, metavar="N",
                      help="vocabulary size (default: data.tokenizer.vocab_size)")
    size.add_argument("--auto-vocab-size", action="store_true",
                      help="pick 4096/8192/16384/32768 from the corpus' distinct words")
    train.add_argument("--output", metavar="PATH", help="where to save (default: RUN_DIR/tokenizer.json)")
    train.add_argument("--force", action="store_true", help="replace an existing file at the output path")
    add_data_argument(train)
    train.set_defaults(handler=run)


def training_texts(spec) -> tuple[list[str], int]:
    """(documents the tokenizer learns from, how many) — the training split, as the data pipeline sees it."""
    from ..data.sources import split_sources
    from ..data.tokenizer import tokenizer_sample

    train, _ = split_sources(spec)
    texts = list(tokenizer_sample(train))  # what a training run's own tokenizer learns from
    return texts, len(texts)


def run(args: argparse.Namespace, composed: Any) -> int:
    from ..data.spec import MIN_VOCAB_SIZE, DataSpec
    from tokenizers import Tokenizer as HFTokenizer

    from ..data.tokenizer import train_tokenizer

    config, origins = resolve_config(composed, args)
    spec = DataSpec.from_dict(config.data, base_dir=config.project_dir)
    vocab: int | str = "auto" if args.auto_vocab_size else (
        spec.tokenizer.vocab_size if args.vocab_size is None else args.vocab_size)
    where = "data.tokenizer.vocab_size" if args.vocab_size is None else "--vocab-size"
    if vocab != "auto" and not (isinstance(vocab, int) or str(vocab).isdigit()):
        raise DataError(f"{where} {vocab!r} must be an integer or 'auto'")
    if vocab != "auto" and int(vocab) < MIN_VOCAB_SIZE:
        raise DataError(f"{where} {vocab} is too small for byte-level BPE (256 bytes + special tokens); "
                        f"use at least {MIN_VOCAB_SIZE}")
    out = Path(args.output).expanduser() if args.output else config.run_dir / "tokenizer.json"
    if out.is_dir():
        out = out / "tokenizer.json"
    if any(parent.name == "checkpoints" for parent in out.resolve().parents):
        raise UserError(f"--output {out} is inside a run's checkpoints, whose files their manifest verifies; "
                        "choose a path outside them")
    if out.exists() and not args.force:  # a config.yaml or a tokenizer a run reads was replaced without a word
        raise UserError(f"--output {out} exists; pass --force to replace it, or choose another path")
    start = time.monotonic()
    print(f"training a byte-level BPE (vocab {vocab}) on {', '.join(s.name for s in spec.sources)} ...",
          file=sys.stderr)
    texts, count = training_texts(spec)
    if not count:
        raise DataError("the project's training sources hold no documents; check data.sources")
    path = train_tokenizer(texts, vocab, out, fix="choose a writable place with --output")
    # Read back without the project's BOS/EOS settings: those may name another tokenizer's tokens.
    vocab_size = HFTokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True)
    print(f"saved {path.resolve()}")
    print(f"vocab size {vocab_size:,} (trained on {count:,} documents in {time.monotonic() - start:.1f}s)")
    model_vocab = config.model.arch.get("vocab_size")
    follows = origins.get("model.arch.vocab_size", "").startswith("the tokenizer")  # it will follow this one too
    if isinstance(model_vocab, int) and model_vocab < vocab_size and not follows:
        print(f"note: the model's vocab_size is {model_vocab:,}; set model.arch.vocab_size: {vocab_size} "
              "(or more) to embed every id")
    project_dir = Path(config.project_dir).resolve()
    shown = path.resolve()
    if shown.is_relative_to(project_dir):  # data.tokenizer.path is relative to the project directory
        shown = shown.relative_to(project_dir)
    print(f"to use it, set in project.yaml:  data: {{tokenizer: {{path: {shown}}}}}  (data.tokenizer.path)")
    return 0
