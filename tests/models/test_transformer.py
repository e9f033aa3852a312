"""The Transformer: backends agree end to end, packing is exact, init and DeepOne scaling are as specified."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from forgather.errors import ModelError
from forgather.models.spec import ARCHITECTURES, ModelSpec, parameter_counts
from forgather.models.transformer import Transformer, build_model, materialize, positions_from_documents

os.environ.setdefault("OMP_NUM_THREADS", "1")
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

V, T = 256, 20


def tiny(arch: str, **kw) -> ModelSpec:
    fields = dict(architecture=arch, vocab_size=V, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    if arch == "qwen3":
        fields["head_dim"] = 32  # differs from hidden/heads = 16, as Qwen3 allows
    return ModelSpec(**{**fields, **kw})


def model(arch: str, impl: str = "sdpa", **kw) -> Transformer:
    torch.manual_seed(0)
    m = Transformer(tiny(arch, **kw), attn_implementation=impl)
    # Non-trivial norm weights so a mis-wired norm cannot hide behind ones.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return m


def tokens(b: int = 2, t: int = T, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_module_params_match_parameter_counts(arch):
    m = model(arch)
    assert sum(p.numel() for p in m.parameters()) == parameter_counts(m.spec)[0]
    assert isinstance(m.layers, nn.ModuleList) and len(m.layers) == 2
    assert (m.lm_head.weight is m.embed_tokens.weight) == m.spec.tie_embeddings


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_eager_and_sdpa_agree_logits_and_grads(arch):
    docs = torch.tensor([[0] * 8 + [1] * 12, [4] * 20])
    x = tokens()
    results = []
    for impl in ("eager", "sdpa"):
        m = model(arch, impl)
        logits = m(x, document_ids=docs)
        nn.functional.cross_entropy(logits.flatten(0, 1), x.roll(-1, 1).flatten()).backward()
        results.append((logits.detach(), {n: p.grad for n, p in m.named_parameters()}))
    (le, ge), (ls, gs) = results
    torch.testing.assert_close(le, ls, atol=1e-5, rtol=0)
    for name in ge:
        torch.testing.assert_close(ge[name], gs[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_flex_matches_sdpa_forward(arch):
    docs = torch.tensor([[0] * 8 + [1] * 12, [4] * 20])
    x = tokens()
    with torch.no_grad():
        flex = model(arch, "flex_attention")(x, document_ids=docs)
        sdpa = model(arch, "sdpa")(x, document_ids=docs)
    torch.testing.assert_close(flex, sdpa, atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["sdpa", "eager", "flex_attention"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_packed_documents_equal_separate_runs(arch, impl):
    lengths = [5, 9, 6]
    m = model(arch, impl)
    x = tokens(1, sum(lengths))
    docs = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        packed = m(x, position_ids=positions, document_ids=docs)
        derived = m(x, document_ids=docs)  # positions derived from document_ids
        alone = torch.cat([m(part) for part in x.split(lengths, dim=1)], dim=1)
        unmasked = m(x, position_ids=positions)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(derived, packed, atol=0, rtol=0)
    assert (unmasked - alone).abs().max() > 1e-3  # the mask is doing the work


def test_positions_from_documents():
    docs = torch.tensor([[7, 7, 7, 2, 2, 9], [1, 1, 1, 1, 1, 1]])
    assert positions_from_documents(docs).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]


def test_rope_positions_matter():
    m = model("llama")
    x = tokens(1)
    with torch.no_grad():
        a = m(x)
        b = m(x, position_ids=torch.arange(T)[None] + 3)
    # Relative positions are unchanged, so RoPE gives the same logits up to float error...
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    with torch.no_grad():
        c = m(x, position_ids=torch.arange(T)[None] * 2)
    assert (a - c).abs().max() > 1e-3  # ...but stretched positions do not.


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_init_scales_output_projections(arch):
    torch.manual_seed(0)
    spec = tiny(arch, hidden_size=256, num_heads=4, num_kv_heads=4, num_layers=8, intermediate_size=512,
                head_dim=None)
    m = Transformer(spec)
    block = m.layers[0]
    std = spec.init_std
    assert block.self_attn.q_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    assert block.mlp.up_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    scaled = std / math.sqrt(2 * spec.num_layers)
    assert block.self_attn.o_proj.weight.std().item() == pytest.approx(scaled, rel=0.05)
    assert block.mlp.down_proj.weight.std().item() == pytest.approx(scaled, rel=0.05)
    assert m.embed_tokens.weight.std().item() == pytest.approx(std, rel=0.05)
    assert torch.all(block.input_layernorm.weight == 1)


def test_deepone_alpha_beta_and_init():
    torch.manual_seed(0)
    spec = tiny("deepone", hidden_size=256, num_heads=4, num_kv_heads=4, num_layers=6, intermediate_size=512)
    assert spec.residual_alpha == pytest.approx((2 * 6) ** 0.25)
    assert spec.deepnet_beta == pytest.approx((8 * 6) ** -0.25)
    m = Transformer(spec)
    assert all(block.alpha == spec.residual_alpha for block in m.layers)
    block, std, beta = m.layers[0], spec.init_std, spec.deepnet_beta
    for name in ("v_proj", "o_proj"):
        assert getattr(block.self_attn, name).weight.std().item() == pytest.approx(std * beta, rel=0.05)
    for name in ("gate_proj", "up_proj", "down_proj"):
        assert getattr(block.mlp, name).weight.std().item() == pytest.approx(std * beta, rel=0.05)
    for name in ("q_proj", "k_proj"):
        assert getattr(block.self_attn, name).weight.std().item() == pytest.approx(std, rel=0.05)
    assert isinstance(m.norm, nn.Identity)
    assert hasattr(block.self_attn, "q_norm")


def test_deepone_block_is_post_norm_with_alpha():
    torch.manual_seed(0)
    m = model("deepone")
    block = m.layers[0]
    x = torch.randn(1, 4, 64)
    from forgather.models.attention import build_attention_mask
    from forgather.models.transformer import rope_cos_sin

    cos, sin = rope_cos_sin(torch.arange(4)[None], m.spec.attn_head_dim, m.spec.rope_theta)
    mask = build_attention_mask(None, 1, 4, "sdpa", x.device)
    with torch.no_grad():
        h = block.input_layernorm(block.alpha * x + block.self_attn(x, cos, sin, mask))
        expected = block.post_attention_layernorm(block.alpha * h + block.mlp(h))
        torch.testing.assert_close(block(x, cos, sin, mask), expected, atol=0, rtol=0)


def test_deepone_forward_backward_finite():
    m = model("deepone", num_layers=4)
    x = tokens()
    logits = m(x, document_ids=torch.tensor([[0] * 10 + [1] * 10] * 2))
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), x.roll(-1, 1).flatten())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_build_model_meta_then_materialize(arch):
    spec = tiny(arch)
    meta = build_model(spec, "sdpa", device="meta")
    assert all(p.is_meta for p in meta.parameters())
    materialize(meta, "cpu")
    assert not any(p.is_meta for p in meta.parameters())
    assert (meta.lm_head.weight is meta.embed_tokens.weight) == spec.tie_embeddings
    assert meta.embed_tokens.weight.std().item() == pytest.approx(spec.init_std, rel=0.1)
    torch.manual_seed(0)
    direct = build_model(spec, "sdpa", device="cpu")
    with torch.no_grad():
        assert torch.isfinite(direct(tokens())).all()


def test_bad_attn_implementation_is_model_error():
    with pytest.raises(ModelError, match="'nope'"):
        Transformer(tiny("llama"), attn_implementation="nope")


def test_bad_spec_is_model_error():
    with pytest.raises(ModelError, match="num_kv_heads=3"):
        Transformer(tiny("llama", num_kv_heads=3))


def test_auto_model_takes_the_plans_backend_per_packing(monkeypatch):
    import forgather.models.transformer as transformer

    seen = []
    real = transformer.attend
    monkeypatch.setattr(transformer, "attend", lambda q, k, v, mask: seen.append(
        (mask.implementation, mask.causal_only)) or real(q, k, v, mask))
    m = model("llama", "auto")
    with torch.no_grad():
        m(tokens(), document_ids=torch.tensor([[0] * 8 + [1] * 12, [4] * 20]))
        m(tokens())
    # On CPU both paths are SDPA (the dense mask is CPU's); each layer sees the same mask.
    assert seen == [("sdpa", False)] * 2 + [("sdpa", True)] * 2


@pytest.mark.parametrize("impl", ["eager", "sdpa", "flex_attention"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_under_bf16_autocast_attention_gets_q_k_v_in_one_dtype(arch, impl, monkeypatch):
    # RoPE's fp32 tables (and Qwen3's fp32 q/k-norm weights) used to promote q and k to fp32 while v stayed
    # bf16: flash-attn raises on that, flex may, and SDPA silently casts.
    import forgather.models.transformer as transformer

    seen = set()
    real = transformer.attend
    monkeypatch.setattr(transformer, "attend", lambda q, k, v, mask: seen.add((q.dtype, k.dtype, v.dtype))
                        or real(q, k, v, mask))
    m = model(arch, impl)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m(tokens(), document_ids=torch.tensor([[0] * 8 + [1] * 12, [4] * 20]))
        m(tokens())
    assert seen == {(torch.bfloat16,) * 3}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16-params-as-fsdp2-unshards"])
def test_backward_keeps_no_copy_of_the_projection_weights(dtype):
    # Concatenated q/k/v (gate/up) weights were a fresh tensor per forward that autograd kept until backward:
    # extra weight memory, and under FSDP2 a copy of the unsharded weights that resharding cannot free.
    m = model("llama").to(dtype)
    params = {p.untyped_storage().data_ptr() for p in m.parameters()}
    block = m.layers[0]
    weight_shapes = {tuple(p.shape) for p in block.parameters() if p.dim() == 2}
    a, mlp = block.self_attn, block.mlp
    weight_shapes |= {(a.q_proj.out_features + a.k_proj.out_features + a.v_proj.out_features, a.q_proj.in_features),
                      (2 * mlp.gate_proj.out_features, mlp.gate_proj.in_features)}
    weight_shapes |= {shape[::-1] for shape in weight_shapes}  # linear saves its weight transposed
    copies = []

    def pack(t):
        if t.dim() == 2 and tuple(t.shape) in weight_shapes and t.untyped_storage().data_ptr() not in params:
            copies.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = m(tokens(), labels=tokens(seed=1))
    loss.backward()
    assert copies == []
