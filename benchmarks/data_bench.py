"""Data-layer benchmark: tokenize+pack throughput, cached read throughput, seek time, packing fill.

Usage: python benchmarks/data_bench.py [--corpus ../shared/data/corpus] [--tokenizer .../tokenizer.json]
Prints a markdown table. Uses a temporary cache dir (removed afterwards).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def spec_for(corpus: Path, tokenizer: Path, cache: Path, block_size: int, workers: int, window: int = 64):
    """All three corpus files, SmolLM2 tokenizer, cached mode."""
    from forgather.data.spec import DataSpec

    return DataSpec.from_dict({
        "sources": [{"path": str(p)} for p in sorted(corpus.glob("*.parquet"))],
        "tokenizer": {"path": str(tokenizer)}, "block_size": block_size, "pack_window": window,
        "cache_dir": str(cache), "num_workers": workers, "batch_size": 8})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    ap.add_argument("--tokenizer", type=Path, default=SHARED / "tokenizers" / "smollm2" / "tokenizer.json")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    from forgather.data.cache import CachedEpoch
    from forgather.data.loader import BlockLoader, open_data

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # warm the datasets arrow cache so the timings below measure tokenize+pack, not parquet conversion
        open_data(spec_for(args.corpus, args.tokenizer, tmp / "warm", 4096, 1))
        for workers in sorted({1, args.workers}):
            data = open_data(spec_for(args.corpus, args.tokenizer, tmp / f"w{workers}", 4096, workers))
            t0 = time.perf_counter()
            ep = data.train.epoch(0)
            dt = time.perf_counter() - t0
            toks = ep.manifest["tokens"]
            how = "in-process (tokenizers' own threads)" if workers == 1 else f"{workers}-process pool"
            cores = os.cpu_count() or 1
            rows.append((f"tokenize+pack, {how}, block 4096",
                         f"{toks / dt:,.0f} tokens/s ({toks / dt / cores:,.0f} per core on {cores} cores; "
                         f"{toks:,} tokens in {dt:.1f}s)"))
        # cached read: full collated batches through the loader (B=8, 0 and 2 workers)
        for lw in (0, 2):
            loader = BlockLoader(data.train, 8, 0, 1, lw, epochs=1)
            t0 = time.perf_counter()
            n = sum(b["input_ids"].numel() for b in loader)
            dt = time.perf_counter() - t0
            rows.append((f"cached read via loader, B=8, {lw} loader workers", f"{n / dt:,.0f} tokens/s"))
        # seek: open a fresh handle and read the last block (O(1): mmap offset)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            e = CachedEpoch.open(ep.path, data.train.fingerprint)
            e.block(e.num_blocks - 1)
            times.append(time.perf_counter() - t0)
        times.sort()
        rows.append(("seek to last block (open + read, median of 50)", f"{times[25] * 1e3:.2f} ms ({ep.num_blocks:,} blocks)"))
        for bs in (512, 2048, 4096):
            d = open_data(spec_for(args.corpus, args.tokenizer, tmp / f"b{bs}", bs, args.workers))
            m = d.train.epoch(0).manifest
            rows.append((f"fill at block {bs} (window 64)",
                         f"{m['fill']:.4%} ({m['num_blocks']:,} blocks, {m['long_docs']} docs split)"))
    print("| measurement | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
