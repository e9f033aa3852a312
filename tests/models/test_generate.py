"""Decoding: the KV cache reproduces a full forward, sampling filters and seeds behave, streaming text is whole."""

from __future__ import annotations

import os

import pytest
import torch

from forgather.errors import ModelError, UserError
from forgather.models.generate import Sampling, StreamDecoder, generate_tokens, next_token
from forgather.models.spec import ARCHITECTURES, ModelSpec
from forgather.models.transformer import Transformer

os.environ.setdefault("OMP_NUM_THREADS", "1")
V = 256


def sharp_model(arch: str, impl: str = "sdpa") -> Transformer:
    """A tiny random model whose logits are far from uniform, so greedy picks and samples are not coin flips."""
    torch.manual_seed(0)
    # Untied: a tied random model mostly repeats its input token (the embedding dominates the residual).
    fields = dict(architecture=arch, vocab_size=V, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  tie_embeddings=False)
    if arch == "qwen3":
        fields["head_dim"] = 32
    m = Transformer(ModelSpec(**fields), attn_implementation=impl).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
        m.lm_head.weight.mul_(20)
    return m


PROMPT = [5, 17, 200, 3, 99]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_cached_logits_match_a_full_forward(arch, impl):
    m = sharp_model(arch, impl)
    x = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache()
        # A prefill, a chunk after cached tokens (needs the offset causal mask), then one token at a time.
        pieces = [m(x[:, :5], cache=cache), m(x[:, 5:9], cache=cache)]
        pieces += [m(x[:, i:i + 1], cache=cache) for i in range(9, 12)]
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("sampling", [Sampling(temperature=0), Sampling(temperature=1.0, top_k=40, top_p=0.9)],
                         ids=["greedy", "sampled"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_cached_and_uncached_decoding_give_identical_tokens(arch, sampling):
    m = sharp_model(arch)
    runs = []
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(7)
        runs.append(list(generate_tokens(m, PROMPT, 24, sampling, generator, use_cache=use_cache)))
    assert len(runs[0]) == 24
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 3  # a real continuation, not one token repeated


def test_sampling_differs_from_greedy_and_repeats_with_the_seed():
    m = sharp_model("llama")
    sampled = Sampling(temperature=1.5)

    def run(seed: int, sampling: Sampling) -> list[int]:
        return list(generate_tokens(m, PROMPT, 20, sampling, torch.Generator().manual_seed(seed)))

    assert run(1, sampled) == run(1, sampled)
    assert run(1, sampled) != run(2, sampled)
    assert run(1, sampled) != run(1, Sampling(temperature=0))


def test_next_token_filters():
    logits = torch.randn(2000, 50, generator=torch.Generator().manual_seed(0))
    best = logits.argmax(-1)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(next_token(logits, Sampling(temperature=0), gen), best)
    assert torch.equal(next_token(logits, Sampling(temperature=1, top_k=1), gen), best)
    assert torch.equal(next_token(logits, Sampling(temperature=1, top_p=1e-6), gen), best)
    top3 = logits.topk(3, dim=-1).indices
    picks = next_token(logits, Sampling(temperature=1, top_k=3), gen)
    assert (top3 == picks[:, None]).any(-1).all()
    assert len(set(picks.tolist())) > 3  # rows differ, so their top-3 sets cover many ids
    # Nucleus: a row whose top token holds 60% and the next 30% keeps exactly those two at top_p=0.8.
    probs = torch.tensor([[0.6, 0.3, 0.05, 0.05]]).log().expand(4000, 4)
    picked = next_token(probs, Sampling(temperature=1, top_p=0.8), gen)
    assert set(picked.tolist()) == {0, 1}
    assert 0.6 < (picked == 0).float().mean().item() < 0.73  # renormalised: 0.6 / 0.9 ≈ 0.67


def test_generation_stops_after_the_stop_id():
    m = sharp_model("qwen3")
    greedy = list(generate_tokens(m, PROMPT, 12, Sampling(temperature=0)))
    stop = greedy[4]
    stopped = list(generate_tokens(m, PROMPT, 12, Sampling(temperature=0), stop_id=stop))
    assert stopped == greedy[:greedy.index(stop) + 1]


@pytest.mark.parametrize("sampling", [Sampling(temperature=0), Sampling(temperature=2.0)], ids=["greedy", "sampled"])
def test_only_ids_the_tokenizer_can_decode_are_chosen(sampling):
    # An embedding padded past the tokenizer (or a smaller --tokenizer) has rows no text maps to.
    m = sharp_model("llama")
    unlimited = list(generate_tokens(m, PROMPT, 40, sampling, torch.Generator().manual_seed(3)))
    assert max(unlimited) >= 100  # the model alone does pick such ids
    limited = list(generate_tokens(m, PROMPT, 40, sampling, torch.Generator().manual_seed(3), vocab_size=100))
    assert len(limited) == 40 and max(limited) < 100


def test_bad_settings_and_inputs_raise():
    m = sharp_model("llama")
    with pytest.raises(UserError, match="top_p"):
        list(generate_tokens(m, PROMPT, 2, Sampling(top_p=0)))
    with pytest.raises(UserError, match="temperature"):
        list(generate_tokens(m, PROMPT, 2, Sampling(temperature=-1)))
    with pytest.raises(UserError, match="no tokens"):
        list(generate_tokens(m, [], 2, Sampling()))
    with pytest.raises(ModelError, match="document_ids"):
        m(torch.tensor([PROMPT]), document_ids=torch.zeros(1, 5, dtype=torch.long), cache=m.new_cache())


def test_stream_decoder_hands_out_whole_characters():
    # Tokens are raw bytes, as byte-level BPE tokens can be: "é" and "東" span several tokens.
    def decode(ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    prompt, text = list("Tokyo: ".encode()), "東京 café ok"
    stream = StreamDecoder(decode, prompt)
    pieces = [stream.push(b) for b in text.encode()]
    assert "".join(pieces) + stream.flush() == text
    assert not any("\ufffd" in p for p in pieces)
    assert pieces[:3] == ["", "", "東"]  # held back until the character is complete
