"""`forgather eval` on each rank: loss, perplexity and bits per byte of a model over a block stream.

Run in-process by the CLI for one rank, or per rank under torchrun (`python -m forgather.evaluation
--model DIR ...`, which `forgather eval --nproc-per-node N` execs). Every rank evaluates blocks
k ≡ rank (mod world) of the same deterministic stream and the sums are all-reduced, so the numbers
do not depend on the world size.

Bits per byte = total nats / ln 2 / total bytes, where the bytes are the UTF-8 bytes of the tokens
the loss is computed on (the predicted targets): a document's text except its first token (and the
first token of each block-sized piece of a long document), which is context and never predicted.
Special tokens (EOS) add their loss but no bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import DataError

SPLITS = ("validation", "test", "train")


@dataclass
class EvalOptions:
    """Everything a rank needs; the CLI resolves it (torch-free) and passes it on the command line."""

    model_dir: str
    config_file: str | None = None
    tokenizer: str | None = None
    split: str = "validation"
    data: str | None = None
    max_batches: int | None = None
    batch_size: int | None = None
    accelerator: bool = True
    block_size: int | None = None  # None: the run's data.block_size (bare model dir: see eval_target.eval_settings)
    data_split: str = "train"  # rows of --data: 'train' (all) or a slice such as 'train[1000:]'

    def argv(self) -> list[str]:
        """The same options as `python -m forgather.evaluation` arguments."""
        out = ["--model", self.model_dir, "--split", self.split]
        for flag, value in (("--config", self.config_file), ("--tokenizer", self.tokenizer), ("--data", self.data),
                            ("--max-batches", self.max_batches), ("--batch-size", self.batch_size),
                            ("--block-size", self.block_size), ("--data-split", self.data_split)):
            if value is not None:
                out += [flag, str(value)]
        return out + ([] if self.accelerator else ["--no-accelerator"])


# ------------------------------------------------------------------------------------------ bytes


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte→printable-character table, inverted: each character of a ByteLevel token is one byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return {c: b for b, c in enumerate(chars)}


def token_byte_lengths(tokenizer: Any) -> np.ndarray:
    """UTF-8 bytes each id stands for: exact for byte-level BPE; SentencePiece '▁' counts as a space and
    <0xNN> as one byte; special tokens count 0."""
    hf = tokenizer.tok
    decoder = json.loads(hf.to_str()).get("decoder") or {}
    kinds = {d.get("type") for d in decoder.get("decoders", [])} | {decoder.get("type")}
    alphabet = _byte_level_alphabet() if "ByteLevel" in kinds else None
    special = {i for i, t in hf.get_added_tokens_decoder().items() if t.special}
    lengths = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for i in range(tokenizer.vocab_size):
        token = hf.id_to_token(i)
        if token is None or i in special:
            continue
        if alphabet is not None:
            lengths[i] = sum(1 if c in alphabet else len(c.encode("utf-8")) for c in token)
        elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            lengths[i] = 1
        else:
            lengths[i] = len(token.replace("▁", " ").encode("utf-8"))
    return lengths


# ------------------------------------------------------------------------------------------- data


def eval_data_spec(options: EvalOptions, config: Any) -> Any:
    """The DataSpec to open: the run's data, or --data FILE with the run's tokenizer and block settings."""
    from .data.spec import DataSpec, SourceSpec, TokenizerSpec
    from .eval_target import eval_settings

    source = None
    if options.data is not None:
        source = {"name": Path(options.data).stem or "eval", "path": str(Path(options.data).resolve()),
                  "split": options.data_split}
    if config is None:  # a bare model dir: the CLI made sure --data and a tokenizer were given
        tokenizer = Path(options.tokenizer) if options.tokenizer else None
        settings = eval_settings(None, Path(options.model_dir), tokenizer, options.block_size)
        spec = DataSpec(sources=[SourceSpec(**source)], mode="streaming", block_size=settings.block_size,
                        tokenizer=TokenizerSpec(add_eos=settings.add_eos, eos_token=settings.eos_token))
    else:
        overrides: dict[str, Any] = {"block_size": options.block_size} if options.block_size else {}
        if source is not None:
            # A one-off file: pack it on the fly rather than fill the data cache, all of it, no held-out split.
            overrides.update({"sources": [source], "validation": [], "validation_fraction": 0.0, "mode": "streaming"})
        spec = DataSpec.from_dict({**config.data, **overrides}, base_dir=config.project_dir)
    if options.tokenizer:
        spec.tokenizer.path = options.tokenizer
    return spec


def rank_blocks(stream: Any, rank: int, world: int, limit: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks k ≡ rank (mod world) among the first `limit` (all when None) of one pass over a one-shard stream."""
    for k, block in enumerate(stream.epoch_blocks(0, 0)):
        if limit is not None and k >= limit:
            return
        if k % world == rank:
            yield block


