"""The optimizer step: loss normalisation and gradient accumulation."""

from __future__ import annotations

import torch
from torch import nn

from forgather.models.loss import head_cross_entropy_sum
from forgather.train.step import IGNORE_INDEX, train_step


class TinyLM(nn.Module):
    """Embedding + linear head, with the Transformer's labels → summed loss interface."""

    def __init__(self, vocab: int = 17, width: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, input_ids, position_ids=None, document_ids=None, labels=None):
        hidden = torch.tanh(self.embed(input_ids))
        return self.head(hidden) if labels is None else head_cross_entropy_sum(hidden, self.head.weight, labels)


def _batch(seed: int, rows: int, length: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 17, (rows, length), generator=g)
    labels = torch.roll(ids, -1, 1)
    labels[torch.rand(rows, length, generator=g) < 0.3] = IGNORE_INDEX  # uneven token counts per row
    return {"input_ids": ids, "labels": labels}


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_grad_accumulation_of_four_equals_one_batch_four_times_larger():
    torch.manual_seed(0)
    a = TinyLM()
    b = TinyLM()
    b.load_state_dict(a.state_dict())
    micro = [_batch(seed, rows=2) for seed in range(4)]
    whole = {k: torch.cat([m[k] for m in micro]) for k in micro[0]}
    loss_a, tokens_a = train_step(a, micro, world_size=1)
    loss_b, tokens_b = train_step(b, [whole], world_size=1)
    assert tokens_a == tokens_b
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-6, atol=1e-6)
    for ga, gb in zip(_grads(a), _grads(b)):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def test_loss_is_the_mean_over_labelled_tokens_only():
    model = TinyLM()
    batch = _batch(3, rows=3)
    loss, tokens = train_step(model, [batch], world_size=1)
    logits = model(batch["input_ids"])
    keep = batch["labels"] != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[keep], batch["labels"][keep])
    assert int(tokens) == int(keep.sum())
    torch.testing.assert_close(loss.float(), expected, rtol=1e-6, atol=1e-6)


def test_one_document_rows_lose_their_document_ids_on_the_host():
    from forgather.train.step import drop_single_document_ids

    ids = torch.arange(6).view(2, 3)
    one_each = {"input_ids": ids, "document_ids": torch.tensor([[0, 0, 0], [-1, -1, -1]])}
    assert "document_ids" not in drop_single_document_ids(one_each)
    assert drop_single_document_ids(one_each)["input_ids"] is ids
    packed = {"input_ids": ids, "document_ids": torch.tensor([[0, 0, 1], [0, 0, 0]])}
    assert drop_single_document_ids(packed) is packed
    assert drop_single_document_ids({"input_ids": ids}) == {"input_ids": ids}
