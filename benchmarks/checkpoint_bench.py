"""Checkpoints: how long the training loop is blocked per save (sync vs async), host memory per rank when a
large model saves and resumes under FSDP2 (a full gather to rank 0 vs each rank's own rows), hashing speed.

Usage: python -m benchmarks.checkpoint_bench [--repeats N] [--json FILE]

1. 124M Llama + AdamW, one process: time the loop waits per save, synchronous (stage + write + hash + publish)
   against asynchronous (stage only; the rest runs on the background thread), each as the trainer does it: a
   sync save streams the live tensors, an async one copies them into host buffers that the run's first async
   save allocates and later ones reuse. Goal: async ≤ 10% of sync, for the saves after the first.
2. Under torchrun, 2 gloo ranks, FSDP2, a ~0.5B-parameter Llama with AdamW: each rank's peak RSS above its
   resident baseline while saving and then resuming, for the sharded path against the full-gather path the
   checkpoints used before (weights gathered to rank 0 and cloned for one model.safetensors; every rank
   reading the whole file at resume). Goal: sharded ≤ 0.6× full gather. (~0.5B: at 0.84B the full-gather
   path was killed for memory on a 24 GiB machine, beside the two ranks' shards and optimizer moments.)
3. sha256 throughput (what a save costs per GiB written, and a resume per GiB verified).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import spread, write_json
from forgather.models.spec import ModelSpec, parameter_counts
from forgather.models.transformer import build_model
from forgather.resources import MODELS_DIR
from forgather.yamlio import load_yaml


def llama_124m() -> ModelSpec:
    base, _ = load_yaml(MODELS_DIR / "llama" / "base.yaml")
    size, _ = load_yaml(MODELS_DIR / "llama" / "124M.yaml")
    size.pop("extends", None)
    return ModelSpec.from_dict({**base, **size})


def write_model_files(spec: ModelSpec):
    from forgather.models.hf import write_hf_config, write_hf_weights

    def write(state, out: Path) -> None:
        dtype = write_hf_weights(state.items(), out) if state is not None else torch.float32
        write_hf_config(spec, out, dtype)

    return write


def blocked_per_save(repeats: int) -> dict:
    from forgather.checkpoint.background import BackgroundWriter
    from forgather.checkpoint.save import StagingBuffers, stage_checkpoint, write_staged

    spec = llama_124m()
    torch.manual_seed(0)
    model = build_model(spec, "sdpa", device="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    ids = torch.randint(0, spec.vocab_size, (1, 64))
    model(ids, labels=ids).backward()
    optimizer.step()
    writer = BackgroundWriter(world_size=1)
    kwargs = dict(trainer_state={}, data_state={}, config_text="", write_model_files=write_model_files(spec))
    buffers = StagingBuffers()
    sync, blocked, size = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        # async first (its first save allocates the buffers), then alternating, so drift hits both alike
        for step in range(1, 2 * repeats + 2):
            root = Path(tmp) / str(step)
            started = time.perf_counter()
            if step % 2 == 0:
                write_staged(stage_checkpoint(root, step, model, optimizer, copy=False, **kwargs))
                sync.append(time.perf_counter() - started)
            else:
                staged = stage_checkpoint(root, step, model, optimizer, buffers=buffers, **kwargs)
                writer.submit(lambda group, s=staged: write_staged(s, group))
                blocked.append(time.perf_counter() - started)
                writer.wait()
            size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    total, _ = parameter_counts(spec)
    first, steady = blocked[0], blocked[1:]
    return {"params": total, "bytes": size, "sync_s": spread(sync), "async_first_s": first,
            "async_blocked_s": spread(steady), "ratio": statistics.median(steady) / statistics.median(sync)}


def rss_under_fsdp2(path: str, tmp: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(__file__).with_name("checkpoint_rss.py")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), path, str(tmp)], capture_output=True, text=True, env=env, cwd=repo)
    if done.returncode != 0:
        raise SystemExit(f"checkpoint_rss.py {path} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    rows = [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith("RSS ")]
    return {r["rank"]: r for r in rows}


def hashing(gib: float = 1.0) -> dict:
    data = os.urandom(1 << 20) * int(gib * 1024)
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return {"sha256_s_per_gib": (time.perf_counter() - started) / gib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    blocked = blocked_per_save(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        rss = {path: rss_under_fsdp2(path, Path(tmp) / path) for path in ("full_gather", "sharded")}
    hashed = hashing()
    print(f"1. llama 124M ({blocked['params'] / 1e6:.1f}M params) + AdamW, one process, checkpoint "
          f"{blocked['bytes'] / 2**20:,.0f} MiB, {args.repeats} saves each after a first async one, alternating:\n")
    print("| save | loop blocked, median (s) | min | max |\n|---|---:|---:|---:|")
    for name, key in (("synchronous (streams the live tensors: write, hash, publish)", "sync_s"),
                      ("asynchronous, after the first (copy into the host buffers; the rest in the background)",
                       "async_blocked_s")):
        s = blocked[key]
        print(f"| {name} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
    print(f"| asynchronous, the run's first (allocates the host buffers) | {blocked['async_first_s']:.3f} | | |")
    print(f"\nasync / sync = {blocked['ratio']:.3f} (goal ≤ 0.10: {'met' if blocked['ratio'] <= 0.10 else 'NOT met'})")
    params = rss["sharded"][0]["params"]
    print(f"\n2. FSDP2 on 2 gloo ranks, a {params / 1e9:.2f}B-parameter Llama + AdamW: peak RSS above each rank's "
          "resident baseline (GiB)\n")
    print("| path | rank | save | resume |\n|---|---:|---:|---:|")
    for path in ("full_gather", "sharded"):
        for rank in (0, 1):
            r = rss[path][rank]
            print(f"| {path.replace('_', ' ')} | {rank} | {r['save_gib']:.2f} | {r['resume_gib']:.2f} |")
    worst = {p: max(max(r["save_gib"], r["resume_gib"]) for r in rss[p].values()) for p in rss}
    ratio = worst["sharded"] / worst["full_gather"]
    print(f"\nworst rank, sharded / full gather = {ratio:.2f} (goal ≤ 0.6: {'met' if ratio <= 0.6 else 'NOT met'})")
    print(f"\n3. sha256: {hashed['sha256_s_per_gib']:.2f} s per GiB (one core); each rank hashes only the files it "
          "writes, as it writes them, and a resume verifies each file once, on rank 0")
    write_json(args.json, {"blocked": blocked, "rss": rss, "rss_ratio": ratio, **hashed})


if __name__ == "__main__":
    main()
