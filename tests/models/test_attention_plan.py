"""The attention backend per device and packing: one function decides, and slow choices say what they cost."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forgather.models.attention_plan import SDPA_PACKED_CUDA_COST, plan_attention, training_problem


@pytest.mark.parametrize("device, packed, causal", [("cuda", "flex_attention", "sdpa"), ("cpu", "sdpa", "sdpa")])
def test_auto_uses_flex_document_masks_on_cuda_and_dense_sdpa_only_on_cpu(device, packed, causal):
    plan = plan_attention("auto", device)
    assert (plan.backend(packed=True), plan.backend(packed=False)) == (packed, causal)
    assert plan.note == ""


def test_explicit_sdpa_on_cuda_says_what_packed_rows_cost():
    plan = plan_attention("sdpa", "cuda")
    assert plan.backend(packed=True) == "sdpa" and plan.note == SDPA_PACKED_CUDA_COST
    line = plan.describe()
    assert "memory-efficient kernel" in line and "[B, 1, T, T]" in line and "auto" in line
    assert plan_attention("sdpa", "cpu").note == ""  # CPU's SDPA kernel takes the mask: nothing to warn about


def test_describe_names_both_paths():
    line = plan_attention("auto", "cuda").describe()
    assert line.startswith("attention: auto on cuda:")
    assert "flex_attention with a document BlockMask" in line and "SDPA is_causal" in line


@pytest.mark.parametrize("requested, device, dtype, fragment", [
    ("flex_attention", "cpu", "float32", "no backward on CPU"),
    ("flash_attention_2", "cpu", "bfloat16", None),  # package missing here, or CPU: either names the fix
    ("flex_attention", "cuda", "bfloat16", ""),
    ("auto", "cpu", "float32", ""),
])
def test_training_problems(requested, device, dtype, fragment):
    problem = training_problem(requested, device, dtype)
    if fragment == "":
        assert problem is None
    elif fragment is None:
        assert problem and "flash" in problem
    else:
        assert fragment in problem


def test_flash_with_fp32_compute_is_refused(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name, *a))
    assert "bf16" in training_problem("flash_attention_2", "cuda", "float32")
    assert training_problem("flash_attention_2", "cuda", "bfloat16") is None


def test_the_plan_module_does_not_import_torch():
    code = "import sys, forgather.models.attention_plan; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