def _batches(blocks: Iterator[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[list]:
    batch: list = []
    for block in blocks:
        batch.append(block)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------ evaluate


def evaluate(model: Any, stream: Any, byte_lengths: np.ndarray, batch_size: int, rank: int = 0, world: int = 1,
             limit: int | None = None) -> dict[str, float]:
    """Summed nats, predicted tokens, their bytes and blocks over this rank's share, all-reduced over ranks."""
    import torch

    from .data.collate import collate_blocks
    from .dist.sync import all_reduce_sum
    from .models.loss import IGNORE_INDEX, forward_loss

    device = next(model.parameters()).device
    table = torch.from_numpy(byte_lengths).to(device)
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # nats, tokens, bytes, blocks
    with torch.no_grad():
        for blocks in _batches(rank_blocks(stream, rank, world, limit), batch_size):
            batch = {k: v.to(device) for k, v in collate_blocks(blocks).items()}
            labels = batch["labels"]
            targets = labels[labels != IGNORE_INDEX]
            totals[0] += forward_loss(model, batch).to(torch.float64)
            totals[1] += targets.numel()
            totals[2] += table[targets].sum()
            totals[3] += len(blocks)
    all_reduce_sum(totals)
    nats, tokens, nbytes, blocks = totals.tolist()
    return {"nats": nats, "tokens": int(tokens), "bytes": int(nbytes), "blocks": int(blocks)}


def summarise(sums: dict[str, float]) -> dict[str, float | int]:
    """loss (nats/token), perplexity = exp(loss), bits_per_byte, and the counts they came from."""
    if sums["tokens"] == 0:
        raise DataError("nothing to evaluate: the data produced no predicted tokens")
    loss = sums["nats"] / sums["tokens"]
    bpb = sums["nats"] / math.log(2) / sums["bytes"] if sums["bytes"] else float("nan")
    perplexity = math.exp(loss) if loss < 700 else float("inf")
    return {"loss": loss, "perplexity": perplexity, "bits_per_byte": bpb, "tokens": sums["tokens"],
            "bytes": sums["bytes"], "blocks": sums["blocks"]}


def run_eval(options: EvalOptions, rank: int = 0, world: int = 1, local_rank: int = 0,
             device: Any = "cpu") -> dict[str, Any]:
    """Load the model, open the data, evaluate this rank's share, and return the all-reduced summary."""
    from .config import read_config
    from .data.opening import open_data
    from .data.tokenizer import check_vocab
    from .dist.sync import barrier
    from .eval_target import load_model

    config = read_config(Path(options.config_file)) if options.config_file else None
    attn = config.model.attn_implementation if config is not None and str(device).startswith("cuda") else "sdpa"
    model = load_model(Path(options.model_dir), device, attn)
    spec = eval_data_spec(options, config)

    def open_split() -> Any:
        data = open_data(spec, train_shards=1)  # one pass over one shard reads every block once
        stream = data.train if options.data is not None or options.split == "train" else data.val
        if stream is None:
            raise DataError("the run has no validation data (data.validation or data.validation_fraction); "
                            "use --split train or --data FILE")
        if stream.mode == "cached":
            for _ in stream.chunks(0):  # build the cache here, before the other ranks of this node read it
                pass
        return data, stream

    # Local rank 0 opens first (and re-trains the run's tokenizer if it is gone); the others reuse it.
    data, stream = open_split() if local_rank == 0 else (None, None)
    barrier()
    if local_rank != 0:
        data, stream = open_split()
    check_vocab(data.tokenizer.vocab_size, model.spec.vocab_size)
    batch_size = options.batch_size or (config.train.batch_size if config is not None else 4)
    limit = None if options.max_batches is None else options.max_batches * batch_size
    sums = evaluate(model, stream, token_byte_lengths(data.tokenizer), batch_size, rank, world, limit)
    where = options.split if options.data is None else options.data + options.data_split.removeprefix("train")
    return {**summarise(sums), "data": where, "model": options.model_dir, "world_size": world}


def format_results(results: dict[str, Any], as_json: bool) -> str:
    """One JSON object, or aligned `name value` lines."""
    if as_json:
        return json.dumps(results)
    lines = []
    for key, value in results.items():
        shown = f"{value:.6g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"{key:<14} {shown}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ torchrun entry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m forgather.evaluation",
                                     description="One rank of `forgather eval` (started by torchrun).")
    parser.add_argument("--model", dest="model_dir", required=True)
    parser.add_argument("--config", dest="config_file")
    parser.add_argument("--tokenizer")
    parser.add_argument("--split", choices=SPLITS, default="validation")
    parser.add_argument("--data")
    parser.add_argument("--max-batches", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--block-size", type=int)
    parser.add_argument("--data-split", default="train")
    parser.add_argument("--no-accelerator", dest="accelerator", action="store_false")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Join the torchrun job, evaluate this rank's share, print the totals on rank 0."""
    args = vars(_parser().parse_args(sys.argv[1:] if argv is None else argv))
    as_json = args.pop("json")
    options = EvalOptions(**args)
    from .config import default_dist_section
    from .dist.setup import DistInfo, run_rank

    def eval_rank(info: DistInfo) -> int:
        results = run_eval(options, info.rank, info.world_size, info.local_rank, info.device)
        if info.is_main:
            print(format_results(results, as_json), flush=True)
        return 0

    return run_rank("forgather eval", default_dist_section(accelerator=options.accelerator), eval_rank)


if __name__ == "__main__":
    from .lifeline import exit_rank  # a finished rank leaves with its own status

    exit_rank(main())
