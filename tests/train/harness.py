"""An in-process Trainer on a tiny project: real model, optimizer and loop; in-memory batches; no torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from forgather.config import RunConfig, build_config
from forgather.dist.setup import DistInfo
from forgather.models.spec import ModelSpec
from forgather.models.transformer import build_model
from forgather.project import compose_project, find_project, resolve
from forgather.train.precision import plan_precision
from forgather.train.trainer import Components, Trainer

BATCH, LENGTH = 2, 16


def project_config(project: Path, **train: Any) -> RunConfig:
    """The project's resolved config with train.* overrides."""
    tree, origins = resolve(compose_project(find_project(project)))
    config = build_config(tree, origins)
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


class PackedBatches:
    """The same two-document batch forever, with the loader's state interface."""

    def __init__(self, vocab_size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab_size, (BATCH, LENGTH), generator=g)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield {"input_ids": self.ids, "labels": self.ids.roll(-1, 1),
                   "document_ids": torch.tensor([[0] * 10 + [1] * 6] * BATCH)}

    def state_dict(self) -> dict:
        return {"epoch": 0}

    def load_state_dict(self, state: dict) -> None:
        pass


class RecordingCheckpointer:
    """Records which steps were saved; never resumes."""

    def __init__(self) -> None:
        self.saved: list[int] = []

    def save(self, step: int, *_: Any) -> str:
        self.saved.append(step)
        return f"step-{step}"

    def resume(self, *_: Any) -> None:
        return None

    def finish(self, final: Any = None) -> None:
        return None

    def failure(self) -> None:
        return None

    def drain(self, timeout: float | None = None) -> None:
        return None


class ScaleLossAt(nn.Module):
    """Wraps a model; multiplies the summed loss of its `step`-th forward by `factor` (NaN, a spike)."""

    def __init__(self, inner: nn.Module, step: int, factor: float) -> None:
        super().__init__()
        self.inner, self.step, self.factor, self.calls = inner, step, factor, 0

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.calls += 1
        out = self.inner(*args, **kwargs)
        return out * self.factor if self.calls == self.step else out


def make_trainer(config: RunConfig, wrap=lambda m: m, checkpointer: Any = None, compiled: bool = False) -> Trainer:
    """A world-1 CPU trainer over PackedBatches."""
    spec = ModelSpec.from_dict(config.model.arch)
    torch.manual_seed(0)
    model = wrap(build_model(spec, config.model.attn_implementation, device="cpu"))
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="gloo")
    parts = Components(model=model, flops_per_token=1.0, train_batches=PackedBatches(spec.vocab_size),
                       eval_batches=None, tokens_per_batch=BATCH * LENGTH, precision=plan_precision("fp32", "cpu"),
                       compiled=compiled, checkpointer=checkpointer)
    return Trainer(config, info, parts)
