"""Model shape specification, parameter/FLOP arithmetic and size presets (pure Python, no torch).

The CLI imports this module to print sizes and validate configs, so it must stay torch-free.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from forgather.errors import ModelError

ARCHITECTURES = ("llama", "qwen3", "deepone")

# Per-architecture defaults for fields left as None: (rope_theta, tie_embeddings, qk_norm).
_ARCH_DEFAULTS: dict[str, tuple[float, bool, bool]] = {
    "llama": (10000.0, False, False),
    "qwen3": (1_000_000.0, True, True),
    "deepone": (10000.0, False, True),
}


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def default_intermediate_size(hidden_size: int) -> int:
    """SwiGLU width ~8/3·hidden (parameter parity with a 4·hidden GELU MLP), rounded up to 64."""
    return _round_up(8 * hidden_size / 3, 64)


@dataclass
class ModelSpec:
    """Everything that determines a decoder-only transformer's parameters and forward pass.

    None-valued fields are filled from the architecture's defaults at construction.
    """

    architecture: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 512
    num_layers: int = 8
    num_heads: int = 8
    num_kv_heads: int | None = None  # None -> num_heads (plain multi-head attention)
    head_dim: int | None = None  # None -> hidden_size // num_heads
    intermediate_size: int | None = None  # None -> default_intermediate_size(hidden_size)
    rope_theta: float | None = None
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool | None = None
    qk_norm: bool | None = None
    max_position_embeddings: int = 2048
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.intermediate_size is None and isinstance(self.hidden_size, int) and self.hidden_size > 0:
            self.intermediate_size = default_intermediate_size(self.hidden_size)
        defaults = _ARCH_DEFAULTS.get(self.architecture)
        if defaults is not None:  # unknown architectures are reported by validate()
            theta, tie, qk = defaults
            self.rope_theta = theta if self.rope_theta is None else float(self.rope_theta)
            self.tie_embeddings = tie if self.tie_embeddings is None else bool(self.tie_embeddings)
            self.qk_norm = qk if self.qk_norm is None else bool(self.qk_norm)

    # Derived quantities (properties so they never go stale when a field is edited).
    @property
    def attn_head_dim(self) -> int:
        """Per-head width actually used: head_dim if given, else hidden_size // num_heads."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def post_norm(self) -> bool:
        """DeepNet-style post-norm residual (DeepOne) instead of pre-norm (Llama/Qwen3)."""
        return self.architecture == "deepone"

    @property
    def residual_alpha(self) -> float:
        """DeepNet residual scale α = (2N)^(1/4) for post-norm, 1 for pre-norm."""
        return (2 * self.num_layers) ** 0.25 if self.post_norm else 1.0

    @property
    def deepnet_beta(self) -> float:
        """DeepNet init gain β = (8N)^(-1/4) for value/out-proj/MLP weights."""
        return (8 * self.num_layers) ** -0.25

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model config") -> "ModelSpec":
        """Build from a mapping (e.g. a model YAML), rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(
                f"{source}: unknown model field(s) {', '.join(unknown)}; valid fields are {', '.join(sorted(known))}"
            )
        spec = cls(**data)
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (resolved defaults included)."""
        return dataclasses.asdict(self)

    def validate(self) -> "ModelSpec":
        """Raise ModelError (one line, naming field, value and fix) if the spec cannot build a model."""
        if self.architecture not in ARCHITECTURES:
            raise ModelError(
                f"model.architecture={self.architecture!r} is unknown; use one of {', '.join(ARCHITECTURES)}"
            )
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                     "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelError(f"model.{name}={value!r} must be a positive integer")
        if self.head_dim is not None:
            if not isinstance(self.head_dim, int) or isinstance(self.head_dim, bool) or self.head_dim <= 0:
                raise ModelError(f"model.head_dim={self.head_dim!r} must be a positive integer or null")
        elif self.hidden_size % self.num_heads:
            raise ModelError(
                f"model.num_heads={self.num_heads} does not divide model.hidden_size={self.hidden_size}; "
                f"pick num_heads dividing {self.hidden_size} or set head_dim explicitly"
            )
        if self.attn_head_dim % 2:
            raise ModelError(f"head dim {self.attn_head_dim} is odd; RoPE needs an even head_dim")
        if self.num_heads % self.num_kv_heads:
            raise ModelError(
                f"model.num_kv_heads={self.num_kv_heads} does not divide model.num_heads={self.num_heads}; "
                f"use a divisor of {self.num_heads}"
            )
        for name in ("rope_theta", "rms_norm_eps", "init_std"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ModelError(f"model.{name}={value!r} must be a positive number")
        return self


def parameter_counts(spec: ModelSpec) -> tuple[int, int]:
    """(total, non_embedding) parameter counts; non_embedding leaves out the vocabulary matrices.

    total counts a tied embedding/output matrix once. non_embedding (Kaplan et al.'s N) is the blocks
    and norms only: the input table is removed, and the output head too when it is a separate matrix;
    when tied, the one shared matrix is removed once. The head's matmul is still compute, which
    flops_per_token adds back whether or not it is tied.
    """
    h, d, nh, nkv = spec.hidden_size, spec.attn_head_dim, spec.num_heads, spec.num_kv_heads
    attn = h * nh * d + 2 * h * nkv * d + nh * d * h + (2 * d if spec.qk_norm else 0)
    mlp = 3 * h * spec.intermediate_size
    per_layer = attn + mlp + 2 * h  # two RMSNorm weight vectors per block
    embed = spec.vocab_size * h
    final_norm = 0 if spec.post_norm else h  # post-norm blocks already end in a norm
    head = 0 if spec.tie_embeddings else spec.vocab_size * h
    non_embedding = spec.num_layers * per_layer + final_norm
    return embed + non_embedding + head, non_embedding


def flops_per_token(spec: ModelSpec, seq_len: int) -> int:
    """Training FLOPs per token: 6·(N + V·h) + 12·L·heads·head_dim·T (PaLM appendix B; N non-embedding).

    V·h is the output head's matmul, done every token whether its matrix is tied to the embedding or not.
    """
    _, n = parameter_counts(spec)
    attention = 12 * spec.num_layers * spec.num_heads * spec.attn_head_dim * seq_len
    return 6 * (n + spec.vocab_size * spec.hidden_size) + attention


# Shapes only; vocab_size and architecture come from the caller (see preset()).
PRESETS: dict[str, dict[str, int]] = {
    "nano": dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384),
    "micro": dict(hidden_size=256, num_layers=6, num_heads=4, num_kv_heads=2, intermediate_size=704),
    "mini": dict(hidden_size=384, num_layers=8, num_heads=6, num_kv_heads=2, intermediate_size=1024),
    # SmolLM2-135M's deep-and-thin shape.
    "small": dict(hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3, intermediate_size=1536),
    "medium": dict(hidden_size=1024, num_layers=24, num_heads=16, num_kv_heads=8, intermediate_size=2816),
    "large": dict(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=4, intermediate_size=4096),
    "xlarge": dict(hidden_size=2048, num_layers=24, num_heads=32, num_kv_heads=8, intermediate_size=8192),
}


