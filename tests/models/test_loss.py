"""The chunked head + cross entropy equals cross_entropy(head(x)) in value and gradients, without the logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from forgather.models import loss as loss_module
from forgather.models.loss import IGNORE_INDEX, head_cross_entropy_sum


def _inputs(seed: int = 0, rows: int = 3, length: int = 50, width: int = 16, vocab: int = 97):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, length, width, generator=g, requires_grad=True)
    weight = (torch.randn(vocab, width, generator=g) * 0.3).requires_grad_()
    labels = torch.randint(0, vocab, (rows, length), generator=g)
    labels[torch.rand(rows, length, generator=g) < 0.25] = IGNORE_INDEX
    return hidden, weight, labels


@pytest.mark.parametrize("chunk_elements", [128 * 97, 1 << 24])  # several chunks, and one
def test_value_and_gradients_equal_plain_cross_entropy(monkeypatch, chunk_elements):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk_elements)
    hidden, weight, labels = _inputs()
    ours = head_cross_entropy_sum(hidden, weight, labels)
    (ours * 0.37).backward()  # a non-unit upstream gradient, as train_step's 1/tokens scale
    got = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    reference = F.cross_entropy((hidden @ weight.t()).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                                reduction="sum")
    (reference * 0.37).backward()
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(got[0], hidden.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], weight.grad, rtol=1e-5, atol=1e-6)


def test_without_grad_it_only_computes_the_loss(monkeypatch):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 128 * 97)
    hidden, weight, labels = _inputs(1)
    with torch.no_grad():
        value = head_cross_entropy_sum(hidden, weight, labels)
    assert not value.requires_grad
    torch.testing.assert_close(value, head_cross_entropy_sum(hidden, weight, labels).detach())


def test_fully_ignored_rows_add_nothing_and_get_zero_gradient():
    hidden, weight, labels = _inputs(2)
    labels[1] = IGNORE_INDEX
    head_cross_entropy_sum(hidden, weight, labels).backward()
    assert torch.count_nonzero(hidden.grad[1]) == 0 and torch.count_nonzero(hidden.grad[0]) > 0


def test_autocast_matmuls_in_bf16_and_accumulates_in_fp32():
    hidden, weight, labels = _inputs(3)
    reference = head_cross_entropy_sum(hidden, weight, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head_cross_entropy_sum(hidden, weight, labels)
    low.backward()
    assert low.dtype == torch.float32 and weight.grad.dtype == torch.float32 and hidden.grad.dtype == torch.float32
    assert abs(low.item() - reference.item()) / reference.item() < 2e-2 and low.item() != reference.item()
