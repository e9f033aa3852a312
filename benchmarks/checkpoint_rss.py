"""Run under torchrun (2 gloo ranks) by checkpoint_bench: peak RSS of each rank while a ~0.5B FSDP2 Llama with
AdamW saves and resumes, by the sharded path (`sharded`) or the full-gather path checkpoints used before
(`full_gather`). Prints one `RSS {...}` JSON line per rank."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forgather.checkpoint.load import load_optimizer, load_weights  # noqa: E402
from forgather.checkpoint.save import save_checkpoint  # noqa: E402
from forgather.dist.parallelize import wrap_fsdp2  # noqa: E402
from forgather.dist.setup import DistInfo  # noqa: E402
from forgather.lifeline import exit_rank  # noqa: E402
from forgather.models.spec import ModelSpec, parameter_counts  # noqa: E402
from forgather.models.transformer import build_model, materialize  # noqa: E402
from forgather.train.precision import fsdp_mixed_precision, plan_precision  # noqa: E402

SPEC = ModelSpec.from_dict({"architecture": "llama", "vocab_size": 32000, "hidden_size": 2048, "num_layers": 8,
                            "num_heads": 16, "num_kv_heads": 4, "intermediate_size": 5504})
GIB = 2**30


class PeakRss:
    """Samples this process's RSS every 5 ms; `peak()` since the last reset."""

    def __init__(self) -> None:
        self.process, self.value, self.running = psutil.Process(), 0, True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            self.value = max(self.value, self.process.memory_info().rss)
            time.sleep(0.005)

    def reset(self) -> int:
        self.value = self.process.memory_info().rss
        return self.value


def full_gather_save(model, optimizer, root: Path) -> None:
    """The old path: every weight gathered to rank 0 (CPU) and cloned into one model.safetensors; the optimizer
    moments were written per rank (DCP then; the row store here, which takes the same memory)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    from forgather.checkpoint.tensorstore import stage, write_rank_file

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        save_file({k: v.clone().contiguous() for k, v in state.items()}, str(root / "model.safetensors"))
    del state
    osd = get_optimizer_state_dict(model, optimizer)
    host, meta = stage([(f"{fqn}.{k}", v) for fqn, s in osd["state"].items() for k, v in s.items()])
    write_rank_file(root / "optimizer", dist.get_rank(), 2, host, meta)
    dist.barrier()


def full_gather_resume(model, root: Path) -> None:
    """The old path: every rank reads the whole file, then keeps its shard."""
    state = load_file(str(root / "model.safetensors"))
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    del state


def main() -> None:
    path, tmp = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    info = DistInfo(rank, rank, 2, torch.device("cpu"), "gloo")
    torch.manual_seed(0)
    model = build_model(SPEC, "sdpa", device="meta")
    wrap_fsdp2(model, info, fsdp_mixed_precision(plan_precision("fp32", "cpu")))
    materialize(model, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    for p in model.parameters():  # AdamW's moments exist after a step: give every parameter a gradient
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # a save happens between steps, without gradients (and 24 GiB is tight)
    meter = PeakRss()
    baseline = meter.reset()
    if path == "sharded":
        save_checkpoint(tmp, 1, model, optimizer, trainer_state={}, data_state={}, config_text="",
                        write_model_files=lambda state, out: None)
    else:
        full_gather_save(model, optimizer, tmp)
    save_peak = meter.value - baseline
    dist.barrier()
    baseline = meter.reset()
    if path == "sharded":
        step = tmp / "step-000001"
        load_weights(step, model)
        load_optimizer(step, model, optimizer)
    else:
        full_gather_resume(model, tmp)
    resume_peak = meter.value - baseline
    meter.running = False
    total, _ = parameter_counts(SPEC)
    line = {"rank": rank, "params": total, "save_gib": save_peak / GIB, "resume_gib": resume_peak / GIB,
            "baseline_gib": baseline / GIB}
    os.write(1, ("RSS " + json.dumps(line) + "\n").encode())
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    exit_rank(0)  # not the interpreter's teardown, which gloo's threads can abort (see exit_rank)
