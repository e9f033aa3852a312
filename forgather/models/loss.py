"""Next-token cross entropy fused with the output head, computed a chunk of rows at a time.

The head's logits are [tokens, vocab]: at 8 × 1024 tokens and a 49k vocabulary that is 1.6 GB in fp32,
and plain `cross_entropy(head(x))` allocates several such buffers per step (logits, log-probabilities,
their gradient, nll's zero-filled gradient). Here each chunk of rows goes head → log-softmax → loss →
gradient while its logits are still small: the loss and the gradients w.r.t. the hidden states and the
head's weight are all computed in forward, and backward only scales them by the incoming gradient (the
loss is linear in it). Same matmuls, same result; no [tokens, vocab] buffer ever exists.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..data.packing import IGNORE_INDEX  # the label packing gives positions that predict nothing
CHUNK_ELEMENTS = 1 << 24  # logits per chunk on CPU (64 MiB in fp32): big matmuls, memory that stays hot
# On a GPU every chunk costs a dozen kernel launches: 512 MiB chunks keep that to a few per micro-batch.
CHUNK_ELEMENTS_GPU = 1 << 27


def chunk_rows(vocab_size: int, device: torch.device | None = None) -> int:
    """Rows per chunk on `device`: CHUNK_ELEMENTS (CHUNK_ELEMENTS_GPU on CUDA) logits, at least 128 rows."""
    elements = CHUNK_ELEMENTS_GPU if device is not None and device.type == "cuda" else CHUNK_ELEMENTS
    return max(128, elements // vocab_size)


def compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype autocast gives `hidden`'s matmuls (it does not reach inside an autograd.Function)."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


class _ChunkedHeadCrossEntropy(torch.autograd.Function):
    """Σ −log softmax(hidden @ weightᵀ)[label] over labelled rows; gradients made in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(hidden)
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        d_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        d_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for h, y, rows in _chunks(hidden, labels, dtype, weight.shape[0]):
            logp, keep, target, loss = _chunk_loss(h, w, y)
            total += loss
            # d loss / d logits = softmax − one-hot on labelled rows, 0 elsewhere (in place on logp).
            mask = keep[:, None].to(torch.float32)
            grad = logp.exp_().mul_(mask).scatter_add_(1, target, -mask).to(dtype)
            if d_hidden is not None:
                d_hidden[rows] = grad @ w
            if d_weight is not None:
                if dtype == torch.float32:
                    d_weight.addmm_(grad.t(), h)
                else:  # accumulate low-precision products in fp32
                    d_weight += grad.t() @ h
        ctx.save_for_backward(d_hidden, d_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        d_hidden, d_weight = ctx.saved_tensors
        return (None if d_hidden is None else d_hidden * grad.to(d_hidden.dtype),
                None if d_weight is None else (d_weight * grad).to(ctx.weight_dtype), None)


def _chunk_loss(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk's fp32 log-probabilities, labelled-row mask, gather targets and summed loss."""
    keep, target = y != IGNORE_INDEX, y.clamp_min(0)[:, None]
    logp = torch.log_softmax(h @ w.t(), dim=-1, dtype=torch.float32)
    return logp, keep, target, -torch.where(keep, logp.gather(1, target).squeeze(1), 0.0).sum()


def _chunks(hidden: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype, vocab_size: int):
    """(hidden rows in the matmul dtype, their labels, the row slice) for each chunk of rows."""
    step = chunk_rows(vocab_size, hidden.device)
    for start in range(0, hidden.shape[0], step):
        rows = slice(start, start + step)
        yield hidden[rows].to(dtype), labels[rows], rows


def head_cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy (fp32) of `labels` [B, T] under the head `weight` [V, H] applied to
    `hidden` [B, T, H]; labels equal to IGNORE_INDEX add nothing."""
    hidden, labels = hidden.flatten(0, 1), labels.flatten()
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ChunkedHeadCrossEntropy.apply(hidden, weight, labels)
    # Evaluation: the loss alone, chunk by chunk, no gradients made.
    dtype = compute_dtype(hidden)
    w = weight.to(dtype)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for h, y, _ in _chunks(hidden, labels, dtype, weight.shape[0]):
        total += _chunk_loss(h, w, y)[3]
    return total


def forward_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross entropy (fp32) of a packed batch's labelled positions."""
    return model(batch["input_ids"], position_ids=batch.get("position_ids"), document_ids=batch.get("document_ids"),
                 labels=batch["labels"])
