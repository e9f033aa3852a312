"""Throughput, MFU and memory figures, written with one vocabulary to the console and TensorBoard."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import torch

from ..devices import nvml_selector, peak_flops_for_name

def peak_flops(device: torch.device, override: float | None) -> float | None:
    """Peak FLOP/s of one device: the config's value, else the GPU table; None when unknown (CPU)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


def memory_stats(device: torch.device) -> dict[str, float]:
    """Process RSS, and on GPU torch's peak allocated/reserved plus NVML's used memory (GiB)."""
    gib = 1024**3
    stats = {"memory/rss(GiB)": psutil.Process().memory_info().rss / gib}
    if device.type == "cuda":
        stats["memory/max_allocated(GiB)"] = torch.cuda.max_memory_allocated(device) / gib
        stats["memory/max_reserved(GiB)"] = torch.cuda.max_memory_reserved(device) / gib
        used = nvml_used_bytes(device)
        if used is not None:
            stats["memory/nvml_used(GiB)"] = used / gib
    return stats


def nvml_used_bytes(device: torch.device) -> int | None:
    """NVML's used memory of the physical GPU behind `device` (found by UUID, not by CUDA's index)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # NVML is optional: absent library or driver just means no NVML figure
        return None
    try:
        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
        how, key = nvml_selector(index, uuid, os.environ.get("CUDA_VISIBLE_DEVICES"))
        handle = (pynvml.nvmlDeviceGetHandleByUUID(key) if how == "uuid"
                  else pynvml.nvmlDeviceGetHandleByIndex(key))
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def local_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Bytes of parameters and optimizer state held by this rank (its shards only, under FSDP2)."""

    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if hasattr(t, "to_local") else t

    params = sum(local(p).numel() * local(p).element_size() for p in model.parameters())
    moments = sum(local(v).numel() * local(v).element_size()
                  for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return {"memory/param_bytes": float(params), "memory/optimizer_bytes": float(moments)}


class ThroughputMeter:
    """Tokens/s, MFU and data-wait share over the training time since the last report.

    Evaluation and checkpoint writing run inside `excluded()`: their time counts neither as training nor
    against MFU. `synchronize` waits for queued device work, so an excluded window starts when the training
    work before it has finished, not when the host queued it.
    """

    def __init__(self, flops_per_token: float, peak: float | None, world_size: int,
                 synchronize: Callable[[], None] = lambda: None) -> None:
        self.flops_per_token = flops_per_token
        self.peak = peak
        self.world_size = world_size
        self.synchronize = synchronize
        self.reset()

    def reset(self) -> None:
        self.started = time.perf_counter()
        self.tokens = 0
        self.data_wait = 0.0
        self.excluded_time = 0.0

    def add(self, tokens: int, data_wait: float) -> None:
        self.tokens += tokens
        self.data_wait += data_wait

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        """Leave the time spent in this block out of the current window."""
        self.synchronize()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.excluded_time += time.perf_counter() - started

    def report(self) -> dict[str, float]:
        """Figures for the window since the last report (call after a device sync), then start a new one."""
        elapsed = max(time.perf_counter() - self.started - self.excluded_time, 1e-9)
        tps = self.tokens / elapsed
        out = {"tps": tps, "tps_per_device": tps / self.world_size, "data_wait(%)": 100 * self.data_wait / elapsed}
        if self.peak:
            out["mfu(%)"] = 100 * tps * self.flops_per_token / (self.peak * self.world_size)
        self.reset()
        return out


def _format(key: str, value: float) -> str:
    if key in ("loss", "eval/loss", "grad_norm"):
        return f"{key} {value:.4f}"
    if key == "lr":
        return f"lr {value:.3e}"
    if key.startswith("tps"):
        return f"{key} {value:,.0f}"
    return f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}"


ABANDONED_FILE = "metrics.abandoned.jsonl"


def set_aside_records_after(path: Path, step: int) -> int:
    """Move the records of steps after `step` from a metrics.jsonl to ABANDONED_FILE beside it; how many moved."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    kept, later = [], []
    for line in lines:
        try:
            past = int(json.loads(line)["step"]) > step
        except (ValueError, KeyError, TypeError):
            past = True  # a line cut short by a kill: the next record must not be appended to it
        (later if past else kept).append(line if line.endswith("\n") else line + "\n")
    if later:
        with open(path.with_name(ABANDONED_FILE), "a", encoding="utf-8") as aside:
            aside.writelines(later)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(path)
    return len(later)


class MetricsSink:
    """Rank 0's output: a console line (or tqdm bar on a TTY) and TensorBoard scalars under runs/."""

    CONSOLE_KEYS = ("loss", "lr", "grad_norm", "tps", "mfu(%)", "data_wait(%)", "memory/max_allocated(GiB)",
                    "memory/rss(GiB)", "eval/loss", "eval/perplexity")

    def __init__(self, log_dir: Path, total_steps: int, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        self.bar = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        # A resume retrains the steps after its checkpoint: what an earlier attempt logged for them (it was
        # killed before its next save) is not this run's history. TensorBoard hides it (purge_step), and
        # metrics.jsonl keeps it aside in metrics.abandoned.jsonl.
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=start_step + 1)
        abandoned = set_aside_records_after(log_dir / "metrics.jsonl", start_step)
        if abandoned:
            print(f"forgather: metrics of {abandoned} log step(s) after step {start_step}, from training since lost, "
                  f"moved to {log_dir / ABANDONED_FILE}", flush=True)
        # Exact values for scripts and tests (the console rounds, TensorBoard stores float32).
        self.jsonl = open(log_dir / "metrics.jsonl", "a", encoding="utf-8")
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, desc="train")
            except ImportError:
                self.bar = None

    def log(self, step: int, scalars: dict[str, Any], progress: list[str] | None = None) -> None:
        """Write scalars for `step` (finite ones to TensorBoard) and a console summary led by `progress`."""
        if not self.enabled:
            return
        for key, value in scalars.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self.jsonl.flush()
        shown = [_format(k, scalars[k]) for k in self.CONSOLE_KEYS if k in scalars]
        if self.bar is not None:
            self.bar.set_postfix_str(" | ".join(shown), refresh=False)
        else:
            head = progress or [f"step {step}"]
            print(" | ".join([head[0], *shown, *head[1:]]), flush=True)

    def progress(self, pieces: list[str]) -> None:
        """A progress line between log steps (`step N/T | loss ... | s/step ...`); on a TTY, the bar's postfix."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(" | ".join(pieces[1:]), refresh=False)  # the bar shows the step itself
        else:
            print(" | ".join(pieces), flush=True)

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
