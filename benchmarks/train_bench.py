"""Training throughput under torchrun on CPU: 1 vs 2 processes, DDP vs FSDP2 vs dispatch.

Each configuration is a real `forgather train` run of the cpu_bench project (shared corpus, SmolLM2
tokenizer); tokens/s and data-wait % come from the run's metrics.jsonl. Configurations are
interleaved over repeats so machine noise spreads evenly; medians over logged intervals after
the first (warm-up) interval are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import write_json

PROJECT = Path(__file__).resolve().parent / "projects" / "cpu_bench"
CONFIGS = [(1, "ddp"), (2, "ddp"), (2, "fsdp2"), (2, "dispatch")]


def run_once(nproc: int, mode: str, steps: int, out: Path) -> list[dict]:
    """One training run; returns its logged records after the first interval."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    # Per-rank batch halves with 2 ranks so every configuration trains the same global batch.
    batch = str(4 // nproc)
    subprocess.run(
        [sys.executable, "-m", "forgather.cli", "train", "--no-accelerator", "--nproc-per-node", str(nproc),
         "--init-model", "--overwrite", "--dist-mode", mode, "--batch-size", batch, "--max-steps", str(steps),
         "--output-dir", str(out)],
        cwd=PROJECT, env=env, check=True, capture_output=True, text=True,
    )
    records = [json.loads(line) for line in (out / "runs" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "tps" in r][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    samples: dict[str, list[dict]] = {f"{n}x{m}": [] for n, m in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for nproc, mode in CONFIGS:
                out = Path(tmp) / f"{nproc}-{mode}-{repeat}"
                samples[f"{nproc}x{mode}"] += run_once(nproc, mode, args.steps, out)
    rows = {}
    print(f"cpu_bench project: llama 4M shape with the SmolLM2 vocabulary (49,152), block 1024, global batch 4 "
          f"blocks (4 per rank on 1 process, 2 per rank on 2), {args.steps} steps × {args.repeats} runs per "
          f"configuration, interleaved; medians over logged 5-step intervals after the first.\n")
    print("| processes | mode | tokens/s (median) | min | max | data wait % (median) |\n|---|---|---|---|---|---|")
    for (nproc, mode), key in zip(CONFIGS, samples):
        tps = [r["tps"] for r in samples[key]]
        wait = [r["data_wait(%)"] for r in samples[key]]
        rows[key] = {"tps_median": statistics.median(tps), "tps_min": min(tps), "tps_max": max(tps),
                     "data_wait_median": statistics.median(wait), "intervals": len(tps)}
        print(f"| {nproc} | {mode} | {statistics.median(tps):,.0f} | {min(tps):,.0f} | {max(tps):,.0f} | "
              f"{statistics.median(wait):.2f} |")
    write_json(args.json, {"steps": args.steps, "repeats": args.repeats, "results": rows})


if __name__ == "__main__":
    main()
