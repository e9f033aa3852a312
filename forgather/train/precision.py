"""Precision: one decision, the same in every mode and world size, printed once at start.

bf16 compute (autocast) with fp32 master weights, fp32 optimizer state and fp32 gradient reductions; on
CUDA, fp32 matmuls that remain use TF32 tensor cores. DDP and dispatch hold fp32 parameters, so their
gradients and all-reduces are fp32; FSDP2 gathers parameters in bf16 (half the traffic and unsharded memory)
and reduce-scatters gradients in fp32. Without a GPU the default is fp32 (flex has no CPU backward and bf16
CPU matmuls are slow); `train.precision: bf16` forces bf16 anywhere.

The plan is torch-free, so the CLI can check a config against it before torchrun starts; the functions that
apply it import torch when called.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PrecisionPlan:
    """The dtypes of one run: what matmuls compute in, what parameters and reductions are kept in."""

    compute: str  # "bfloat16" | "float32": the matmul dtype
    device_type: str
    master: str = "float32"  # parameters and optimizer state
    reduce: str = "float32"  # gradient reductions across ranks
    tf32: bool = False  # fp32 matmuls on TF32 tensor cores

    @property
    def bf16(self) -> bool:
        return self.compute == "bfloat16"

    def describe(self) -> str:
        """One line for the start of a run."""
        compute = ("bf16 compute (autocast; FSDP2 gathers bf16 parameters)" if self.bf16 else "fp32 compute")
        tf32 = "; TF32 for fp32 matmuls" if self.tf32 else ""
        return f"precision: {compute}, {self.master} master weights and optimizer state, {self.reduce} gradient " \
               f"reductions{tf32}".replace("float32", "fp32")


def plan_precision(setting: str, device_type: str) -> PrecisionPlan:
    """The plan for train.precision (auto | bf16 | fp32) on `device_type`; auto is bf16 on CUDA, fp32 elsewhere."""
    cuda = device_type == "cuda"
    bf16 = setting == "bf16" or (setting == "auto" and cuda)
    return PrecisionPlan(compute="bfloat16" if bf16 else "float32", device_type=device_type, tf32=cuda)


def autocast(plan: PrecisionPlan) -> contextlib.AbstractContextManager:
    """The context every forward (training and evaluation) runs under."""
    import torch

    if not plan.bf16:
        return contextlib.nullcontext()
    return torch.autocast(plan.device_type, dtype=torch.bfloat16)


def fsdp_mixed_precision(plan: PrecisionPlan) -> Any:
    """FSDP2's MixedPrecisionPolicy for the plan: bf16 gathers and fp32 reductions, or fp32 throughout."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not plan.bf16:
        return MixedPrecisionPolicy(reduce_dtype=torch.float32)
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def apply_process_settings(plan: PrecisionPlan) -> None:
    """Process-wide switches of the plan (TF32 on CUDA); call once per rank before building the model."""
    if plan.tf32:
        import torch

        torch.set_float32_matmul_precision("high")
