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
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from forgather.models.transformer import Transformer


def init_transformer(model: "Transformer") -> None:
    """Initialise every parameter of `model` per model.spec.architecture."""
    spec = model.spec
    std = spec.init_std
    if spec.post_norm:
        scaled, gain = ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), spec.deepnet_beta
    else:
        scaled, gain = ("o_proj", "down_proj"), 1.0 / math.sqrt(2 * spec.num_layers)
    with torch.no_grad():
        nn.init.normal_(model.embed_tokens.weight, mean=0.0, std=std)
        if not spec.tie_embeddings:
            nn.init.normal_(model.lm_head.weight, mean=0.0, std=std)
        for block in model.layers:
            for name, module in block.named_modules():
                leaf = name.rsplit(".", 1)[-1]
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=std * (gain if leaf in scaled else 1.0))
                elif hasattr(module, "weight") and leaf.endswith("norm"):
                    nn.init.ones_(module.weight)
        if isinstance(getattr(model.norm, "weight", None), torch.Tensor):
            nn.init.ones_(model.norm.weight)
