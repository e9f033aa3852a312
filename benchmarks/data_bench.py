"""Data path: tokenize+pack throughput, cached read throughput, seek/resume at the end, packing fill.

The three sub-datasets of ../shared/data/corpus with the SmolLM2 tokenizer, as a training run reads them.
Goals (issue 4): fill >= 99% at 4096; seek at the end of the stream < 1 s.
Usage: python -m benchmarks.data_bench [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from .common import spread, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def spec_for(corpus: Path, tokenizer: Path, cache: Path, block_size: int, workers: int, mode: str = "cached"):
    """All three corpus files, SmolLM2 tokenizer, window 64."""
    from forgather.data.spec import DataSpec

    return DataSpec.from_dict({
        "sources": [{"path": str(p)} for p in sorted(corpus.glob("*.parquet"))],
        "tokenizer": {"path": str(tokenizer)}, "block_size": block_size, "pack_window": 64,
        "cache_dir": str(cache), "num_workers": workers, "mode": mode})


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    ap.add_argument("--tokenizer", type=Path, default=SHARED / "tokenizers" / "smollm2" / "tokenizer.json")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from forgather.data.cache import CachedEpoch
    from forgather.data.loader import BlockLoader, open_data

    cores = os.cpu_count() or 1
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Warm the datasets arrow cache: the timings measure tokenize+pack, not the one-off parquet conversion.
        open_data(spec_for(args.corpus, args.tokenizer, tmp / "warm", 4096, 1))
        for workers in sorted({1, cores}):
            label = "in-process (the tokenizers library's own threads)" if workers == 1 else f"{workers}-process pool"

            built: list[int] = []

            def build() -> None:  # a fresh cache dir each time, so every repeat really tokenizes and packs
                cache = Path(tempfile.mkdtemp(dir=tmp))
                epoch = open_data(spec_for(args.corpus, args.tokenizer, cache, 4096, workers)).train.epoch(0)
                built.append(epoch.manifest["tokens"])

            times = timed(build, args.repeats)
            tokens = built[-1]
            tps = spread([tokens / t for t in times])
            results[f"tokenize_pack_{workers}"] = {"tokens": tokens, "tokens_per_s": tps}
            rows.append((f"tokenize+pack, {label}, block 4096",
                         f"{tps['median']:,.0f} tokens/s median ({tps['median'] / cores:,.0f} per core "
                         f"on {cores}; {tps['min']:,.0f}–{tps['max']:,.0f}; {tokens:,} tokens)"))
        data = open_data(spec_for(args.corpus, args.tokenizer, tmp / "read", 4096, 1))
        epoch = data.train.epoch(0)
        for loader_workers in (0, 2):
            def read() -> None:
                for _ in BlockLoader(data.train, 8, 0, 1, loader_workers, epochs=1):
                    pass

            tps = spread([epoch.num_blocks // 8 * 8 * 4096 / t for t in timed(read, args.repeats)])
            results[f"cached_read_{loader_workers}_workers"] = tps
            rows.append((f"cached read through the loader, batch 8 × 4096, {loader_workers} loader workers",
                         f"{tps['median']:,.0f} tokens/s median ({tps['min']:,.0f}–{tps['max']:,.0f})"))
        # Seek: a fresh handle on the cache and the last block (what a resume at the end of the stream does).
        seek = [s * 1e3 for s in timed(lambda: CachedEpoch.open(epoch.path, data.train.fingerprint).block(
            epoch.num_blocks - 1), 50)]
        results["cached_seek_last_block_ms"] = spread(seek)
        rows.append(("cached: seek to the last block (open + read)", f"{spread(seek)['median']:.2f} ms median of 50 "
                     f"({epoch.num_blocks:,} blocks)"))
        # Streaming: resume from a state saved late in the epoch (lazy parquet seek + packer buffers) and pack
        # the next block; the last blocks would only pop what the saved packer already holds.
        streaming = open_data(spec_for(args.corpus, args.tokenizer, tmp / "stream", 4096, 1, "streaming")).train
        packer, at = streaming.packer(0), int(0.9 * epoch.num_blocks)
        for _ in range(at):
            packer.next_block()
        state = packer.state_dict()
        resume = timed(lambda: streaming.packer(0, state).next_block(), args.repeats)
        results["streaming_resume_s"] = {**spread(resume), "block": at, "document": state["pos"]}
        rows.append((f"streaming: resume at block {at:,} (document {state['pos']:,}) and pack the next block",
                     f"{spread(resume)['median'] * 1e3:.0f} ms median"))
        for block in (512, 2048, 4096):
            m = open_data(spec_for(args.corpus, args.tokenizer, tmp / f"b{block}", block, 1)).train.epoch(0).manifest
            results[f"fill_{block}"] = {"fill": m["fill"], "blocks": m["num_blocks"], "split_docs": m["long_docs"]}
            rows.append((f"fill at block {block} (window 64)",
                         f"{m['fill']:.4%} ({m['num_blocks']:,} blocks, {m['long_docs']} documents split)"))
    print("| measurement | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    fill, seek_ms = results["fill_4096"]["fill"], results["cached_seek_last_block_ms"]["median"]
    print(f"\nGoal fill >= 99% at 4096: {'met' if fill >= 0.99 else 'NOT met'} ({fill:.2%}). "
          f"Goal seek at the end < 1 s: {'met' if seek_ms < 1000 else 'NOT met'} ({seek_ms:.2f} ms cached, "
          f"{results['streaming_resume_s']['median']:.3f} s streaming resume).")
    write_json(args.json, {"results": results})


if __name__ == "__main__":
    main()
