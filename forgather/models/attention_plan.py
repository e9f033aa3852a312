"""Which attention backend runs, per device and packing: the one policy every mode and tool goes through.

torch-free, so the CLI can check a config before torchrun starts. The model asks `plan_attention` for the
backend of each forward (packed rows or one document per row); the trainer prints `describe()` once.

Why these choices (a [B, 1, T, T] boolean mask plus GQA sends CUDA SDPA to its math kernel, which at
8 × 4096 tokens materialises gigabytes of fp32 scores per layer):
- packed rows on CUDA take flex_attention with a document BlockMask (skips masked blocks);
- rows holding one document take SDPA's is_causal path (flash kernel on CUDA), whatever the device;
- the dense mask is for CPU, where SDPA's CPU kernel takes it and flex has no backward.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

from forgather.errors import ModelError

BACKENDS = ("eager", "sdpa", "flex_attention", "flash_attention_2")
ATTN_IMPLEMENTATIONS = ("auto", *BACKENDS)

# What each backend does with rows that hold several documents, and with rows that hold one.
_PACKED_HOW = {"eager": "eager with a dense document mask", "sdpa": "SDPA with a dense document mask",
               "flex_attention": "flex_attention with a document BlockMask",
               "flash_attention_2": "flash-attn varlen over document segments"}
_CAUSAL_HOW = {"eager": "eager causal", "sdpa": "SDPA is_causal", "flex_attention": "flex_attention causal BlockMask",
               "flash_attention_2": "flash-attn causal"}

SDPA_PACKED_CUDA_COST = (
    "attn_implementation=sdpa with packed documents on CUDA: no fused SDPA kernel takes a mask with GQA, so k/v "
    "are expanded to every head and a dense [B, 1, T, T] mask goes through the memory-efficient kernel "
    "(O(T²) mask memory per batch, masked blocks still computed); attn_implementation=auto uses flex document "
    "masks instead")
EAGER_CUDA_COST = ("attn_implementation=eager on CUDA materialises [B, H, T, T] fp32 scores per layer: a reference "
                   "for checking results, not for training speed")


@dataclass(frozen=True)
class AttentionPlan:
    """The backend for packed rows and for one-document rows on one device type, with what it costs."""

    requested: str
    device_type: str
    packed: str  # rows holding several documents (document_ids given)
    causal: str  # rows holding one document each (no document_ids)
    note: str = ""  # the cost of a slow choice, said once at start

    @property
    def compiles_whole(self) -> bool:
        """Whether a block using these backends traces into one graph, so it can compile with fullgraph=True.

        eager, sdpa and flex do (tests/distributed/test_parallelize.py traces each); flash-attn's external
        kernels are not pinned by any test here.
        """
        return {self.packed, self.causal} <= {"eager", "sdpa", "flex_attention"}

    def backend(self, packed: bool) -> str:
        """The backend for a forward with (packed=True) or without document boundaries."""
        return self.packed if packed else self.causal

    def describe(self) -> str:
        """One line for the start of a run."""
        line = (f"attention: {self.requested} on {self.device_type}: packed rows → {_PACKED_HOW[self.packed]}, "
                f"one-document rows → {_CAUSAL_HOW[self.causal]}")
        return f"{line}; note: {self.note}" if self.note else line


def check_attn_implementation(name: str) -> str:
    """Return name if this backend is known and usable here, else raise ModelError."""
    if name not in ATTN_IMPLEMENTATIONS:
        raise ModelError(f"attn_implementation={name!r} is unknown; use one of {', '.join(ATTN_IMPLEMENTATIONS)}")
    if name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ModelError("flash_attention_2 needs the flash-attn package; pip install flash-attn "
                         "or use --attn-implementation auto")
    return name


@functools.lru_cache(maxsize=32)
def plan_attention(requested: str, device_type: str) -> AttentionPlan:
    """The attention backends for `requested` (auto or a backend name) on `device_type` ('cuda', 'cpu', ...)."""
    check_attn_implementation(requested)
    cuda = device_type == "cuda"
    if requested == "auto":
        return AttentionPlan(requested, device_type, packed="flex_attention" if cuda else "sdpa", causal="sdpa")
    note = ""
    if cuda and requested == "sdpa":
        note = SDPA_PACKED_CUDA_COST
    elif cuda and requested == "eager":
        note = EAGER_CUDA_COST
    return AttentionPlan(requested, device_type, packed=requested, causal=requested, note=note)


def training_problem(requested: str, device_type: str, compute_dtype: str) -> str | None:
    """Why `requested` cannot train on `device_type` in `compute_dtype` ('bfloat16'/'float32'), or None."""
    if requested == "flex_attention" and device_type != "cuda":
        return ("flex_attention trains only on CUDA GPUs (it has no backward on CPU); use auto (SDPA with the "
                "same document mask on CPU, flex on GPUs) or sdpa")
    if requested == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            return "flash_attention_2 needs the flash-attn package; pip install flash-attn, or use auto"
        if device_type != "cuda":
            return "flash_attention_2 runs only on CUDA GPUs; use auto or sdpa"
        if compute_dtype != "bfloat16":
            return ("flash_attention_2 needs bf16 compute but train.precision gives fp32; set train.precision to "
                    "bf16 (or auto on a GPU), or use auto")
    return None
