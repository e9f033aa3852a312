"""One optimizer step over several micro-batches, with the loss normalised by the global token count."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable

IGNORE_INDEX = -100


class _SummedCrossEntropy(torch.autograd.Function):
    """Σ −log_softmax(logits)[label] over labelled rows; backward writes softmax − one-hot directly.

    F.cross_entropy's backward fills an [N, V] zero tensor for nll_loss, scatters into it, and then
    log_softmax_backward reads it back with the saved log-probabilities. Writing the gradient straight
    from the saved fp32 log-probabilities skips that fill and a read of [N, V]. log_softmax(dtype=fp32)
    also spares a separate fp32 copy of low-precision logits.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
        keep = labels != IGNORE_INDEX
        target = labels.masked_fill(~keep, 0)
        picked = logp.gather(1, target[:, None]).squeeze(1)
        ctx.save_for_backward(logp, target, keep)
        ctx.logits_dtype = logits.dtype
        return -torch.where(keep, picked, 0.0).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logp, target, keep = ctx.saved_tensors
        weight = (grad * keep)[:, None]  # d loss / d logit = grad · (softmax − onehot) on labelled rows, 0 elsewhere
        dlogits = logp.exp().mul_(weight).scatter_add_(1, target[:, None], -weight)
        return dlogits.to(ctx.logits_dtype), None


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy over labelled positions, computed in fp32."""
    return _SummedCrossEntropy.apply(logits.flatten(0, 1), labels.flatten())


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum across ranks (identity without a process group)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


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


def forward_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's logits for a packed batch."""
    return model(batch["input_ids"], position_ids=batch.get("position_ids"), document_ids=batch.get("document_ids"))


def train_step(
    model: nn.Module,
    micro_batches: list[dict[str, torch.Tensor]],
    world_size: int,
    autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward every micro-batch; returns (global mean loss, global labelled-token count).

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
        with gradient_sync(model, final), (autocast or contextlib.nullcontext()):
            summed = token_loss_sum(forward_logits(model, batch), batch["labels"])
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
            totals[0] += token_loss_sum(forward_logits(model, batch), batch["labels"]).to(torch.float64)
        totals[1] += (batch["labels"] != IGNORE_INDEX).sum()
    all_reduce_sum(totals)
    return (totals[0] / totals[1].clamp_min(1)).item(), int(totals[1].item())
