"""Checkpoint save and load time and bytes for the 124M Llama (weights + AdamW state), one process.

Usage: python -m benchmarks.checkpoint_bench [--repeats N] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import spread, write_json
from forgather.checkpoint import find_latest, load_checkpoint, save_checkpoint
from forgather.models.hf import load_hf, save_pretrained_hf
from forgather.models.spec import ModelSpec, parameter_counts
from forgather.models.transformer import build_model
from forgather.templates import REPO_ROOT
from forgather.yamlio import load_yaml


def llama_124m() -> ModelSpec:
    base, _ = load_yaml(REPO_ROOT / "projects" / "models" / "llama" / "base.yaml")
    size, _ = load_yaml(REPO_ROOT / "projects" / "models" / "llama" / "124M.yaml")
    size.pop("extends", None)
    return ModelSpec.from_dict({**base, **size})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    spec = llama_124m()
    torch.manual_seed(0)
    model = build_model(spec, device="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    ids = torch.randint(0, spec.vocab_size, (1, 64))
    model(ids).float().mean().backward()
    optimizer.step()  # populate exp_avg / exp_avg_sq
    saves, loads, size = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for step in range(1, args.repeats + 1):
            start = time.perf_counter()
            path = save_checkpoint(root, step, model, optimizer, trainer_state={"step": step}, data_state={},
                                   config_text="", write_model_files=lambda sd, out: save_pretrained_hf(sd, spec, out))
            saves.append(time.perf_counter() - start)
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            start = time.perf_counter()
            latest = find_latest(root)  # verifies sha256 of every file, as a resume does
            load_checkpoint(latest, model, optimizer, read_model_files=lambda p: load_hf(p)[1])
            loads.append(time.perf_counter() - start)
    total, _ = parameter_counts(spec)
    print(f"model: llama 124M ({total / 1e6:.1f}M params), fp32, AdamW; checkpoint {size / 2**20:,.0f} MiB "
          f"({size:,} bytes: weights, optimizer moments, RNG, state, manifest); {args.repeats} saves and loads\n")
    print("| operation | median (s) | min (s) | max (s) | MiB/s (median) |\n|---|---|---|---|---|")
    for name, times in (("save (atomic, sha256 manifest)", saves), ("find latest + verify + load", loads)):
        med = statistics.median(times)
        print(f"| {name} | {med:.2f} | {min(times):.2f} | {max(times):.2f} | {size / 2**20 / med:,.0f} |")
    write_json(args.json, {"params": total, "bytes": size, "save_s": spread(saves), "load_s": spread(loads)})


if __name__ == "__main__":
    main()
