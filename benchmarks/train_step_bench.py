"""Training-step benchmark: forgather's step vs Hugging Face LlamaForCausalLM on the same weights and tokens.

Usage: python -m benchmarks.train_step_bench [--seqs 256 1024] [--steps 20] [--json out.json] [--profile]

Each contender runs in its own worker process, as it would for a user: forgather's with the process setup
`forgather train` does (forgather.run: allocator.keep_freed_memory), HF's as a plain script. The parent drives
them in lockstep, one step each per round (A/B/C, then C/B/A, ...), so machine drift hits all alike; each
worker has its own model copy (same initial weights), its own AdamW (same settings) and the same batches:
  forgather         build_model + train_step + clip + AdamW.step, plain causal input (document_ids None)
  hf                LlamaForCausalLM(attn_implementation="sdpa"): model(ids, labels=ids).loss.backward(); clip; step
  forgather_packed  as forgather, but with the blocks' position_ids/document_ids (doc-masked attention;
                    different work from HF, reported for information only)
  hf_tuned          hf in a process with forgather's allocator setting: separates what that process setting
                    buys from what forgather's step itself does
Peak RSS is each worker's high-water mark (ru_maxrss). Tokens come from the forgather data pipeline (the
three corpus parquets, BPE tokenizer trained to vocab 8192, cached under --cache-dir); only blocks holding
>= 2 documents are used, so packing is real.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from .common import write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CONTENDERS = ("forgather", "hf", "forgather_packed", "hf_tuned")
DEFAULT_CONTENDERS = CONTENDERS
SHAPE = dict(architecture="llama", vocab_size=8192, hidden_size=256, num_layers=6, num_heads=8, num_kv_heads=4,
             intermediate_size=688, max_position_embeddings=2048)
LR, BETAS, WEIGHT_DECAY, CLIP = 3e-4, (0.9, 0.95), 0.1, 1.0


def load_blocks(corpus: Path, cache: Path, seq: int, count: int) -> dict[str, torch.Tensor]:
    """`count` packed blocks of length `seq` holding >= 2 documents each, collated ([count, seq] tensors)."""
    from forgather.data.collate import collate_blocks
    from forgather.data.opening import open_data
    from forgather.data.spec import DataSpec

    spec = DataSpec.from_dict({
        "sources": [{"path": str(p)} for p in sorted(corpus.glob("*.parquet"))],
        "tokenizer": {"vocab_size": SHAPE["vocab_size"]}, "block_size": seq, "cache_dir": str(cache)})
    data = open_data(spec)
    if data.tokenizer.vocab_size > SHAPE["vocab_size"]:
        raise SystemExit(f"tokenizer vocab {data.tokenizer.vocab_size} exceeds model vocab {SHAPE['vocab_size']}")
    picked = []
    for tokens, segments in (b for s in range(data.train.shards) for b in data.train.epoch_blocks(s, 0)):
        if len(segments) >= 2 and int(segments[:, 1].sum()) == seq:  # multi-document, no padding
            picked.append((tokens, segments))
            if len(picked) == count:
                break
    if len(picked) < count:
        raise SystemExit(f"only {len(picked)} full multi-document blocks of {seq} tokens; lower --steps/--batch")
    return collate_blocks(picked)


def adamw(model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW as forgather.train.optim.build_optimizer builds it on CPU (decay on matrices only, foreach)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, foreach=True)


def build_contender(name: str) -> tuple[torch.nn.Module, Callable[[dict[str, torch.Tensor]], float]]:
    """(model, step(batch) -> loss) for one contender; every model starts from the same seed-0 weights."""
    from forgather.models.spec import ModelSpec
    from forgather.models.transformer import build_model
    from forgather.train.step import IGNORE_INDEX, train_step

    spec = ModelSpec(**SHAPE).validate()
    torch.manual_seed(0)
    ours = build_model(spec, "sdpa", device="cpu")
    if name.startswith("hf"):
        from transformers import LlamaConfig, LlamaForCausalLM

        from forgather.models.hf import hf_config, to_hf_key

        config = LlamaConfig(**hf_config(spec))
        config._attn_implementation = "sdpa"
        model = LlamaForCausalLM(config)
        model.load_state_dict({to_hf_key(k): v for k, v in ours.state_dict().items()}, strict=True)
        del ours
    else:
        model = ours
    model.train()
    opt = adamw(model)
    params = [p for p in model.parameters()]

    def finish() -> None:
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if name.startswith("hf"):
        def step(batch: dict[str, torch.Tensor]) -> float:
            # HF shifts labels itself: labels=input_ids is the same next-token target as our shifted labels.
            out = model(batch["input_ids"], labels=batch["input_ids"])
            out.loss.backward()
            finish()
            return out.loss.item()
    else:
        packed = name == "forgather_packed"

        def step(batch: dict[str, torch.Tensor]) -> float:
            ids = batch["input_ids"]
            if packed:
                mb = batch
            else:  # one causal sequence per row: targets are simply the next token, as HF's
                labels = torch.roll(ids, -1, 1)
                labels[:, -1] = IGNORE_INDEX
                mb = {"input_ids": ids, "labels": labels}
            loss, _ = train_step(model, [mb], world_size=1)
            finish()
            return loss.item()
    return model, step


def batches(blocks: dict[str, torch.Tensor], batch: int) -> list[dict[str, torch.Tensor]]:
    """Split collated blocks into consecutive batches of `batch` rows."""
    n = blocks["input_ids"].shape[0] // batch
    return [{k: v[i * batch:(i + 1) * batch].contiguous() for k, v in blocks.items()} for i in range(n)]


def worker(name: str, blocks_file: str, batch: int) -> None:
    """Worker body: set the process up as its framework would, build the contender, then step on request.

    Reads 'step I' lines on stdin (I: batch index) and answers each with one JSON line; 'quit' answers with
    the peak RSS. forgather's worker does what forgather.run does first; HF's is a plain script.
    """
    if name in ("forgather", "forgather_packed", "hf_tuned"):
        from forgather.allocator import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(os.cpu_count() or 1)
    data = batches(torch.load(blocks_file), batch)
    _, step = build_contender(name)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.startswith("quit"):
            print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
            return
        index = int(line.split()[1])
        t0 = time.perf_counter()
        loss = step(data[index])
        print(json.dumps({"seconds": time.perf_counter() - t0, "loss": loss}), flush=True)


class Worker:
    """One contender's worker process, driven one step at a time."""

    def __init__(self, name: str, blocks_file: str, batch: int) -> None:
        cmd = [sys.executable, "-m", "benchmarks.train_step_bench", "--worker", name, "--blocks-file", blocks_file,
               "--batch", str(batch)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"worker {name} failed to start")

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def finish(self) -> dict:
        out = self.ask("quit")
        self.proc.wait(timeout=60)
        return out


