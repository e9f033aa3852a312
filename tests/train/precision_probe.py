"""Run under torchrun (gloo, CPU) with PROJECT as argument: one bf16 training step per dist mode, reporting the
dtypes the matmuls and gradient reductions saw. Rank 0 prints one JSON line `PROBE {...}`.

It builds the model the way `forgather train` does (plan_precision → build_wrapped_model → the plan's autocast),
with train.precision forced to bf16 because CPU defaults to fp32.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from forgather.config import build_config  # noqa: E402
from forgather.dist.setup import setup, teardown  # noqa: E402
from forgather.models.spec import ModelSpec  # noqa: E402
from forgather.project import compose_project, find_project, resolve  # noqa: E402
from forgather.train.assemble import build_wrapped_model  # noqa: E402
from forgather.train.checkpointing import RunCheckpointer  # noqa: E402
from forgather.train.precision import autocast, plan_precision  # noqa: E402
from forgather.train.step import train_step  # noqa: E402

MATMULS = {"mm", "addmm", "bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu",
           "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention"}


class MatmulDtypes(TorchDispatchMode):
    """Records the dtypes of matmul-like aten ops, as they run (after autocast's casts)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in MATMULS:
            self.seen.update(str(a.dtype) for a in args[:2] if isinstance(a, torch.Tensor))
        return func(*args, **(kwargs or {}))


def local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def main() -> None:
    tree, origins = resolve(compose_project(find_project(Path(sys.argv[1]))))
    config = build_config(tree, origins)
    config.train.precision, config.train.compile = "bf16", False
    info = setup(config.dist)
    spec = ModelSpec.from_dict(config.model.arch)
    precision = plan_precision(config.train.precision, info.device.type)
    reductions: list[str] = []
    # FSDP2's gradient reduce-scatter: reduce_scatter_single from torch 2.13, reduce_scatter_tensor before
    # (both take (output, input, ...)); the GPU machines run 2.11.
    collective = "reduce_scatter_single" if hasattr(dist, "reduce_scatter_single") else "reduce_scatter_tensor"
    real_reduce_scatter = getattr(dist, collective)

    def reduce_scatter(*args, **kwargs):
        reductions.append(str(kwargs.get("input", args[1] if len(args) > 1 else None).dtype))
        return real_reduce_scatter(*args, **kwargs)

    setattr(dist, collective, reduce_scatter)
    report = {}
    for mode in ("ddp", "fsdp2", "dispatch"):
        config.dist.mode = mode
        reductions.clear()
        model = build_wrapped_model(config, spec, info, RunCheckpointer(config, spec, info), precision)
        if hasattr(model, "register_comm_hook"):  # DDP's bucketed gradient all-reduce
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            def hook(state, bucket):
                reductions.append(str(bucket.buffer().dtype))
                return allreduce_hook(state, bucket)

            model.register_comm_hook(None, hook)
        g = torch.Generator().manual_seed(info.rank)
        ids = torch.randint(0, spec.vocab_size, (2, 16), generator=g)
        batch = {"input_ids": ids, "labels": ids.roll(-1, 1),
                 "document_ids": torch.tensor([[0] * 8 + [1] * 8, [0] * 16])}
        with MatmulDtypes() as probe:
            train_step(model, [batch], info.world_size, autocast(precision))
        from torch.distributed.fsdp import FSDPModule

        report[mode] = {
            "sharded": isinstance(model, FSDPModule),
            "matmuls": sorted(probe.seen),
            "reductions": sorted(set(reductions)),
            "params": sorted({str(local(p).dtype) for p in model.parameters()}),
            "grads": sorted({str(local(p.grad).dtype) for p in model.parameters() if p.grad is not None}),
        }
    if info.is_main:
        print("PROBE " + json.dumps({"world": info.world_size, "plan": precision.describe(), **report}), flush=True)
    dist.barrier()
    teardown()


if __name__ == "__main__":
    main()
