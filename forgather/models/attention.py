"""Attention backends behind one interface, with one document-causal mask definition.

The mask is causal ∧ same-document (`document_mask_mod`); every backend derives its mask from it:
flex builds a BlockMask, eager/SDPA evaluate it densely, flash-attn turns it into varlen segments.
It is built once per forward (`build_attention_mask`) and shared by all layers. Which backend runs
on which device is decided in attention_plan.py, not here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from forgather.errors import ModelError
from forgather.models.attention_plan import BACKENDS

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def causal_mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    """A query sees itself and earlier keys."""
    return q_idx >= kv_idx


def document_mask_mod(document_ids: torch.Tensor) -> MaskMod:
    """mask_mod(b, h, q_idx, kv_idx) = causal ∧ same document, for per-token document_ids [B, T]."""

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return (q_idx >= kv_idx) & (document_ids[b, q_idx] == document_ids[b, kv_idx])

    return mask_mod


def dense_mask(mask_mod: MaskMod, batch: int, seq_len: int, device: torch.device) -> torch.Tensor:
    """Evaluate mask_mod on the full [B, 1, T, T] grid by broadcasting (True = may attend)."""
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    q = torch.arange(seq_len, device=device).view(1, 1, seq_len, 1)
    kv = torch.arange(seq_len, device=device).view(1, 1, 1, seq_len)
    return mask_mod(b, h, q, kv).expand(batch, 1, seq_len, seq_len)


@dataclass
class AttentionMask:
    """Per-forward attention mask state, built once and passed to every block.

    Exactly one representation is filled, for `implementation`; `causal_only` means no document
    boundaries, so backends use their native causal path.
    """

    implementation: str
    causal_only: bool
    dense: torch.Tensor | None = None  # eager/sdpa: bool [B, 1, T, T]
    block_mask: Any = None  # flex_attention: BlockMask
    cu_seqlens: torch.Tensor | None = None  # flash_attention_2 varlen: int32 [num_segments + 1]
    max_seqlen: int = 0


def build_attention_mask(
    document_ids: torch.Tensor | None, batch: int, seq_len: int, implementation: str, device: torch.device
) -> AttentionMask:
    """Build the mask for one forward from per-token document ids [B, T] (None: one document per row).

    The ids are never read back to the host (that would stall the GPU every forward): whether a batch holds
    one document per row is decided on the host before it is moved (train.step.drop_single_document_ids).
    """
    causal_only = document_ids is None
    mask = AttentionMask(implementation, causal_only)
    if causal_only:
        if implementation == "flex_attention":
            mask.block_mask = _causal_block_mask(seq_len, device)
    elif implementation == "flex_attention":
        mask.block_mask = _block_mask_builder(device)(
            document_mask_mod(document_ids), batch, None, seq_len, seq_len, device=device
        )
    elif implementation == "flash_attention_2":
        mask.cu_seqlens, mask.max_seqlen = _varlen_segments(document_ids)
    else:
        mask.dense = dense_mask(document_mask_mod(document_ids), batch, seq_len, device)
    return mask


class KVCache:
    """Keys and values of the tokens decoded so far, one (k, v) pair per layer, for incremental generation.

    Each layer appends its new rotated keys and values and attends over everything cached; the model
    reads `length` to give new tokens their positions. Growing by concatenation keeps it simple; a
    sequence of a few thousand tokens costs a few copies of the cache, small next to the matmuls.
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        """Tokens cached so far (the position of the next token)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v [B, Hkv, T, D] to this layer's cache; returns the keys and values of all tokens so far."""
        if self.keys[layer] is not None:
            k = torch.cat((self.keys[layer], k), dim=2)
            v = torch.cat((self.values[layer], v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


def cached_attention_mask(new_tokens: int, total: int, implementation: str, device: torch.device) -> AttentionMask:
    """Mask for `new_tokens` queries appended after `total - new_tokens` cached ones: each sees the cache and
    the new tokens up to itself. is_causal cannot express this (SDPA aligns it top-left when q is shorter
    than k), so it is dense; eager keeps eager, every other backend decodes with SDPA."""
    q = torch.arange(total - new_tokens, total, device=device).view(1, 1, new_tokens, 1)
    kv = torch.arange(total, device=device).view(1, 1, 1, total)
    return AttentionMask("eager" if implementation == "eager" else "sdpa", causal_only=False,
                         dense=causal_mask_mod(None, None, q, kv))


def _varlen_segments(document_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cumulative segment starts over the flattened batch: a new segment at each row start or id change.

    Matches document_mask_mod when each document occupies one contiguous run of a row. nonzero() reads the
    count back (one sync per forward: varlen needs it); max_seqlen is the row length, an upper bound flash-attn
    accepts, so it costs no second sync.
    """
    b, t = document_ids.shape
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    idx = torch.nonzero(starts.flatten()).flatten()
    cu = torch.cat([idx, idx.new_tensor([b * t])]).to(torch.int32)
    return cu, t


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """Scaled dot-product attention. q [B, Hq, T, D]; k, v [B, Hkv, T, D] (GQA: Hkv divides Hq) -> [B, Hq, T, D]."""
    impl = mask.implementation
    if impl == "sdpa":
        if mask.causal_only:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        if q.is_cuda:
            # No fused CUDA kernel takes a mask together with GQA (math kernel: fp32 [B, H, T, T] scores);
            # with k/v expanded to every head the memory-efficient kernel takes the mask (attention_plan's note).
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense, enable_gqa=True)
    if impl == "eager":
        return _eager(q, k, v, mask)
    if impl == "flex_attention":
        return _flex(q.is_cuda)(q, k, v, block_mask=mask.block_mask, enable_gqa=True)
    if impl == "flash_attention_2":
        return _flash(q, k, v, mask)
    raise ModelError(f"attention backend {impl!r} is unknown; use one of {', '.join(BACKENDS)}")


def _eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """Reference implementation: explicit scores, fp32 softmax (as HF's eager path)."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if mask.causal_only:
        t = q.shape[-2]
        allowed = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    else:
        allowed = mask.dense
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v


_COMPILED_BLOCK_MASK: Callable[..., Any] | None = None


def _block_mask_builder(device: torch.device) -> Callable[..., Any]:
    """create_block_mask, compiled on CUDA: uncompiled it evaluates mask_mod on the whole [B, T, T] grid,
    which at 8 × 4096 tokens costs a sizeable share of a training step (the mask is rebuilt every batch)."""
    global _COMPILED_BLOCK_MASK
    from torch.nn.attention.flex_attention import create_block_mask

    if device.type != "cuda":
        return create_block_mask
    if _COMPILED_BLOCK_MASK is None:
        _COMPILED_BLOCK_MASK = torch.compile(create_block_mask)
    return _COMPILED_BLOCK_MASK


@functools.lru_cache(maxsize=8)
def _causal_block_mask(seq_len: int, device: torch.device) -> Any:
    """The plain causal BlockMask for one length: the same for every batch, so built once."""
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(causal_mask_mod, None, None, seq_len, seq_len, device=device)


_COMPILED_FLEX: Callable[..., torch.Tensor] | None = None


def _flex(on_cuda: bool) -> Callable[..., torch.Tensor]:
    """flex_attention, compiled on CUDA (uncompiled it materialises the full score matrix)."""
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    if not on_cuda:
        return flex_attention  # CPU flex is forward-only in this torch; used for tests/inference
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """flash-attn 2: dense causal when unpacked, varlen over document segments when packed."""
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    b, hq, t, d = q.shape
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # flash-attn wants [B, T, H, D]
    if mask.causal_only:
        out = flash_attn_func(q, k, v, causal=True)
    else:
        flat = [x.reshape(b * t, x.shape[2], d) for x in (q, k, v)]
        out = flash_attn_varlen_func(
            *flat, mask.cu_seqlens, mask.cu_seqlens, mask.max_seqlen, mask.max_seqlen, causal=True
        ).view(b, t, hq, d)
    return out.transpose(1, 2)
