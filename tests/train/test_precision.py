"""One precision policy: bf16 matmuls, fp32 master weights and fp32 gradient reductions in every mode and world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgather.train.precision import plan_precision

HERE = Path(__file__).resolve().parent


def test_auto_is_bf16_with_tf32_on_cuda_and_fp32_on_cpu():
    cuda, cpu = plan_precision("auto", "cuda"), plan_precision("auto", "cpu")
    assert (cuda.compute, cuda.master, cuda.reduce, cuda.tf32) == ("bfloat16", "float32", "float32", True)
    assert (cpu.compute, cpu.tf32) == ("float32", False)
    assert plan_precision("bf16", "cpu").bf16 and not plan_precision("fp32", "cuda").bf16
    assert cuda.describe() == ("precision: bf16 compute (autocast; FSDP2 gathers bf16 parameters), fp32 master "
                               "weights and optimizer state, fp32 gradient reductions; TF32 for fp32 matmuls")


@pytest.mark.parametrize("nproc", [1, 2])
def test_every_mode_computes_in_bf16_and_keeps_and_reduces_fp32(tiny_project, nproc):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
         str(HERE / "precision_probe.py"), str(tiny_project)],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(next(l for l in result.stdout.splitlines() if l.startswith("PROBE "))[len("PROBE "):])
    assert report["world"] == nproc
    for mode in ("ddp", "fsdp2", "dispatch"):
        got = report[mode]
        assert got["matmuls"] == ["torch.bfloat16"], (mode, got)
        assert got["params"] == got["grads"] == ["torch.float32"], (mode, got)
        assert got["sharded"] == (mode == "fsdp2"), (mode, got)  # one process shards too
        # Two ranks reduce gradients (DDP all-reduce, FSDP2 reduce-scatter); one rank has nothing to reduce.
        assert got["reductions"] == (["torch.float32"] if nproc == 2 else []), (mode, got)
