"""A decoder-only transformer covering Llama, Qwen3 and DeepOne, read top to bottom like nanoGPT.

config (ModelSpec) → RMSNorm → RoPE → attention → SwiGLU MLP → block → model.

Module names are Hugging Face's Llama/Qwen3 names without the "model." prefix, so a state_dict
maps 1:1 (see hf.py). The model knows nothing about parallelism: `model.layers` is a plain
ModuleList so FSDP2, torch.compile and activation checkpointing can wrap each block from outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgather.errors import ModelError
from forgather.models.attention import AttentionMask, KVCache, attend, build_attention_mask, cached_attention_mask
from forgather.models.attention_plan import check_attn_implementation, plan_attention
from forgather.models.init import init_transformer
from forgather.models.loss import compute_dtype, head_cross_entropy_sum
from forgather.models.spec import ModelSpec


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 then cast back (bit-compatible with HF's LlamaRMSNorm in fp32).

    The output keeps the input's dtype: under bf16 autocast the fp32 weight would otherwise promote a bf16
    input (Qwen3's q/k norm) back to fp32, and attention would get q, k and v in different dtypes.
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * xf.to(x.dtype)).to(x.dtype)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 cos/sin tables [B, 1, T, head_dim] for per-token positions [B, T] (HF's half-split layout).

    Computed per forward rather than cached in a buffer so meta-device init needs no fix-up.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device).float() / head_dim))
    freqs = position_ids[..., None].float() * inv_freq  # [B, T, head_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + D/2), HF's rotate_half convention, so HF weights need no permutation.

    The rotation runs in fp32 and the result takes x's dtype: q and k leave RoPE in the dtype v has (bf16
    under autocast), which flex and flash-attn require, and large positions keep their fp32 angles.
    """
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


class Attention(nn.Module):
    """Grouped-query attention with optional per-head QK-norm applied before RoPE (Qwen3, DeepOne)."""

    def __init__(self, spec: ModelSpec, layer: int = 0):
        super().__init__()
        h, d = spec.hidden_size, spec.attn_head_dim
        self.layer = layer  # which slot of a KVCache is ours
        self.head_dim = d
        self.q_proj = nn.Linear(h, spec.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, spec.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, spec.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(spec.num_heads * d, h, bias=False)
        if spec.qk_norm:
            self.q_norm = RMSNorm(d, spec.rms_norm_eps)
            self.k_norm = RMSNorm(d, spec.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask,
                cache: KVCache | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        # Three matmuls, not one on concatenated weights: a concatenation is a fresh copy of the weights that
        # autograd keeps until backward (under FSDP2 it pins what resharding frees); see BENCHMARKS.md.
        # x is cast once, not by autocast once per matmul (each cast is a copy kept for backward).
        x = x.to(compute_dtype(x))
        q = self.q_proj(x).view(b, t, -1, self.head_dim)
        k = self.k_proj(x).view(b, t, -1, self.head_dim)
        v = self.v_proj(x).view(b, t, -1, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        y = attend(q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.gate_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.up_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(compute_dtype(x))  # once for both matmuls, as in Attention
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """One transformer layer: pre-norm (Llama/Qwen3) or DeepNet post-norm x = norm(α·x + f(x)) (DeepOne).

    The norm names are HF's; in post-norm they sit after the residual add instead of before f.
    """

    def __init__(self, spec: ModelSpec, layer: int = 0):
        super().__init__()
        self.self_attn = Attention(spec, layer)
        self.mlp = MLP(spec)
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.post_norm = spec.post_norm
        self.alpha = spec.residual_alpha

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask,
                cache: KVCache | None = None) -> torch.Tensor:
        if self.post_norm:
            x = self.input_layernorm(self.alpha * x + self.self_attn(x, cos, sin, mask, cache))
            return self.post_attention_layernorm(self.alpha * x + self.mlp(x))
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


def positions_from_documents(document_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 at the start of each contiguous document run in each row."""
    t = document_ids.shape[1]
    idx = torch.arange(t, device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    return idx - torch.where(starts, idx, 0).cummax(dim=1).values


class Transformer(nn.Module):
    """Decoder-only LM: embed → blocks → (final norm) → lm_head. forward returns logits [B, T, V]."""

    def __init__(self, spec: ModelSpec, attn_implementation: str = "auto"):
        super().__init__()
        self.spec = spec.validate()
        self.attn_implementation = check_attn_implementation(attn_implementation)
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(Block(spec, layer) for layer in range(spec.num_layers))
        # Post-norm blocks already end in a norm, so DeepOne has no final norm.
        self.norm = nn.Identity() if spec.post_norm else RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        self.tie_weights()
        self.init_weights()

    def tie_weights(self) -> None:
        """Share the embedding matrix with the output head when spec.tie_embeddings."""
        # Only reassign when not already shared: to_empty keeps the tie, and reassigning a
        # parameter after FSDP2 sharding would detach it from its shard group.
        if self.spec.tie_embeddings and self.lm_head.weight is not self.embed_tokens.weight:
            self.lm_head.weight = self.embed_tokens.weight

    def init_weights(self) -> None:
        """(Re)initialise all parameters per the architecture's scheme (see init.py)."""
        init_transformer(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, V]. document_ids [B, T] confine attention to each packed document;
        position_ids default to 0..T-1, or restart per document when document_ids are given.

        With a KVCache (generation), input_ids are the tokens after those already cached: they take
        positions cache.length.. and attend over the cache, which they are appended to.

        With labels [B, T] (training, evaluation), returns instead the summed cross entropy of the labelled
        positions, fp32: the head and the loss run chunk by chunk (loss.py), never making [B·T, V] logits."""
        b, t = input_ids.shape
        start = 0 if cache is None else cache.length
        if cache is not None and document_ids is not None:
            raise ModelError("a KVCache decodes one document per row; pass document_ids=None with cache")
        if position_ids is None:
            position_ids = (positions_from_documents(document_ids) if document_ids is not None
                            else torch.arange(start, start + t, device=input_ids.device)[None])  # cos/sin broadcast
        x = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids, self.spec.attn_head_dim, self.spec.rope_theta)
        if cache is None:
            backend = plan_attention(self.attn_implementation, input_ids.device.type).backend(document_ids is not None)
            mask = build_attention_mask(document_ids, b, t, backend, input_ids.device)
        else:
            mask = cached_attention_mask(t, start + t, self.attn_implementation, input_ids.device)
        for block in self.layers:
            x = block(x, cos, sin, mask, cache)
        if labels is not None:
            return head_cross_entropy_sum(self.norm(x), self.lm_head.weight, labels)
        return self.lm_head(self.norm(x))

    def new_cache(self) -> KVCache:
        """An empty KVCache for this model's layers, for forward(..., cache=...)."""
        return KVCache(len(self.layers))


def build_model(
    spec: ModelSpec,
    attn_implementation: str = "auto",
    device: str | torch.device = "meta",
    dtype: torch.dtype | None = None,
) -> Transformer:
    """Construct on the meta device (no memory), then materialise and init on `device` unless it is meta.

    For FSDP2, build with device='meta', shard, then call `materialize(model, device)`.
    """
    with torch.device("meta"):
        model = Transformer(spec, attn_implementation)
    if dtype is not None:
        model.to(dtype=dtype)
    if torch.device(device).type != "meta":
        materialize(model, device)
    return model


def materialize(model: Transformer, device: str | torch.device) -> Transformer:
    """Allocate a meta-device model's storage on `device` and initialise it (keeps embeddings tied)."""
    model.to_empty(device=device)
    model.tie_weights()
    with torch.no_grad():
        model.init_weights()
    return model
