"""Checks before torchrun starts: the GPUs asked for exist, and the config can train on the device it gets.

torch-free (GPU facts come from NVML and the environment). Each problem is one line naming the flag or the
config key (file:line) and the fix; `forgather train` stops on the first, `--dry-run` prints them as warnings.
"""

from __future__ import annotations

import argparse
from typing import Mapping

from .config import RunConfig
from .devices import Gpu, devices_problem, nvml_gpus, visible_gpu_count
from .launch import parse_devices
from .models.attention_plan import training_problem
from .train.precision import plan_precision
from .yamlio import Origins


def launch_problems(config: RunConfig, args: argparse.Namespace, origins: Origins, environ: Mapping[str, str],
                    gpus: list[Gpu] | None = None) -> list[str]:
    """Everything that would make the ranks fail (or silently run elsewhere than asked), as one line each."""
    gpus = nvml_gpus() if gpus is None else gpus
    problems = []
    use_gpus = config.dist.accelerator and not args.no_accelerator
    if use_gpus and args.devices:
        devices = parse_devices(args.devices)
        problem = devices_problem(devices, gpus, args.devices)
        if problem:
            problems.append(problem)
        visible = len(devices)
    else:
        visible = visible_gpu_count(dict(environ), gpus) if use_gpus else 0
    nproc = args.nproc_per_node
    if visible and nproc and nproc > visible:
        problems.append(f"--nproc-per-node {nproc} with {visible} visible GPU(s): each rank needs a GPU of its own; "
                        f"use at most {visible} processes, more GPUs with -d, or --no-accelerator for CPU processes")
    device_type = "cuda" if visible else "cpu"
    precision = plan_precision(config.train.precision, device_type)
    attention = config.model.attn_implementation
    problem = training_problem(attention, device_type, precision.compute)
    if problem:
        where = origins.get("model.attn_implementation", "model.attn_implementation")
        problems.append(f"{where}: model.attn_implementation={attention}: {problem}")
    return problems