def time_lockstep(names: list[str], blocks_file: str, batch: int, seq: int, num_batches: int,
                  warmup: int) -> dict[str, dict]:
    """Step every contender's worker on batch i in turn (order reversed every other round); per-step seconds
    after `warmup` rounds, their medians, and the per-round ratios against hf."""
    workers = {n: Worker(n, blocks_file, batch) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    first_loss: dict[str, float] = {}
    for i in range(num_batches):
        for n in (names if i % 2 == 0 else names[::-1]):
            reply = workers[n].ask(f"step {i}")
            first_loss.setdefault(n, reply["loss"])
            if i >= warmup:
                times[n].append(reply["seconds"])
    tokens = batch * seq
    out = {}
    for n in names:
        tps = sorted(tokens / t for t in times[n])
        out[n] = {"median_tokens_per_s": statistics.median(tps), "min_tokens_per_s": tps[0],
                  "max_tokens_per_s": tps[-1], "median_step_s": statistics.median(times[n]),
                  "timed_steps": len(times[n]), "first_step_loss": first_loss[n], **workers[n].finish()}
        if "hf" in times:  # per-round ratio: both steps ran back to back, so load drift mostly cancels
            ratios = sorted(h / t for h, t in zip(times["hf"], times[n]))
            out[n].update(paired_ratio_vs_hf=statistics.median(ratios), paired_ratio_min=ratios[0],
                          paired_ratio_max=ratios[-1])
    return out


def profile(data: list[dict[str, torch.Tensor]], steps: int, rows: int) -> None:
    """torch.profiler over `steps` forgather steps (after one warmup); top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    _, step = build_contender("forgather")
    step(data[0])
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in data[1:1 + steps]:
            step(b)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--tokens-per-step", type=int, default=8192, help="batch = tokens_per_step // seq")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per contender per setting")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--contenders", nargs="+", default=list(DEFAULT_CONTENDERS), choices=CONTENDERS)
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "forgather_train_step_bench")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--profile", action="store_true", help="profile forgather steps at the first seq instead")
    ap.add_argument("--profile-rows", type=int, default=25)
    ap.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--blocks-file", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        worker(args.worker, args.blocks_file, args.batch)
        return
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.profile:
        seq = args.seqs[0]
        batch = max(1, args.tokens_per_step // seq)
        data = batches(load_blocks(args.corpus, args.cache_dir, seq, batch * 4), batch)
        print(f"profiling forgather, seq {seq}, batch {batch}, {threads} threads")
        profile(data, 3, args.profile_rows)
        return

    from forgather.models.spec import ModelSpec, parameter_counts

    total, _ = parameter_counts(ModelSpec(**SHAPE))
    print(f"model: {SHAPE} ({total / 1e6:.2f}M params, fp32); AdamW lr={LR} betas={BETAS} wd={WEIGHT_DECAY} "
          f"foreach, clip {CLIP}; {threads} threads; torch {torch.__version__}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seq in args.seqs:
            batch = max(1, args.tokens_per_step // seq)
            blocks = load_blocks(args.corpus, args.cache_dir, seq, batch * (args.warmup + args.steps))
            blocks_file = os.path.join(tmp, f"blocks{seq}.pt")
            torch.save(blocks, blocks_file)
            docs = float((blocks["document_ids"].max(1).values + 1).float().mean())
            timing = time_lockstep(args.contenders, blocks_file, batch, seq, args.warmup + args.steps, args.warmup)
            results.append({"seq": seq, "batch": batch, "docs_per_block": docs, "contenders": timing})
            print(f"seq {seq}: done ({docs:.1f} docs/block)", file=sys.stderr, flush=True)

    print("\n| seq × batch | contender | median tokens/s | min–max tokens/s | ratio of medians vs HF | "
          "median paired ratio vs HF (min–max) | peak RSS (MiB) | first loss |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        hf = r["contenders"].get("hf", {}).get("median_tokens_per_s")
        for n, c in r["contenders"].items():
            ratio = f"{c['median_tokens_per_s'] / hf:.2f}×" if hf else "–"
            paired = (f"{c['paired_ratio_vs_hf']:.2f}× ({c['paired_ratio_min']:.2f}–{c['paired_ratio_max']:.2f})"
                      if "paired_ratio_vs_hf" in c else "–")
            print(f"| {r['seq']} × {r['batch']} | {n} | {c['median_tokens_per_s']:,.0f} | "
                  f"{c['min_tokens_per_s']:,.0f}–{c['max_tokens_per_s']:,.0f} | {ratio} | {paired} | "
                  f"{c['peak_rss_mib']:.0f} | {c['first_step_loss']:.4f} |")
    if "hf" in args.contenders and "forgather" in args.contenders:
        verdicts = [f"seq {r['seq']}: {r['contenders']['forgather']['paired_ratio_vs_hf']:.2f}×" for r in results]
        goal = all(r["contenders"]["forgather"]["paired_ratio_vs_hf"] >= 1.2 for r in results)
        print(f"\nGoal forgather >= 1.2× HF (median paired ratio): {'met' if goal else 'NOT met'} "
              f"({', '.join(verdicts)}).")
    write_json(args.json, {"model": {**SHAPE, "params": total, "dtype": "float32"},
                           "transformers": __import__("transformers").__version__,
                           "optimizer": {"lr": LR, "betas": BETAS, "weight_decay": WEIGHT_DECAY, "clip": CLIP},
                           "tokens_per_step": args.tokens_per_step, "warmup": args.warmup,
                           "timed_steps": args.steps, "results": results})


if __name__ == "__main__":
    main()
