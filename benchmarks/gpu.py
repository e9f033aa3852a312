"""GPU first contact: forgather's training step on one GPU, measured beside Hugging Face transformers.

Usage (from the repository root, on a machine with one CUDA GPU):
    python -m benchmarks.gpu                  # ≤ 8 minutes on an H100/H200; writes benchmarks/results/gpu.json
                                              # and the `gpu` section of BENCHMARKS.md
    python -m benchmarks.gpu --smoke          # the same code on CPU, tiny shapes, no flex/compile, < 60 s

Sections (each records its figures or its error; one that would overrun --budget is skipped and says so):
  a  124M Llama, block 4096, packed text, flex document masks, bf16, compile: tokens/s, MFU (6N + attention
     term vs the GPU's dense bf16 peak), peak memory, time split (data, forward+backward, optimizer), graph breaks
  b  the same batches as plain causal sequences through HF LlamaForCausalLM (bf16 autocast, sdpa) and through
     forgather with causal sdpa, from the same initial weights: tokens/s, and the losses after the steps
  c  forward agreement on packed blocks: flex vs sdpa vs eager, and packed == each document alone
  f  the largest batch at 4096 that fits (growing from a's), and its tokens/s
  d  one process FSDP2 (fully_shard, bf16 gathers) vs a's plain model: tokens/s and memory
  e  Qwen3 124M and DeepOne 117M: one line each
  g  q/k/v and gate/up projections: separate matmuls (forgather) vs one matmul on concatenated weights
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from forgather.devices import peak_flops_for_name
from forgather.models.spec import flops_per_token
from forgather.train.precision import PrecisionPlan, apply_process_settings, plan_precision

from .common import write_json
from .gpu_checks import agreement, concat_projection_timing
from .gpu_data import Corpus, build_corpus
from .gpu_report import markdown, update_report
from .gpu_run import Stepper, forgather_model, hf_llama, memory, model_spec, reset_memory

REPO = Path(__file__).resolve().parents[1]
FULL = dict(block=4096, batch=8, vocab=49152, max_chars=16_000_000, warmup=3, timed=20, agree_steps=200,
            batches=(16, 24, 32, 48, 64, 96, 128), compile=True)
SMOKE = dict(block=256, batch=2, vocab=512, max_chars=400_000, warmup=1, timed=3, agree_steps=30,
             batches=(4,), compile=False)


class Bench:
    """What every section shares: device, shapes, precision, the packed corpus, the time budget, results."""

    def __init__(self, smoke: bool, budget: float) -> None:
        self.smoke, self.cfg = smoke, SMOKE if smoke else FULL
        self.deadline = time.monotonic() + budget
        self.device = torch.device("cpu" if smoke else "cuda")
        self.precision: PrecisionPlan = plan_precision("auto", self.device.type)
        apply_process_settings(self.precision)
        name = "cpu" if smoke else torch.cuda.get_device_name(self.device)
        self.peak = None if smoke else peak_flops_for_name(name)
        self.results: dict[str, Any] = {"mode": "smoke: CPU, tiny shapes, no flex, no compile" if smoke else "full",
                                        "device": name, "precision": self.precision.describe(),
                                        "shape": {k: self.cfg[k] for k in ("block", "batch", "vocab")}}
        self.corpus: Corpus | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def fetch(self, batch: int) -> Callable[[int], dict[str, torch.Tensor]]:
        """Batch i of `batch` packed blocks, cycling through the corpus."""
        return lambda i: self.corpus.batch(i, batch)

    def figures(self, spec, tokens: int, seconds: float) -> dict[str, float]:
        """tokens/s and MFU (6N + attention term at the block length, against the dense bf16 peak)."""
        tps = tokens / seconds
        out = {"tokens_per_s": tps}
        if self.peak:
            out["mfu_pct"] = 100 * tps * flops_per_token(spec, self.cfg["block"]) / self.peak
        return out

    def section(self, key: str, title: str, body: Callable[[], dict[str, Any]], needs: float) -> None:
        """Run one section unless the budget is spent; record its figures, or its error in one line."""
        if self.remaining() < needs:
            self.results[key] = {"title": title, "skipped": f"time budget ({self.remaining():.0f} s left)"}
            return
        started = time.monotonic()
        print(f"[{key}] {title} ({self.remaining():.0f} s of the budget left)", flush=True)
        reset_memory(self.device)
        try:
            self.results[key] = {"title": title, **body()}
        except Exception as exc:  # a failing section must not hide the others' figures
            traceback.print_exc()
            self.results[key] = {"title": title, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        self.results[key]["seconds"] = round(time.monotonic() - started, 1)
        print(f"[{key}] {json.dumps(self.results[key], default=str)}", flush=True)


def throughput(bench: Bench, arch: str, attention: str, batch: int, packed: bool = True,
               wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m) -> dict[str, Any]:
    """Warm up (compiling), then time bench.cfg['timed'] steps: tokens/s, MFU, memory, split, graph breaks."""
    from forgather.dist.parallelize import graph_breaks

    torch._dynamo.utils.counters.clear()
    spec = model_spec(arch, bench.smoke)
    model = wrap(forgather_model(spec, attention, bench.device, bench.cfg["compile"]))
    stepper = Stepper(model, bench.precision, bench.device, packed=packed)
    fetch = bench.fetch(batch)
    _, compile_s = stepper.run(fetch, 0, bench.cfg["warmup"])
    timed = bench.cfg["timed"]
    losses, seconds = stepper.run(fetch, bench.cfg["warmup"], timed, timed=True)
    stepper.times.collect()
    out = {"batch": batch, "warmup_and_compile_s": round(compile_s, 1),
           **bench.figures(spec, timed * batch * bench.cfg["block"], seconds), **memory(bench.device),
           "graph_breaks": sum(graph_breaks().values()), "last_loss": float(losses[-1])}
    if bench.device.type == "cuda":
        out["split_ms_per_step"] = {k: round(getattr(stepper.times, k) / timed, 2)
                                    for k in ("data", "forward_backward", "optimizer")}
    return out


def largest_batch(bench: Bench) -> dict[str, Any]:
    """Grow the batch until a step runs out of memory; the largest that fit and its tokens/s."""
    best: dict[str, Any] = {"batch": bench.cfg["batch"], **{k: bench.results["a"].get(k) for k in ("tokens_per_s",)}}
    for batch in bench.cfg["batches"]:
        if bench.remaining() < 60 and not bench.smoke:  # each new batch size recompiles
            best["stopped"] = "time budget"
            break
        try:
            reset_memory(bench.device)
            best = throughput(bench, "llama", "auto", batch)
        except Exception as exc:  # OOM may also surface wrapped, from inside compiled code
            if "out of memory" not in str(exc).lower():
                raise
            best["next_batch_out_of_memory"] = batch
            break
    return best


def hf_versus_forgather(bench: Bench) -> dict[str, Any]:
    """HF and forgather (causal sdpa, compiled) on the same plain causal batches, from the same weights."""
    spec, steps, batch = model_spec("llama", bench.smoke), bench.cfg["agree_steps"], bench.cfg["batch"]
    fetch, skip = bench.fetch(batch), min(20, steps // 3)  # steps before `skip` (compile) are not timed
    out: dict[str, Any] = {"steps": steps}
    contenders = {"hf": lambda: Stepper(hf_llama(spec, bench.device), bench.precision, bench.device, hf=True,
                                        packed=False),
                  "forgather_causal": lambda: Stepper(forgather_model(spec, "auto", bench.device, bench.cfg["compile"]),
                                                      bench.precision, bench.device, packed=False)}
    for name, make in contenders.items():
        reset_memory(bench.device)
        stepper = make()
        first, _ = stepper.run(fetch, 0, skip)
        rest, seconds = stepper.run(fetch, skip, steps - skip)
        losses = [float(x) for x in first + rest]
        out[name] = {**bench.figures(spec, (steps - skip) * batch * bench.cfg["block"], seconds),
                     **memory(bench.device), "final_loss": losses[-1], "last10_mean_loss": sum(losses[-10:]) / 10}
        del stepper
    hf, ours = out["hf"]["last10_mean_loss"], out["forgather_causal"]["last10_mean_loss"]
    out["loss_relative_difference"] = abs(ours - hf) / hf
    return out


def fsdp2_one_process(bench: Bench) -> dict[str, Any]:
    """--dist-mode fsdp2 on one process: fully_shard per block and root (world 1), the plan's FSDP2 policy."""
    import torch.distributed as dist

    from forgather.dist.parallelize import wrap_fsdp2
    from forgather.dist.setup import DistInfo
    from forgather.train.precision import fsdp_mixed_precision

    info = DistInfo(0, 0, 1, bench.device, "nccl" if bench.device.type == "cuda" else "gloo")
    with tempfile.TemporaryDirectory() as tmp:  # a file store: no port to pick
        dist.init_process_group(info.backend, init_method=f"file://{tmp}/store", rank=0, world_size=1,
                                device_id=bench.device if bench.device.type == "cuda" else None)
        try:
            fsdp = throughput(bench, "llama", "auto", bench.cfg["batch"],
                              wrap=lambda m: wrap_fsdp2(m, info, fsdp_mixed_precision(bench.precision)))
        finally:
            dist.destroy_process_group()
    plain = bench.results.get("a", {})
    return {"fsdp2": fsdp, "ddp_one_process_is_section_a": {k: plain.get(k) for k in
                                                            ("tokens_per_s", "peak_allocated_gib", "peak_reserved_gib")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, no flex/compile (< 60 s)")
    parser.add_argument("--json", type=Path, help="results file (default benchmarks/results/gpu.json, "
                                                  "gpu-smoke.json with --smoke)")
    parser.add_argument("--report", type=Path, help="markdown file whose gpu section is replaced "
                                                    "(default BENCHMARKS.md; none with --smoke)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 440; 120 with --smoke)")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu: no CUDA GPU here; run it on a GPU machine, or --smoke on CPU")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    started = time.monotonic()
    bench = Bench(args.smoke, args.budget or (120 if args.smoke else 440))
    cfg = bench.cfg
    bench.corpus = build_corpus(cfg["block"], cfg["vocab"], cfg["max_chars"], min_blocks=cfg["batch"])
    bench.results["corpus"] = {"blocks": int(bench.corpus.blocks["input_ids"].shape[0]), "documents": bench.corpus.documents,
                               "tokenizer_vocab": bench.corpus.vocab_size, "seconds": round(bench.corpus.seconds, 1),
                               "documents_per_block": float((bench.corpus.blocks["document_ids"].max(1).values + 1)
                                                            .float().mean())}
    # In order of importance; each needs at least this many seconds left (compile included) or is skipped.
    needs = (lambda full: 0 if args.smoke else full)
    bench.section("a", "124M Llama, flex document masks, bf16, compile",
                  lambda: throughput(bench, "llama", "auto", cfg["batch"]), needs(150))
    bench.section("b", "HF LlamaForCausalLM vs forgather, plain causal", lambda: hf_versus_forgather(bench), needs(150))
    bench.section("c", "forward agreement on packed blocks", lambda: agreement(bench), needs(60))
    bench.section("f", "largest batch at the block length", lambda: largest_batch(bench), needs(90))
    bench.section("d", "one process: FSDP2 vs plain (DDP skips its wrapper on one process)",
                  lambda: fsdp2_one_process(bench), needs(90))
    for arch in ("qwen3", "deepone"):
        bench.section(f"e_{arch}", f"{arch} 124M class, flex document masks",
                      lambda arch=arch: throughput(bench, arch, "auto", cfg["batch"]), needs(60))
    bench.section("g", "projection matmuls: separate vs concatenated weights",
                  lambda: concat_projection_timing(bench), needs(20))
    bench.results["total_seconds"] = round(time.monotonic() - started, 1)
    table = markdown(bench.results)
    print(table)
    results_file = args.json or REPO / "benchmarks" / "results" / ("gpu-smoke.json" if args.smoke else "gpu.json")
    write_json(results_file, bench.results)
    report = args.report or (None if args.smoke else REPO / "BENCHMARKS.md")
    if report is not None:
        update_report(report, table, bench.results)
    print(f"wrote {results_file}" + (f" and {report}" if report else ""))


if __name__ == "__main__":
    main()