def preset(name: str, architecture: str = "llama", vocab_size: int = 32000, **overrides: Any) -> ModelSpec:
    """A validated ModelSpec for a named preset shape."""
    if name not in PRESETS:
        raise ModelError(f"model preset {name!r} is unknown; use one of {', '.join(PRESETS)}")
    return ModelSpec(architecture=architecture, vocab_size=vocab_size, **{**PRESETS[name], **overrides}).validate()


def human_count(n: float) -> str:
    """A count with a K/M/B/T suffix and one decimal (123.9M, 1.5B)."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


SHAPE_FIELDS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")
_COUNT_SCALE = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


LARGEST_PARAM_COUNT = 1e13


def parse_param_count(text: str | int) -> int:
    """124M, 1.5B, 30000000, 30_000_000 or 3e7 as an int; ValueError for anything else."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"{text} is not a positive parameter count")
        return text
    cleaned = str(text).strip().replace("_", "").replace(",", "")
    match = re.fullmatch(r"(\d+(?:\.\d*)?(?:e\d+)?)([kmbgt]?)", cleaned, flags=re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a parameter count; write e.g. 124M, 1.5B or 30000000")
    count = float(match.group(1)) * _COUNT_SCALE[match.group(2).lower()]
    if count > LARGEST_PARAM_COUNT:  # 1e400 is infinite, 1e30 no machine holds: both a typo
        raise ValueError(f"{text!r} is past {LARGEST_PARAM_COUNT:.0e} parameters; write e.g. 124M, 1.5B or 70B")
    return round(count)


def shape_for_target_params(
    architecture: str, target: int, vocab_size: int, prefer_depth: bool = False
) -> ModelSpec:
    """A shape (head_dim 64, GQA where it divides) whose total params are within 5% of target.

    Among shapes within 5%, prefers hidden/layers ≈ 64 (≈ 20 with prefer_depth, MobileLLM-style
    deep-and-thin), then the closest count.
    """
    if architecture not in ARCHITECTURES:
        raise ModelError(f"architecture={architecture!r} is unknown; use one of {', '.join(ARCHITECTURES)}")
    if target <= 0:
        raise ModelError(f"target params {target} must be positive")
    aspect = 20.0 if prefer_depth else 64.0
    best: tuple[float, float, ModelSpec] | None = None
    for hidden in range(64, 8192 + 1, 64):
        heads = hidden // 64
        kv = heads // 4 if heads % 4 == 0 and heads >= 8 else heads
        base = ModelSpec(architecture=architecture, vocab_size=vocab_size, hidden_size=hidden,
                         num_layers=1, num_heads=heads, num_kv_heads=kv)
        one, _ = parameter_counts(base)
        base.num_layers = 2
        per_layer = parameter_counts(base)[0] - one
        fixed = one - per_layer
        layers = max(1, round((target - fixed) / per_layer))
        base.num_layers = layers
        total, _ = parameter_counts(base)
        err = abs(total - target) / target
        if err > 0.05:
            continue
        key = (abs(math.log((hidden / layers) / aspect)), err)
        if best is None or key < best[:2]:
            best = (*key, base)
    if best is None:
        raise ModelError(
            f"no {architecture} shape with vocab_size={vocab_size} lands within 5% of {target:,} params "
            f"(the embedding table alone is {64 * vocab_size:,} at hidden 64); raise the target or shrink the vocab"
        )
    return best[2].validate()
