"""Autoregressive decoding: greedy or temperature/top-k/top-p sampling, with or without a KV cache.

`generate_tokens` yields token ids one at a time so a caller can stream them; `StreamDecoder`
turns that stream into text pieces that are safe to print (never half a UTF-8 character).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from forgather.errors import UserError
from forgather.models.transformer import Transformer


@dataclass
class Sampling:
    """How the next token is chosen: temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def validate(self) -> "Sampling":
        """Return self, or raise UserError naming the bad option."""
        if not self.temperature >= 0:  # also rejects NaN
            raise UserError(f"temperature {self.temperature} must be >= 0 (0 = greedy)")
        if self.top_k < 0:
            raise UserError(f"top_k {self.top_k} must be >= 0 (0 = off)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p {self.top_p} must be in (0, 1] (1 = off)")
        return self


def next_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one id per row from last-position logits [B, V]; returns [B] (long)."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1:
        # Nucleus: keep the most likely tokens until their mass reaches top_p (the first one always).
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= sampling.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_tokens(
    model: Transformer,
    prompt: list[int],
    max_new_tokens: int,
    sampling: Sampling,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
    use_cache: bool = True,
    vocab_size: int | None = None,
) -> Iterator[int]:
    """Yield up to max_new_tokens ids continuing `prompt`, stopping after stop_id (which is yielded).

    Only ids below `vocab_size` (the tokenizer's) are chosen: an embedding table is often padded past
    the tokenizer, and a smaller --tokenizer leaves rows it cannot decode; such an id would print nothing.
    Without the cache every step re-runs the whole sequence: slower, and the reference the cache is
    tested against (same tokens for the same generator seed).
    """
    if not prompt:
        raise UserError("the prompt encodes to no tokens; give some text to continue")
    sampling.validate()
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    cache = model.new_cache() if use_cache else None
    step_input = ids
    for _ in range(max_new_tokens):
        logits = model(step_input if use_cache else ids, cache=cache)[:, -1, :vocab_size]
        token = next_token(logits, sampling, generator)
        yield int(token.item())
        if stop_id is not None and int(token.item()) == stop_id:
            return
        step_input = token[:, None]
        ids = torch.cat((ids, step_input), dim=1)


class StreamDecoder:
    """Text for a growing list of token ids, handed out as the new part since the last call.

    Decoding ids one by one would split multi-byte characters (byte-level BPE tokens can hold half
    a UTF-8 character) and lose word-boundary spaces (SentencePiece), so the whole generated tail is
    decoded after the prompt's ids, and a trailing replacement character is held back until the
    token that completes it arrives.
    """

    def __init__(self, decode: Callable[[list[int]], str], prompt: list[int]) -> None:
        self.decode = decode
        self.ids = list(prompt)
        self.prefix = len(decode(self.ids))
        self.emitted = 0

    def push(self, token: int) -> str:
        """Add one id; return the text that is now complete and not yet returned."""
        self.ids.append(token)
        text = self.decode(self.ids)[self.prefix:]
        if text.endswith("\ufffd"):
            return ""
        piece, self.emitted = text[self.emitted:], len(text)
        return piece

    def flush(self) -> str:
        """Whatever is left, replacement characters included (the end of the stream)."""
        text = self.decode(self.ids)[self.prefix:]
        piece, self.emitted = text[self.emitted:], len(text)
        return piece
