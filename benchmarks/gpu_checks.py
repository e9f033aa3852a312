"""GPU bench checks beside throughput: backend agreement on packed blocks, and the projection-matmul choice."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from forgather.train.precision import autocast

from .gpu_run import forgather_model, model_spec, synchronize


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in fp32."""
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@torch.no_grad()
def agreement(bench: Any) -> dict[str, Any]:
    """Logits of flex vs sdpa vs eager on packed blocks, and of each document packed vs run alone."""
    spec = model_spec("llama", bench.smoke)
    model = forgather_model(spec, "auto", bench.device, compile_blocks=False).eval()
    batch = {k: v.to(bench.device) for k, v in bench.corpus.batch(0, 2).items()}
    ids, positions, documents = batch["input_ids"], batch["position_ids"], batch["document_ids"]
    backends = ["eager", "sdpa"] + (["flex_attention"] if bench.device.type == "cuda" else [])
    logits = {}
    with autocast(bench.precision):
        for backend in backends:  # the same weights under each backend (the model reads this every forward)
            model.attn_implementation = backend
            logits[backend] = model(ids, position_ids=positions, document_ids=documents).float()
        model.attn_implementation = "auto"
        packed = model(ids, position_ids=positions, document_ids=documents).float()
        alone = []
        for doc in range(min(4, int(documents[0].max()) + 1)):
            where = documents[0] == doc
            own = model(ids[0, where][None], position_ids=positions[0, where][None]).float()[0]  # causal, alone
            alone.append(_relative(packed[0, where], own))
    pairs = {f"{a}_vs_{b}": _relative(logits[a], logits[b]) for i, a in enumerate(backends) for b in backends[i + 1:]}
    tolerance = 3e-2 if bench.precision.bf16 else 1e-4
    worst = max([*pairs.values(), *alone])
    return {"relative_difference": pairs, "packed_vs_alone_worst": max(alone), "documents_checked": len(alone),
            "tolerance": tolerance, "agree": worst <= tolerance}


def _milliseconds(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Mean milliseconds of fn() after one warm-up call (CUDA events on a GPU, wall time on CPU)."""
    fn()
    synchronize(device)
    if device.type != "cuda":
        began = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - began) / repeats
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    synchronize(device)
    return start.elapsed_time(end) / repeats


def concat_projection_timing(bench: Any, repeats: int = 20) -> dict[str, Any]:
    """Forward+backward of a block's q/k/v and gate/up projections: separate matmuls vs one on concatenated
    weights, with fp32 weights under autocast (DDP) and with bf16 weights (as FSDP2 gathers them)."""
    spec = model_spec("llama", bench.smoke)
    block = forgather_model(spec, "auto", bench.device, compile_blocks=False).layers[0]
    attention, mlp = block.self_attn, block.mlp
    tokens = bench.cfg["batch"] * bench.cfg["block"]
    out: dict[str, Any] = {}
    for dtype in (torch.float32, torch.bfloat16):
        groups = [[w.detach().to(dtype).requires_grad_() for w in ws] for ws in (
            (attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight),
            (mlp.gate_proj.weight, mlp.up_proj.weight))]
        compute = torch.bfloat16 if bench.precision.bf16 or dtype == torch.bfloat16 else torch.float32
        x = torch.randn(tokens, spec.hidden_size, device=bench.device, dtype=compute, requires_grad=True)
        for name in ("separate", "concatenated"):
            def once(name: str = name) -> None:
                with autocast(bench.precision):
                    if name == "separate":
                        outputs = [x @ w.t() for group in groups for w in group]
                    else:
                        outputs = [x @ torch.cat(group).t() for group in groups]
                sum(o.float().sum() for o in outputs).backward()

            ms = _milliseconds(once, repeats, bench.device)
            out[f"{name}_{str(dtype).removeprefix('torch.')}_weights_ms"] = round(ms, 3)
    return out
