"""A tiny model, optimizer and model-file writer shared by the checkpoint tests and their subprocess scripts."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn


def tiny_model(seed: int = 0) -> nn.Sequential:
    """Two linear layers: enough parameters to shard over 2 ranks."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def adamw(model: nn.Module) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 2, seed: int = 1) -> None:
    """A few real steps so the optimizer holds moments and a step count."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 8, generator=generator)
        model(x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def write_model_files(state_dict: dict[str, Tensor] | None, directory: Path) -> None:
    """Stand-in for the model layer: safetensors weights (unless sharded: they are in model/) plus a config.json."""
    if state_dict is not None:
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text('{"model_type": "tiny"}\n', encoding="utf-8")


def save(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, eval_loss: float | None = None,
         **kwargs) -> Path:
    from forgather.checkpoint.save import save_checkpoint

    state = {"step": step, "tokens": step * 32, "eval_loss": eval_loss, "loss": 1.5}
    return save_checkpoint(root, step, model, optimizer, trainer_state=state, data_state={"position": step},
                           config_text="name: tiny\n", write_model_files=kwargs.pop("writer", write_model_files),
                           **kwargs)


def flat_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The optimizer's per-parameter tensors in a comparable flat form."""
    out = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            out[f"{index}.{name}"] = torch.as_tensor(value)
    return out
