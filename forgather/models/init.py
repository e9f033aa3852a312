"""Per-architecture weight initialisation, applied in place to a Transformer's parameters.

Llama/Qwen3: normal(0, init_std) everywhere; residual output projections (attn o_proj, mlp
down_proj) scaled by 1/sqrt(2·num_layers) so the residual stream's variance does not grow
with depth (GPT-2 / Megatron practice).
DeepOne: DeepNet init — value, output and MLP weights scaled by β = (8N)^(-1/4), q/k left at
gain 1 (Wang et al. 2022, "DeepNet"), using normal(0, init_std·gain) in place of Xavier.
RMSNorm weights are 1.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
from torch import nn

Fill = Callable[[torch.Tensor], None]


def _parameters_in_init_order(model: nn.Module) -> Iterator[tuple[nn.Parameter, Fill]]:
    """Each parameter with how it is filled, in the order (and so with the random draws) of every init."""
    spec = model.spec
    std = spec.init_std
    if spec.post_norm:
        scaled, gain = ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), spec.deepnet_beta
    else:
        scaled, gain = ("o_proj", "down_proj"), 1.0 / math.sqrt(2 * spec.num_layers)

    def normal(s: float) -> Fill:
        return lambda t: t.normal_(mean=0.0, std=s)

    def ones(t: torch.Tensor) -> None:
        t.fill_(1.0)

    yield model.embed_tokens.weight, normal(std)
    if not spec.tie_embeddings:
        yield model.lm_head.weight, normal(std)
    for block in model.layers:
        for name, module in block.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if isinstance(module, nn.Linear):
                yield module.weight, normal(std * (gain if leaf in scaled else 1.0))
            elif hasattr(module, "weight") and leaf.endswith("norm"):
                yield module.weight, ones
    if isinstance(getattr(model.norm, "weight", None), torch.Tensor):
        yield model.norm.weight, ones


def init_transformer(model: nn.Module) -> None:
    """Initialise every parameter of a forgather Transformer per model.spec.architecture.

    A parameter sharded by FSDP2 (built on the meta device, sharded, then materialised) is filled with the
    rows it would hold had the whole tensor been initialised here: the full tensor is drawn (one parameter at
    a time) and this rank keeps its chunk. So sharded and unsharded init give identical weights for a seed.
    """
    from ..dist.rows import local_rows

    with torch.no_grad():
        for param, fill in _parameters_in_init_order(model):
            if not hasattr(param, "to_local"):
                fill(param)
                continue
            local, start, stop, _ = local_rows(param)
            full = torch.empty(param.shape, dtype=local.dtype, device=local.device)
            fill(full)
            local.copy_(full[start:stop])
