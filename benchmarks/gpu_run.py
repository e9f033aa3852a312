"""Models and training steps for the GPU bench: forgather's own pieces, and HF's LlamaForCausalLM beside them.

A forgather step is what Trainer._train_step does (train.step.train_step under the precision plan's autocast,
clip, fused AdamW, schedule); HF's is model(ids, labels).loss.backward() under the same autocast, with the
same optimizer. Steps are timed with CUDA events split into data (host fetch + H2D copy), forward+backward
and optimizer, and in wall time between two device syncs for tokens/s; nothing is read back in between.
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from typing import Callable

import torch
import yaml

from forgather.dist.parallelize import apply_compile
from forgather.models.attention_plan import plan_attention
from forgather.models.spec import ModelSpec
from forgather.models.transformer import build_model
from forgather.resources import MODELS_DIR
from forgather.train.optim import build_optimizer
from forgather.train.precision import PrecisionPlan, autocast
from forgather.train.step import IGNORE_INDEX, train_step

MODEL_FILES = {"llama": "llama/124M.yaml", "qwen3": "qwen3/124M.yaml", "deepone": "deepone/117M.yaml"}
TINY = dict(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)
LR, WARMUP, CLIP = 1e-3, 20, 1.0
OPTIMIZER = types.SimpleNamespace(weight_decay=0.1, betas=[0.9, 0.95])  # what build_optimizer reads


def model_spec(arch: str, smoke: bool) -> ModelSpec:
    """The model project's 124M-class shape for `arch` (a tiny one in smoke mode)."""
    folder = MODELS_DIR
    base = yaml.safe_load((folder / arch / "base.yaml").read_text())
    if smoke:
        return ModelSpec.from_dict({**base, **TINY, "max_position_embeddings": 4096})
    size = yaml.safe_load((folder / MODEL_FILES[arch]).read_text())
    size.pop("extends", None)
    return ModelSpec.from_dict({**base, **size, "max_position_embeddings": 4096})


def forgather_model(spec: ModelSpec, attention: str, device: torch.device, compile_blocks: bool) -> torch.nn.Module:
    """build_model from seed 0, compiled per block as `forgather train` does (fullgraph where it compiles whole)."""
    torch.manual_seed(0)
    model = build_model(spec, attention, device=device)
    if compile_blocks:
        apply_compile(model, fullgraph=plan_attention(attention, device.type).compiles_whole)
    return model


def hf_llama(spec: ModelSpec, device: torch.device) -> torch.nn.Module:
    """HF LlamaForCausalLM (sdpa) holding the same seed-0 initial weights as forgather_model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from forgather.models.hf import hf_config, to_hf_key

    torch.manual_seed(0)
    ours = build_model(spec, "auto", device="cpu")
    config = LlamaConfig(**hf_config(spec))
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    model.load_state_dict({to_hf_key(k): v for k, v in ours.state_dict().items()}, strict=True)
    return model.to(device)


@dataclass
class StepTimes:
    """Summed CUDA-event milliseconds per phase over the timed steps (empty on CPU)."""

    data: float = 0.0
    forward_backward: float = 0.0
    optimizer: float = 0.0
    events: list = field(default_factory=list)

    def collect(self) -> None:
        for e0, e1, e2, e3, host_ms in self.events:
            self.data += e0.elapsed_time(e1) + host_ms
            self.forward_backward += e1.elapsed_time(e2)
            self.optimizer += e2.elapsed_time(e3)
        self.events.clear()


class Stepper:
    """One model and its optimizer, stepping on batches: forgather's step or HF's."""

    def __init__(self, model: torch.nn.Module, precision: PrecisionPlan, device: torch.device, hf: bool = False,
                 packed: bool = True) -> None:
        self.model, self.device, self.hf, self.packed = model.train(), device, hf, packed
        self.autocast = autocast(precision)
        self.optimizer = build_optimizer(model, OPTIMIZER, LR, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / WARMUP))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.times = StepTimes()

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keys = ("input_ids", "labels", "position_ids", "document_ids") if self.packed else ("input_ids", "labels")
        moved = {k: batch[k].to(self.device, non_blocking=True) for k in keys}
        if self.hf:  # HF shifts labels itself: give it ours one position later (same targets, same ignored ones)
            labels = torch.roll(moved["labels"], 1, dims=1)
            labels[:, 0] = IGNORE_INDEX
            moved["labels"] = labels
        return moved

    def step(self, fetch: Callable[[], dict[str, torch.Tensor]], timed: bool = False) -> torch.Tensor:
        """One optimizer step on the batch `fetch` returns; the loss as an unread device scalar."""
        cuda = self.device.type == "cuda" and timed
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if cuda else []
        started = time.perf_counter()
        batch = fetch()
        host_ms = 1000 * (time.perf_counter() - started)
        if marks:
            marks[0].record()
        inputs = self._inputs(batch)
        if marks:
            marks[1].record()
        if self.hf:
            with self.autocast:
                loss = self.model(input_ids=inputs["input_ids"], labels=inputs["labels"]).loss
            loss.backward()
            loss = loss.detach()
        else:
            loss, _ = train_step(self.model, [inputs], 1, self.autocast)
        if marks:
            marks[2].record()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if marks:
            marks[3].record()
            self.times.events.append((*marks, host_ms))
        return loss

    def run(self, fetch: Callable[[int], dict[str, torch.Tensor]], start: int, steps: int,
            timed: bool = False) -> tuple[list[torch.Tensor], float]:
        """Steps start..start+steps-1 between two device syncs; (their losses, wall seconds)."""
        synchronize(self.device)
        began = time.perf_counter()
        losses = [self.step(lambda i=i: fetch(i), timed) for i in range(start, start + steps)]
        synchronize(self.device)
        return losses, time.perf_counter() - began


def synchronize(device: torch.device) -> None:
    """Wait for the device (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory(device: torch.device) -> dict[str, float]:
    """Peak allocated and reserved GiB since the last reset (CUDA), else {}."""
    if device.type != "cuda":
        return {}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30}


def reset_memory(device: torch.device) -> None:
    """Free cached blocks and restart the peak counters (CUDA)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
