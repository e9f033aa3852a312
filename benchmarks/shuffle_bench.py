"""Block order and what a model learns: stream order vs forgather's shuffled shards vs a uniform permutation.

Usage: python -m benchmarks.shuffle_bench [--steps 240] [--corpora shared stdlib] [--json FILE]

The same ~8.5M-parameter Llama (forgather's model, same initial weights, AdamW, warmup + cosine) is trained
from scratch for --steps steps of 8 blocks × 256 tokens, three times per corpus, on three orders of blocks:
  stream     data.shards 1, shuffle off: documents in interleave order, a long document's pieces back to back
             (the order forgather read before blocks were shuffled)
  forgather  the defaults: 8 shards, chunks of 4,194,304 tokens, blocks shuffled per chunk and epoch
  uniform    the blocks of forgather's first epoch in one uniformly random permutation (the ideal)
and evaluated on held-out documents (the last 10% of each source, never trained on). Goal: forgather's
held-out loss within 2% of the uniform permutation's. Two corpora with long documents, so the result is not
one corpus's: `shared` (../shared/data literature + speeches: plays, Moby-Dick chapters, State of the Union
addresses) and `stdlib` (the docstrings of this Python's standard library, one document per module).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .common import write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHAPE = dict(architecture="llama", vocab_size=8192, hidden_size=256, num_layers=6, num_heads=8, num_kv_heads=4,
             intermediate_size=688, max_position_embeddings=256)
BLOCK, BATCH, LR = 256, 8, 3e-3
ORDERS = ("stream", "forgather", "uniform")


def corpus_sources(name: str) -> list[dict]:
    if name == "shared":
        return [{"path": str(SHARED / "corpus" / f"{n}.parquet")} for n in ("literature", "speeches")]
    return [{"name": "stdlib", "path": "stdlib", "kind": "python_docs"}]


def open_order(name: str, corpus: str, cache: Path):
    """Opened data whose training stream reads blocks in order `name` (uniform: forgather's, permuted later)."""
    from forgather.data.opening import open_data
    from forgather.data.spec import DataSpec

    layout = {"shards": 1, "shuffle": False} if name == "stream" else {}
    spec = DataSpec.from_dict({"sources": corpus_sources(corpus), "validation_fraction": 0.1,
                               "tokenizer": {"vocab_size": SHAPE["vocab_size"]}, "block_size": BLOCK,
                               "cache_dir": str(cache), "seed": 1234, **layout})
    return open_data(spec)


def training_blocks(name: str, data, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `count` blocks one process reads in this order (global positions 0, 1, 2, ...)."""
    stream = data.train
    if name == "uniform":  # epoch after epoch, each a new uniform permutation of all blocks
        every = [b for s in range(stream.shards) for b in stream.epoch_blocks(s, 0)]
        rng = np.random.default_rng(0)
        order = np.concatenate([rng.permutation(len(every)) for _ in range(-(-count // len(every)))])
        return [every[i] for i in order[:count]]
    readers = [stream.reader(s) for s in range(stream.shards)]
    return [readers[k % stream.shards].next_block() for k in range(count)]


def documents_per_batch(blocks: list) -> list[int]:
    return [len({int(d) for _, segs in blocks[i:i + BATCH] for d in segs[:, 2]}) for i in range(0, len(blocks), BATCH)]


def train_and_evaluate(blocks: list, held_out: list, steps: int) -> float:
    """Train from the same initial weights on `blocks` (in order); the held-out loss per token at the end."""
    from forgather.data.collate import collate_blocks
    from forgather.models.spec import ModelSpec
    from forgather.models.transformer import build_model
    from forgather.train.step import eval_loss, train_step

    torch.manual_seed(0)
    model = build_model(ModelSpec.from_dict(SHAPE), "sdpa", device="cpu")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=LR, betas=(0.9, 0.95), foreach=True)
    warmup = steps // 10

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    for step in range(steps):
        train_step(model, [collate_blocks(blocks[step * BATCH:(step + 1) * BATCH])], 1)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
    model.eval()
    batches = [collate_blocks(held_out[i:i + BATCH]) for i in range(0, len(held_out), BATCH)]
    return eval_loss(model, batches)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--corpora", nargs="+", default=["shared", "stdlib"], choices=["shared", "stdlib"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in args.corpora:
            opened = {name: open_order(name, corpus, Path(tmp)) for name in ("stream", "forgather")}
            opened["uniform"] = opened["forgather"]
            held_out = list(opened["forgather"].val.epoch_blocks(0, 0))
            total = sum(1 for s in range(opened["forgather"].train.shards)
                        for _ in opened["forgather"].train.epoch_blocks(s, 0))
            results[corpus] = {"training_blocks_per_epoch": total, "held_out_blocks": len(held_out)}
            for name in ORDERS:
                blocks = training_blocks(name, opened[name], args.steps * BATCH)
                docs = documents_per_batch(blocks)
                started = time.perf_counter()
                loss = train_and_evaluate(blocks, held_out, args.steps)
                results[corpus][name] = {"held_out_loss": loss, "documents_per_batch": float(np.mean(docs)),
                                         "single_document_batches": int(sum(d == 1 for d in docs)),
                                         "seconds": time.perf_counter() - started}
                print(f"{corpus} {name}: held-out loss {loss:.4f}", flush=True)
            uniform = results[corpus]["uniform"]["held_out_loss"]
            for name in ORDERS:
                r = results[corpus][name]
                rows.append(f"| {corpus} | {name} | {r['held_out_loss']:.4f} | {r['held_out_loss'] / uniform:.3f} | "
                            f"{r['documents_per_batch']:.2f} | {r['single_document_batches']} / {args.steps} |")
    print(f"\n{args.steps} steps × {BATCH} blocks × {BLOCK} tokens, ~8.5M-parameter Llama, same initial weights; "
          "held-out = the last 10% of each source's documents.\n")
    print("| corpus | order | held-out loss | vs uniform | documents per batch | single-document batches |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    verdicts = [f"{c}: {results[c]['forgather']['held_out_loss'] / results[c]['uniform']['held_out_loss'] - 1:+.2%}"
                for c in args.corpora]
    met = all(abs(results[c]["forgather"]["held_out_loss"] / results[c]["uniform"]["held_out_loss"] - 1) <= 0.02
              for c in args.corpora)
    print(f"\nGoal forgather's order within 2% of a uniform permutation: {'met' if met else 'NOT met'} "
          f"({'; '.join(verdicts)}).")
    write_json(args.json, {"results": results, "steps": args.steps})


if __name__ == "__main__":
    main()
