"""One optimizer step over several micro-batches, with the loss normalised by the global token count."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..dist.sync import all_reduce_sum
from ..models.loss import IGNORE_INDEX, forward_loss


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on non-final micro-steps (DDP no_sync / FSDP2 requires_gradient_sync)."""
    if enabled:
        yield
    elif hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def drop_single_document_ids(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without document_ids when every row holds one document, so attention takes its causal path.

    Decided on the host, on the loader's CPU tensors (numpy, no device read); ids already on an accelerator
    (dispatched over nccl) are kept, and the document mask gives the same result there.
    """
    ids = batch.get("document_ids")
    if ids is None or ids.device.type != "cpu":
        return batch
    rows = ids.numpy()
    if not (rows == rows[:, :1]).all():
        return batch
    return {key: value for key, value in batch.items() if key != "document_ids"}


def train_step(
    model: nn.Module,
    micro_batches: list[dict[str, torch.Tensor]],
    world_size: int,
    autocast: contextlib.AbstractContextManager | None = None,
    sync_every_microstep: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward every micro-batch; returns (global mean loss, global labelled-token count).

    Gradients are reduced after the last micro-batch only, unless `sync_every_microstep` (FSDP2 then
    reduce-scatters each micro-step, and the accumulated gradients stay sharded).

    Each micro-batch's summed loss is divided by the token count of the whole global batch (all
    micro-steps, all ranks) and multiplied by the world size, because DDP and FSDP2 average
    gradients over ranks. The gradients then equal one process training on the global batch.
    """
    device = micro_batches[0]["labels"].device
    local_tokens = sum((mb["labels"] != IGNORE_INDEX).sum() for mb in micro_batches).to(torch.float64)
    global_tokens = all_reduce_sum(local_tokens.clone()).clamp_min(1)
    scale = world_size / global_tokens.to(torch.float32)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for index, batch in enumerate(micro_batches):
        final = index == len(micro_batches) - 1
        with gradient_sync(model, final or sync_every_microstep):  # forward and backward: DDP and FSDP2 read it
            with autocast or contextlib.nullcontext():
                summed = forward_loss(model, batch)
            (summed * scale).backward()
        loss_sum += summed.detach().to(torch.float64)
    return all_reduce_sum(loss_sum) / global_tokens, global_tokens


@torch.no_grad()
def eval_loss(model: nn.Module, batches: list[dict[str, torch.Tensor]], autocast=None) -> tuple[float, int]:
    """Mean loss and labelled-token count over `batches`, aggregated across ranks."""
    device = batches[0]["labels"].device if batches else torch.device("cpu")
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in batches:
        with autocast or contextlib.nullcontext():
            totals[0] += forward_loss(model, batch).to(torch.float64)
        totals[1] += (batch["labels"] != IGNORE_INDEX).sum()
    all_reduce_sum(totals)
    return (totals[0] / totals[1].clamp_min(1)).item(), int(totals[1].item())
