"""Attention backends agree with each other, and the document mask means causal ∧ same document."""

from __future__ import annotations

import os

import pytest
import torch

from forgather.errors import ModelError
from forgather.models.attention import attend, build_attention_mask, dense_mask, document_mask_mod
from forgather.models.attention_plan import ATTN_IMPLEMENTATIONS, check_attn_implementation

os.environ.setdefault("OMP_NUM_THREADS", "1")
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

B, HQ, HKV, T, D = 2, 4, 2, 24, 16
PACKED = torch.tensor([[0] * 7 + [1] * 10 + [2] * 7, [5] * 3 + [9] * 21])


def qkv(seed: int = 0, grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, HQ, T, D, generator=gen)
    k, v = (torch.randn(B, HKV, T, D, generator=gen) for _ in range(2))
    return [x.requires_grad_(grad) for x in (q, k, v)]


def run(impl: str, document_ids, q, k, v):
    return attend(q, k, v, build_attention_mask(document_ids, B, T, impl, q.device))


def test_dense_mask_is_causal_and_same_document():
    mask = dense_mask(document_mask_mod(PACKED), B, T, torch.device("cpu"))
    assert mask.shape == (B, 1, T, T)
    for b in range(B):
        for i in range(T):
            for j in range(T):
                expected = j <= i and PACKED[b, i] == PACKED[b, j]
                assert bool(mask[b, 0, i, j]) == expected


def test_mask_comes_from_whether_ids_are_given_never_from_reading_them(monkeypatch):
    # Reading ids back (bool(tensor.all())) stalls a GPU every forward; one-document rows are found on the host.
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: pytest.fail("document ids were read back"))
    one_document = build_attention_mask(torch.zeros(B, T, dtype=torch.long), B, T, "sdpa", torch.device("cpu"))
    assert not one_document.causal_only and one_document.dense.shape == (B, 1, T, T)
    causal = build_attention_mask(None, B, T, "sdpa", torch.device("cpu"))
    assert causal.causal_only and causal.dense is None


@pytest.mark.parametrize("document_ids", [None, PACKED], ids=["causal", "packed"])
def test_eager_and_sdpa_agree_forward_and_backward(document_ids):
    torch.manual_seed(0)
    grads = {}
    outs = {}
    for impl in ("eager", "sdpa"):
        q, k, v = qkv(grad=True)
        out = run(impl, document_ids, q, k, v)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs[impl], grads[impl] = out.detach(), [x.grad for x in (q, k, v)]
    torch.testing.assert_close(outs["eager"], outs["sdpa"], atol=1e-5, rtol=0)
    for ge, gs in zip(grads["eager"], grads["sdpa"]):
        torch.testing.assert_close(ge, gs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("document_ids", [None, PACKED], ids=["causal", "packed"])
def test_flex_matches_sdpa_forward(document_ids):
    q, k, v = qkv(1)
    with torch.no_grad():
        flex = run("flex_attention", document_ids, q, k, v)
        sdpa = run("sdpa", document_ids, q, k, v)
    torch.testing.assert_close(flex, sdpa, atol=1e-5, rtol=0)


def test_packed_mask_actually_changes_the_result():
    q, k, v = qkv(2)
    with torch.no_grad():
        assert (run("sdpa", PACKED, q, k, v) - run("sdpa", None, q, k, v)).abs().max() > 1e-3


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(ModelError) as err:
        check_attn_implementation("xformers")
    assert "'xformers'" in str(err.value)
    for name in ("auto", "eager", "sdpa", "flex_attention", "flash_attention_2"):
        assert name in str(err.value)
    assert len(ATTN_IMPLEMENTATIONS) == 5


def test_flash_attention_without_package_is_a_model_error():
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match="pip install flash-attn"):
            check_attn_implementation("flash_attention_2")
    else:
        assert check_attn_implementation("flash_attention_2") == "flash_attention_2"
